package sweep

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/backend"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/runconfig"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
)

// Options are the experiment command's settings, as given: lists are
// comma-separated; Changed says which flags were given.
type Options struct {
	Locks       string
	Policies    string
	Sizes       string
	VMVCPUs     int
	Duration    time.Duration
	PCPUs       string
	CSCycles    uint64
	ThinkCycles uint64
	Repeat      int
	Backend     string
	Out         string
	Shard       string
	Trace       string // a directory: a Perfetto trace of every run
	Ablation    string
	Variants    string
	// BoostKicked: under a policy with pv, a KICK hands the rest of the
	// kicker's slice to the kicked vCPU (run --boost-kicked).
	BoostKicked bool
	// Precision, when positive, repeats each cell past Repeat rounds until
	// the 95 % interval of its ratio to the reference has a relative
	// half-width of at most Precision (0.25: ±25 %), or Budget runs out.
	Precision float64
	Budget    time.Duration
	// Seed is the experiment's seed, from which every run's start is
	// derived; 0 draws a fresh one.
	Seed uint64
	// Pairs are the comparisons Precision aims at (a preset's: cell A ÷
	// cell B at every size); without any, each cell against the reference.
	Pairs []Pair

	// Changed reports whether the flag of that name was given; nil: none.
	Changed func(name string) bool
}

