package vmm

// The lock lab's accounting: per VM and per vCPU, read from the guest's
// pages after a run (acquisitions, spin, latency histogram, the lock events
// as Linux names them) and checked.

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/lhpvm/lhpvm/hypercall"
)

// Latency is a distribution summary in nanoseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Fairness is how evenly a VM's vCPUs shared its locks: their acquisitions'
// minimum, mean and maximum, max/min (0 when a vCPU took none: starved),
// and Jain's fairness index, (Σx)² / (n·Σx²), 1 when every vCPU took the
// same and 1/n when one took all.
type Fairness struct {
	MinAcq     uint64  `json:"min_acq"`
	AvgAcq     float64 `json:"avg_acq"`
	MaxAcq     uint64  `json:"max_acq"`
	MaxOverMin float64 `json:"max_over_min"`
	Jain       float64 `json:"jain"`
}

// FairnessOf summarises the acquisitions of a VM's vCPUs.
func FairnessOf(acq []uint64) Fairness {
	var f Fairness
	if len(acq) == 0 {
		return f
	}
	var sum, sq float64
	f.MinAcq = acq[0]
	for _, a := range acq {
		f.MinAcq, f.MaxAcq = min(f.MinAcq, a), max(f.MaxAcq, a)
		sum += float64(a)
		sq += float64(a) * float64(a)
	}
	f.AvgAcq = sum / float64(len(acq))
	if f.MinAcq > 0 {
		f.MaxOverMin = float64(f.MaxAcq) / float64(f.MinAcq)
	}
	if sq > 0 {
		f.Jain = sum * sum / (float64(len(acq)) * sq)
	}
	return f
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
	// Events are the lock events, as Linux counts them.
	Events LockEvents `json:"lock_events"`
	// HeldPreemptedNs: time a lock was held by a vCPU (this one, or any of
	// the VM's) that did not run; GrantedPreemptedNs: time a FIFO lock sat
	// handed to a waiter that did not run, until it took it. Null under
	// the host policy (only our scheduler knows who runs).
	HeldPreemptedNs    *int64 `json:"held_preempted_ns"`
	GrantedPreemptedNs *int64 `json:"granted_preempted_ns"`
	// Fairness is how evenly the VM's vCPUs shared the lock (a VM's
	// statistics only; nil for one vCPU's).
	Fairness *Fairness `json:"fairness,omitempty"`

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
	s.Events.add(p)
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
	s.Events.finish(tscKHz)
}

// LockEvents are the lock events the guest's locks count, under the names
// of Linux's kernel/locking/lock_events_list.h. The three Linux reports as
// averages are averages here too. Every list of them — the JSON keys, the
// table columns, what is read from a vCPU page, how two VMs' are added —
// comes from one table, lockEventList, as Linux's X-macro list makes its
// enum, names and debugfs files.
type LockEvents struct {
	LockSlowpath, LockPending, PVLockStealing, PVWaitNode, PVWaitHead, PVWaitEarly uint64
	PVWaitAgain, PVSpuriousWakeup, PVKickUnlock, PVKickWake                        uint64
	// PVHashHops: average probes per insertion into the lock -> node
	// hash. PVLatencyKick: average time a KICK hypercall takes (ns);
	// PVLatencyWake: average time from a KICK to the kicked vCPU running
	// again in the guest (ns).
	PVHashHops, PVLatencyKick, PVLatencyWake float64

	// The averages' sums and counts, in cycles where they are times.
	hashOps, hashHops, kicks, kickCycles, wakeCycles uint64
}

// lockEvent is one entry of lockEventList: a counter (count), or an
// average (avg) of a sum over a count, in ns when perTSC (the sums are
// cycles).
type lockEvent struct {
	name, doc string
	count     func(*LockEvents) *uint64
	page      func(*hypercall.VCPUPage) uint64 // a counter's field in the vCPU page
	avg       func(*LockEvents) *float64
	sum, n    func(*LockEvents) *uint64
	perTSC    bool
}

