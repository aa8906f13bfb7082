// Package scenario reads experiment descriptions: several VMs (vCPUs,
// workload and its parameters), the pCPUs, and the scheduling policy with
// its parameters. Unknown keys are errors, so a typo cannot silently fall
// back to a default.
package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario is one experiment.
type Scenario struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	PCPUs       string   `yaml:"pcpus"`   // CPU list; empty: all allowed
	Backend     string   `yaml:"backend"` // auto (default), kvm, ptrace
	Sched       Sched    `yaml:"sched"`
	Duration    Duration `yaml:"duration"`
	Timeout     Duration `yaml:"timeout"`
	VMs         []VM     `yaml:"vms"`
}

// Sched is the policy and its parameters.
type Sched struct {
	Policy   string   `yaml:"policy"`
	Slice    Duration `yaml:"slice"`
	Skew     Duration `yaml:"skew"`
	DelayMax Duration `yaml:"delay_max"`
}

// VM is one VM of a scenario.
type VM struct {
	Name           string `yaml:"name"`
	VCPUs          int    `yaml:"vcpus"`
	Mem            string `yaml:"mem"`
	Workload       string `yaml:"workload"`
	Iterations     uint64 `yaml:"iterations"`
	Lock           string `yaml:"lock"`
	Locks          int    `yaml:"locks"`
	CSCycles       uint64 `yaml:"cs_cycles"`
	ThinkCycles    uint64 `yaml:"think_cycles"`
	SpinThreshold  uint64 `yaml:"spin_threshold"`
	DelayHint      bool   `yaml:"delay_hint"`
	PreemptedAware bool   `yaml:"preempted_aware"`
}

// Duration is a time.Duration written as "30ms".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 30ms, 1s)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Parse reads a scenario and checks its shape (the values are checked where
// they are used, against the same rules as the command-line flags).
func Parse(b []byte) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty scenario")
		}
		// yaml lists several problems on several lines: keep one line.
		msg := strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n"), "\n", ";")
		return nil, fmt.Errorf("%s", strings.Join(strings.Fields(msg), " "))
	}
	if len(s.VMs) == 0 {
		return nil, errors.New("no vms")
	}
	seen := map[string]bool{}
	for i := range s.VMs {
		vm := &s.VMs[i]
		if vm.Name == "" {
			vm.Name = fmt.Sprintf("vm%d", i)
		}
		if seen[vm.Name] {
			return nil, fmt.Errorf("vms[%d]: duplicate name %q", i, vm.Name)
		}
		seen[vm.Name] = true
		if strings.ContainsAny(vm.Name, " /\t\n") {
			return nil, fmt.Errorf("vms[%d]: name %q may not contain spaces or '/'", i, vm.Name)
		}
		if vm.Workload == "" {
			return nil, fmt.Errorf("vm %s: no workload", vm.Name)
		}
		if vm.VCPUs < 1 {
			return nil, fmt.Errorf("vm %s: vcpus must be at least 1", vm.Name)
		}
	}
	return &s, nil
}
