// Package backend is the one place that names lhpvm's execution backends:
// it lists them, tells what this host has and why not, and opens one as a
// vmm.Hypervisor. Like gVisor's platforms, each is registered by name and
// chosen by one flag (--backend auto|kvm|ptrace); auto prefers KVM.
package backend

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/internal/kvm"
	"github.com/lhpvm/lhpvm/internal/ptrace"
	"github.com/lhpvm/lhpvm/vcpu"
	"github.com/lhpvm/lhpvm/vmm"
)

// Auto is the backend name that picks the best one this host has.
const Auto = "auto"

// ErrUnknown: a backend name lhpvm does not know.
var ErrUnknown = errors.New("unknown backend")

// ErrUnavailable: the backend exists but this host cannot run it.
var ErrUnavailable = errors.New("backend not available on this host")

type entry struct {
	name string
	doc  string
	open func() (vmm.Hypervisor, error)
}

// backends in order of preference for auto.
var backends = []entry{
	{"kvm", "hardware virtualization through /dev/kvm: the guest boots in ring 0", openKVM},
	{"ptrace", "the guest's ring-3 code natively in ptraced, seccomp-sandboxed stub processes", openPtrace},
}

// Names lists the backends, in auto's order of preference.
func Names() []string {
	var n []string
	for _, b := range backends {
		n = append(n, b.name)
	}
	return n
}

// Status is what this host has of one backend.
type Status struct {
	Name      string
	Doc       string
	Available bool
	Reason    string // why not, when not available
	Module    string // kvm: the host's vendor module (kvm.Module)
}

// Probe tries every backend on this host.
func Probe() []Status {
	var out []Status
	for _, b := range backends {
		s := Status{Name: b.name, Doc: b.doc}
		if b.name == "kvm" {
			s.Module = kvm.Module()
		}
		h, err := b.open()
		if err == nil {
			s.Available = true
			closeHV(h)
		} else {
			s.Reason = err.Error()
		}
		out = append(out, s)
	}
	return out
}

// Choice is an opened backend and why it was chosen.
type Choice struct {
	vmm.Hypervisor
	Reason string
}

// Open opens the named backend, or with Auto the first one this host has.
// The error of a backend the host lacks wraps ErrUnavailable and says why.
func Open(name string) (*Choice, error) {
	if name == "" || name == Auto {
		var why []string
		for _, b := range backends {
			h, err := b.open()
			if err == nil {
				reason := "auto: the first backend this host has"
				if len(why) > 0 {
					reason = "auto: " + strings.Join(why, "; ")
				}
				return &Choice{h, reason}, nil
			}
			why = append(why, fmt.Sprintf("%s not available (%v)", b.name, err))
		}
		return nil, fmt.Errorf("%w: no backend works here: %s", ErrUnavailable, strings.Join(why, "; "))
	}
	for _, b := range backends {
		if b.name == name {
			h, err := b.open()
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, name, err)
			}
			return &Choice{h, "asked for"}, nil
		}
	}
	return nil, fmt.Errorf("%w %q (have: %s, or %s)", ErrUnknown, name, strings.Join(Names(), ", "), Auto)
}

// Check reports whether name is a backend name (or Auto), without opening it.
func Check(name string) error {
	if name == "" || name == Auto {
		return nil
	}
	for _, b := range backends {
		if b.name == name {
			return nil
		}
	}
	return fmt.Errorf("%w %q (have: %s, or %s)", ErrUnknown, name, strings.Join(Names(), ", "), Auto)
}

// Close releases what Open holds (KVM's /dev/kvm fd).
func (c *Choice) Close() error { return closeHV(c.Hypervisor) }

func closeHV(h vmm.Hypervisor) error {
	if c, ok := h.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// Each backend satisfies its consumers' interfaces; checked here, at build
// time, because as converts at run time.
var (
	_ vmm.Hypervisor = (*kvmHV)(nil)
	_ vmm.BackendVM  = kvmVM{}
	_ vcpu.Backend   = (*kvm.VCPU)(nil)
	_ vmm.Hypervisor = ptraceHV{}
	_ vmm.BackendVM  = ptraceVM{}
	_ vcpu.Backend   = (*ptrace.VCPU)(nil)
)

// kvmHV adapts internal/kvm to vmm.Hypervisor.
type kvmHV struct {
	sys *kvm.System
	max int
}

// openKVM opens /dev/kvm and creates (and closes) a VM: a /dev/kvm that
// opens but cannot make a VM (a nested host that refuses) is no KVM.
func openKVM() (vmm.Hypervisor, error) {
	sys, err := kvm.Open()
	if err != nil {
		return nil, err
	}
	mem, err := host.NewMemory(2 << 20)
	if err != nil {
		sys.Close()
		return nil, err
	}
	defer mem.Close()
	vm, err := sys.CreateVM(mem)
	if err != nil {
		sys.Close()
		return nil, err
	}
	vm.Close()
	max, err := sys.MaxVCPUs()
	if err != nil {
		max = 0
	}
	return &kvmHV{sys: sys, max: max}, nil
}

func (k *kvmHV) Name() string   { return "kvm" }
func (k *kvmHV) MaxVCPUs() int  { return k.max }
func (k *kvmHV) UserOnly() bool { return false }
func (k *kvmHV) Close() error   { return k.sys.Close() }
func (k *kvmHV) CreateVM(mem *host.Memory) (vmm.BackendVM, error) {
	vm, err := k.sys.CreateVM(mem)
	return as[vmm.BackendVM](kvmVM{vm}, err)
}

type kvmVM struct{ *kvm.VM }

func (vm kvmVM) CreateVCPU(id int, e hv.Entry) (vcpu.Backend, error) {
	return as[vcpu.Backend](vm.VM.CreateVCPU(id, e))
}

// as returns a backend's concrete result as the interface its consumer
// declares (Go has no covariant returns), and a nil interface, never a typed
// nil inside one, with an error.
func as[I any, T any](v T, err error) (I, error) {
	var zero I
	if err != nil {
		return zero, err
	}
	return any(v).(I), nil
}

// ptraceHV adapts internal/ptrace to vmm.Hypervisor.
type ptraceHV struct{ sys *ptrace.System }

func openPtrace() (vmm.Hypervisor, error) {
	sys, err := ptrace.Open()
	if err != nil {
		return nil, err
	}
	return ptraceHV{sys}, nil
}

func (p ptraceHV) Name() string   { return "ptrace" }
func (p ptraceHV) MaxVCPUs() int  { return p.sys.MaxVCPUs() }
func (p ptraceHV) UserOnly() bool { return true }
func (p ptraceHV) CreateVM(mem *host.Memory) (vmm.BackendVM, error) {
	vm, err := p.sys.CreateVM(mem)
	return as[vmm.BackendVM](ptraceVM{vm}, err)
}

type ptraceVM struct{ *ptrace.VM }

func (vm ptraceVM) CreateVCPU(id int, e hv.Entry) (vcpu.Backend, error) {
	return as[vcpu.Backend](vm.VM.CreateVCPU(id, e))
}
