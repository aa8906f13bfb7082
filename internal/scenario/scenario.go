// Package scenario reads experiment descriptions: several VMs (vCPUs,
// workload and its parameters), the pCPUs, and the scheduling policy with
// its parameters. Unknown keys are errors, so a typo cannot silently fall
// back to a default; so is a second YAML document. Parse remembers the line
// of every key, so that the values it does not check itself (they are
// checked where they are used, by the same rules as the command-line flags)
// can be reported at their place in the file.
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

// Limits of one scenario, checked before anything is built from it.
const (
	// MaxBytes bounds a scenario file.
	MaxBytes = 1 << 20
	// MaxVMs bounds the VMs of one run.
	MaxVMs = 256
	// MaxTotalVCPUs bounds the vCPUs of all the VMs of one run.
	MaxTotalVCPUs = 4096
)

// Scenario is one experiment.
type Scenario struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Next is what to try after this scenario; run prints it at the end.
	Next     string   `yaml:"next"`
	PCPUs    string   `yaml:"pcpus"`   // CPU list; empty: all allowed
	NPCPUs   int      `yaml:"npcpus"`  // or: the first N CPUs this process may use
	Backend  string   `yaml:"backend"` // auto (default), kvm, ptrace
	Sched    Sched    `yaml:"sched"`
	Duration Duration `yaml:"duration"`
	Timeout  Duration `yaml:"timeout"`
	VMs      []VM     `yaml:"vms"`

	lines map[string]int // key path ("vms[1].mem") -> line
}

// Sched is the policy and its parameters.
type Sched struct {
	Policy   string   `yaml:"policy"`
	Slice    Duration `yaml:"slice"`
	Skew     Duration `yaml:"skew"`
	DelayMax Duration `yaml:"delay_max"`
	// BoostKicked (a policy with pv): a KICK hands the kicker's slice to
	// the kicked vCPU.
	BoostKicked bool `yaml:"boost_kicked"`
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
	// pvqspin's mechanisms (vmm.PVKnobList names the values); "" is the
	// default.
	PVSteal           string `yaml:"pv_steal"`
	PVPending         string `yaml:"pv_pending"`
	PVPrevCheck       string `yaml:"pv_prev_check"`
	PVKick            string `yaml:"pv_kick"`
	SpinThresholdHead uint64 `yaml:"spin_threshold_head"`
	// PTicketTimeoutShift: pticket's timeout unit, 1 << this many spins
	// (0: the default, 14).
	PTicketTimeoutShift uint32 `yaml:"pticket_timeout_shift"`
}

// PVKnob is the field of pvqspin knob key (pv_steal, ...), nil if there is
// none of that name.
func (v *VM) PVKnob(key string) *string {
	switch key {
	case "pv_steal":
		return &v.PVSteal
	case "pv_pending":
		return &v.PVPending
	case "pv_prev_check":
		return &v.PVPrevCheck
	case "pv_kick":
		return &v.PVKick
	}
	return nil
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

// Parse reads a scenario and checks its shape and size; the values are
// checked where they are used.
func Parse(b []byte) (*Scenario, error) {
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("%d bytes: a scenario may have at most %d KiB", len(b), MaxBytes>>10)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty scenario")
		}
		return nil, oneLine(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("line %d: a second YAML document: a scenario is one document", extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, oneLine(err)
	}
	// Bound the run before decoding the VMs into values, and before
	// anything costs in proportion to them.
	if vms := mapValue(&root, "vms"); vms != nil && vms.Kind == yaml.SequenceNode && len(vms.Content) > MaxVMs {
		return nil, fmt.Errorf("line %d: vms: %d VMs, a run may have at most %d", vms.Line, len(vms.Content), MaxVMs)
	}
	// Node.Decode ignores KnownFields: decode the values from the bytes
	// again, with unknown keys refused.
	strict := yaml.NewDecoder(bytes.NewReader(b))
	strict.KnownFields(true)
	var s Scenario
	if err := strict.Decode(&s); err != nil {
		return nil, oneLine(err)
	}
	s.lines = map[string]int{}
	record(&root, "", s.lines)
	if len(s.VMs) == 0 {
		return nil, errors.New("no vms")
	}
	seen := map[string]bool{}
	total := 0
	for i := range s.VMs {
		vm := &s.VMs[i]
		at := func(key string) string { return s.At(fmt.Sprintf("vms[%d].%s", i, key)) }
		if vm.Name == "" {
			vm.Name = fmt.Sprintf("vm%d", i)
		}
		if seen[vm.Name] {
			return nil, fmt.Errorf("%s: duplicate name %q", at("name"), vm.Name)
		}
		seen[vm.Name] = true
		if strings.ContainsAny(vm.Name, " /\t\n") || !printable(vm.Name) {
			return nil, fmt.Errorf("%s: name %q may not contain spaces, '/' or control characters", at("name"), vm.Name)
		}
		if vm.Workload == "" {
			return nil, fmt.Errorf("%s: vm %s: no workload", s.At(fmt.Sprintf("vms[%d]", i)), vm.Name)
		}
		if vm.VCPUs < 1 {
			return nil, fmt.Errorf("%s: vm %s: vcpus must be at least 1", at("vcpus"), vm.Name)
		}
		if total += vm.VCPUs; total > MaxTotalVCPUs || vm.VCPUs > MaxTotalVCPUs {
			return nil, fmt.Errorf("%s: vm %s: the VMs have more than %d vCPUs together, a run may have at most %d",
				at("vcpus"), vm.Name, MaxTotalVCPUs, MaxTotalVCPUs)
		}
	}
	return &s, nil
}

// Has reports whether the scenario gives key ("duration", "sched.slice",
// "vms[1].mem").
func (s *Scenario) Has(key string) bool { _, ok := s.lines[key]; return ok }

// Line is the line of key in the file, or 0 if the scenario does not give it.
func (s *Scenario) Line(key string) int { return s.lines[key] }

// At names key for a message: "line 7: vms[1].mem", or just the key when
// the scenario does not give it (its default was used).
func (s *Scenario) At(key string) string {
	if l, ok := s.lines[key]; ok {
		return fmt.Sprintf("line %d: %s", l, key)
	}
	return key
}

// record walks the document and notes the line of every key under path.
func record(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			record(c, path, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if path != "" {
				k = path + "." + k
			}
			lines[k] = n.Content[i].Line
			record(n.Content[i+1], k, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			k := fmt.Sprintf("%s[%d]", path, i)
			lines[k] = c.Line
			record(c, k, lines)
		}
	}
}

// mapValue is the value of key in the document's top-level mapping.
func mapValue(doc *yaml.Node, key string) *yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// oneLine turns yaml's multi-line error list into one line.
func oneLine(err error) error {
	msg := strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n"), "\n", ";")
	return errors.New(strings.Join(strings.Fields(msg), " "))
}
