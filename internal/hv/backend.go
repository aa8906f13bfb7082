package hv

import (
	"errors"

	"github.com/lhpvm/lhpvm/internal/host"
)

// ErrNotBuilt: this build of lhpvm lacks a file it embeds (the guest image,
// a backend's stub). It is the build's fault, never the host's, so a backend
// that fails with it is not reported as unavailable on this host.
var ErrNotBuilt = errors.New("incomplete build")

// The backend interfaces. Each execution backend (internal/kvm,
// internal/ptrace) implements them directly, and the VMM (vmm) and the run
// loop (vcpu) use them without naming a backend; internal/backend is the
// one place that does, to list and open them. They live here, below all of
// them, beside the values they pass, as cloud-hypervisor's hypervisor crate
// holds its traits, its neutral types and both its backends' contracts.

// Hypervisor is an execution backend, open on this host.
type Hypervisor interface {
	// Name is the backend's name ("kvm", "ptrace").
	Name() string
	// MaxVCPUs is the most vCPUs one VM may have on this host.
	MaxVCPUs() int
	// UserOnly reports that the backend runs only the guest's ring-3 code,
	// so it starts an image at the ring-3 entry the image declares (boot
	// protocol v2) rather than at its ELF entry.
	UserOnly() bool
	// CreateVM makes a VM whose guest RAM is mem (mapped at GPA 0).
	CreateVM(mem *host.Memory) (VM, error)
	// Close releases what the backend holds (KVM's /dev/kvm).
	Close() error
}

// VM is one VM of a backend.
type VM interface {
	// CreateVCPU makes vCPU id, ready to start from e.
	CreateVCPU(id int, e Entry) (VCPU, error)
	// TSCkHz is the TSC frequency the guest sees. Call it after the
	// first CreateVCPU.
	TSCkHz() (uint64, error)
	// Close releases the VM. Close every vCPU first.
	Close() error
}

// GuestThread is implemented by a backend whose guest runs in a host
// thread other than the vCPU's own (ptrace: the traced stub process). Its
// id lets a trace line up with the host scheduler's (sched_switch shows
// that thread running the guest). 0 until Attach.
type GuestThread interface {
	GuestTID() int
}

// VCPU is one vCPU of a backend, as the run loop (vcpu) drives it. Every
// method but RequestExit is called from the vCPU's own locked OS thread,
// after Attach and before Close.
type VCPU interface {
	// Attach binds the vCPU to the calling OS thread, which the caller has
	// locked: ptrace starts the stub process it traces from this thread.
	Attach() error
	// Run enters the guest and returns its next exit, decoded.
	Run() (Event, error)
	// RequestExit makes a Run under way return soon with EventInterrupted,
	// and a Run that starts after it return at once. Safe from any
	// goroutine, at any time (also before Attach and after Close).
	RequestExit()
	// CompleteRead sets the value that the doorbell read of the last
	// EventBadDoorbell returns to the guest.
	CompleteRead(data uint64)
	// Pin keeps the guest's execution on host CPU cpu; the calling thread
	// is there already.
	Pin(cpu int) error
	// Regs and SpecialRegs read the guest's registers (diagnostics, probes).
	Regs() (Regs, error)
	SpecialRegs() (SpecialRegs, error)
	// Close releases the vCPU: on its thread when the loop ends, or from
	// any goroutine if it never ran. The guest never runs again.
	Close() error
}
