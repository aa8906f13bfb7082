package ptrace

import (
	"fmt"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/hv"
	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"
)

// This file is the ptrace backend's exit decoding: pure functions of what the
// tracer saw at a stop (the signal's siginfo, the registers, the bytes at
// RIP), table-tested without running anything. The doorbell is decoded the
// way KVM decodes MMIO: the faulting instruction says how wide the access
// is, which way it goes, and for a store what it stores.

// siginfo codes (include/uapi/asm-generic/siginfo.h) lhpvm tells apart.
const (
	siKernel   = 0x80 // SI_KERNEL: the kernel sent it (a #GP, int3, ...)
	segvMapErr = 1    // SEGV_MAPERR: no mapping at si_addr
	segvAccErr = 2    // SEGV_ACCERR: a mapping, the wrong permissions
	busAdrAln  = 1    // BUS_ADRALN: misaligned access (#AC)
	busAdrErr  = 2    // BUS_ADRERR: no page behind the mapping
	fpeIntDiv  = 1    // FPE_INTDIV
	fpeIntOvf  = 2    // FPE_INTOVF
	trapBrkpt  = 1    // TRAP_BRKPT
	trapTrace  = 2    // TRAP_TRACE: single step
	sysSeccomp = 1    // SYS_SECCOMP: a seccomp filter trapped the call

	auditArchX8664 = 0xc000003e // AUDIT_ARCH_X86_64
	auditArchI386  = 0x40000003 // AUDIT_ARCH_I386
	x32SyscallBit  = 0x40000000 // __X32_SYSCALL_BIT
	// syscallInsnLen: syscall (0f 05), int $0x80 (cd 80) and sysenter (0f 34)
	// are all two bytes; SIGSYS reports the address after the instruction.
	syscallInsnLen = 2
	maxInsnLen     = 15
	// The legacy vsyscall page: a call into it is a system call the
	// kernel emulates (through seccomp, too); its SIGSYS reports the
	// address called, not one after an instruction.
	vsyscallStart = 0xffffffffff600000
	vsyscallEnd   = vsyscallStart + 0x1000
)

// sigInfo is what decodeStop needs of a signal-delivery stop.
type sigInfo struct {
	Signo   int32
	Code    int32
	Addr    uint64 // si_addr; for SIGSYS, the address after the syscall instruction
	Syscall int32  // SIGSYS
	Arch    uint32 // SIGSYS: AUDIT_ARCH_*
}

// external reports whether a signal came from outside the guest (kill,
// tgkill: our own kicks, or anyone else's), not from what the guest did.
// The tracer swallows those.
func (si sigInfo) external() bool { return si.Code <= 0 }

// access is a guest instruction's access to the doorbell page, decoded.
type access struct {
	insnLen int
	write   bool
	size    int // bytes
	// A store's source: an immediate, or a register; a load's destination
	// register.
	imm    bool
	immVal uint64
	reg    x86asm.Reg
}

// decodeAccess decodes the instruction at the start of code as a memory
// access lhpvm emulates at the doorbell: a MOV (or MOVNTI) to or from a
// general-purpose register, or from an immediate. Anything else is an error
// naming the instruction; KVM fails the same way on an access it cannot
// emulate (KVM_EXIT_INTERNAL_ERROR).
func decodeAccess(code []byte) (access, error) {
	inst, ignored, err := decodeInsn(code)
	if err != nil {
		return access{}, fmt.Errorf("undecodable instruction % x: %v", code[:min(len(code), maxInsnLen)], err)
	}
	a := access{insnLen: ignored + inst.Len, size: inst.MemBytes}
	unsupported := func() (access, error) {
		return access{}, fmt.Errorf("doorbell access by %q, which lhpvm does not emulate (only MOV to or from a general register or an immediate)",
			x86asm.GNUSyntax(inst, 0, nil))
	}
	if inst.Op != x86asm.MOV && inst.Op != x86asm.MOVNTI {
		return unsupported()
	}
	switch dst := inst.Args[0].(type) {
	case x86asm.Mem:
		a.write = true
		switch src := inst.Args[1].(type) {
		case x86asm.Imm:
			a.imm, a.immVal = true, uint64(src) // sign-extended to 64 bits, as the CPU does
		case x86asm.Reg:
			if gpr(src) < 0 {
				return unsupported()
			}
			a.reg = src
		default:
			return unsupported()
		}
	case x86asm.Reg:
		if _, ok := inst.Args[1].(x86asm.Mem); !ok || gpr(dst) < 0 {
			return unsupported()
		}
		a.reg = dst
	default:
		return unsupported()
	}
	if a.size < 1 || a.size > 8 {
		return unsupported()
	}
	return a, nil
}

