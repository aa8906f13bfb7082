/*
 * A guest written from the README alone (boot protocol v2, hypercall ABI v1):
 * every vCPU prints one line and exits 0. It runs on both backends: KVM
 * starts it at _start in ring 0, ptrace at the same _start (its ring-3 entry
 * note) in ring 3, and nothing here cares which.
 *
 * Build: gcc -nostdlib -static -no-pie -Wl,-Ttext-segment=0x100000 \
 *            -Wl,--build-id=none -o readme-guest readme-guest.S
 */
	.set DOORBELL, 0xd0000000
	.set CALL_EXIT, 1
	.set CALL_PRINT, 2
	.set ARG0, 0			/* VCPUPage.args[0] */
	.set ARG1, 8			/* VCPUPage.args[1] */

	.text
	.globl _start
_start:	/* RDI = BootInfo GPA, RSI = vCPU id, RDX = this vCPU's VCPUPage GPA */
	movl	$DOORBELL, %ecx
	leaq	msg(%rip), %rax
	movq	%rax, ARG0(%rdx)	/* PRINT(gpa, len) */
	movq	$(msg_end - msg), ARG1(%rdx)
	movq	$CALL_PRINT, (%rcx)	/* one 8-byte store of the call number */
	movq	$0, ARG0(%rdx)		/* EXIT(0) */
	movq	$CALL_EXIT, (%rcx)
	ud2				/* EXIT does not return */

	.section .rodata
msg:	.ascii	"hello from a README guest\n"
msg_end:

#ifndef NO_NOTE /* the tests also build it without, for KVM only */
	/* The ring-3 entry note: owner "LHPVM", type 1, the entry address. */
	.section .note.lhpvm, "a", @note
	.balign	4
	.long	6			/* namesz: "LHPVM" and its NUL */
	.long	8			/* descsz */
	.long	1			/* type: LHPVM_NOTE_USER_ENTRY */
	.asciz	"LHPVM"
	.balign	4
	.quad	_start
#endif

	.section .note.GNU-stack, "", @progbits
