package sweep

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/runconfig"
	"github.com/lhpvm/lhpvm/internal/scenario"
	"github.com/lhpvm/lhpvm/internal/stats"
	"github.com/lhpvm/lhpvm/internal/trace"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
)

// RunFunc runs one machine: vmm.RunMachine on the experiment's backend
// (the CLI's, with Ctrl-C), or a fake in a test.
type RunFunc func(mc vmm.MachineConfig, cfgs ...vmm.Config) *vmm.Result

// Progress hears of the runs as they happen.
type Progress interface {
	// Start says which run is under way.
	Start(what string)
	// Done counts a finished run; line says how it went, ok whether it
	// went well (a refused cell is not a failure).
	Done(line string, ok bool)
}

type noProgress struct{}

func (noProgress) Start(string)      {}
func (noProgress) Done(string, bool) {}

// refKey is the reference: ticket lock, 2 vCPUs on the pCPUs, rr.
var refKey = CellKey{VCPUs: 2, Lock: "ticket", Policy: "rr"}

// ErrInterrupted: the experiment was stopped (Plan.Stop) before it ended.
// What finished is in the results, marked incomplete.
var ErrInterrupted = errors.New("interrupted")

// A run's identity within its experiment: what it measures and its place
// in the plan. Its seed is derived from the experiment's seed and the
// identity, so a resumed experiment draws the runs it has left exactly as
// the uninterrupted one would have.
func runID(kind string, k CellKey, round int) string {
	return fmt.Sprintf("%s %v #%d", kind, k, round)
}