// decodeInsn decodes the instruction at the start of code as the CPU
// executes it. A REX prefix that does not immediately precede the opcode
// (one followed by another prefix, REX or legacy) is ignored by the CPU, but
// x86asm refuses the instruction; decodeInsn drops such prefixes first and
// says how many bytes it dropped, which belong to the instruction's length.
func decodeInsn(code []byte) (x86asm.Inst, int, error) {
	isREX := func(b byte) bool { return b&0xf0 == 0x40 }
	isPrefix := func(b byte) bool {
		switch b {
		case 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0x66, 0x67:
			return true
		}
		return isREX(b)
	}
	var buf [maxInsnLen]byte
	kept, ignored := buf[:0], 0
	i := 0
	for ; i < len(code) && i < maxInsnLen && isPrefix(code[i]); i++ {
		if isREX(code[i]) && i+1 < len(code) && isPrefix(code[i+1]) {
			ignored++
			continue
		}
		kept = append(kept, code[i])
	}
	if ignored == 0 {
		inst, err := x86asm.Decode(code, 64)
		return inst, 0, err
	}
	kept = append(kept, code[i:min(len(code), maxInsnLen)]...)
	inst, err := x86asm.Decode(kept, 64)
	if err == nil && ignored+inst.Len > maxInsnLen {
		err = fmt.Errorf("%d bytes long, the CPU's limit is %d", ignored+inst.Len, maxInsnLen)
	}
	return inst, ignored, err
}

// gpr is the index (RAX 0 ... R15 15, in encoding order) of the 64-bit
// register that r is part of, or -1 if r is not a general-purpose register.
func gpr(r x86asm.Reg) int {
	switch {
	case r >= x86asm.RAX && r <= x86asm.R15:
		return int(r - x86asm.RAX)
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return int(r - x86asm.EAX)
	case r >= x86asm.AX && r <= x86asm.R15W:
		return int(r - x86asm.AX)
	case r >= x86asm.AH && r <= x86asm.BH:
		return int(r - x86asm.AH) // AH, CH, DH, BH: bits 15:8 of RAX, RCX, RDX, RBX
	case r >= x86asm.AL && r <= x86asm.BL:
		return int(r - x86asm.AL)
	case r >= x86asm.SPB && r <= x86asm.R15B:
		return int(r-x86asm.SPB) + 4
	}
	return -1
}

// gprField is where register index i (encoding order) lives in the regs.
func gprField(r *unix.PtraceRegs, i int) *uint64 {
	switch i {
	case 0:
		return &r.Rax
	case 1:
		return &r.Rcx
	case 2:
		return &r.Rdx
	case 3:
		return &r.Rbx
	case 4:
		return &r.Rsp
	case 5:
		return &r.Rbp
	case 6:
		return &r.Rsi
	case 7:
		return &r.Rdi
	case 8:
		return &r.R8
	case 9:
		return &r.R9
	case 10:
		return &r.R10
	case 11:
		return &r.R11
	case 12:
		return &r.R12
	case 13:
		return &r.R13
	case 14:
		return &r.R14
	default:
		return &r.R15
	}
}

