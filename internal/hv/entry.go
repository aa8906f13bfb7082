package hv

// Entry is the state a vCPU starts from, for every backend: a backend that
// starts guests in ring 0 (KVM) uses Kernel, one that can only run ring-3
// code (ptrace) uses User. The boot protocol (README) fixes the values.
type Entry struct {
	// The three arguments of both entries: BootInfo GPA, vCPU id, VCPUPage GPA.
	RDI, RSI, RDX uint64
	Kernel        KernelEntry
	User          UserEntry
}

// KernelEntry is a 64-bit ring-0 start with paging on: the ELF entry point,
// the vCPU's ring-0 stack, its own GDT and TSS, no IDT.
type KernelEntry struct {
	RIP, RSP uint64
	CR3      uint64
	GDTBase  uint64
	GDTLimit uint16
	TSSBase  uint64
	TSSLimit uint32
	// Selectors of the GDT the VMM built: kernel code, kernel data, TSS.
	CodeSel, DataSel, TSSSel uint16
	// APICID goes into CPUID leaf 1 (and the x2APIC leaves).
	APICID uint32
}

// UserEntry is a ring-3 start: the image's declared ring-3 entry point and
// the vCPU's ring-3 stack. RIP 0: the image declares no ring-3 entry.
type UserEntry struct {
	RIP, RSP, RFLAGS uint64
}
