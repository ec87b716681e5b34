/* Entry from the boot protocol: long mode, %rsi = struct boot_params. */
	.section .text.start, "ax"
	.code64
	.global _start
_start:
	cli
	movq	$stack_top, %rsp
	movq	%rsi, %rdi
	call	guest_main
1:	cli
	hlt
	jmp	1b

	.bss
	.align	16
	.space	65536
stack_top:
