package vmm

import (
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/vcpu"
)

// Hypervisor is an execution backend as the VMM uses it. The VMM never names
// a backend: internal/backend is the one place that does, and adapts
// internal/kvm and internal/ptrace to this interface.
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
	CreateVM(mem *host.Memory) (BackendVM, error)
}

// BackendVM is one VM of a backend.
type BackendVM interface {
	// CreateVCPU makes vCPU id, ready to start from e.
	CreateVCPU(id int, e hv.Entry) (vcpu.Backend, error)
	// TSCkHz is the TSC frequency the guest sees. Call it after the
	// first CreateVCPU.
	TSCkHz() (uint64, error)
	// Close releases the VM. Close every vCPU first.
	Close() error
}
