package sweep

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/internal/param"
)

// A preset reproduces a published result about lock holder preemption in
// lhpvm's terms: a few experiment matrices (parts) across the regime where
// the claim should hold and where it should not, and a report that puts
// the claim's comparison, the published figure beside ours, in tables.
// docs/literature.md keeps each preset's report between its markers
// (experiment --preset NAME --doc docs/literature.md rewrites them).

// Preset is one published result and how lhpvm measures it.
type Preset struct {
	Name   string
	Claim  string // the published result, one line
	Source string // where it is published
	Parts  []Part
	// Report renders the claim's tables (markdown) from the parts'
	// results, by part name.
	Report func(r map[string]*Results) string
}

// Part is one experiment matrix of a preset. Its Options are what the
// experiment flags would say; the caller adds where it runs (backend,
// pCPUs, output).
type Part struct {
	Name    string // its directory under --out, and its heading
	Doc     string
	Options Options
}

// Contention levels: the critical section is 1000 cycles; saturated
// waiters queue again at once, moderate ones after 2000 cycles (the
// experiment's default), light ones after 50000 (a 4-vCPU VM holds the
// lock some 8 % of the time).
const (
	csCycles       = 1000
	thinkSaturated = 0
	thinkModerate  = 2000
	thinkLight     = 50000
)

type contention struct {
	name  string
	think uint64
}

var contentions = []contention{{"saturated", thinkSaturated}, {"moderate", thinkModerate}, {"light", thinkLight}}

// parts makes one part per contention level from a template.
func parts(doc string, levels []contention, o Options) []Part {
	var ps []Part
	for _, c := range levels {
		p := o
		p.ThinkCycles = c.think
		ps = append(ps, Part{Name: c.name, Doc: fmt.Sprintf("%s; %s contention (think %d cycles)", doc, c.name, c.think), Options: p})
	}
	return ps
}

// boosted renames parts NAME-boost and has their pv policies boost the
// kicked vCPU.
func boosted(ps []Part) []Part {
	for i := range ps {
		ps[i].Name += "-boost"
		ps[i].Options.BoostKicked = true
	}
	return ps
}

// A preset's parts repeat their comparisons until the 95 % interval is
// within ±presetPrecision, each part within presetBudget (Repeat rounds
// at least).
const (
	presetPrecision = 0.25
	presetBudget    = 2 * time.Minute
)

func opts(locks, policies, sizes string, vmVCPUs int, d time.Duration, repeat int) Options {
	return Options{Locks: locks, Policies: policies, Sizes: sizes, VMVCPUs: vmVCPUs, Duration: d, Repeat: repeat,
		CSCycles: csCycles, ThinkCycles: thinkModerate, Precision: presetPrecision, Budget: presetBudget}
}

func ablation(name, variants, policies, sizes string, vmVCPUs int, think uint64, d time.Duration, repeat int) Options {
	o := opts("", policies, sizes, vmVCPUs, d, repeat)
	o.Ablation, o.Variants, o.ThinkCycles = name, variants, think
	return o
}

// compare sets the comparisons --precision aims at.
func compare(o Options, pairs ...Pair) Options {
	o.Pairs = pairs
	return o
}

var (
	pvOverTicket  = Pair{CellKey{Lock: "pvticket", Policy: "pv"}, CellKey{Lock: "ticket", Policy: "pv"}}
	boostOverNone = Pair{CellKey{Variant: "full", Policy: "pv"}, CellKey{Variant: "no-boost", Policy: "pv"}}
)

