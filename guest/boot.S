/*
 * boot.S - the only ring-0 code of the guest: entry, IDT, fault reporting.
 *
 * Guest ring 0 is emulated one instruction at a time (~250 ns each on PVM, see
 * docs/kvm.md), so this file does as little as possible there:
 *
 *  - The IDT is not built at run time. It is plain initialised data whose gate
 *    offsets the linker fills in (__isr_lo16/__isr_hi16 come from guest.lds),
 *    so _start only runs lidt. This also means no vCPU ever rewrites the IDT
 *    while another one (workload fault_triple) is deliberately zeroing it.
 *  - _start is eleven instructions from the first fetch to ring 3.
 *
 * Entry state (set by the VMM): long mode, CS=0x08, SS/DS/ES=0x10, RFLAGS=0x2,
 * no IDT, TR loaded, RSP = block + LHPVM_BLOCK_K_STACK_TOP,
 * RDI = boot info GPA, RSI = vCPU id, RDX = this vCPU's page GPA (= its block).
 */
#include "lhpvm_abi.h"
#include "layout.h"

/* ------------------------------------------------------------------------- */
	.section .text.boot, "ax", @progbits
	.code64
	.globl _start
	.type _start, @function
_start:
	/* The shared, prebuilt IDT (all vCPUs load the same one). */
	lidt	lhpvm_idtr(%rip)

	/*
	 * Ring-3 data selectors. In 64-bit mode DS/ES are not used for
	 * addressing, and iretq would null them anyway (DPL 0 < CPL 3); loading
	 * 0x1b just makes the ring-3 state explicit instead of CPU-defined.
	 */
	movl	$(LHPVM_SEL_USER_DATA | 3), %eax
	movl	%eax, %ds
	movl	%eax, %es

	/*
	 * iretq frame to ring 3. RDI/RSI/RDX (boot info, id, page) are not
	 * touched by any of this, so they arrive unchanged in user_entry as the
	 * first three SysV arguments - no need to save them to memory.
	 * The page is the start of the block, so the ring-3 stack top is
	 * page + U_STACK_TOP.
	 */
	leaq	LHPVM_BLOCK_U_STACK_TOP(%rdx), %rax
	pushq	$(LHPVM_SEL_USER_DATA | 3)	/* SS */
	pushq	%rax				/* RSP */
	pushq	$USER_RFLAGS			/* RFLAGS: IF=1 */
	pushq	$(LHPVM_SEL_USER_CODE | 3)	/* CS */
	pushq	$user_entry			/* RIP */
	iretq
	.size _start, . - _start

/* ------------------------------------------------------------------------- */
/*
 * Exception stubs, vectors 0..31, each exactly ISR_STUB_SIZE bytes apart
 * (guest.lds asserts the total), so gate n points at isr_stubs + n*16.
 * Every stub leaves the same frame for isr_common:
 *   0(%rsp) vector, 8 error code (0 if the CPU pushes none), 16 RIP, 24 CS,
 *   32 RFLAGS, 40 RSP, 48 SS.
 * All stubs share the same address bits 31:16 (__isr_hi16): guest.lds asserts
 * that the 512-byte block does not cross a 64 KiB boundary.
 */
	.section .text.isr, "ax", @progbits

