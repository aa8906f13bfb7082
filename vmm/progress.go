package vmm

import (
	"math"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/sched"
)

// A run's progress over time, sampled from the guest's own counters (each
// vCPU's Ops in its shared page, written after every operation). It
// separates a run's start transient from its steady state: an overcommitted
// fair lock can do most of a short run's work before every vCPU has been
// queued once, and then settle to about one acquisition per slice, so a
// throughput over the whole run mostly measures the start and shrinks as the
// run grows. The steady-state throughput excludes a stated warm-up.

// MaxSeriesSamples bounds a VM's progress series, whatever the run's length.
const MaxSeriesSamples = 512

// minSamplePeriod is the shortest period of the progress series.
const minSamplePeriod = 2 * time.Millisecond

// OpsSample is a VM's completed operations (all vCPUs) at T since the
// scheduler started.
type OpsSample struct {
	TNs int64  `json:"t_ns"`
	Ops uint64 `json:"ops"`
}

// Warmup is the start transient a steady-state throughput leaves out: two
// rotations of every run queue, 2 × slice × ceil(vCPUs / pCPUs), after which
// every vCPU has been on a pCPU at least twice under a round-robin policy
// and each pCPU has switched at least twice; at most half the run.
func Warmup(slice time.Duration, vcpus, pcpus int, duration time.Duration) time.Duration {
	if slice <= 0 {
		slice = sched.DefaultSlice
	}
	rounds := (vcpus + max(pcpus, 1) - 1) / max(pcpus, 1)
	w := 2 * slice * time.Duration(rounds)
	return min(w, duration/2)
}

// WarmupRule says in results what Warmup is.
const WarmupRule = "the first 2 × slice × ceil(vCPUs / pCPUs) of the run (two rotations of every run queue), at most half of it"

// progress samples every VM's operations during a run of fixed duration.
type progress struct {
	m       *Machine
	period  time.Duration
	warmup  time.Duration
	series  [][]OpsSample // per VM
	atWarm  []OpsSample   // per VM: at the end of the warm-up
	atEnd   []OpsSample   // per VM: when the duration ran out
	haveW   bool
	haveEnd bool
}

func newProgress(m *Machine) *progress {
	if m.cfg.Duration <= 0 {
		return nil
	}
	n := 0
	for _, vm := range m.vms {
		n += len(vm.vcpus)
	}
	period := max(m.cfg.Duration/MaxSeriesSamples, minSamplePeriod)
	return &progress{m: m, period: period,
		warmup: Warmup(m.cfg.Options.Slice, n, len(m.cfg.PCPUs), m.cfg.Duration),
		series: make([][]OpsSample, len(m.vms))}
}

// snapshot reads every VM's operations now.
func (p *progress) snapshot() []OpsSample {
	t := p.m.scheduler.Now()
	out := make([]OpsSample, len(p.m.vms))
	for i, vm := range p.m.vms {
		var ops uint64
		for id := range vm.vcpus {
			ops += vm.mem.Load64(vm.layout.Page(id) + hypercall.OffOps)
		}
		out[i] = OpsSample{TNs: t.Nanoseconds(), Ops: ops}
	}
	return out
}

func (p *progress) sample() {
	s := p.snapshot()
	for i := range s {
		if len(p.series[i]) < MaxSeriesSamples {
			p.series[i] = append(p.series[i], s[i])
		}
	}
}

// steady is VM i's throughput between the end of the warm-up and the end
// of the duration, ops per second; ok false when either was not seen.
func (p *progress) steady(i int) (float64, bool) {
	if p == nil || !p.haveW || !p.haveEnd {
		return 0, false
	}
	a, b := p.atWarm[i], p.atEnd[i]
	d := float64(b.TNs-a.TNs) / 1e9
	// A window much shorter than planned (a host so busy that the two
	// snapshots came together) measures nothing reliable: no figure.
	planned := (p.m.cfg.Duration - p.warmup).Seconds()
	if d <= 0 || d < planned/2 || b.Ops < a.Ops {
		return 0, false
	}
	return float64(b.Ops-a.Ops) / d, true
}

// fill puts VM i's progress into its result.
func (p *progress) fill(i int, r *VMResult) {
	if p == nil {
		return
	}
	r.OpsSeries = p.series[i]
	r.WarmupS = p.warmup.Seconds()
	if x, ok := p.steady(i); ok && !math.IsNaN(x) {
		r.SteadyOpsPerSec = &x
	}
}
