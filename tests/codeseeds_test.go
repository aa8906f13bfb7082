package tests

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// codeSeed is one seed of FuzzGuestCode: ring-3 machine code for workload
// code, written in GNU as (x86-64, AT&T syntax, "; " between lines).
// Registers at its start: RDI BootInfo (0x1000), RSI the vCPU id, RDX the
// VCPUPage (args[0] at +0), RSP the ring-3 stack with the return address on
// top, every other one zero. The doorbell is 0xD0000000 (mov $0xd0000000,
// %ecx zero-extends into RCX; a disp32 of it would sign-extend).
//
// A seed may say how it ends, and TestGuestCode checks it: want, the outcome
// on every backend (codeOutcome's name; "" any of codeOutcomes), with bad
// the bad hypercalls counted; ptrace, a regexp the error must match on the
// ptrace backend (the kvm backend's vectors differ between KVMs:
// docs/kvm.md).
type codeSeed struct {
	name, doc, asm string
	hex            string
	want           string
	bad            uint64
	ptrace         string
}

func (s codeSeed) code() []byte {
	b, err := hex.DecodeString(s.hex)
	if err != nil {
		panic("seed " + s.name + ": " + err.Error())
	}
	return b
}

// codeSeeds: hypercalls and every other access to the doorbell, host system
// calls of every convention, exceptions, privileged and system
// instructions, segment loads and far transfers, and stores to the stub's
// mappings (linked at 0x10000000000: internal/ptrace/stub), the guest's own
// structures and the edges of RAM.
var codeSeeds = []codeSeed{
	{name: "empty", doc: "no code: the page is all int3, a #BP", asm: "", hex: "", want: "guest fault", ptrace: `#BP`},
	{name: "ret", doc: "returns at once: a clean EXIT", asm: "ret", hex: "c3", want: "ok"},
	{name: "jmp-self", doc: "spins until the watchdog", asm: "1: jmp 1b", hex: "ebfe", want: "watchdog"},
	{name: "pause-loop", doc: "spins until the watchdog, with pause", asm: "1: pause; jmp 1b", hex: "f390ebfc", want: "watchdog"},
	{name: "exit0-imm", doc: "EXIT 0: an 8-byte store of an immediate", asm: "movq $0, (%rdx); mov $0xd0000000, %ecx; movq $1, (%rcx)", hex: "48c70200000000b9000000d048c70101000000", want: "ok"},
	{name: "exit0-reg", doc: "EXIT 0: an 8-byte store of a register", asm: "movq $0, (%rdx); mov $0xd0000000, %ecx; mov $1, %eax; mov %rax, (%rcx)", hex: "48c70200000000b9000000d0b801000000488901", want: "ok"},
	{name: "exit0-r15", doc: "EXIT 0 through REX registers", asm: "movq $0, (%rdx); mov $0xd0000000, %r9d; mov $1, %r15d; mov %r15, (%r9)", hex: "48c7020000000041b9000000d041bf010000004d8939", want: "ok"},
	{name: "exit0-movabs", doc: "EXIT 0: movabs to the doorbell's absolute address", asm: "movq $0, (%rdx); mov $1, %eax; movabs %rax, 0xd0000000", hex: "48c70200000000b80100000048a3000000d000000000", want: "ok"},
	{name: "exit0-sib", doc: "EXIT 0: base+index*8+disp addressing", asm: "movq $0, (%rdx); mov $0xd0000000, %ecx; mov $0x10, %ebx; movq $1, -0x80(%rcx,%rbx,8)", hex: "48c70200000000b9000000d0bb1000000048c744d98001000000", want: "ok"},
	{name: "exit1", doc: "EXIT 1: the guest fails the run", asm: "movq $1, (%rdx); mov $0xd0000000, %ecx; movq $1, (%rcx)", hex: "48c70201000000b9000000d048c70101000000", want: "exit code"},
	{name: "exit-then-ret", doc: "EXIT, and a ret it never reaches", asm: "movq $0, (%rdx); mov $0xd0000000, %ecx; movq $1, (%rcx); ret", hex: "48c70200000000b9000000d048c70101000000c3", want: "ok"},
	{name: "null-ret", doc: "a NULL hypercall, then return", asm: "mov $0xd0000000, %ecx; movq $0, (%rcx); ret", hex: "b9000000d048c70100000000c3", want: "ok"},
	{name: "null-loop", doc: "1000 NULL hypercalls", asm: "mov $0xd0000000, %ecx; mov $1000, %ebx; 1: movq $0, (%rcx); dec %ebx; jnz 1b; ret", hex: "b9000000d0bbe803000048c70100000000ffcb75f5c3", want: "ok"},
	{name: "unknown-calls", doc: "unknown call numbers: ERR_NOSYS, counted", asm: "mov $0xd0000000, %ecx; movq $999, (%rcx); movq $-1, (%rcx); movq $7, (%rcx); ret", hex: "b9000000d048c701e703000048c701ffffffff48c70107000000c3", want: "ok", bad: 3},
	{name: "print", doc: "PRINT 16 bytes of BootInfo", asm: "mov %rdi, (%rdx); movq $16, 8(%rdx); mov $0xd0000000, %ecx; movq $2, (%rcx); ret", hex: "48893a48c7420810000000b9000000d048c70102000000c3", want: "ok"},
	{name: "print-bad", doc: "PRINT wrapping, PRINT too long", asm: "movq $-256, (%rdx); movq $512, 8(%rdx); mov $0xd0000000, %ecx; movq $2, (%rcx); mov %rdi, (%rdx); movq $5000, 8(%rdx); movq $2, (%rcx); ret", hex: "48c70200ffffff48c7420800020000b9000000d048c7010200000048893a48c742088813000048c70102000000c3", want: "ok", bad: 2},
	{name: "kick-bad", doc: "KICK vCPUs that do not exist", asm: "movq $-1, (%rdx); mov $0xd0000000, %ecx; movq $3, (%rcx); movq $1, (%rdx); movq $3, (%rcx); ret", hex: "48c702ffffffffb9000000d048c7010300000048c7020100000048c70103000000c3", want: "ok", bad: 2},
	{name: "yield", doc: "YIELD any, self, a vCPU that does not exist", asm: "movq $-1, (%rdx); mov $0xd0000000, %ecx; movq $5, (%rcx); movq $0, (%rdx); movq $5, (%rcx); movq $9, (%rdx); movq $5, (%rcx); ret", hex: "48c702ffffffffb9000000d048c7010500000048c7020000000048c7010500000048c7020900000048c70105000000c3", want: "ok", bad: 1},
	{name: "wait-misaligned", doc: "WAIT on a misaligned word: ERR_FAULT", asm: "lea 0x201(%rdi), %rax; mov %rax, (%rdx); movq $0, 8(%rdx); mov $0xd0000000, %ecx; movq $4, (%rcx); ret", hex: "488d870102000048890248c7420800000000b9000000d048c70104000000c3", want: "ok", bad: 1},
	{name: "wait-forever", doc: "WAIT on BootInfo.stop with nobody to kick: a lost wakeup", asm: "lea 0x200(%rdi), %rax; mov %rax, (%rdx); movq $0, 8(%rdx); mov $0xd0000000, %ecx; movq $4, (%rcx); jmp .-7", hex: "488d870002000048890248c7420800000000b9000000d048c70104000000ebf7", want: "lost wakeup"},
	{name: "kick-self-wait", doc: "KICK self, WAIT (returns: the kick was pending), WAIT again (blocks)", asm: "movq $0, (%rdx); mov $0xd0000000, %ecx; movq $3, (%rcx); lea 0x200(%rdi), %rax; mov %rax, (%rdx); movq $0, 8(%rdx); movq $4, (%rcx); movq $4, (%rcx); ret", hex: "48c70200000000b9000000d048c70103000000488d870002000048890248c742080000000048c7010400000048c70104000000c3", want: "lost wakeup"},
	{name: "fault-call", doc: "the FAULT hypercall from ring 3, with whatever the page holds", asm: "mov $0xd0000000, %ecx; movq $6, (%rcx)", hex: "b9000000d048c70106000000", want: "guest fault"},
	{name: "fault-call-forged", doc: "FAULT with a forged report", asm: "movq $14, 0xc0(%rdx); movq $-1, 0xd8(%rdx); movq $-1, 0xf0(%rdx); mov $0xd0000000, %ecx; movq $6, (%rcx)", hex: "48c782c00000000e00000048c782d8000000ffffffff48c782f0000000ffffffffb9000000d048c70106000000", want: "guest fault"},
	{name: "db-store1-reg", doc: "a 1-byte store of a register: a bad doorbell access", asm: "mov $0xd0000000, %ecx; mov $1, %eax; mov %al, (%rcx); ret", hex: "b9000000d0b8010000008801c3", want: "ok", bad: 1},
	{name: "db-store2-reg", doc: "a 2-byte store of a register", asm: "mov $0xd0000000, %ecx; mov $1, %eax; mov %ax, (%rcx); ret", hex: "b9000000d0b801000000668901c3", want: "ok", bad: 1},
	{name: "db-store4-reg", doc: "a 4-byte store of a register", asm: "mov $0xd0000000, %ecx; mov $1, %eax; mov %eax, (%rcx); ret", hex: "b9000000d0b8010000008901c3", want: "ok", bad: 1},
	{name: "db-store1-imm", doc: "a 1-byte store of an immediate", asm: "mov $0xd0000000, %ecx; movb $1, (%rcx); ret", hex: "b9000000d0c60101c3", want: "ok", bad: 1},
	{name: "db-store2-imm", doc: "a 2-byte store of an immediate", asm: "mov $0xd0000000, %ecx; movw $1, (%rcx); ret", hex: "b9000000d066c7010100c3", want: "ok", bad: 1},
	{name: "db-store4-imm", doc: "a 4-byte store of an immediate", asm: "mov $0xd0000000, %ecx; movl $1, (%rcx); ret", hex: "b9000000d0c70101000000c3", want: "ok", bad: 1},
	{name: "db-store-ah", doc: "a store of AH", asm: "mov $0xd0000000, %ecx; mov $0x100, %eax; mov %ah, (%rcx); ret", hex: "b9000000d0b8000100008821c3", want: "ok", bad: 1},
	{name: "db-store-r15b", doc: "a store of R15B", asm: "mov $0xd0000000, %ecx; mov %r15b, (%rcx); ret", hex: "b9000000d0448839c3", want: "ok", bad: 1},
	{name: "db-movabs-widths", doc: "movabs stores of 1, 2 and 4 bytes", asm: "mov $1, %eax; movabs %al, 0xd0000000; movabs %ax, 0xd0000000; movabs %eax, 0xd0000000; ret", hex: "b801000000a2000000d00000000066a3000000d000000000a3000000d000000000c3", want: "ok", bad: 3},
	{name: "db-offsets", doc: "8-byte stores at other offsets of the doorbell page, one across its end", asm: "mov $0xd0000000, %ecx; movq $0, 8(%rcx); movq $0, 0x1ffff8(%rcx); movq $0, 0x1fffff(%rcx); ret", hex: "b9000000d048c741080000000048c781f8ff1f000000000048c781ffff1f0000000000c3"},
	{name: "db-below", doc: "just below the doorbell page", asm: "mov $0xd0000000, %ecx; movq $0, -8(%rcx); ret", hex: "b9000000d048c741f800000000c3", want: "guest fault", ptrace: `#PF .* CR2 0xcffffff8`},
	{name: "db-loads", doc: "loads of every width: all ones", asm: "mov $0xd0000000, %ecx; mov (%rcx), %rax; mov (%rcx), %ebx; mov (%rcx), %si; mov (%rcx), %al; mov (%rcx), %ah; movabs 0xd0000000, %rax; cmp $-1, %rax; jne 1f; ret; 1: ud2", hex: "b9000000d0488b018b19668b318a018a2148a1000000d0000000004883f8ff7501c30f0b", want: "ok", bad: 6},
	{name: "db-load-rsp", doc: "a doorbell load into RSP, then ret", asm: "mov $0xd0000000, %ecx; mov (%rcx), %rsp; ret", hex: "b9000000d0488b21c3", want: "guest fault", bad: 1},
	{name: "db-movnti", doc: "MOVNTI: a NULL call, a 4-byte bad access", asm: "mov $0xd0000000, %ecx; xor %eax, %eax; movnti %rax, (%rcx); movnti %eax, (%rcx); ret", hex: "b9000000d031c0480fc3010fc301c3", want: "ok", bad: 1},
	{name: "db-xchg", doc: "XCHG with the doorbell", asm: "mov $0xd0000000, %ecx; xchg %rax, (%rcx); ret", hex: "b9000000d0488701c3", ptrace: `doorbell access by "xchg`},
	{name: "db-add", doc: "ADD to the doorbell", asm: "mov $0xd0000000, %ecx; addq $0, (%rcx); ret", hex: "b9000000d048830100c3", ptrace: `doorbell access by "addq`},
	{name: "db-lock-cmpxchg", doc: "LOCK CMPXCHG on the doorbell", asm: "mov $0xd0000000, %ecx; lock cmpxchg %rbx, (%rcx); ret", hex: "b9000000d0f0480fb119c3", ptrace: `doorbell access by "lock cmpxchg`},
	{name: "db-rep-movsq", doc: "REP MOVSQ into the doorbell", asm: "mov %rdx, %rsi; mov $0xd0000000, %edi; mov $2, %ecx; rep movsq; ret", hex: "4889d6bf000000d0b902000000f348a5c3", ptrace: `doorbell access by "rep movsq`},
	{name: "db-rep-stosb", doc: "REP STOSB into the doorbell", asm: "mov $0xd0000000, %edi; mov $16, %ecx; rep stosb; ret", hex: "bf000000d0b910000000f3aac3", ptrace: `doorbell access by "rep stos`},
	{name: "db-sse", doc: "an SSE store to the doorbell", asm: "mov $0xd0000000, %ecx; movq %xmm0, (%rcx); ret", hex: "b9000000d0660fd601c3", ptrace: `doorbell access by "movq %xmm0`},
	{name: "db-push", doc: "PUSH to the doorbell (RSP just above it)", asm: "mov $0xd0000008, %esp; push $1", hex: "bc080000d06a01", ptrace: `doorbell access by "pushq`},
	{name: "db-call", doc: "CALL with RSP just above the doorbell", asm: "mov $0xd0000008, %esp; call 1f; 1: ret", hex: "bc080000d0e800000000c3"},
	{name: "db-exec", doc: "executing the doorbell", asm: "mov $0xd0000000, %eax; jmp *%rax", hex: "b8000000d0ffe0", ptrace: `#PF \(vector 14\) error code 0x14 at RIP 0xd0000000`},
	{name: "db-fs", doc: "FS based at the doorbell, a NULL call through it", asm: "mov $0xd0000000, %eax; wrfsbase %rax; movq $0, %fs:0; ret", hex: "b8000000d0f3480faed06448c704250000000000000000c3"},
	// A REX prefix not right before the opcode is ignored by the CPU;
	// ptrace's decoder refused such instructions (found by FuzzGuestCode
	// as db-rex-xor: "undecodable instruction", where KVM carried it out).
	{name: "db-rex-rex", doc: "EXIT 0 by a MOV with a REX.B the CPU ignores before its REX.W", asm: "movq $0, (%rdx); mov $0xd0000000, %ecx; mov $1, %eax; .byte 0x41; mov %rax, (%rcx)", hex: "48c70200000000b9000000d0b80100000041488901", want: "ok"},
	{name: "db-rex-data16", doc: "a REX.W the CPU ignores before data16: a 2-byte store", asm: "mov $0xd0000000, %ecx; .byte 0x48; mov %ax, (%rcx); ret", hex: "b9000000d048668901c3", want: "ok", bad: 1},
	{name: "db-rex-xor", doc: "XOR to the doorbell behind two REX prefixes (a FuzzGuestCode finding)", asm: "movl $0x30303030, (%rdx); mov $0xd0000000, %ecx; .byte 0x41, 0x42; xor %dh, (%rcx); xor %dh, (%rax); xor %dh, (%rax)", hex: "c70230303030b9000000d04142303130303030", ptrace: `doorbell access by "rex.X xor %sil,\(%rcx\)"`},
	{name: "smc-doorbell", doc: "the doorbell store rewritten in place from 8 to 2 bytes", asm: "mov $0xd0000000, %ecx; xor %eax, %eax; lea 2f(%rip), %rbx; mov $2, %r8d; 2: movq %rax, (%rcx); movb $0x66, (%rbx); dec %r8d; jnz 2b; ret", hex: "b9000000d031c0488d1d0600000041b802000000488901c6036641ffc875f5c3", want: "ok", bad: 1},
	{name: "syscall", doc: "syscall with RAX 0 (read)", asm: "syscall", hex: "0f05", want: "guest fault", ptrace: `attempted x86-64 syscall 0 \(read\) at RIP 0x[0-9a-f]+ RSP 0x[0-9a-f]+; blocked`},
	{name: "syscall-write", doc: "write(1, page, 8)", asm: "mov $1, %eax; mov $1, %edi; mov %rdx, %rsi; mov $8, %edx; syscall; ret", hex: "b801000000bf010000004889d6ba080000000f05c3", want: "guest fault", ptrace: `attempted x86-64 syscall 1 \(write\) .*; blocked`},
	{name: "syscall-exit-group", doc: "exit_group(0): the stub would die", asm: "mov $231, %eax; syscall; ret", hex: "b8e70000000f05c3", want: "guest fault", ptrace: `attempted x86-64 syscall 231 \(exit_group\) .*; blocked`},
	{name: "syscall-x32", doc: "an x32 write", asm: "mov $0x40000001, %eax; syscall; ret", hex: "b8010000400f05c3", want: "guest fault", ptrace: `attempted x32 syscall .*; blocked`},
	{name: "syscall-openat", doc: "openat(AT_FDCWD, EscapePath, O_WRONLY|O_CREAT)", asm: "mov $257, %eax; mov $-100, %rdi; lea 1f(%rip), %rsi; mov $0x41, %edx; mov $0644, %r10d; syscall; ret; 1: .asciz \"/tmp/lhpvm-guest-escaped\"", hex: "b80101000048c7c79cffffff488d350e000000ba4100000041baa40100000f05c32f746d702f6c6870766d2d67756573742d6573636170656400", want: "guest fault", ptrace: `attempted x86-64 syscall 257 \(openat\) .*; blocked`},
	{name: "int80", doc: "int $0x80 with EAX 0 (i386 restart_syscall)", asm: "int $0x80", hex: "cd80", want: "guest fault", ptrace: `attempted i386 syscall 0 .*; blocked|#GP`},
	{name: "int80-creat", doc: "i386 creat(EscapePath)", asm: "mov $8, %eax; lea 1f(%rip), %rbx; mov $0644, %ecx; int $0x80; ret; 1: .asciz \"/tmp/lhpvm-guest-escaped\"", hex: "b808000000488d1d08000000b9a4010000cd80c32f746d702f6c6870766d2d67756573742d6573636170656400", want: "guest fault", ptrace: `attempted i386 syscall 8 \(creat\) .*; blocked|#GP`},
	{name: "sysenter", doc: "sysenter", asm: "sysenter", hex: "0f34", want: "guest fault"},
	{name: "vsyscall", doc: "the host's vsyscall page (gettimeofday)", asm: "movabs $0xffffffffff600000, %rax; call *%rax; ret", hex: "48b8000060ffffffffffffd0c3", want: "guest fault", ptrace: `attempted x86-64 syscall 96 \(gettimeofday\) at RIP 0xffffffffff600000 .*; blocked|#PF`},
	{name: "vsyscall-read", doc: "reading the vsyscall page", asm: "movabs $0xffffffffff600000, %rax; mov (%rax), %rax; ret", hex: "48b8000060ffffffffff488b00c3"},
	{name: "int3", doc: "int3: #BP", asm: "int3", hex: "cc", want: "guest fault", ptrace: `#BP`},
	{name: "int-3", doc: "int $3: #BP", asm: ".byte 0xcd, 0x03", hex: "cd03", want: "guest fault", ptrace: `#BP`},
	{name: "int1", doc: "int1 (icebp)", asm: ".byte 0xf1", hex: "f1"},
	{name: "int-0x20", doc: "a software interrupt with no gate", asm: "int $0x20", hex: "cd20"},
	{name: "int-0xff", doc: "int $0xff", asm: "int $0xff", hex: "cdff"},
	{name: "into", doc: "into: #UD in 64-bit mode", asm: ".byte 0xce", hex: "ce", want: "guest fault", ptrace: `#UD`},
	{name: "ud2", doc: "#UD", asm: "ud2", hex: "0f0b", want: "guest fault", ptrace: `#UD`},
	{name: "hlt", doc: "hlt: #GP in ring 3", asm: "hlt", hex: "f4", want: "guest fault", ptrace: `#GP`},
	{name: "cli-sti", doc: "cli, sti: #GP with IOPL 0", asm: "cli; sti; ret", hex: "fafbc3", want: "guest fault", ptrace: `#GP`},
	{name: "div0", doc: "#DE", asm: "xor %ecx, %ecx; div %ecx", hex: "31c9f7f1", want: "guest fault", ptrace: `#DE`},
	{name: "div-overflow", doc: "#DE by quotient overflow", asm: "mov $1, %edx; mov $1, %ecx; div %ecx; ret", hex: "ba01000000b901000000f7f1c3", want: "guest fault", ptrace: `#DE`},
	{name: "in-out", doc: "port I/O: #GP with IOPL 0", asm: "in $0x80, %al; out %al, $0x80; ret", hex: "e480e680c3", want: "guest fault", ptrace: `#GP`},
	{name: "in-dx", doc: "port I/O through DX", asm: "mov $0xcf8, %edx; in (%dx), %eax; ret", hex: "baf80c0000edc3", want: "guest fault", ptrace: `#GP`},
	{name: "single-step", doc: "TF set: #DB", asm: "pushfq; orq $0x100, (%rsp); popfq; nop; nop; ret", hex: "9c48810c24000100009d9090c3", want: "guest fault", ptrace: `#DB`},
	{name: "alignment-check", doc: "AC set, a misaligned load: #AC where CR0.AM is set", asm: "pushfq; orq $0x40000, (%rsp); popfq; mov 1(%rsp), %rax; andq $-0x40001, (%rsp); ret", hex: "9c48810c24000004009d488b44240148812424fffffbffc3"},
	{name: "bound", doc: "BOUND's opcode, an EVEX prefix in 64-bit mode", asm: ".byte 0x62, 0x00", hex: "6200"},
	{name: "x87-sse", doc: "x87 and a misaligned MOVAPS", asm: "fldz; fld1; fdivp; fnstsw %ax; movaps (%rsp), %xmm0; ret", hex: "d9eed9e8def1dfe00f280424c3"},
	{name: "avx", doc: "AVX", asm: "vzeroupper; vmovdqu (%rsp), %ymm0; ret", hex: "c5f877c5fe6f0424c3"},
	{name: "lgdt", doc: "lgdt: #GP in ring 3", asm: "lgdt (%rsp)", hex: "0f011424", want: "guest fault", ptrace: `#GP`},
	{name: "lidt", doc: "lidt: #GP in ring 3", asm: "lidt (%rsp)", hex: "0f011c24", want: "guest fault", ptrace: `#GP`},
	{name: "sgdt-sidt", doc: "sgdt, sidt (#GP under UMIP)", asm: "sgdt -16(%rsp); sidt -32(%rsp); ret", hex: "0f014424f00f014c24e0c3"},
	{name: "lldt-ltr", doc: "lldt, ltr", asm: "xor %eax, %eax; lldt %ax; ltr %ax", hex: "31c00f00d00f00d8"},
	{name: "wrmsr-lstar", doc: "wrmsr LSTAR: #GP in ring 3", asm: "mov $0xc0000082, %ecx; xor %eax, %eax; xor %edx, %edx; wrmsr", hex: "b9820000c031c031d20f30", want: "guest fault", ptrace: `#GP`},
	{name: "rdmsr", doc: "rdmsr TSC", asm: "mov $0x10, %ecx; rdmsr; ret", hex: "b9100000000f32c3", want: "guest fault", ptrace: `#GP`},
	{name: "mov-cr", doc: "control registers", asm: "mov %cr3, %rax; mov %rax, %cr3", hex: "0f20d80f22d8", want: "guest fault", ptrace: `#GP`},
	{name: "mov-dr", doc: "debug registers", asm: "mov %dr7, %rax", hex: "0f21f8"},
	{name: "invlpg", doc: "invlpg", asm: "invlpg (%rsp)", hex: "0f013c24"},
	{name: "swapgs", doc: "swapgs", asm: "swapgs", hex: "0f01f8"},
	{name: "sysret", doc: "sysret from ring 3", asm: "sysretq", hex: "480f07"},
	{name: "sysexit", doc: "sysexit from ring 3", asm: "sysexitl", hex: "0f35"},
	{name: "iret-ring0", doc: "iretq with no frame", asm: "iretq", hex: "48cf"},
	{name: "vmcall", doc: "vmcall", asm: "vmcall; ret", hex: "0f01c1c3"},
	{name: "vmmcall", doc: "vmmcall", asm: "vmmcall; ret", hex: "0f01d9c3"},
	{name: "monitor-mwait", doc: "monitor, mwait", asm: "mov %rsp, %rax; xor %ecx, %ecx; xor %edx, %edx; monitor; mwait; ret", hex: "4889e031c931d20f01c80f01c9c3"},
	{name: "xsetbv", doc: "xgetbv, xsetbv", asm: "xor %ecx, %ecx; xgetbv; xsetbv", hex: "31c90f01d00f01d1"},
	{name: "rdpmc", doc: "rdpmc", asm: "xor %ecx, %ecx; rdpmc; ret", hex: "31c90f33c3"},
	{name: "wbinvd-clts", doc: "wbinvd, clts", asm: "wbinvd; clts", hex: "0f090f06"},
	{name: "harmless", doc: "unprivileged instructions, then return", asm: "cpuid; rdtsc; rdtscp; rdrand %rax; lfence; mfence; pause; ret", hex: "0fa20f310f01f9480fc7f00faee80faef0f390c3"},
	{name: "fsgsbase", doc: "RDFSBASE/WRGSBASE", asm: "rdfsbase %rax; wrgsbase %rax; ret", hex: "f3480faec0f3480faed8c3"},
	{name: "mov-ds-bad", doc: "a selector past the GDT into DS", asm: "mov $0x1234, %eax; mov %eax, %ds; ret", hex: "b8341200008ed8c3", want: "guest fault", ptrace: `#GP`},
	{name: "mov-ds-kernel", doc: "a ring-0 selector into DS", asm: "mov $0x10, %eax; mov %eax, %ds; ret", hex: "b8100000008ed8c3"},
	{name: "mov-ss-null", doc: "a null SS in ring 3", asm: "xor %eax, %eax; mov %eax, %ss; ret", hex: "31c08ed0c3", want: "guest fault", ptrace: `#GP`},
	{name: "mov-ss-bad", doc: "a selector past the GDT into SS", asm: "mov $0x1234, %eax; mov %eax, %ss; ret", hex: "b8341200008ed0c3", want: "guest fault", ptrace: `#GP`},
	{name: "mov-ss-kernel", doc: "a ring-0 data selector into SS", asm: "mov $0x10, %eax; mov %eax, %ss; ret", hex: "b8100000008ed0c3"},
	{name: "mov-ss-int3", doc: "MOV SS, then int3 in its shadow", asm: "mov %ss, %eax; mov %eax, %ss; int3", hex: "8cd08ed0cc"},
	{name: "mov-ss-syscall", doc: "MOV SS, then syscall in its shadow", asm: "mov %ss, %eax; mov %eax, %ss; syscall", hex: "8cd08ed00f05"},
	{name: "mov-ss-int1", doc: "MOV SS, then int1 in its shadow", asm: "mov %ss, %eax; mov %eax, %ss; .byte 0xf1", hex: "8cd08ed0f1"},
	{name: "mov-fs-gs-ldt", doc: "LDT selectors into FS, GS (no LDT)", asm: "mov $7, %eax; mov %eax, %fs; mov %eax, %gs; ret", hex: "b8070000008ee08ee8c3"},
	{name: "lss", doc: "LSS with a bad selector", asm: "movl $0, -16(%rsp); movw $0x1234, -12(%rsp); lss -16(%rsp), %eax; ret", hex: "c74424f00000000066c74424f434120fb24424f0c3"},
	{name: "ljmp-direct", doc: "a direct far jmp: #UD in 64-bit mode", asm: ".byte 0xea, 0, 0, 0, 0, 0x23, 0", hex: "ea000000002300", want: "guest fault", ptrace: `#UD`},
	{name: "ljmp-user32", doc: "a far jmp to selector 0x23 (the host's 32-bit user code), then int $0x80, sysenter", asm: "lea 1f(%rip), %rax; sub $16, %rsp; mov %rax, (%rsp); movq $0x23, 8(%rsp); rex64 ljmp *(%rsp); 1: .code32; int $0x80; sysenter; .code64", hex: "488d05150000004883ec104889042448c74424082300000048ff2c24cd800f34"},
	{name: "ljmp-null", doc: "a far jmp to the null selector", asm: "lea 1f(%rip), %rax; sub $16, %rsp; mov %rax, (%rsp); movq $0, 8(%rsp); rex64 ljmp *(%rsp); 1: ret", hex: "488d05150000004883ec104889042448c74424080000000048ff2c24c3"},
	{name: "ljmp-bad", doc: "a far jmp past the GDT", asm: "lea 1f(%rip), %rax; sub $16, %rsp; mov %rax, (%rsp); movq $0xfffc, 8(%rsp); rex64 ljmp *(%rsp); 1: ret", hex: "488d05150000004883ec104889042448c7442408fcff000048ff2c24c3"},
	{name: "ljmp-kernel", doc: "a far jmp to a ring-0 code selector", asm: "lea 1f(%rip), %rax; sub $16, %rsp; mov %rax, (%rsp); movq $0x08, 8(%rsp); rex64 ljmp *(%rsp); 1: ret", hex: "488d05150000004883ec104889042448c74424080800000048ff2c24c3"},
	{name: "ljmp-tss", doc: "a far jmp to the TSS selector", asm: "lea 1f(%rip), %rax; sub $16, %rsp; mov %rax, (%rsp); movq $0x28, 8(%rsp); rex64 ljmp *(%rsp); 1: ret", hex: "488d05150000004883ec104889042448c74424082800000048ff2c24c3"},
	{name: "lcall-user32", doc: "a far call to 32-bit code, then i386 exit", asm: "lea 1f(%rip), %rax; sub $16, %rsp; mov %rax, (%rsp); movq $0x23, 8(%rsp); rex64 lcall *(%rsp); 1: .code32; mov $1, %eax; int $0x80; .code64", hex: "488d05150000004883ec104889042448c74424082300000048ff1c24b801000000cd80"},
	{name: "lcall-same", doc: "a far call to the current CS, lret back", asm: "lea 1f(%rip), %rax; sub $16, %rsp; mov %rax, (%rsp); mov %cs, %eax; mov %rax, 8(%rsp); rex64 lcall *(%rsp); add $16, %rsp; ret; 1: lretq", hex: "488d05180000004883ec10488904248cc8488944240848ff1c244883c410c348cb"},
	{name: "lret-user32", doc: "lret to 32-bit code, a 4-byte doorbell store from there", asm: "push $0x23; lea 1f(%rip), %rax; push %rax; lretq; 1: .code32; mov $0xd0000000, %ecx; movl $1, (%ecx); .code64", hex: "6a23488d05030000005048cbb9000000d0c70101000000"},
	{name: "iretq-same", doc: "iretq to where it is: a clean EXIT", asm: "mov %ss, %eax; push %rax; lea 8(%rsp), %rax; push %rax; pushfq; mov %cs, %eax; push %rax; lea 1f(%rip), %rax; push %rax; iretq; 1: ret", hex: "8cd050488d442408509c8cc850488d05030000005048cfc3", want: "ok"},
	{name: "iretq-user32", doc: "iretq to selector 0x23", asm: "mov %ss, %eax; push %rax; lea 8(%rsp), %rax; push %rax; pushfq; push $0x23; lea 1f(%rip), %rax; push %rax; iretq; 1: .code32; int $0x80; .code64", hex: "8cd050488d442408509c6a23488d05030000005048cfcd80"},
	{name: "iretq-tf", doc: "iretq setting TF", asm: "mov %ss, %eax; push %rax; lea 8(%rsp), %rax; push %rax; push $0x302; mov %cs, %eax; push %rax; lea 1f(%rip), %rax; push %rax; iretq; 1: nop; ret", hex: "8cd050488d4424085068020300008cc850488d05030000005048cf90c3"},
	{name: "iretq-iopl", doc: "iretq asking for IOPL 3, then cli and in", asm: "mov %ss, %eax; push %rax; lea 8(%rsp), %rax; push %rax; push $0x3202; mov %cs, %eax; push %rax; lea 1f(%rip), %rax; push %rax; iretq; 1: cli; in $0x80, %al; ret", hex: "8cd050488d4424085068023200008cc850488d05030000005048cffae480c3"},
	{name: "iretq-kernel-cs", doc: "iretq to ring 0", asm: "push $0x10; lea 8(%rsp), %rax; push %rax; pushfq; push $0x08; lea 1f(%rip), %rax; push %rax; iretq; 1: ret", hex: "6a10488d442408509c6a08488d05030000005048cfc3"},
	{name: "iretq-noncanonical", doc: "iretq to a non-canonical RIP", asm: "mov %ss, %eax; push %rax; push %rsp; pushfq; mov %cs, %eax; push %rax; movabs $0x800000000000, %rax; push %rax; iretq", hex: "8cd050549c8cc85048b800000000008000005048cf"},
	{name: "stub-write", doc: "writing the stub's text (it is linked at 1 TiB)", asm: "movabs $0x10000001000, %rax; movb $0xcc, (%rax); ret", hex: "48b80010000000010000c600ccc3", want: "guest fault", ptrace: `#PF \(vector 14\) error code 0x7 .* CR2 0x10000001000`},
	{name: "stub-read", doc: "reading the stub's rodata", asm: "movabs $0x10000002000, %rax; mov (%rax), %rax; ret", hex: "48b80020000000010000488b00c3"},
	{name: "stub-exec-start", doc: "running the stub's _start", asm: "movabs $0x10000001000, %rax; jmp *%rax", hex: "48b80010000000010000ffe0", want: "guest fault", ptrace: `attempted x86-64 syscall .*; blocked`},
	{name: "stub-exec-header", doc: "running the stub's ELF header", asm: "movabs $0x10000000000, %rax; jmp *%rax", hex: "48b80000000000010000ffe0", want: "guest fault", ptrace: `#PF \(vector 14\) error code 0x15 at RIP 0x10000000000`},
	{name: "stub-exec-syscall", doc: "jumping at a syscall instruction in the stub", asm: "movabs $0x10000001176, %rax; jmp *%rax", hex: "48b87611000000010000ffe0"},
	{name: "stub-scan", doc: "a store to every page from the stub's base up", asm: "movabs $0x10000000000, %rax; 1: movb $0, (%rax); add $0x1000, %rax; jmp 1b", hex: "48b80000000000010000c60000480500100000ebf5"},
	{name: "page0", doc: "a store to page 0 (not mapped on ptrace)", asm: "movq $0, 0xff8; ret", hex: "48c70425f80f000000000000c3", ptrace: `#PF .* CR2 0xff8`},
	{name: "null-call", doc: "calling address 0", asm: "xor %eax, %eax; call *%rax", hex: "31c0ffd0"},
	{name: "ram-end", doc: "the last word of RAM, then the first past it", asm: "mov 32(%rdi), %rax; movq $0, -8(%rax); movq $0, (%rax); ret", hex: "488b472048c740f80000000048c70000000000c3", want: "guest fault", ptrace: `CR2 0x400000`},
	{name: "unmapped", doc: "FaultUnmappedGPA", asm: "mov $0x80000000, %eax; movl $0xdead, (%rax); ret", hex: "b800000080c700adde0000c3", want: "guest fault", ptrace: `CR2 0x80000000`},
	{name: "noncanonical", doc: "a non-canonical address: #GP", asm: "movabs $0x800000000000, %rax; mov (%rax), %rax; ret", hex: "48b80000000000800000488b00c3", want: "guest fault", ptrace: `#GP`},
	{name: "rsp-zero", doc: "a push with RSP 0", asm: "xor %esp, %esp; push %rax", hex: "31e450", want: "guest fault", ptrace: `#PF`},
	{name: "rsp-noncanonical", doc: "a push with a non-canonical RSP: #SS", asm: "movabs $0x800000000008, %rsp; push %rax", hex: "48bc080000000080000050"},
	{name: "stack-smash", doc: "overwrite the caller's stack, then return", asm: "mov %rsp, %rdi; mov $64, %ecx; mov $-1, %rax; rep stosq; ret", hex: "4889e7b94000000048c7c0fffffffff348abc3"},
	{name: "bootinfo-wreck", doc: "overwrite BootInfo, then return", asm: "mov $64, %ecx; mov $-1, %rax; rep stosq; ret", hex: "b94000000048c7c0fffffffff348abc3"},
	{name: "vcpu-page-wreck", doc: "overwrite the VCPUPage (counters, check failures), then return", asm: "mov %rdx, %rdi; mov $512, %ecx; mov $-1, %rax; rep stosq; ret", hex: "4889d7b90002000048c7c0fffffffff348abc3", want: "check failed"},
	{name: "gdt-wreck", doc: "zero the vCPU's GDT and TSS (ring 0 on KVM), then int3", asm: "lea 0x1000(%rdx), %rdi; mov $8, %ecx; xor %eax, %eax; rep stosq; int3", hex: "488dba00100000b90800000031c0f348abcc"},
	{name: "tss-rsp0", doc: "zero the TSS's RSP0 (KVM), then int3", asm: "movq $0, 0x1084(%rdx); int3", hex: "48c7828410000000000000cc"},
	{name: "pagetables-wreck", doc: "zero the PML4 (KVM), then return", asm: "mov $0x2000, %edi; mov $512, %ecx; xor %eax, %eax; rep stosq; ret", hex: "bf00200000b90002000031c0f348abc3"},
	{name: "pagetables-nx", doc: "set a reserved/NX bit in the PML4 entry, then int3", asm: "movabs $0x8000000000000000, %rax; orq %rax, 0x2000; int3", hex: "48b800000000000000804809042500200000cc"},
	{name: "idt-wreck", doc: "find the IDT with sidt, zero it, fault", asm: "sidt -16(%rsp); mov -14(%rsp), %rdi; mov $512, %ecx; xor %eax, %eax; rep stosq; ud2", hex: "0f014c24f0488b7c24f2b90002000031c0f348ab0f0b"},
	{name: "image-wreck", doc: "overwrite the guest image with int3, then return into it", asm: "mov $0x100000, %edi; mov $4096, %ecx; mov $0xcccccccc, %eax; rep stosl; ret", hex: "bf00001000b900100000b8ccccccccf3abc3"},
	{name: "self-modify", doc: "turn the next int3 into ret", asm: "lea 1f(%rip), %rax; movb $0xc3, (%rax); 1: int3", hex: "488d0503000000c600c3cc", want: "ok"},
	{name: "code-page-wreck", doc: "zero the code page under its own feet", asm: "lea 0(%rip), %rdi; and $-4096, %rdi; mov $512, %ecx; xor %eax, %eax; rep stosq", hex: "488d3d000000004881e700f0ffffb90002000031c0f348ab"},
	{name: "page-of-nops", doc: "a page of nops: runs off into the lock area", asm: ".fill 4096, 1, 0x90", hex: strings.Repeat("90", 4096)},
	{name: "enter-deep", doc: "ENTER with a 64 KiB frame and nesting 31", asm: "enter $0xffff, $31; leave; ret", hex: "c8ffff1fc9c3"},
	{name: "recursion", doc: "infinite recursion: the stack runs out", asm: "1: call 1b", hex: "e8fbffffff"},
}

