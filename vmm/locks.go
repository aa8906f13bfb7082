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
	// Events are the lock events, as Linux counts them.
	Events LockEvents `json:"lock_events"`
	// HeldPreemptedNs: time a lock was held by a vCPU (this one, or any of
	// the VM's) that did not run; GrantedPreemptedNs: time a FIFO lock sat
	// handed to a waiter that did not run, until it took it. Null under
	// the host policy (only our scheduler knows who runs).
	HeldPreemptedNs    *int64 `json:"held_preempted_ns"`
	GrantedPreemptedNs *int64 `json:"granted_preempted_ns"`

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
// averages are averages here too.
type LockEvents struct {
	LockSlowpath     uint64 `json:"lock_slowpath"`      // acquisitions through the MCS queue
	LockPending      uint64 `json:"lock_pending"`       // acquisitions through the pending bit
	PVLockStealing   uint64 `json:"pv_lock_stealing"`   // locks taken out of queue order
	PVWaitNode       uint64 `json:"pv_wait_node"`       // WAITs in the queue
	PVWaitHead       uint64 `json:"pv_wait_head"`       // WAITs at the queue head
	PVWaitEarly      uint64 `json:"pv_wait_early"`      // WAITs before the threshold: the predecessor did not run
	PVWaitAgain      uint64 `json:"pv_wait_again"`      // WAITs of a queue head kicked before
	PVSpuriousWakeup uint64 `json:"pv_spurious_wakeup"` // queued waiters woken without becoming the head
	PVKickUnlock     uint64 `json:"pv_kick_unlock"`     // KICKs by an unlock
	PVKickWake       uint64 `json:"pv_kick_wake"`       // wake-ups that followed a KICK (timed below)
	// PVHashHops: average probes per insertion into the lock -> node hash.
	PVHashHops float64 `json:"pv_hash_hops"`
	// PVLatencyKick: average time a KICK hypercall takes (ns);
	// PVLatencyWake: average time from a KICK to the kicked vCPU running
	// again in the guest (ns).
	PVLatencyKick float64 `json:"pv_latency_kick_ns"`
	PVLatencyWake float64 `json:"pv_latency_wake_ns"`

	hashOps, hashHops, kicks, kickCycles, wakeCycles uint64
}

func (e *LockEvents) add(p *hypercall.VCPUPage) {
	e.LockSlowpath += p.LockSlowpath
	e.LockPending += p.LockPending
	e.PVLockStealing += p.PVLockStealing
	e.PVWaitNode += p.PVWaitNode
	e.PVWaitHead += p.PVWaitHead
	e.PVWaitEarly += p.PVWaitEarly
	e.PVWaitAgain += p.PVWaitAgain
	e.PVSpuriousWakeup += p.PVSpuriousWakeup
	e.PVKickUnlock += p.PVKickUnlock
	e.PVKickWake += p.PVKickWake
	e.hashOps += p.PVHashOps
	e.hashHops += p.PVHashHops
	e.kicks += p.Kicks
	e.kickCycles += p.PVLatencyKick
	e.wakeCycles += p.PVLatencyWake
}

func (e *LockEvents) finish(tscKHz uint64) {
	avg := func(sum, n uint64) float64 {
		if n == 0 {
			return 0
		}
		return float64(sum) / float64(n)
	}
	e.PVHashHops = avg(e.hashHops, e.hashOps)
	if tscKHz > 0 {
		e.PVLatencyKick = avg(e.kickCycles, e.kicks) / float64(tscKHz) * 1e6
		e.PVLatencyWake = avg(e.wakeCycles, e.PVKickWake) / float64(tscKHz) * 1e6
	}
}

// Named lists the events by their Linux names, in lock_events_list.h's
// order, for a table; the two Linux reports in ns say so (_ns).
func (e *LockEvents) Named() []NamedEvent {
	return []NamedEvent{
		{"lock_slowpath", float64(e.LockSlowpath)}, {"lock_pending", float64(e.LockPending)},
		{"pv_lock_stealing", float64(e.PVLockStealing)}, {"pv_wait_node", float64(e.PVWaitNode)},
		{"pv_wait_head", float64(e.PVWaitHead)}, {"pv_wait_early", float64(e.PVWaitEarly)},
		{"pv_wait_again", float64(e.PVWaitAgain)}, {"pv_spurious_wakeup", float64(e.PVSpuriousWakeup)},
		{"pv_kick_unlock", float64(e.PVKickUnlock)}, {"pv_kick_wake", float64(e.PVKickWake)},
		{"pv_hash_hops", e.PVHashHops}, {"pv_latency_kick_ns", e.PVLatencyKick}, {"pv_latency_wake_ns", e.PVLatencyWake},
	}
}