// lockEventList is lhpvm's lock_events_list.h: every lock event, once, in
// Linux's order. The averages' raw sums and counts are read from the page
// in add, beside the counters.
var lockEventList = []lockEvent{
	{name: "lock_slowpath", doc: "acquisitions through the MCS queue",
		count: func(e *LockEvents) *uint64 { return &e.LockSlowpath }, page: func(p *hypercall.VCPUPage) uint64 { return p.LockSlowpath }},
	{name: "lock_pending", doc: "acquisitions through the pending bit",
		count: func(e *LockEvents) *uint64 { return &e.LockPending }, page: func(p *hypercall.VCPUPage) uint64 { return p.LockPending }},
	{name: "pv_lock_stealing", doc: "locks taken out of queue order",
		count: func(e *LockEvents) *uint64 { return &e.PVLockStealing }, page: func(p *hypercall.VCPUPage) uint64 { return p.PVLockStealing }},
	{name: "pv_wait_node", doc: "WAITs in the queue",
		count: func(e *LockEvents) *uint64 { return &e.PVWaitNode }, page: func(p *hypercall.VCPUPage) uint64 { return p.PVWaitNode }},
	{name: "pv_wait_head", doc: "WAITs at the queue head",
		count: func(e *LockEvents) *uint64 { return &e.PVWaitHead }, page: func(p *hypercall.VCPUPage) uint64 { return p.PVWaitHead }},
	{name: "pv_wait_early", doc: "WAITs before the threshold: the predecessor did not run",
		count: func(e *LockEvents) *uint64 { return &e.PVWaitEarly }, page: func(p *hypercall.VCPUPage) uint64 { return p.PVWaitEarly }},
	{name: "pv_wait_again", doc: "WAITs of a queue head kicked before",
		count: func(e *LockEvents) *uint64 { return &e.PVWaitAgain }, page: func(p *hypercall.VCPUPage) uint64 { return p.PVWaitAgain }},
	{name: "pv_spurious_wakeup", doc: "queued waiters woken without becoming the head",
		count: func(e *LockEvents) *uint64 { return &e.PVSpuriousWakeup }, page: func(p *hypercall.VCPUPage) uint64 { return p.PVSpuriousWakeup }},
	{name: "pv_kick_unlock", doc: "KICKs by an unlock",
		count: func(e *LockEvents) *uint64 { return &e.PVKickUnlock }, page: func(p *hypercall.VCPUPage) uint64 { return p.PVKickUnlock }},
	{name: "pv_kick_wake", doc: "wake-ups that followed a KICK",
		count: func(e *LockEvents) *uint64 { return &e.PVKickWake }, page: func(p *hypercall.VCPUPage) uint64 { return p.PVKickWake }},
	{name: "pv_hash_hops", doc: "average probes per hash insertion",
		avg: func(e *LockEvents) *float64 { return &e.PVHashHops },
		sum: func(e *LockEvents) *uint64 { return &e.hashHops }, n: func(e *LockEvents) *uint64 { return &e.hashOps }},
	{name: "pv_latency_kick_ns", doc: "average time a KICK hypercall takes", perTSC: true,
		avg: func(e *LockEvents) *float64 { return &e.PVLatencyKick },
		sum: func(e *LockEvents) *uint64 { return &e.kickCycles }, n: func(e *LockEvents) *uint64 { return &e.kicks }},
	{name: "pv_latency_wake_ns", doc: "average time from a KICK to the kicked vCPU running", perTSC: true,
		avg: func(e *LockEvents) *float64 { return &e.PVLatencyWake },
		sum: func(e *LockEvents) *uint64 { return &e.wakeCycles }, n: func(e *LockEvents) *uint64 { return &e.PVKickWake }},
}

func (e *LockEvents) add(p *hypercall.VCPUPage) {
	for _, ev := range lockEventList {
		if ev.count != nil {
			*ev.count(e) += ev.page(p)
		}
	}
	e.hashOps += p.PVHashOps
	e.hashHops += p.PVHashHops
	e.kicks += p.Kicks
	e.kickCycles += p.PVLatencyKick
	e.wakeCycles += p.PVLatencyWake
}

// finish computes the averages from their sums and counts.
func (e *LockEvents) finish(tscKHz uint64) {
	for _, ev := range lockEventList {
		if ev.avg == nil {
			continue
		}
		v := 0.0
		if n := *ev.n(e); n > 0 {
			v = float64(*ev.sum(e)) / float64(n)
		}
		if ev.perTSC {
			if tscKHz == 0 {
				continue
			}
			v = v / float64(tscKHz) * 1e6
		}
		*ev.avg(e) = v
	}
}

// Named lists the events by their Linux names, in lock_events_list.h's
// order, for a table; the two Linux reports in ns say so (_ns).
func (e *LockEvents) Named() []NamedEvent {
	out := make([]NamedEvent, 0, len(lockEventList))
	for _, ev := range lockEventList {
		if ev.count != nil {
			out = append(out, NamedEvent{Name: ev.name, Value: float64(*ev.count(e)), Count: true})
		} else {
			out = append(out, NamedEvent{Name: ev.name, Value: *ev.avg(e)})
		}
	}
	return out
}

// SetNamed sets the event of that name (Named's) to v, a counter rounded
// to the nearest count; false if there is none (a summary of several
// runs' events, such as their median, is stored this way).
func (e *LockEvents) SetNamed(name string, v float64) bool {
	for _, ev := range lockEventList {
		if ev.name != name {
			continue
		}
		if ev.count != nil {
			*ev.count(e) = uint64(math.Round(max(v, 0)))
		} else {
			*ev.avg(e) = v
		}
		return true
	}
	return false
}

// MarshalJSON writes the events as one object, in the table's order.
func (e LockEvents) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, ev := range lockEventList {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, ev.name)
		b = append(b, ':')
		if ev.count != nil {
			b = strconv.AppendUint(b, *ev.count(&e), 10)
		} else {
			b = strconv.AppendFloat(b, *ev.avg(&e), 'g', -1, 64)
		}
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads what MarshalJSON wrote (results merged from files).
// The averages' sums and counts are not in it.
func (e *LockEvents) UnmarshalJSON(b []byte) error {
	var m map[string]float64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for _, ev := range lockEventList {
		if ev.count != nil {
			*ev.count(e) = uint64(m[ev.name])
		} else {
			*ev.avg(e) = m[ev.name]
		}
	}
	return nil
}

// NamedEvent is one lock event and its value.
type NamedEvent struct {
	Name  string
	Value float64
	Count bool // a counter (an integer), not an average
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

// Merge adds o's events to e (two VMs of one run): counts and the
// averages' sums and counts add, and each average is weighted by what it
// averages over.
func (e *LockEvents) Merge(o LockEvents) {
	for _, ev := range lockEventList {
		if ev.avg == nil {
			continue
		}
		na, nb := *ev.n(e), *ev.n(&o)
		if na+nb > 0 {
			*ev.avg(e) = (*ev.avg(e)*float64(na) + *ev.avg(&o)*float64(nb)) / float64(na+nb)
		}
	}
	for _, ev := range lockEventList {
		if ev.count != nil {
			*ev.count(e) += *ev.count(&o)
		}
	}
	e.hashOps += o.hashOps
	e.hashHops += o.hashHops
	e.kicks += o.kicks
	e.kickCycles += o.kickCycles
	e.wakeCycles += o.wakeCycles
}