// DefaultPolicies are the policies an experiment runs unless told: every
// one this build has of a fixed list.
func DefaultPolicies() []string {
	want := []string{"host", "rr", "gang", "relaxed", "balance", "monitor", "pv", "delay", "rr+pv+delay"}
	var have []string
	for _, p := range want {
		if _, err := sched.New(p, sched.Options{}); err == nil {
			have = append(have, p)
		}
	}
	return have
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Plan is a checked experiment: the matrix, the part of it this run
// measures, on which pCPUs.
type Plan struct {
	Matrix   Matrix
	Shard    Shard
	PCPUs    []int
	Out      string // where the results go ("" nowhere)
	Trace    string // where the traces go ("" nowhere)
	duration time.Duration
	budget   time.Duration // Precision's bound on the whole experiment

	// Stop, when closed, ends the experiment after (abandoning) the run in
	// flight: Run returns the finished runs, incomplete, and
	// ErrInterrupted.
	Stop <-chan struct{}
	// Journal, if set, hears of every finished run, with the results so
	// far (a function: summarising costs, and a journal may not need it).
	Journal func(e Entry, partial func() *Results) error
	// Done are runs already made, by identity (a resumed experiment's
	// journal): Run takes them instead of running them again.
	Done map[string]RunResult
	// Resumed says when the experiment first started, with what command
	// line, and how long its runs have taken so far.
	Resumed *Resumed
}

// Resumed is what a resumed experiment keeps of its first start.
type Resumed struct {
	Start   time.Time
	Args    []string
	Elapsed time.Duration
	Backend string // the backend that ran it: a resume must run on the same
	Commit  string
}

// Pair is a comparison an experiment makes at every size of its matrix:
// the cell of A's lock, variant and policy over B's, at the same size. An
// empty lock matches any (an ablation's cells are named by variant).
type Pair struct {
	A CellKey `json:"a"`
	B CellKey `json:"b"`
}

// cells finds the pair's two cells of size n in res.
func (pr Pair) cells(res *Results, n int) (a, b *Cell) {
	return find(res, n, pr.A.Lock, pr.A.Variant, pr.A.Policy), find(res, n, pr.B.Lock, pr.B.Variant, pr.B.Policy)
}

// Check checks the settings of an experiment and plans it. Every error is
// a usage error.
func Check(o Options) (*Plan, error) {
	p, err := check(o)
	if err != nil {
		return nil, errkind.Usage(err)
	}
	return p, nil
}

func check(o Options) (*Plan, error) {
	changed := func(name string) bool { return o.Changed != nil && o.Changed(name) }
	var variants []string
	if o.Ablation != "" {
		if changed("locks") {
			return nil, fmt.Errorf("--locks: an ablation runs its own lock (%s: %s)", o.Ablation, Ablations[o.Ablation].Lock)
		}
		lock, vs, err := checkAblation(o.Ablation, o.Variants)
		if err != nil {
			return nil, err
		}
		o.Locks, variants = lock, vs
		if !changed("policies") {
			o.Policies = "rr,pv"
		}
	} else if changed("variants") {
		return nil, fmt.Errorf("--variants needs --ablation")
	}
	locks, policies := splitList(o.Locks), splitList(o.Policies)
	var sizes []int
	for _, s := range splitList(o.Sizes) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > hypercall.MaxVCPUs {
			return nil, fmt.Errorf("--sizes: %q is not a vCPU count", s)
		}
		sizes = append(sizes, n)
	}
	for _, l := range locks {
		if _, err := vmm.LookupLock(l); err != nil {
			return nil, fmt.Errorf("--locks: %w", err)
		}
	}
	for _, pol := range policies {
		if _, err := sched.New(pol, sched.Options{}); err != nil {
			return nil, fmt.Errorf("--policies: %w", err)
		}
	}
	for flag, list := range map[string][]string{"--locks": locks, "--policies": policies, "--sizes": splitList(o.Sizes)} {
		if d := duplicate(list); d != "" {
			return nil, fmt.Errorf("%s names %s twice: each cell is measured once, with --repeat runs", flag, d)
		}
	}
	switch {
	case len(locks) == 0 || len(policies) == 0 || len(sizes) == 0:
		return nil, fmt.Errorf("--locks, --policies and --sizes may not be empty")
	case o.Duration < runconfig.MinDuration || o.Duration > runconfig.MaxDuration:
		return nil, fmt.Errorf("--duration %v: must be between %v and %v", o.Duration, runconfig.MinDuration, runconfig.MaxDuration)
	case o.VMVCPUs < 0 || o.VMVCPUs > hypercall.MaxVCPUs:
		return nil, fmt.Errorf("--vm-vcpus %d: must be between 1 and %d (or 0: one VM)", o.VMVCPUs, hypercall.MaxVCPUs)
	case o.Repeat < 1 || o.Repeat > 100:
		return nil, fmt.Errorf("--repeat %d: must be between 1 and 100", o.Repeat)
	}
	switch {
	case o.Precision < 0 || o.Precision >= 1:
		return nil, fmt.Errorf("--precision %g: a relative half-width above 0 and below 100 %%, e.g. 25%%", o.Precision)
	case o.Precision > 0 && o.Budget <= 0:
		return nil, fmt.Errorf("--precision needs --budget: how long the experiment may keep repeating its cells")
	case o.Budget < 0 || o.Budget > runconfig.MaxDuration:
		return nil, fmt.Errorf("--budget %v: must be between 0 and %v", o.Budget, runconfig.MaxDuration)
	case o.Budget > 0 && o.Precision == 0:
		return nil, fmt.Errorf("--budget needs --precision: it bounds the repetitions that reach it")
	}
	if o.BoostKicked && o.Ablation != "" {
		return nil, fmt.Errorf("--boost-kicked: an ablation's variants say whether to boost")
	}
	if o.BoostKicked && !slices.ContainsFunc(policies, func(p string) bool { return sched.HasModifier(p, "pv") }) {
		return nil, fmt.Errorf("--boost-kicked: applies to a policy with pv (have %s)", strings.Join(policies, ", "))
	}
	if o.BoostKicked && !slices.ContainsFunc(locks, func(l string) bool { lk, _ := vmm.LookupLock(l); return lk.PV }) {
		return nil, fmt.Errorf("--boost-kicked: boosts a vCPU that a lock's KICK woke, and none of --locks kicks (%s do)", vmm.PVLocks())
	}
	allowed, err := host.AllowedCPUs()
	if err != nil {
		return nil, err
	}
	p := &Plan{PCPUs: allowed[:min(2, len(allowed))], Out: o.Out, Trace: o.Trace, duration: o.Duration}
	if o.PCPUs != "" {
		if p.PCPUs, err = runconfig.CheckCPUs("--pcpus", o.PCPUs, allowed); err != nil {
			return nil, err
		}
	}
	if err := backend.Check(o.Backend); err != nil {
		return nil, fmt.Errorf("--backend: %w", err)
	}
	p.Shard = Shard{I: 1, N: 1}
	if o.Shard == ShardAuto {
		if p.Shard, err = ShardFromEnv(os.Getenv); err != nil {
			return nil, fmt.Errorf("--shard auto: %w", err)
		}
	} else if o.Shard != "" {
		if p.Shard, err = ParseShard(o.Shard); err != nil {
			return nil, fmt.Errorf("--shard %w", err)
		}
	}
	if o.Shard != "" {
		if o.Out == "" {
			return nil, fmt.Errorf("--shard needs --out: a shard's results are for lhpvm merge")
		}
	}
	be := o.Backend
	if be == "" {
		be = backend.Auto
	}
	p.Matrix = Matrix{Locks: locks, Policies: policies, Sizes: sizes, VMVCPUs: o.VMVCPUs, Duration: o.Duration.String(),
		Repeat: o.Repeat, CSCycles: o.CSCycles, Think: o.ThinkCycles, Backend: be, Ablation: o.Ablation, Variants: variants,
		BoostKicked: o.BoostKicked, Precision: o.Precision}
	if o.Budget > 0 {
		p.Matrix.Budget = o.Budget.String()
		p.budget = o.Budget
	}
	for i, pr := range o.Pairs {
		for _, k := range []*CellKey{&o.Pairs[i].A, &o.Pairs[i].B} {
			if o.Ablation != "" && k.Variant == "" && k.Lock != "" && !slices.Contains(locks, k.Lock) {
				k.Variant, k.Lock = k.Lock, "" // an ablation's cells are named by variant
			}
			if (k.Lock != "" && !slices.Contains(locks, k.Lock)) || (k.Variant != "" && !slices.Contains(variants, k.Variant)) || !slices.Contains(policies, k.Policy) {
				return nil, fmt.Errorf("--compare %s/%s: %s is not a cell of the matrix (locks %s, policies %s)",
					pairSide(pr.A), pairSide(pr.B), pairSide(*k), strings.Join(locks, ","), strings.Join(policies, ","))
			}
		}
	}
	p.Matrix.Pairs = o.Pairs
	p.Matrix.Seed = o.Seed
	for p.Matrix.Seed == 0 {
		p.Matrix.Seed = sched.NewSeed()
	}
	if len(p.Matrix.Cells()) == 0 {
		return nil, fmt.Errorf("--variants %s: none of them differs from full under --policies %s (they need a policy with pv)", o.Variants, o.Policies)
	}
	// Every cell, the reference's too, resolved as its runs will be: a
	// value no run accepts is a usage error now, not a failed cell later.
	// A policy refusing a cell's machine is a refused cell, not an error.
	for _, k := range append([]CellKey{refKey}, p.Matrix.Cells()...) {
		var refused *sched.RefusedError
		if _, err := runconfig.FromScenario(p.cell(k)); err != nil && !errors.As(err, &refused) {
			return nil, err
		}
	}
	return p, nil
}

