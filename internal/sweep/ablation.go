package sweep

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lhpvm/lhpvm/internal/scenario"
)

// An ablation runs one lock with each of its mechanisms switched off alone,
// against the lock with all of them: which mechanism buys what.

// Variant is one column of an ablation: the lock's knobs, and whether the
// host boosts the kicked vCPU (under a policy with pv).
type Variant struct {
	Name string
	Doc  string
	// Knobs are pvqspin's knobs the variant sets, by scenario key
	// (pv_steal: off), as a scenario or the run flags set them.
	Knobs map[string]string
	// PTicketShift: pticket's timeout shift (0: the default).
	PTicketShift uint32
	Boost        bool
	// NeedsPV: the variant only differs from "full" under a policy with pv.
	NeedsPV bool
}

// apply sets the variant's knobs in a VM.
func (v Variant) apply(vm *scenario.VM) {
	for key, val := range v.Knobs {
		*vm.PVKnob(key) = val
	}
	vm.PTicketTimeoutShift = v.PTicketShift
}

// Ablation is one ablation: its lock and its variants.
type Ablation struct {
	Lock     string
	Doc      string
	Variants []Variant
}

// Ablations by name (experiment --ablation).
var Ablations = map[string]Ablation{
	"pvqspin": {
		Lock: "pvqspin",
		Doc:  "Linux's pv-qspinlock with every mechanism on, then each switched off alone",
		Variants: []Variant{
			{Name: "full", Doc: "every mechanism on; the host boosts the kicked vCPU (--boost-kicked) under a pv policy", Boost: true},
			{Name: "no-steal", Doc: "--pv-steal off: no lock stealing, strict queue order", Knobs: map[string]string{"pv_steal": "off"}, Boost: true},
			{Name: "steal-once", Doc: "--pv-steal once: one stealing attempt before queueing (Linux 4.5-4.14)", Knobs: map[string]string{"pv_steal": "once"}, Boost: true},
			{Name: "no-pending", Doc: "--pv-pending off: the queue head does not hold off stealers", Knobs: map[string]string{"pv_pending": "off"}, Boost: true},
			{Name: "no-prev-check", Doc: "--pv-prev-check off: queued waiters spin the whole threshold", Knobs: map[string]string{"pv_prev_check": "off"}, Boost: true},
			{Name: "immediate-kick", Doc: "--pv-kick immediate: a halted new queue head is kicked at once, not at unlock", Knobs: map[string]string{"pv_kick": "immediate"}, Boost: true},
			{Name: "no-boost", Doc: "without --boost-kicked", NeedsPV: true},
		},
	},
	"pticket": {
		Lock: "pticket",
		Doc:  "the preemptable ticket lock's timeout unit, 1 << shift spins per place in line",
		Variants: []Variant{
			{Name: "shift-8", Doc: "--pticket-timeout-shift 8 (the authors' later default)", PTicketShift: 8},
			{Name: "shift-10", Doc: "--pticket-timeout-shift 10", PTicketShift: 10},
			{Name: "shift-12", Doc: "--pticket-timeout-shift 12", PTicketShift: 12},
			{Name: "shift-14", Doc: "--pticket-timeout-shift 14 (the paper's, the default)", PTicketShift: 14},
			{Name: "shift-16", Doc: "--pticket-timeout-shift 16", PTicketShift: 16},
		},
	},
}

// AblationNames lists the ablations.
func AblationNames() []string {
	var n []string
	for k := range Ablations {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// LookupVariant finds a variant of ablation a.
func LookupVariant(a, name string) (Variant, bool) {
	for _, v := range Ablations[a].Variants {
		if v.Name == name {
			return v, true
		}
	}
	return Variant{}, false
}

// checkAblation resolves --ablation and --variants into the lock and the
// variants to run.
func checkAblation(name, list string) (lock string, variants []string, err error) {
	a, ok := Ablations[name]
	if !ok {
		return "", nil, fmt.Errorf("--ablation %q: have %s", name, strings.Join(AblationNames(), ", "))
	}
	if list == "" {
		for _, v := range a.Variants {
			variants = append(variants, v.Name)
		}
		return a.Lock, variants, nil
	}
	for _, v := range splitList(list) {
		if _, ok := LookupVariant(name, v); !ok {
			var have []string
			for _, v := range a.Variants {
				have = append(have, v.Name)
			}
			return "", nil, fmt.Errorf("--variants: %q is not a variant of the %s ablation (have: %s)", v, name, strings.Join(have, ", "))
		}
		variants = append(variants, v)
	}
	return a.Lock, variants, nil
}
