package ptrace

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
)

// ErrUnavailable: this host does not let lhpvm run guests under ptrace (no
// ptrace, no seccomp, no memfd, or a mapping at 0x1000 refused).
var ErrUnavailable = errors.New("the ptrace backend is not available")

func init() {
	// A goroutine locked to the main thread that exits leaves the thread
	// parked rather than gone, and a stub it traced stays traced: keep
	// every vCPU off the main thread by giving it to main for good.
	runtime.LockOSThread()
}

var probe struct {
	once sync.Once
	err  error
}

// Available reports whether this host can run guests on the ptrace backend,
// and why not. The first call sets the process up (SIGCHLD without stop
// notifications, the stub's memfd, the TSC calibration) and starts and
// kills one stub on its own thread; later calls return the same answer.
func Available() error {
	probe.once.Do(func() { probe.err = setUp() })
	return probe.err
}

func setUp() error {
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("%w: it needs x86-64 (this is %s)", ErrUnavailable, runtime.GOARCH)
	}
	if err := quietSIGCHLD(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if _, err := stubPath(); err != nil {
		if errors.Is(err, hv.ErrNotBuilt) { // the build's fault, not the host's
			return err
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if _, err := host.TSCkHz(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread traces the test stub, so it is not given back to the
		// runtime: it ends with the goroutine.
		runtime.LockOSThread()
		errc <- startOne()
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// startOne starts a stub over two pages of RAM and kills it.
func startOne() error {
	mem, err := host.NewMemory(2 * ramStart)
	if err != nil {
		return err
	}
	defer mem.Close()
	v := newVCPU(0, mem, hv.Entry{})
	if err := v.Attach(); err != nil {
		return err
	}
	return v.Close()
}

// System is the ptrace backend, once Available (hv.Hypervisor).
type System struct{}

var _ hv.Hypervisor = (*System)(nil)

// Name is "ptrace".
func (s *System) Name() string { return "ptrace" }

// UserOnly is true: a stub runs only the guest's ring-3 code, from the
// ring-3 entry its image declares.
func (s *System) UserOnly() bool { return true }

// Close releases nothing: each VM's stubs end with their vCPUs.
func (s *System) Close() error { return nil }

// Open returns the backend, or why this host cannot run it.
func Open() (*System, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	return &System{}, nil
}

// MaxVCPUs is the ABI's limit: a stub is a process, not a KVM vCPU.
func (s *System) MaxVCPUs() int { return hypercall.MaxVCPUs }

// CreateVM makes a VM over mem. Nothing runs until a vCPU is attached.
func (s *System) CreateVM(mem *host.Memory) (hv.VM, error) {
	if mem.Size() <= ramStart || mem.Size()%ramStart != 0 {
		return nil, fmt.Errorf("guest memory of %d bytes: the ptrace backend maps whole pages from %#x", mem.Size(), ramStart)
	}
	return &VM{mem: mem}, nil
}

// VM is a VM of the ptrace backend: its RAM, shared by its stubs.
type VM struct {
	mem *host.Memory
}

// CreateVCPU makes vCPU id, to start at e.User (the image's ring-3 entry).
func (vm *VM) CreateVCPU(id int, e hv.Entry) (hv.VCPU, error) {
	if e.User.RIP == 0 {
		return nil, errors.New("the image declares no ring-3 entry: the ptrace backend runs only ring-3 code")
	}
	return newVCPU(id, vm.mem, e), nil
}

// TSCkHz is the host's TSC frequency, calibrated once per process: the
// guest reads the host TSC natively.
func (vm *VM) TSCkHz() (uint64, error) { return host.TSCkHz() }

// Close is a no-op: the stubs are the vCPUs', the memory the caller's.
func (vm *VM) Close() error { return nil }
