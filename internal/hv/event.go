package hv

import "fmt"

// EventKind names what one exit from the guest means to lhpvm, whatever the
// backend that produced it.
type EventKind uint8

const (
	// EventInterrupted: the guest was stopped from outside (a RequestExit,
	// or a stray signal) and nothing else happened. The run loop looks at
	// its requests and enters the guest again.
	EventInterrupted EventKind = iota
	// EventHypercall: an 8-byte write of a call number to the doorbell.
	EventHypercall
	// EventBadDoorbell: any other access to the doorbell page (wrong width,
	// a read, another offset). The guest gets an error and runs on; a read
	// is completed with VCPU.CompleteRead.
	EventBadDoorbell
	// EventMMIO: an access outside RAM and outside the doorbell page (KVM).
	EventMMIO
	// EventHalted: hlt in ring 0 (KVM; the guest's fault handler ends so).
	EventHalted
	// EventShutdown: a triple fault (KVM).
	EventShutdown
	// EventPortIO: port I/O, which lhpvm does not emulate (KVM).
	EventPortIO
	// EventFault: a guest exception the backend caught itself, not the
	// guest's own handlers (ptrace: the host's signal for it). Fault is set.
	EventFault
	// EventSyscall: the guest tried to make a host system call; it was
	// blocked before it reached the kernel (ptrace). Nr, Arch and Fault.RIP
	// are set.
	EventSyscall
	// EventFailed: the backend failed in a way the guest may have caused
	// (KVM: FAIL_ENTRY, INTERNAL_ERROR, an unknown reason; ptrace: an
	// instruction at the doorbell it does not emulate). Reason says what.
	EventFailed
)

var kindNames = [...]string{"interrupted", "hypercall", "bad doorbell access", "MMIO outside RAM",
	"halted", "shutdown (triple fault)", "port I/O", "guest fault", "host syscall", "failed"}

func (k EventKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("event %d", k)
}

// Event is one decoded exit. Only the fields of its Kind are set.
type Event struct {
	Kind  EventKind
	Nr    uint64 // EventHypercall: the call number; EventSyscall: the syscall number
	Addr  uint64 // EventBadDoorbell, EventMMIO: the address; EventPortIO: the port
	Len   uint32 // access width in bytes
	Write bool
	// EventSyscall: the system call convention the guest used.
	Arch SyscallArch
	// EventFault (and EventSyscall: RIP, RSP, CS, RFLAGS).
	Fault Fault
	// EventFailed: what the backend reports, e.g. "KVM exit FAIL_ENTRY
	// (detail 0x80000021)". Backend-specific, for the message only.
	Reason string
}

// SyscallArch is the system-call convention of an attempted syscall.
type SyscallArch uint8

const (
	ArchX8664 SyscallArch = iota // syscall instruction, x86-64 numbers
	ArchI386                     // int $0x80 (or sysenter), i386 numbers
	ArchX32                      // syscall with the x32 bit set in the number
)

func (a SyscallArch) String() string {
	switch a {
	case ArchX8664:
		return "x86-64"
	case ArchI386:
		return "i386"
	case ArchX32:
		return "x32"
	}
	return fmt.Sprintf("arch %d", a)
}

// Exception vectors lhpvm reports by name.
const (
	VectorDE = 0  // divide error
	VectorDB = 1  // debug (single step)
	VectorBP = 3  // breakpoint (int3)
	VectorUD = 6  // invalid opcode
	VectorSS = 12 // stack-segment fault
	VectorGP = 13 // general protection
	VectorPF = 14 // page fault
	VectorMF = 16 // x87 floating point
	VectorAC = 17 // alignment check
	VectorXM = 19 // SIMD floating point
)

var vectorNames = [...]string{"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO",
	"#TS", "#NP", "#SS", "#GP", "#PF", "", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP"}

// VectorName is the mnemonic of an exception vector ("#GP"), or "".
func VectorName(v uint64) string {
	if v < uint64(len(vectorNames)) {
		return vectorNames[v]
	}
	return ""
}

// Page-fault error code bits (as the CPU pushes them).
const (
	PFPresent = 1 << 0 // protection violation (else: not present)
	PFWrite   = 1 << 1
	PFUser    = 1 << 2
	PFFetch   = 1 << 4
)

// Fault is a guest exception: where it happened and what the CPU would
// have reported. A backend that cannot know a field leaves it zero and
// says so in the documentation of the backend.
type Fault struct {
	Vector    uint64
	ErrorCode uint64
	RIP       uint64
	CS        uint64
	RFLAGS    uint64
	RSP       uint64
	CR2       uint64 // #PF: the faulting address
	// Detail is a backend's note on the fault, e.g. the instruction at RIP
	// for a doorbell access it does not emulate ("" if none).
	Detail string
}