/* Vectors for which the CPU pushes an error code itself. */
#define HAS_ERROR_CODE(v) \
	((v) == 8 || (v) == 10 || (v) == 11 || (v) == 12 || (v) == 13 || \
	 (v) == 14 || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

.macro ISR_STUB vec
	.balign	ISR_STUB_SIZE, 0xcc
	.if !HAS_ERROR_CODE(\vec)
	pushq	$0				/* dummy error code */
	.endif
	pushq	$\vec
	jmp	isr_common
.endm

	.balign	ISR_STUB_SIZE, 0xcc
	.globl isr_stubs
	.type isr_stubs, @function
isr_stubs:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	ISR_STUB \v
	.endr
	.balign	ISR_STUB_SIZE, 0xcc
	.globl isr_stubs_end
isr_stubs_end:
	.size isr_stubs, isr_stubs_end - isr_stubs

/*
 * Report the fault to the VMM and stop. Written in asm and relying on nothing
 * of the interrupted context: the CPU switched to this vCPU's ring-0 stack
 * (TSS RSP0) for a ring-3 fault, and a ring-0 fault stays on it, so RSP lies
 * inside the vCPU block and RSP & ~(block size - 1) is the vCPU page.
 * Registers are clobbered freely: this handler never returns.
 */
	.globl isr_common
	.type isr_common, @function
isr_common:
	movq	%rsp, %rdi
	andq	$~(LHPVM_VCPU_BLOCK_SIZE - 1), %rdi
	popq	PG_FAULT_VECTOR(%rdi)
	popq	PG_FAULT_ERROR(%rdi)
	popq	PG_FAULT_RIP(%rdi)
	popq	PG_FAULT_CS(%rdi)
	popq	PG_FAULT_RFLAGS(%rdi)
	popq	PG_FAULT_RSP(%rdi)
	movq	%cr2, %rax
	movq	%rax, PG_FAULT_CR2(%rdi)
	/*
	 * FAULT hypercall: one 8-byte store of the call number to the doorbell.
	 * The doorbell (0xd0000000) is above 2 GiB, so it cannot be a
	 * sign-extended disp32; movl zero-extends it into RAX.
	 */
	movl	$LHPVM_DOORBELL_GPA, %eax
	movq	$LHPVM_CALL_FAULT, (%rax)
	/* FAULT does not return; if the VMM ever resumes us, stay parked. */
1:	cli
	hlt
	jmp	1b
	.size isr_common, . - isr_common

/* ------------------------------------------------------------------------- */
/*
 * Ring-3 entry. RSP = block + U_STACK_TOP (16-byte aligned), so the call
 * leaves the SysV-required alignment at guest_start's entry.
 */
	.text
	.globl user_entry
	.type user_entry, @function
user_entry:
	xorl	%ebp, %ebp			/* end of the frame-pointer chain */
	call	guest_start			/* (bi, id, page); never returns */
	ud2					/* reported as #UD if it ever does */
	.size user_entry, . - user_entry

/* ------------------------------------------------------------------------- */
/*
 * Boot protocol v2: the ring-3 entry note. A backend without ring 0 (ptrace)
 * starts every vCPU at user_entry directly, with the registers the iretq
 * above leaves: RDI/RSI/RDX as at _start, RSP = page + U_STACK_TOP, RFLAGS
 * 0x202. KVM ignores the note and starts at _start.
 */
	.section .note.lhpvm, "a", @note
	.balign	4
	.long	2f - 1f				/* namesz, with the NUL: 6 */
	.long	4f - 3f				/* descsz: 8 */
	.long	LHPVM_NOTE_USER_ENTRY		/* type */
1:	.asciz	LHPVM_NOTE_OWNER
2:	.balign	4
3:	.quad	user_entry
4:	.balign	4

/* ------------------------------------------------------------------------- */
	.section .rodata, "a", @progbits
	.balign	16
	.globl lhpvm_idtr
	.type lhpvm_idtr, @object
lhpvm_idtr:
	.word	IDT_BYTES - 1
	.quad	lhpvm_idt
	.size lhpvm_idtr, . - lhpvm_idtr

/*
 * The IDT, shared by all vCPUs. 64-bit interrupt gate layout:
 *   offset[15:0], selector, IST, type/attr, offset[31:16], offset[63:32], 0.
 * __isr_lo16/__isr_hi16 are absolute symbols from guest.lds (the low and high
 * 16 bits of isr_stubs); the linker resolves the R_X86_64_16 relocations.
 * Vectors 32..255 are not present: nothing should raise them, and if
 * something does the result is a #GP, which is reported like any fault.
 * It lives in .data (writable) on purpose: fault_triple zeroes it from ring 3.
 */
	.section .data.idt, "aw", @progbits
	.balign	4096
	.globl lhpvm_idt
	.type lhpvm_idt, @object
lhpvm_idt:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.word	__isr_lo16 + \v * ISR_STUB_SIZE	/* offset 15:0 */
	.word	LHPVM_SEL_KERNEL_CODE
	.byte	0				/* IST 0: use TSS RSP0 */
	.byte	0x8e				/* present, DPL 0, interrupt gate */
	.word	__isr_hi16			/* offset 31:16 */
	.long	0				/* offset 63:32 (image < 4 GiB) */
	.long	0				/* reserved */
	.endr
	.fill	(IDT_ENTRIES - ISR_COUNT) * IDT_GATE_SIZE, 1, 0
	.size lhpvm_idt, . - lhpvm_idt

	.section .note.GNU-stack, "", @progbits