// NamedEvent is one lock event and its value.
type NamedEvent struct {
	Name  string
	Value float64
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

// PVKnobs are pvqspin's mechanisms, each switchable for the ablation
// (hypercall.PV* values; the zero value is Linux's pv-qspinlock), and its
// queue head's spin threshold (0: the spin threshold).
type PVKnobs struct {
	Steal, Pending, PrevCheck, Kick uint32
	SpinThresholdHead               uint64
}

// PVKnob is one of pvqspin's mechanisms as the command line (--pv-steal)
// and scenarios (pv_steal) name it.
type PVKnob struct {
	Flag, Key string
	// Values by knob value: Values[hypercall.PVStealOff] is "off";
	// Values[0] is the default.
	Values []string
	Doc    string
	field  func(*PVKnobs) *uint32
}

var pvKnobs = []PVKnob{
	{Flag: "pv-steal", Key: "pv_steal", Values: []string{"hybrid", "off", "once"},
		Doc:   "pvqspin: lock stealing - hybrid (while the lock is free and pending clear, Linux's), off (strict queue order), once (one attempt, Linux 4.5-4.14)",
		field: func(p *PVKnobs) *uint32 { return &p.Steal }},
	{Flag: "pv-pending", Key: "pv_pending", Values: []string{"on", "off"},
		Doc:   "pvqspin: the queue head sets the pending bit while it spins, which stops stealers",
		field: func(p *PVKnobs) *uint32 { return &p.Pending }},
	{Flag: "pv-prev-check", Key: "pv_prev_check", Values: []string{"node", "off", "preempted"},
		Doc:   "pvqspin: every 256 spins a queued waiter checks its predecessor - node (its node state, Linux's), off, preempted (the host's preempted flag of its vCPU) - and WAITs early if it does not run",
		field: func(p *PVKnobs) *uint32 { return &p.PrevCheck }},
	{Flag: "pv-kick", Key: "pv_kick", Values: []string{"deferred", "immediate"},
		Doc:   "pvqspin: a halted new queue head is kicked by the holder's unlock (deferred, Linux's pv_kick_node) or at once (immediate)",
		field: func(p *PVKnobs) *uint32 { return &p.Kick }},
}

// PVKnobList lists pvqspin's switchable mechanisms.
func PVKnobList() []PVKnob { return append([]PVKnob(nil), pvKnobs...) }

// Parse reads a value of the knob.
func (k PVKnob) Parse(s string) (uint32, error) {
	for i, v := range k.Values {
		if v == s {
			return uint32(i), nil
		}
	}
	return 0, fmt.Errorf("%q: must be %s", s, strings.Join(k.Values, ", "))
}

// Get is the knob's value in p.
func (k PVKnob) Get(p PVKnobs) uint32 { return *k.field(&p) }

// Set sets the knob in p.
func (k PVKnob) Set(p *PVKnobs, v uint32) { *k.field(p) = v }

// Name is the name of the knob's value in p.
func (k PVKnob) Name(p PVKnobs) string {
	if v := k.Get(p); int(v) < len(k.Values) {
		return k.Values[v]
	}
	return fmt.Sprintf("%d", k.Get(p))
}

// IsDefault reports whether p is Linux's pv-qspinlock.
func (p PVKnobs) IsDefault() bool { return p == PVKnobs{} }

// Merge adds o's events to e (two VMs of one run): counts add, the
// averages are weighted by what they average over.
func (e *LockEvents) Merge(o LockEvents) {
	wavg := func(a float64, na uint64, b float64, nb uint64) float64 {
		if na+nb == 0 {
			return 0
		}
		return (a*float64(na) + b*float64(nb)) / float64(na+nb)
	}
	e.PVHashHops = wavg(e.PVHashHops, e.hashOps, o.PVHashHops, o.hashOps)
	e.PVLatencyKick = wavg(e.PVLatencyKick, e.kicks, o.PVLatencyKick, o.kicks)
	e.PVLatencyWake = wavg(e.PVLatencyWake, e.PVKickWake, o.PVLatencyWake, o.PVKickWake)
	e.LockSlowpath += o.LockSlowpath
	e.LockPending += o.LockPending
	e.PVLockStealing += o.PVLockStealing
	e.PVWaitNode += o.PVWaitNode
	e.PVWaitHead += o.PVWaitHead
	e.PVWaitEarly += o.PVWaitEarly
	e.PVWaitAgain += o.PVWaitAgain
	e.PVSpuriousWakeup += o.PVSpuriousWakeup
	e.PVKickUnlock += o.PVKickUnlock
	e.PVKickWake += o.PVKickWake
	e.hashOps += o.hashOps
	e.hashHops += o.hashHops
	e.kicks += o.kicks
	e.kickCycles += o.kickCycles
	e.wakeCycles += o.wakeCycles
}