// storeValue is what a decoded store writes.
func storeValue(a access, r *unix.PtraceRegs) uint64 {
	v := a.immVal
	if !a.imm {
		v = *gprField(r, gpr(a.reg))
		if a.reg >= x86asm.AH && a.reg <= x86asm.BH {
			v >>= 8
		}
	}
	if a.size < 8 {
		v &= 1<<(8*a.size) - 1
	}
	return v
}

// completeLoad writes the value a decoded load returns into its destination
// register with the CPU's merge rules: a 32-bit destination is zero-extended
// to 64 bits, 16- and 8-bit ones keep the rest of the register.
func completeLoad(a access, r *unix.PtraceRegs, data uint64) {
	f := gprField(r, gpr(a.reg))
	switch {
	case a.reg >= x86asm.RAX && a.reg <= x86asm.R15:
		*f = data
	case a.reg >= x86asm.EAX && a.reg <= x86asm.R15L:
		*f = data & 0xffffffff
	case a.reg >= x86asm.AX && a.reg <= x86asm.R15W:
		*f = *f&^0xffff | data&0xffff
	case a.reg >= x86asm.AH && a.reg <= x86asm.BH:
		*f = *f&^0xff00 | (data&0xff)<<8
	default:
		*f = *f&^0xff | data&0xff
	}
}

// inDoorbell reports whether addr lies in the doorbell page.
func inDoorbell(addr uint64) bool {
	return addr >= hypercall.DoorbellGPA && addr < hypercall.DoorbellGPA+hypercall.DoorbellSize
}

// decodeStop turns a signal the guest caused into an Event. si is the stop's
// siginfo (not external), r the registers at the stop, code the guest RAM
// from RIP on (nil when RIP lies outside guest RAM). For a doorbell access it
// also returns the decoded access: the caller advances RIP past it and, for
// a load, completes it.
//
// What ptrace cannot see is derived from what it can: a
// page fault's error code has U set (the guest runs in ring 3), P from
// SEGV_ACCERR, I/D when the fault address is RIP (a fetch), and W from the
// decoded instruction (writesMemory); a #GP's error code is reported as 0.
func decodeStop(si sigInfo, r *unix.PtraceRegs, code []byte) (hv.Event, access) {
	f := hv.Fault{RIP: r.Rip, CS: r.Cs, RFLAGS: r.Eflags, RSP: r.Rsp}
	fault := func(vector uint64, detail string) (hv.Event, access) {
		f.Vector, f.Detail = vector, detail
		return hv.Event{Kind: hv.EventFault, Fault: f}, access{}
	}
	switch si.Signo {
	case int32(unix.SIGSEGV):
		switch si.Code {
		case segvMapErr, segvAccErr:
			if si.Code == segvMapErr && inDoorbell(si.Addr) && si.Addr != r.Rip {
				return decodeDoorbell(si.Addr, r, code, f)
			}
			f.CR2 = si.Addr
			f.ErrorCode = hv.PFUser
			if si.Code == segvAccErr {
				f.ErrorCode |= hv.PFPresent
			}
			switch {
			case si.Addr == r.Rip:
				f.ErrorCode |= hv.PFFetch
			case code != nil && writesMemory(code):
				f.ErrorCode |= hv.PFWrite
			}
			return fault(hv.VectorPF, "")
		case siKernel:
			return fault(hv.VectorGP, "")
		default:
			f.CR2 = si.Addr
			return fault(hv.VectorPF, fmt.Sprintf("SIGSEGV code %d", si.Code))
		}
	case int32(unix.SIGBUS):
		switch si.Code {
		case busAdrAln:
			return fault(hv.VectorAC, "")
		case busAdrErr:
			f.CR2, f.ErrorCode = si.Addr, hv.PFUser|hv.PFPresent
			return fault(hv.VectorPF, "bus error: no page behind the address")
		default:
			return fault(hv.VectorSS, fmt.Sprintf("SIGBUS code %#x (#SS, or #NP on a segment load)", si.Code))
		}
	case int32(unix.SIGILL):
		return fault(hv.VectorUD, "")
	case int32(unix.SIGFPE):
		if si.Code == fpeIntDiv || si.Code == fpeIntOvf {
			return fault(hv.VectorDE, "")
		}
		return fault(hv.VectorMF, fmt.Sprintf("floating-point exception (x87 #MF or SIMD #XM), SIGFPE code %d", si.Code))
	case int32(unix.SIGTRAP):
		if si.Code == trapTrace {
			return fault(hv.VectorDB, "single step")
		}
		if si.Code == siKernel || si.Code == trapBrkpt {
			return fault(hv.VectorBP, "")
		}
		return fault(hv.VectorDB, fmt.Sprintf("SIGTRAP code %d", si.Code))
	case int32(unix.SIGSYS):
		if si.Code == sysSeccomp {
			ev := hv.Event{Kind: hv.EventSyscall, Nr: uint64(uint32(si.Syscall))}
			switch {
			case si.Arch == auditArchI386:
				ev.Arch = hv.ArchI386
			case uint32(si.Syscall)&x32SyscallBit != 0:
				ev.Arch = hv.ArchX32
			}
			f.RIP = si.Addr - syscallInsnLen
			if si.Addr >= vsyscallStart && si.Addr < vsyscallEnd {
				f.RIP = si.Addr // a call into the vsyscall page
			}
			ev.Fault = f
			return ev, access{}
		}
	}
	return hv.Event{Kind: hv.EventFailed, Reason: fmt.Sprintf("the stub stopped with signal %d (%v) code %d at RIP %#x",
		si.Signo, unix.Signal(si.Signo), si.Code, r.Rip)}, access{}
}