// Presets, in the order docs/literature.md has them.
var Presets = []Preset{
	{
		Name:   "vee13-pticket",
		Claim:  "the preemptable ticket lock improves VM performance 5.32× on average over the ticket lock on a non-paravirtual VMM, 7.91× on a paravirtual one, under overcommit",
		Source: "Ouyang & Lange, Preemptable ticket spinlocks, VEE 2013; the authors' patch ouyangjn/pmtlock vee13/pmtlock-v1.0.patch",
		Parts: append(parts("ticket, pticket and pvticket at 1×, 2× and 4× overcommit, on a plain (rr) and a paravirtual (pv) host",
			contentions, compare(opts("ticket,pticket,pvticket", "rr,pv", "2,4,8", 0, time.Second, 3),
				Pair{CellKey{Lock: "pticket", Policy: "rr"}, CellKey{Lock: "ticket", Policy: "rr"}},
				Pair{CellKey{Lock: "pticket", Policy: "pv"}, CellKey{Lock: "ticket", Policy: "pv"}})),
			Part{Name: "timeout-shift", Doc: "pticket's timeout unit, 1 << shift spins per place in line, at 2× and 4× under rr; moderate contention",
				Options: ablation("pticket", "", "rr", "4,8", 0, thinkModerate, time.Second, 3)}),
		Report: reportPTicket,
	},
	{
		Name:   "pv-ticket",
		Claim:  "pv ticket locks: dbench +0.8 % at 1× overcommit, +16.6 % / +14.0 % / +5.0 % at higher overcommit",
		Source: "Linux 3.12, commit 545ac13892ab (x86, ticketlock: Add slowpath logic), 32-vCPU guest on 32 cores; SPIN_THRESHOLD 1 << 15",
		Parts: append(parts("ticket and pvticket at 1×, 2× and 4× overcommit, on a plain (rr) and a paravirtual (pv) host",
			contentions, compare(opts("ticket,pvticket", "rr,pv", "2,4,8", 0, time.Second, 3), pvOverTicket)),
			boosted(parts("ticket and pvticket on the paravirtual host, a kicked vCPU boosted onto the kicker's pCPU at once (--boost-kicked)",
				contentions, compare(opts("ticket,pvticket", "pv", "2,4,8", 0, time.Second, 3), pvOverTicket)))...),
		Report: reportPVTicket,
	},
	{
		Name:   "pvqspin-steal",
		Claim:  "pv-qspinlock lock stealing: kernel build 44–54 % shorter at 1.5× overcommit with one steal attempt, under 7 % apart at 1×; the hybrid queued/unfair lock stays fair where a plain unfair lock starves vCPUs (max/min ≈ 39 at 2×)",
		Source: "Linux 4.5 (locking/pvqspinlock: Allow limited lock stealing), 48 vCPUs on 32 cores; Linux 4.15 commit 11752adb68a3, 72 vCPUs on 36 cores",
		Parts: []Part{
			{Name: "stealing", Doc: "pvqspin with hybrid stealing (Linux ≥ 4.15), one steal attempt (4.5–4.14) and none, at 1×, 1.5×, 2× and 4× under pv; moderate contention",
				Options: compare(ablation("pvqspin", "full,steal-once,no-steal", "pv", "2,3,4,8", 0, thinkModerate, time.Second, 3),
					Pair{CellKey{Variant: "steal-once", Policy: "pv"}, CellKey{Variant: "no-steal", Policy: "pv"}})},
			{Name: "fairness", Doc: "pvqspin (hybrid) against virt (Linux's unfair test-and-set lock for guests without pv spinlocks) at 1×, 2× and 4× under pv; saturated contention",
				Options: func() Options {
					o := opts("pvqspin,virt", "pv", "2,4,8", 0, time.Second, 3)
					o.ThinkCycles = thinkSaturated
					return o
				}()},
		},
		Report: reportPVQSteal,
	},
	{
		Name:   "kvm-boost",
		Claim:  "boosting the kicked queue head: ebizzy +6 % with one VM, +70 % with two, +74 % with three",
		Source: "KVM commit 266e85a5ec9 (KVM: X86: Boost queue head vCPU to mitigate lock waiter preemption), 80-vCPU VMs on 80 threads",
		Parts: []Part{
			{Name: "saturated", Doc: "pvqspin with and without --boost-kicked, 1, 2 and 3 VMs of 2 vCPUs on the 2 pCPUs under pv; saturated contention",
				Options: compare(ablation("pvqspin", "full,no-boost", "pv", "2,4,6", 2, thinkSaturated, time.Second, 3), boostOverNone)},
			{Name: "moderate", Doc: "the same; moderate contention",
				Options: compare(ablation("pvqspin", "full,no-boost", "pv", "2,4,6", 2, thinkModerate, time.Second, 3), boostOverNone)},
		},
		Report: reportBoost,
	},
	{
		Name:   "coscheduling",
		Claim:  "co-scheduling avoids lock holder preemption; balance scheduling is up to 8 % better than co-scheduling and up to 85 % better than CFS in response time",
		Source: "Sukwong & Kim, Is co-scheduling too expensive for SMP VMs?, EuroSys 2011; VMware, The CPU scheduler in VMware vSphere 5.1",
		Parts: parts("1, 2 and 3 VMs of 2 vCPUs, a ticket lock each, on the 2 pCPUs, under every co-scheduling policy and the baselines",
			contentions[1:], opts("ticket", "host,rr,rr-aligned,gang,relaxed,balance", "2,4,6", 2, time.Second, 3)),
		Report: reportCosched,
	},
}