// TestCodeSeedsAssemble: each seed's bytes are what its source assembles
// to (where GNU as is installed), so the table can be read as assembly.
func TestCodeSeedsAssemble(t *testing.T) {
	for _, tool := range []string{"as", "objcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s here: %v", tool, err)
		}
	}
	names := map[string]bool{}
	dir := t.TempDir()
	for _, s := range codeSeeds {
		require.False(t, names[s.name], "seed %s twice", s.name)
		names[s.name] = true
		src := filepath.Join(dir, "s.S")
		obj, bin := filepath.Join(dir, "s.o"), filepath.Join(dir, "s.bin")
		require.NoError(t, os.WriteFile(src, []byte(".text\n.code64\n"+strings.ReplaceAll(s.asm, "; ", "\n")+"\n"), 0o644))
		_ = os.Remove(bin)
		out, err := exec.Command("as", "--64", "-o", obj, src).CombinedOutput()
		require.NoError(t, err, "seed %s: %s", s.name, out)
		out, err = exec.Command("objcopy", "-O", "binary", "-j", ".text", obj, bin).CombinedOutput()
		require.NoError(t, err, "seed %s: %s", s.name, out)
		got, err := os.ReadFile(bin)
		if s.asm == "" && os.IsNotExist(err) {
			got, err = nil, nil // objcopy writes no file for an empty section
		}
		require.NoError(t, err)
		assert.True(t, bytes.Equal(s.code(), got), "seed %s: %q assembles to %x, the table has %s", s.name, s.asm, got, s.hex)
	}
}
