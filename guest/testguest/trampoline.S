/*
 * Application processors start here in real mode (SIPI vector 3: CS
 * 0x0300, IP 0).  Protected mode, then long mode with the BSP's page
 * tables, then ap_main() on the stack the BSP left in tramp_stack.
 */
	.section .trampoline, "awx"
	.code16
	.global ap_trampoline
ap_trampoline:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	lgdtl	tramp_gdt_desc
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	$0x08, $tramp32

	.code32
tramp32:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movl	tramp_cr3, %eax
	movl	%eax, %cr3
	movl	%cr4, %eax
	orl	$0x20, %eax		/* PAE */
	movl	%eax, %cr4
	movl	$0xC0000080, %ecx	/* EFER */
	rdmsr
	orl	$0x100, %eax		/* LME */
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000000, %eax	/* PG */
	movl	%eax, %cr0
	ljmpl	$0x18, $tramp64

	.code64
tramp64:
	movq	tramp_stack, %rsp
	movq	tramp_entry, %rax
	call	*%rax
1:	cli
	hlt
	jmp	1b

	.align	8
tramp_gdt:
	.quad	0
	.quad	0x00CF9A000000FFFF	/* 0x08: 32-bit code */
	.quad	0x00CF92000000FFFF	/* 0x10: data */
	.quad	0x00AF9A000000FFFF	/* 0x18: 64-bit code */
tramp_gdt_desc:
	.word	4 * 8 - 1
	.long	tramp_gdt

	.align	8
	.global tramp_cr3, tramp_stack, tramp_entry
tramp_cr3:
	.quad	0
tramp_stack:
	.quad	0
tramp_entry:
	.quad	0
