package hv

// Regs are the general-purpose registers, RIP and RFLAGS (the kvm_regs set;
// a subset of what PTRACE_GETREGS returns).
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// SpecialRegs are the registers a diagnostic names besides Regs.
type SpecialRegs struct {
	CS, SS uint64 // selectors
	CR2    uint64 // the last page-fault address
	CR0    uint64
}

// CR0PE is CR0's protection-enable bit.
const CR0PE = 1 << 0

// WasReset reports whether these registers are a vCPU's reset state rather
// than anything an lhpvm guest can be in: lhpvm starts every guest in long
// mode and no guest can leave protected mode without the VMM, so CR0.PE = 0
// means the hypervisor re-initialised the vCPU (KVM does on AMD at a
// shutdown).
func (s SpecialRegs) WasReset() bool { return s.CR0&CR0PE == 0 }
