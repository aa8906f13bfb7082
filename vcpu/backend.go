package vcpu

import "github.com/lhpvm/lhpvm/internal/hv"

// Backend is one vCPU of an execution backend (internal/kvm, internal/ptrace),
// as the run loop drives it. Every method but RequestExit is called from the
// vCPU's own locked OS thread, after Attach and before Close.
type Backend interface {
	// Attach binds the vCPU to the calling OS thread, which the caller has
	// locked: ptrace starts the stub process it traces from this thread.
	Attach() error
	// Run enters the guest and returns its next exit, decoded.
	Run() (hv.Event, error)
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
	Regs() (hv.Regs, error)
	SpecialRegs() (hv.SpecialRegs, error)
	// Close releases the vCPU: on its thread when the loop ends, or from
	// any goroutine if it never ran. The guest never runs again.
	Close() error
}
