// Package backend is the one place that names lhpvm's execution backends:
// it lists them, tells what this host has and why not, and opens one as a
// hv.Hypervisor. Like gVisor's platforms, each is registered by name and
// chosen by one flag (--backend auto|kvm|ptrace); auto prefers KVM.
package backend

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lhpvm/lhpvm/guest/prebuilt"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/internal/kvm"
	"github.com/lhpvm/lhpvm/internal/ptrace"
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
	open func() (hv.Hypervisor, error)
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
			h.Close()
		} else {
			s.Reason = err.Error()
		}
		out = append(out, s)
	}
	return out
}

// Choice is an opened backend and why it was chosen.
type Choice struct {
	hv.Hypervisor
	Reason string
	Module string // kvm: the host's vendor module (kvm.Module); "" otherwise
}

// choose wraps an opened backend, naming kvm's vendor module: kvm_pvm's
// nested paravirtual KVM and kvm_amd's hardware SVM measure differently.
func choose(name string, h hv.Hypervisor, reason string) *Choice {
	c := &Choice{Hypervisor: h, Reason: reason}
	if name == "kvm" {
		c.Module = kvm.Module()
	}
	return c
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
				return choose(b.name, h, reason), nil
			}
			why = append(why, fmt.Sprintf("%s not available (%v)", b.name, err))
		}
		return nil, fmt.Errorf("%w: no backend works here: %s", ErrUnavailable, strings.Join(why, "; "))
	}
	for _, b := range backends {
		if b.name == name {
			h, err := b.open()
			if errors.Is(err, hv.ErrNotBuilt) {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, name, err)
			}
			return choose(b.name, h, "asked for"), nil
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

// openKVM and openPtrace open a backend as an hv.Hypervisor: a nil one
// with an error, never a typed nil inside the interface.
func openKVM() (hv.Hypervisor, error) {
	sys, err := kvm.Open()
	if err != nil {
		return nil, err
	}
	return sys, nil
}

func openPtrace() (hv.Hypervisor, error) {
	sys, err := ptrace.Open()
	if err != nil {
		return nil, err
	}
	return sys, nil
}

// Artifact is a generated file this build embeds: the guest image, or a
// backend's stub.
type Artifact struct {
	Name string // what it is
	Path string // its file in the repository
	Hash string // the hash of the sources it was built from; "" when missing
	Err  error  // why it is missing or unreadable
}

// Carried lists the generated files this build of lhpvm embeds.
func Carried() []Artifact {
	img, imgErr := prebuilt.SourceHash()
	stub, stubErr := ptrace.StubSourceHash()
	return []Artifact{
		{"guest image", prebuilt.ImageFile, img, imgErr},
		{"ptrace stub", ptrace.StubFile, stub, stubErr},
	}
}
