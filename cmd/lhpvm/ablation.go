package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/vmm"
)

// An ablation runs one lock with each of its mechanisms switched off alone,
// against the lock with all of them: which mechanism buys what.

// variant is one column of an ablation: the lock's knobs, and whether the
// host boosts the kicked vCPU (under a policy with pv).
type variant struct {
	Name  string
	Doc   string
	PV    vmm.PVKnobs
	Boost bool
	// NeedsPV: the variant only differs from "full" under a policy with pv.
	NeedsPV bool
}

// ablations by name (experiment --ablation).
var ablations = map[string]struct {
	lock     string
	variants []variant
	doc      string
}{
	"pvqspin": {
		lock: "pvqspin",
		doc:  "Linux's pv-qspinlock with every mechanism on, then each switched off alone",
		variants: []variant{
			{Name: "full", Doc: "every mechanism on; the host boosts the kicked vCPU (--boost-kicked) under a pv policy", Boost: true},
			{Name: "no-steal", Doc: "--pv-steal off: no lock stealing, strict queue order", PV: vmm.PVKnobs{Steal: hypercall.PVStealOff}, Boost: true},
			{Name: "no-pending", Doc: "--pv-pending off: the queue head does not hold off stealers", PV: vmm.PVKnobs{Pending: hypercall.PVPendingOff}, Boost: true},
			{Name: "no-prev-check", Doc: "--pv-prev-check off: queued waiters spin the whole threshold", PV: vmm.PVKnobs{PrevCheck: hypercall.PVPrevCheckOff}, Boost: true},
			{Name: "immediate-kick", Doc: "--pv-kick immediate: a halted new queue head is kicked at once, not at unlock", PV: vmm.PVKnobs{Kick: hypercall.PVKickImmediate}, Boost: true},
			{Name: "no-boost", Doc: "without --boost-kicked", NeedsPV: true},
		},
	},
}

func ablationNames() []string {
	var n []string
	for k := range ablations {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// lookupVariant finds a variant of ablation a.
func lookupVariant(a, name string) (variant, bool) {
	for _, v := range ablations[a].variants {
		if v.Name == name {
			return v, true
		}
	}
	return variant{}, false
}

// hasPV reports whether a policy spec contains the pv modifier.
func hasPV(policy string) bool { return slices.Contains(strings.Split(policy, "+"), "pv") }

// checkAblation resolves --ablation and --variants into the lock and the
// variants to run.
func checkAblation(name, list string) (lock string, variants []string, err error) {
	a, ok := ablations[name]
	if !ok {
		return "", nil, fmt.Errorf("--ablation %q: have %s", name, strings.Join(ablationNames(), ", "))
	}
	if list == "" {
		for _, v := range a.variants {
			variants = append(variants, v.Name)
		}
		return a.lock, variants, nil
	}
	for _, v := range splitList(list) {
		if _, ok := lookupVariant(name, v); !ok {
			var have []string
			for _, v := range a.variants {
				have = append(have, v.Name)
			}
			return "", nil, fmt.Errorf("--variants: %q is not a variant of the %s ablation (have: %s)", v, name, strings.Join(have, ", "))
		}
		variants = append(variants, v)
	}
	return a.lock, variants, nil
}
