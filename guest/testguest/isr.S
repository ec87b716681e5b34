/*
 * Interrupt and exception entry stubs: push the vector (and a zero error
 * code where the CPU pushes none), save the registers, call
 * isr_dispatch(vector, error_code, rip).
 */
	.text
	.code64

.macro stub vector, has_error
	.global isr_\vector
isr_\vector:
	.if \has_error == 0
	pushq	$0
	.endif
	pushq	$\vector
	jmp	isr_common
.endm

	stub 0, 0
	stub 1, 0
	stub 2, 0
	stub 3, 0
	stub 4, 0
	stub 5, 0
	stub 6, 0
	stub 7, 0
	stub 8, 1
	stub 9, 0
	stub 10, 1
	stub 11, 1
	stub 12, 1
	stub 13, 1
	stub 14, 1
	stub 16, 0
	stub 17, 1
	stub 18, 0
	stub 19, 0
	stub 36, 0		/* 0x24: COM1 through the IOAPIC */
	stub 41, 0		/* 0x29: the ACPI power button (GSI 9) */
	stub 64, 0		/* 0x40: LAPIC timer */
	stub 80, 0		/* 0x50: virtio-blk MSI-X */
	stub 81, 0		/* 0x51: virtio-net queues */
	stub 82, 0		/* 0x52: virtio-net configuration */
	stub 83, 0		/* 0x53: virtio-vsock queues */
	stub 255, 0		/* spurious */

isr_common:
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	movq	72(%rsp), %rdi		/* vector */
	movq	80(%rsp), %rsi		/* error code */
	movq	88(%rsp), %rdx		/* rip */
	cld
	call	isr_dispatch
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rax
	addq	$16, %rsp
	iretq