// MakeDirs creates the directories the experiment writes into, before it
// runs (I/O errors).
func (p *Plan) MakeDirs() error {
	for _, dir := range []string{p.Out, p.Trace} {
		if dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return errkind.IO(dir, fmt.Errorf("creating %s: %w", dir, err))
			}
		}
	}
	return nil
}

// Mine are the cells this run measures: its shard's.
func (p *Plan) Mine() []CellKey {
	var mine []CellKey
	for i, k := range p.Matrix.Cells() {
		if p.Shard.Owns(i) {
			mine = append(mine, k)
		}
	}
	return mine
}

// Runs is how many runs the experiment makes: the reference's twice, then
// the cells'.
func (p *Plan) Runs() int { return 2*p.Matrix.Repeat + len(p.Mine())*p.Matrix.Repeat }

// ParsePrecision reads --precision: a percentage ("25%") or a fraction
// ("0.25") of the ratio, strictly between 0 and 1.
func ParsePrecision(s string) (float64, error) {
	t := strings.TrimSpace(s)
	pc := strings.HasSuffix(t, "%")
	x, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(t, "%")), 64)
	if pc {
		x /= 100
	}
	if err != nil || !(x > 0 && x < 1) {
		return 0, fmt.Errorf("--precision %q: a relative half-width such as 25%% or 0.25 (above 0, below 100 %%)", s)
	}
	return x, nil
}

// ParsePairs reads --compare: comma-separated A/B, each side a lock (or an
// ablation's variant) with an optional :POLICY, e.g. "pticket:rr/ticket:rr"
// or "tas:delay/tas:rr". A side without a policy takes the other side's.
func ParsePairs(s string) ([]Pair, error) {
	var out []Pair
	for _, item := range splitList(s) {
		a, b, ok := strings.Cut(item, "/")
		if !ok || a == "" || b == "" {
			return nil, fmt.Errorf("--compare %q: want A/B, e.g. pticket:rr/ticket:rr", item)
		}
		side := func(x string) (name, policy string) {
			name, policy, _ = strings.Cut(x, ":")
			return strings.TrimSpace(name), strings.TrimSpace(policy)
		}
		an, ap := side(a)
		bn, bp := side(b)
		if ap == "" {
			ap = bp
		}
		if bp == "" {
			bp = ap
		}
		if ap == "" {
			return nil, fmt.Errorf("--compare %q: name a policy on one side at least, e.g. pticket:rr/ticket", item)
		}
		out = append(out, Pair{A: CellKey{Lock: an, Policy: ap}, B: CellKey{Lock: bn, Policy: bp}})
	}
	return out, nil
}

func pairSide(k CellKey) string {
	name := k.Lock
	if k.Variant != "" {
		name = k.Variant
	}
	return name + ":" + k.Policy
}

// duplicate returns an entry of list that appears twice, or "".
func duplicate(list []string) string {
	seen := map[string]bool{}
	for _, x := range list {
		if seen[x] {
			return x
		}
		seen[x] = true
	}
	return ""
}
