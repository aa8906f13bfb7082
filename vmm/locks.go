package vmm

import (
	"fmt"
	"math"
	"strings"

	"github.com/lhpvm/lhpvm/hypercall"
)

// LockKind is a spinlock of the guest's lock library.
type LockKind struct {
	Name string
	ID   uint32
	Doc  string
	PV   bool // has a WAIT/KICK slow path
	Test bool // for tests only
}

var lockKinds = []LockKind{
	{Name: "tas", ID: hypercall.LockTAS, Doc: "test-and-set (xchg) with pause"},
	{Name: "ttas", ID: hypercall.LockTTAS, Doc: "test-and-test-and-set with bounded exponential backoff"},
	{Name: "ticket", ID: hypercall.LockTicket, Doc: "FIFO ticket lock"},
	{Name: "mcs", ID: hypercall.LockMCS, Doc: "MCS queue lock"},
	{Name: "pvticket", ID: hypercall.LockPVTicket, Doc: "ticket lock, WAIT after a spin threshold, KICK by the releaser", PV: true},
	{Name: "qspinlock", ID: hypercall.LockQSpin, Doc: "Linux's native queued spinlock: locked byte, pending bit, MCS queue"},
	{Name: "pvqspin", ID: hypercall.LockPVQSpin, Doc: "Linux's pv-qspinlock: lock stealing, WAIT in the queue and at its head, unlock KICK (--pv-* knobs)", PV: true},
	{Name: "virt", ID: hypercall.LockVirt, Doc: "Linux's virt_spin_lock: test-and-set on the qspinlock word (a KVM guest without PV_UNHALT)"},
	{Name: "spinyield", ID: hypercall.LockSpinYield, Doc: "spin a threshold, then YIELD to the holder"},
	{Name: "pticket", ID: hypercall.LockPTicket, Doc: "preemptable ticket lock (Ouyang & Lange 2013)"},
	{Name: "broken", ID: hypercall.LockBroken, Doc: "no mutual exclusion: the self-check must catch it", Test: true},
}

// LookupLock finds a lock kind by name.
func LookupLock(name string) (LockKind, error) {
	for _, k := range lockKinds {
		if k.Name == name {
			return k, nil
		}
	}
	return LockKind{}, fmt.Errorf("unknown lock %q (have: %s)", name, strings.Join(LockNames(false), ", "))
}

// LockNames lists the lock kinds, test-only ones if asked.
func LockNames(withTest bool) []string {
	var names []string
	for _, k := range lockKinds {
		if withTest || !k.Test {
			names = append(names, k.Name)
		}
	}
	return names
}

// LockKinds lists all lock kinds.
func LockKinds() []LockKind { return append([]LockKind(nil), lockKinds...) }

func lockName(id uint32) string {
	for _, k := range lockKinds {
		if k.ID == id {
			return k.Name
		}
	}
	return fmt.Sprintf("lock kind %d", id)
}

// DefaultSpinThreshold is the pv slow-path threshold, in spins (Linux's
// SPIN_THRESHOLD).
const DefaultSpinThreshold = 1 << 15

// Latency is a distribution summary in nanoseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// LockStats is the lock lab's accounting, for a VM or one vCPU.
type LockStats struct {
	Lock         string  `json:"lock,omitempty"`
	Acquisitions uint64  `json:"acquisitions"`
	SpinCycles   uint64  `json:"spin_cycles"`
	SpinFraction float64 `json:"spin_fraction"`
	AcquireNs    Latency `json:"acquire_ns"`
	SlowPaths    uint64  `json:"slow_paths"`
	Waits        uint64  `json:"waits"`
	WaitCycles   uint64  `json:"wait_cycles"`
	Kicks        uint64  `json:"kicks"`
	Yields       uint64  `json:"yields"`

	hist      [hypercall.HistogramBucket]uint64
	maxCycles uint64
	cycles    uint64 // guest cycles the spin fraction is relative to
}

func (s *LockStats) add(p *hypercall.VCPUPage) {
	s.Acquisitions += p.Acquisitions
	s.SpinCycles += p.SpinCycles
	s.SlowPaths += p.SlowPaths
	s.Waits += p.Waits
	s.WaitCycles += p.WaitCycles
	s.Kicks += p.Kicks
	s.Yields += p.Yields
	for i, n := range p.AcquireHist {
		s.hist[i] += n
	}
	s.maxCycles = max(s.maxCycles, p.AcquireMaxCycles)
	if p.EndTSC > p.StartTSC {
		s.cycles += p.EndTSC - p.StartTSC
	}
}

// finish derives the fractions and latencies.
func (s *LockStats) finish(tscKHz uint64) {
	if s.cycles > 0 {
		s.SpinFraction = float64(s.SpinCycles) / float64(s.cycles)
	}
	ns := func(cycles float64) float64 { return cycles / float64(tscKHz) * 1e6 }
	if tscKHz > 0 {
		// The percentiles are interpolated inside log2 buckets; the top
		// bucket's estimate can pass the exact maximum, which bounds them.
		maxC := float64(s.maxCycles)
		s.AcquireNs = Latency{
			P50: ns(min(histPercentile(s.hist[:], 0.50), maxC)),
			P99: ns(min(histPercentile(s.hist[:], 0.99), maxC)),
			Max: ns(maxC),
		}
	}
}

// histPercentile estimates the q-quantile of a log2 histogram (bucket b
// holds values in [2^b, 2^(b+1)), bucket 0 holds [0, 2)), interpolating
// linearly inside the bucket where the quantile falls.
func histPercentile(hist []uint64, q float64) float64 {
	var total uint64
	for _, n := range hist {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for b, n := range hist {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			lo, hi := math.Exp2(float64(b)), math.Exp2(float64(b+1))
			if b == 0 {
				lo = 0
			}
			return lo + (hi-lo)*(rank-seen)/float64(n)
		}
		seen += float64(n)
	}
	return math.Exp2(float64(len(hist)))
}

// checkLock: the protected counters add up to the acquisitions, and no vCPU
// found a lock held by someone else on entering its critical section.
func checkLock(r *VMResult) error {
	exp := r.LockStats.Acquisitions
	r.CounterExpected = &exp
	if *r.CounterActual != exp {
		return fmt.Errorf("%w: lock %s: the protected counters add up to %d, but there were %d acquisitions: mutual exclusion failed",
			ErrCheckFailed, r.LockStats.Lock, *r.CounterActual, exp)
	}
	if r.Ops != exp {
		return fmt.Errorf("%w: lock %s: %d operations but %d acquisitions", ErrCheckFailed, r.LockStats.Lock, r.Ops, exp)
	}
	return nil
}