// PresetNames lists the presets.
func PresetNames() []string {
	var n []string
	for _, p := range Presets {
		n = append(n, p.Name)
	}
	return n
}

// LookupPreset finds a preset by name.
func LookupPreset(name string) (*Preset, error) {
	for i := range Presets {
		if Presets[i].Name == name {
			return &Presets[i], nil
		}
	}
	return nil, fmt.Errorf("--preset %q: have %s", name, strings.Join(PresetNames(), ", "))
}

// PresetOverrides are what the command line may change in every part of a
// preset: where it runs, and (to check it runs, briefly) the length and
// the repetitions, or the precision and its budget (per part). A length
// or a repetition given without a precision runs exactly that.
type PresetOverrides struct {
	Backend  string
	PCPUs    string
	Out      string // the parts go into Out/<part>
	Duration time.Duration
	Repeat   int
	// Precision and Budget replace the preset's own (Budget: per part).
	Precision float64
	Budget    time.Duration
}

// PresetFlags are the experiment flags a preset run accepts; the others
// are the preset's.
var PresetFlags = []string{"preset", "backend", "pcpus", "out", "force", "resume", "duration", "repeat", "precision", "budget", "quiet", "json", "doc"}

// Options is part p of the preset as run with the overrides o.
func (p Part) With(o PresetOverrides) Options {
	opt := p.Options
	opt.Backend, opt.PCPUs = o.Backend, o.PCPUs
	if o.Out != "" {
		opt.Out = o.Out + "/" + p.Name
	}
	if o.Duration != 0 {
		opt.Duration = o.Duration
	}
	if o.Repeat != 0 {
		opt.Repeat = o.Repeat
	}
	switch {
	case o.Precision != 0:
		opt.Precision, opt.Budget = o.Precision, o.Budget
	case o.Duration != 0 || o.Repeat != 0:
		// A run of a length or a repetition given on the command line runs
		// exactly that: no rounds past Repeat.
		opt.Precision, opt.Budget = 0, 0
	}
	given := map[string]bool{"locks": true, "policies": true, "sizes": true, "vm-vcpus": true,
		param.CSCycles.Flag: true, param.ThinkCycles.Flag: true, "duration": true, "repeat": true,
		"precision": opt.Precision > 0, "budget": opt.Budget > 0}
	if opt.Ablation != "" {
		delete(given, "locks")
		given["ablation"], given["variants"] = opt.Variants != "", opt.Variants != ""
	}
	opt.Changed = func(name string) bool { return given[name] }
	return opt
}

// Runs is how many runs the preset makes (with the overrides): each
// part's references and cells.
func (p *Preset) Runs(o PresetOverrides) (int, error) {
	n := 0
	for _, part := range p.Parts {
		plan, err := Check(part.With(o))
		if err != nil {
			return 0, fmt.Errorf("preset %s, part %s: %w", p.Name, part.Name, err)
		}
		n += plan.Runs()
	}
	return n, nil
}

// partNames lists a preset's parts.
func (p *Preset) partNames() []string {
	var n []string
	for _, part := range p.Parts {
		n = append(n, part.Name)
	}
	return n
}

// HasPart reports whether the preset has a part of that name.
func (p *Preset) HasPart(name string) bool { return slices.Contains(p.partNames(), name) }