func runSeed(experiment uint64, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	x := experiment ^ h.Sum64()
	// splitmix64's finaliser: nearby inputs, unrelated seeds.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// Entry is one finished run in the journal (Plan.Journal): an experiment
// that stops midway loses at most the run in flight.
type Entry struct {
	ID    string    `json:"id"`
	Kind  string    `json:"kind"` // reference_before, reference_during, reference_after, cell
	Cell  CellKey   `json:"cell"`
	Round int       `json:"round"`
	Run   RunResult `json:"run"`
}

// Run runs the experiment: the reference, every cell of its shard Repeat
// times (a cell that fails or is refused is not run again), the reference
// again; then it summarises them. meta says what runs it (version,
// commit, backend, command line); Run adds the host, the pCPUs and the
// times. A failed reference run ends it with a run failure: no cell could
// be compared. When Plan.Stop closes, the run in flight is abandoned and
// Run returns what finished, summarised and marked incomplete, with
// ErrInterrupted. Runs found in Plan.Done (a resumed experiment's journal)
// are taken from there instead of run again.
func (p *Plan) Run(run RunFunc, prog Progress, meta Meta) (*Results, error) {
	if prog == nil {
		prog = noProgress{}
	}
	meta.Kernel, meta.CPUModel = HostFacts()
	meta.Host, _ = os.Hostname()
	meta.PauseNs = host.PauseNs()
	meta.PCPUs, meta.Start, meta.Summary, meta.NoisyDrift = p.PCPUs, time.Now(), SummaryRule, NoisyDrift
	if p.Resumed != nil {
		meta.Start = p.Resumed.Start
		meta.Args = append(append([]string(nil), p.Resumed.Args...), "(resumed: "+strings.Join(meta.Args, " ")+")")
	}
	res := &Results{Matrix: p.Matrix, Shards: []Shard{p.Shard}, Meta: meta}
	repeat := p.Matrix.Repeat
	ref := &Reference{Shard: p.Shard.I, Host: meta.Host}
	mine := p.Mine()
	res.Cells = make([]Cell, len(mine))
	for i, k := range mine {
		res.Cells[i] = Cell{CellKey: k, Shard: p.Shard.I}
	}
	// partial is the results so far, summarised as the end would.
	partial := func() *Results {
		out := *res
		r := *ref
		r.Summarize()
		out.References = []Reference{r}
		out.Cells = append([]Cell(nil), res.Cells...)
		for i := range out.Cells {
			out.Cells[i].Summarize(&r)
		}
		out.Comparisons = out.compare()
		out.Meta.End = time.Now()
		return &out
	}
	runs := 0
	once := func(kind string, k CellKey, round int) (RunResult, int, error) {
		runs++
		id := runID(kind, k, round)
		vms := len(p.cell(k).VMs)
		if r, ok := p.Done[id]; ok {
			return r, vms, nil
		}
		if p.stopped() {
			return RunResult{}, vms, ErrInterrupted
		}
		tracePath := ""
		if p.Trace != "" {
			lock := k.Lock
			if k.Variant != "" {
				lock += "-" + k.Variant
			}
			tracePath = filepath.Join(p.Trace, fmt.Sprintf("%dvcpus-%s-%s-%d.json", k.VCPUs, lock, k.Policy, runs))
		}
		r, _ := p.runCell(run, k, tracePath, runSeed(p.Matrix.Seed, id))
		if p.stopped() && !r.OK {
			return RunResult{}, vms, ErrInterrupted // stopped in flight: not a result
		}
		if p.Journal != nil {
			if err := p.Journal(Entry{ID: id, Kind: kind, Cell: k, Round: round, Run: r}, partial); err != nil {
				return r, vms, err
			}
		}
		return r, vms, nil
	}
	stop := func(err error) (*Results, error) {
		// Stopped, or its files could not be written (a full or read-only
		// disk): what finished is still summarised, for the table.
		var ioe *errkind.IOError
		if errors.Is(err, ErrInterrupted) || errors.As(err, &ioe) {
			return partial(), err // Complete stays false
		}
		return nil, err
	}
	reference := func(into *[]RunResult, when string) error {
		for i := 0; i < repeat; i++ {
			prog.Start(fmt.Sprintf("reference (%s)", when))
			r, _, err := once("reference_"+when, refKey, i)
			if err != nil {
				return err
			}
			*into = append(*into, r)
			prog.Done(fmt.Sprintf("reference (%s), run %d: %.3g acq/s", when, i+1, r.OpsPerSec), r.OK)
			if !r.OK {
				return errkind.Run(fmt.Errorf("the reference run (ticket, 2 vCPUs, rr) failed %s the matrix, so no cell can be compared: %s", when, r.Error))
			}
		}
		return nil
	}
	if err := reference(&ref.Before, "before"); err != nil {
		return stop(err)
	}
	// Interleaved, round by round (A B C A B C ...), so that a drift of the
	// host over the matrix falls on every cell alike and cancels in their
	// ratios, rather than on whichever cell ran last.
	for round := 0; round < repeat; round++ {
		for i, k := range mine {
			c := &res.Cells[i]
			if n := len(c.Runs); n > 0 && !c.Runs[n-1].OK {
				continue // the cell has failed (or cannot run): no more runs of it
			}
			prog.Start(k.String())
			r, vms, err := once("cell", k, round)
			if err != nil {
				return stop(err)
			}
			c.VMs = vms
			c.Runs = append(c.Runs, r)
			state := fmt.Sprintf("%.3g acq/s, seed %d", r.OpsPerSec, r.Seed)
			switch {
			case r.Refused:
				state = "refused"
			case !r.OK:
				state = "FAILED: " + r.Error
			}
			prog.Done(fmt.Sprintf("%v, run %d: %s", k, round+1, state), r.OK || r.Refused)
		}
	}
	if p.Matrix.Precision > 0 {
		budgetStart := meta.Start
		if p.Resumed != nil { // the budget counts the time the runs took, not the pause
			budgetStart = time.Now().Add(-p.Resumed.Elapsed)
		}
		if err := p.untilPrecise(res, ref, once, prog, budgetStart); err != nil {
			return stop(err)
		}
	}
	if err := reference(&ref.After, "after"); err != nil {
		return stop(err)
	}
	ref.Summarize()
	res.References = []Reference{*ref}
	for i := range res.Cells {
		res.Cells[i].Summarize(ref)
	}
	res.Comparisons = res.compare()
	res.Meta.End = time.Now()
	res.Complete = true
	return res, nil
}

func (p *Plan) stopped() bool {
	select {
	case <-p.Stop:
		return true
	default:
		return false
	}
}

// cell is the scenario of cell k: its VMs (one, or VMs of VMVCPUs), the
// guest options its policy reads (runconfig.FollowPolicy), its variant's
// knobs, under the policy on the pCPUs.
func (p *Plan) cell(k CellKey) scenario.Scenario {
	m := p.Matrix
	per := k.VCPUs
	if m.VMVCPUs > 0 {
		per = m.VMVCPUs
	}
	var v Variant
	if k.Variant != "" {
		v, _ = LookupVariant(m.Ablation, k.Variant)
	}
	sc := scenario.Scenario{PCPUs: sched.FormatCPUList(p.PCPUs), Duration: scenario.Duration(p.duration),
		Sched: scenario.Sched{Policy: k.Policy}}
	for left, i := k.VCPUs, 0; left > 0; i++ {
		n := min(per, left)
		vm := scenario.VM{Name: fmt.Sprintf("vm%d", i), VCPUs: n, Workload: "lock", Lock: k.Lock,
			CSCycles: m.CSCycles, ThinkCycles: m.Think}
		v.apply(&vm)
		runconfig.FollowPolicy(&vm, k.Policy)
		sc.VMs = append(sc.VMs, vm)
		left -= n
	}
	// --boost-kicked boosts what a KICK woke: the cells whose policy has pv
	// and whose lock kicks.
	lk, err := vmm.LookupLock(sc.VMs[0].Lock)
	sc.Sched.BoostKicked = (v.Boost || m.BoostKicked) && sched.HasModifier(k.Policy, "pv") && err == nil && lk.PV
	return sc
}

// runCell runs cell k once, resolved as any run is (runconfig), and says
// how many VMs it has.
func (p *Plan) runCell(run RunFunc, k CellKey, tracePath string, seed uint64) (RunResult, int) {
	sc := p.cell(k)
	var r RunResult
	plan, err := runconfig.FromScenario(sc)
	if err != nil { // the policy refuses the machine (gang and a VM wider than the pCPUs)
		var refused *sched.RefusedError
		r.Refused, r.Error = errors.As(err, &refused), err.Error()
		return r, len(sc.VMs)
	}
	mc := plan.Machine
	mc.Seed = &seed
	if tracePath != "" {
		w, err := trace.Create(tracePath, trace.DefaultLimit)
		if err != nil {
			r.Error = fmt.Sprintf("--trace: %v", err)
			return r, len(sc.VMs)
		}
		mc.Trace = w
		defer w.Close()
	}
	return measure(run(mc, plan.Configs...)), len(sc.VMs)
}

// measure is what a run of a cell measured: the throughput of all its
// VMs, their spin fraction weighted by vCPUs, the worst acquire p99, the
// lock events and damage times summed.
func measure(res *vmm.Result) RunResult {
	var r RunResult
	r.OK, r.Error, r.ElapsedS, r.Seed, r.Start = res.OK, res.Error, res.ElapsedS, res.Seed, res.Start
	var refused *sched.RefusedError
	r.Refused = errors.As(res.Err, &refused)
	var spin, n float64
	first := true
	steady := len(res.VMs) > 0
	for _, vm := range res.VMs {
		steady = steady && vm.SteadyOpsPerSec != nil
	}
	r.Throughput = "whole run"
	if steady {
		r.Throughput = "steady"
	}
	for i, vm := range res.VMs {
		x := vm.OpsPerSec
		if steady {
			x = *vm.SteadyOpsPerSec
		}
		r.OpsPerSec += x
		r.WholeOpsPerSec += vm.OpsPerSec
		r.VMAcqPerS = append(r.VMAcqPerS, x)
		l := vm.LockStats
		if l == nil {
			continue
		}
		if f := l.Fairness; f != nil {
			if first || f.Jain < r.FairnessJain {
				r.FairnessJain = f.Jain
			}
			if first || (r.AcqMaxOverMin != 0 && (f.MaxOverMin == 0 || f.MaxOverMin > r.AcqMaxOverMin)) {
				r.AcqMaxOverMin = f.MaxOverMin
			}
			first = false
		}
		r.Acquisitions += l.Acquisitions
		r.SlowPaths += l.SlowPaths
		spin += l.SpinFraction * float64(vm.VCPUs)
		n += float64(vm.VCPUs)
		r.AcquireP99Ns = max(r.AcquireP99Ns, l.AcquireNs.P99)
		r.LockEvents.Merge(l.Events)
		if i == 0 && l.HeldPreemptedNs != nil && l.GrantedPreemptedNs != nil {
			h, g := *l.HeldPreemptedNs, *l.GrantedPreemptedNs
			r.HeldPreemptedNs, r.GrantedPreemptedNs = &h, &g
		} else if r.HeldPreemptedNs != nil && l.HeldPreemptedNs != nil {
			*r.HeldPreemptedNs += *l.HeldPreemptedNs
			*r.GrantedPreemptedNs += *l.GrantedPreemptedNs
		}
	}
	if n > 0 {
		r.SpinFraction = spin / n
	}
	if res.Sched.SliceUs > 0 { // lhpvm's own policy: it sees every preemption
		lhp, lwp := res.Sched.LHPEvents, res.Sched.LWPEvents
		r.LHPEvents, r.LWPEvents = &lhp, &lwp
	}
	r.ScheduleDrift = res.Sched.ScheduleDrift
	return r
}

// imprecise lists the cells (indices) whose interval is wider than the
// precision asked for: both cells of a pair whose ratio is, or without
// pairs each cell against the reference. A failed cell is never listed.
func (p *Plan) imprecise(res *Results, ref *Reference) []int {
	wide := func(a, b []float64) bool {
		iv, ok := stats.RatioOfMedians(a, b)
		return !ok || iv.HalfWidth() > p.Matrix.Precision
	}
	// Cells are summarised only at the end: here a cell is good while every
	// run of it so far is.
	good := func(c *Cell) bool { return c != nil && len(c.Runs) > 0 && len(okRuns(c)) == len(c.Runs) }
	need := map[int]bool{}
	if len(p.Matrix.Pairs) == 0 {
		refRuns := opsPerSec(ref.all())
		for i := range res.Cells {
			if good(&res.Cells[i]) && wide(opsPerSec(okRuns(&res.Cells[i])), refRuns) {
				need[i] = true
			}
		}
	} else {
		for _, n := range p.Matrix.Sizes {
			for _, pr := range p.Matrix.Pairs {
				a, b := pr.cells(res, n)
				if good(a) && good(b) && wide(opsPerSec(okRuns(a)), opsPerSec(okRuns(b))) {
					for i := range res.Cells {
						if c := &res.Cells[i]; c == a || c == b {
							need[i] = true
						}
					}
				}
			}
		}
	}
	var out []int
	for i := range res.Cells {
		if need[i] {
			out = append(out, i)
		}
	}
	return out
}

// untilPrecise runs extra rounds - one reference run, then one run of every
// cell whose interval against the reference is still wider than the
// precision asked for - until none is, or the next round would not end
// within the budget (counted from start); the cells left wide are marked
// OutOfBudget.
func (p *Plan) untilPrecise(res *Results, ref *Reference, once func(string, CellKey, int) (RunResult, int, error), prog Progress, start time.Time) error {
	deadline := start.Add(p.budget)
	for round := p.Matrix.Repeat + 1; ; round++ {
		need := p.imprecise(res, ref)
		if len(need) == 0 {
			return nil
		}
		// A round costs about a run per cell and one of the reference, each
		// the duration plus its start: the mean of the runs so far.
		runs := len(ref.all())
		for i := range res.Cells {
			runs += len(res.Cells[i].Runs)
		}
		perRun := time.Since(start) / time.Duration(max(runs, 1))
		if time.Now().Add(perRun * time.Duration(len(need)+1)).After(deadline) {
			for _, i := range need {
				res.Cells[i].OutOfBudget = true
			}
			return nil
		}
		prog.Start("reference (precision)")
		r, _, err := once("reference_during", refKey, round)
		if err != nil {
			return err
		}
		ref.During = append(ref.During, r)
		prog.Done(fmt.Sprintf("reference (precision round %d): %.3g acq/s", round, r.OpsPerSec), r.OK)
		if !r.OK {
			return errkind.Run(fmt.Errorf("a reference run (ticket, 2 vCPUs, rr) failed during the matrix, so no cell can be compared: %s", r.Error))
		}
		for _, i := range need {
			c := &res.Cells[i]
			prog.Start(c.CellKey.String())
			r, _, err := once("cell", c.CellKey, len(c.Runs))
			if err != nil {
				return err
			}
			c.Runs = append(c.Runs, r)
			state := fmt.Sprintf("%.3g acq/s, seed %d", r.OpsPerSec, r.Seed)
			if !r.OK {
				state = "FAILED: " + r.Error
			}
			prog.Done(fmt.Sprintf("%v, run %d (precision): %s", c.CellKey, len(c.Runs), state), r.OK)
		}
	}
}

// compare judges each pair at each size where both cells ran well.
func (res *Results) compare() []Comparison {
	var out []Comparison
	for _, n := range res.Matrix.Sizes {
		for _, pr := range res.Matrix.Pairs {
			a, b := pr.cells(res, n)
			iv, ok := ratio(a, b)
			if !ok {
				continue
			}
			c := Comparison{A: a.CellKey, B: b.CellKey, Ratio: iv.Ratio, Verdict: stats.Judge(iv, true), Runs: [2]int{iv.NA, iv.NB}}
			// Throughputs measured on two machines are not one ratio.
			if ha, hb := res.host(a), res.host(b); ha != hb {
				c.Verdict = stats.Verdict(fmt.Sprintf("not compared: measured on hosts %s and %s", ha, hb))
			}
			if iv.Bounded() {
				c.RatioCI95 = &[2]float64{iv.Lo, iv.Hi}
			}
			out = append(out, c)
		}
	}
	return out
}