// decodeDoorbell decodes a fault at addr in the doorbell page.
func decodeDoorbell(addr uint64, r *unix.PtraceRegs, code []byte, f hv.Fault) (hv.Event, access) {
	if code == nil {
		f.Vector, f.CR2, f.ErrorCode = hv.VectorPF, addr, hv.PFUser
		f.Detail = "a doorbell access from code outside guest RAM"
		return hv.Event{Kind: hv.EventFault, Fault: f}, access{}
	}
	a, err := decodeAccess(code)
	if err != nil {
		return hv.Event{Kind: hv.EventFailed, Reason: err.Error()}, access{}
	}
	return doorbellEvent(addr, r, a), a
}

// doorbellEvent is what a decoded access at addr in the doorbell page means:
// an 8-byte store at the doorbell is a hypercall, anything else a bad access.
func doorbellEvent(addr uint64, r *unix.PtraceRegs, a access) hv.Event {
	ev := hv.Event{Kind: hv.EventBadDoorbell, Addr: addr, Len: uint32(a.size), Write: a.write}
	if a.write && a.size == 8 && addr == hypercall.DoorbellGPA {
		ev.Kind, ev.Nr = hv.EventHypercall, storeValue(a, r)
	}
	return ev
}

// writesMemory reports whether the instruction at the start of code writes
// memory, for a page fault's W bit: a memory destination (Intel operand
// order puts the destination first) of anything but a compare or test, or a
// stack push. An undecodable instruction counts as a read.
func writesMemory(code []byte) bool {
	inst, _, err := decodeInsn(code)
	if err != nil {
		return false
	}
	switch inst.Op {
	case x86asm.PUSH, x86asm.PUSHF, x86asm.PUSHFQ, x86asm.CALL, x86asm.ENTER:
		return true
	case x86asm.CMP, x86asm.TEST, x86asm.BT, x86asm.CLFLUSH, x86asm.PREFETCHNTA,
		x86asm.PREFETCHT0, x86asm.PREFETCHT1, x86asm.PREFETCHT2, x86asm.PREFETCHW:
		return false
	}
	_, ok := inst.Args[0].(x86asm.Mem)
	return ok
}
