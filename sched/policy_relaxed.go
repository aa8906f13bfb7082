package sched

import (
	"slices"
	"time"
)

// relaxed: relaxed co-scheduling, as VMware ESX 3 and later do it. vCPUs are
// scheduled one by one as under rr (one FIFO queue per pCPU, fixed slices,
// stealing when idle), but the policy keeps siblings from drifting apart: a
// vCPU that runs while a sibling waits for a pCPU gets ahead of it, and a
// sibling that waits may be a preempted lock holder the leader spins on.
//
// Progress (VCPU.Progress) is run time plus blocked time: a vCPU in WAIT is
// idle in the guest and idling is progress (ESX 3), so only time spent
// runnable but not running — steal — puts a vCPU behind. The skew of a vCPU
// is its progress minus that of the slowest runnable (Runnable or Running)
// sibling (ESX 4 measures against the slowest; blocked and exited siblings
// are not waited for). A vCPU whose skew reaches Options.Skew is co-stopped:
// taken off its pCPU (or kept off it if it waits) and not dispatched until
// its skew is back to Skew/2. The hysteresis is ours: released at just below
// the threshold, a leader would run for a few nanoseconds between co-stops.
// The slowest sibling never has skew, so every VM always has a vCPU that can
// run.
//
// Laggards go first, without unfairness between VMs: when a queue's turn
// comes to a vCPU, the turn goes to the sibling of it that waits with the
// least progress (the two swap queue places). A co-stop is an early end of
// the slice: the vCPU goes to the tail of its queue, and the rest of the
// slice goes to its most lagging waiting sibling, from whichever queue.
//
// A co-stopped vCPU is co-started: released, it runs at once beside a
// sibling that runs (ESX's co-stopped vCPUs wait to be co-started with their
// siblings; esxtop's %CSTP is that wait), taking an idle pCPU or one whose
// vCPU runs without its siblings; that vCPU goes back to the front of its
// queue, and the co-started one ends its slice with its sibling. Without
// it, a VM that rarely has all its pCPUs at once alternates its vCPUs on
// one pCPU every skew, and each switch preempts a lock waiter.
//
// A co-stop is counted in State.Acct.CoStops each time a vCPU enters the
// co-stopped set, a co-start in State.Acct.CoStarts; State.Acct.MaxSkew is
// the largest skew seen at a decision.
type relaxedPolicy struct {
	slice sliceClock
	skew  time.Duration

	// rr's queues and Queuer semantics. Its Extend moves the slice end only:
	// a co-stop still takes v off (the skew bound is this policy's own answer
	// to lock holder preemption; deferring it would let skew grow unbounded).
	runQueues

	costopped []bool          // per vCPU index
	released  []*VCPU         // left the co-stopped set at this decision
	blockedAt []time.Duration // per vCPU index: start of its WAIT, -1 if not blocked
	prog      []time.Duration // per vCPU index: progress at this decision
	skewOf    []time.Duration // per vCPU index: skew at this decision
}

func init() {
	register("relaxed", "relaxed co-scheduling (VMware ESX 3+/4): rr, but a vCPU that gets Skew ahead of its slowest sibling is co-stopped until it catches up",
		func(o Options) Policy {
			sk := o.Skew
			if sk <= 0 {
				sk = DefaultSkew
			}
			return &relaxedPolicy{slice: sliceClock{slice: o.Slice}, skew: sk}
		})
}

func (p *relaxedPolicy) Name() string    { return "relaxed" }
func (p *relaxedPolicy) Exclusive() bool { return true }

func (p *relaxedPolicy) Admit(s *State) error {
	n, m := len(s.PCPUs), len(s.VCPUs)
	p.init(n)
	p.costopped, p.blockedAt = make([]bool, m), make([]time.Duration, m)
	p.prog, p.skewOf = make([]time.Duration, m), make([]time.Duration, m)
	for i := range p.blockedAt {
		p.blockedAt[i] = -1
	}
	return nil
}

func (p *relaxedPolicy) Event(s *State, ev Event) {
	v := ev.V
	switch ev.Kind {
	case EvRunnable:
		if b := p.blockedAt[v.Index]; b >= 0 {
			v.Progress += s.Now - b // idle in WAIT was progress
			p.blockedAt[v.Index] = -1
		}
		if p.where(v) == -2 {
			p.q[v.Home] = append(p.q[v.Home], v)
		}
	case EvBlocked:
		p.blockedAt[v.Index] = s.Now
		p.remove(v)
	case EvExit:
		p.blockedAt[v.Index] = -1
		p.remove(v)
	case EvYield:
		if i := p.pcpuOf(v); i >= 0 {
			p.yielded[i] = true
		}
	}
}

// where returns the pCPU v runs on, -1 if it waits in a queue, -2 if neither.
func (p *relaxedPolicy) where(v *VCPU) int {
	for i := range p.q {
		if p.cur[i] == v {
			return i
		}
	}
	for i := range p.q {
		for _, w := range p.q[i] {
			if w == v {
				return -1
			}
		}
	}
	return -2
}

func (p *relaxedPolicy) remove(v *VCPU) {
	p.runQueues.remove(v)
	p.costopped[v.Index] = false
}

// progress is v's progress now: VCPU.Progress holds run time (charged by the
// mechanism when v leaves a pCPU) and the WAITs that ended (added at wake);
// add the run or the WAIT in progress.
func (p *relaxedPolicy) progress(s *State, v *VCPU) time.Duration {
	d := v.Progress
	switch v.Status {
	case Running:
		d += s.Now - v.since
	case Blocked:
		if b := p.blockedAt[v.Index]; b >= 0 {
			d += s.Now - b
		}
	}
	return d
}

func relaxedRunnable(v *VCPU) bool { return v.Status == Runnable || v.Status == Running }

// updateSkew measures every vCPU's skew and moves vCPUs in and out of the
// co-stopped set.
func (p *relaxedPolicy) updateSkew(s *State) {
	for _, vs := range s.VMs {
		slowest := time.Duration(-1)
		for _, v := range vs {
			p.prog[v.Index] = p.progress(s, v)
			if relaxedRunnable(v) && (slowest < 0 || p.prog[v.Index] < slowest) {
				slowest = p.prog[v.Index]
			}
		}
		for _, v := range vs {
			if !relaxedRunnable(v) {
				p.costopped[v.Index], p.skewOf[v.Index] = false, 0
				continue
			}
			sk := p.prog[v.Index] - slowest
			p.skewOf[v.Index] = sk
			s.Acct.MaxSkew = max(s.Acct.MaxSkew, sk)
			switch {
			case p.costopped[v.Index] && sk <= p.skew/2:
				p.costopped[v.Index] = false
				p.released = append(p.released, v)
			case !p.costopped[v.Index] && sk >= p.skew:
				p.costopped[v.Index] = true
				s.Acct.CoStops++
				s.Mark(MarkCoStop, v)
				s.EndReason(v, EndCoStop)
			}
		}
	}
}

func (p *relaxedPolicy) Decide(s *State) Plan {
	p.released = p.released[:0]
	p.updateSkew(s)
	p.coStart(s)
	var plan Plan
	for i := range p.cur {
		cur := p.cur[i]
		if cur != nil && p.costopped[cur.Index] {
			p.q[i] = append(p.q[i], cur) // co-stop: off the pCPU
			p.cur[i] = nil
			// The co-stop frees the pCPU for the sibling that lags, for
			// the rest of the slice: that is what the co-stop is for. Left
			// to wait for its own queue's turn, the laggard - often the
			// preempted lock holder or next waiter the leader spun on -
			// would keep the whole VM stalled.
			if l := p.laggard(s, cur); l != nil {
				p.cur[i], l.Home, l.SliceEnd = l, i, cur.SliceEnd
				cur = l
			} else {
				cur = nil
			}
		}
		expired := cur != nil && (p.yielded[i] || s.Now >= cur.SliceEnd)
		p.yielded[i] = false
		if expired {
			if next := p.take(i); next != nil {
				p.q[i] = append(p.q[i], cur)
				cur = p.start(s, i, next)
			} else {
				cur.SliceEnd = p.slice.end(s.Now) // nobody else can run: a new slice
			}
		}
		if cur == nil {
			if next := p.take(i); next != nil {
				cur = p.start(s, i, next)
			}
		}
		if cur != nil {
			plan.Run = append(plan.Run, Assignment{V: cur, PCPU: i, SliceEnd: cur.SliceEnd})
		}
	}
	plan.Next = p.next(s)
	return plan
}

// coStart starts each vCPU released from a co-stop at this decision beside
// a sibling that runs, for the rest of that sibling's slice.
func (p *relaxedPolicy) coStart(s *State) {
	for _, v := range p.released {
		if v.Status != Runnable || p.where(v) != -1 {
			continue
		}
		sib := -1
		for i, c := range p.cur {
			if c != nil && c.VM == v.VM && !p.costopped[c.Index] && c.SliceEnd > s.Now {
				sib = i
				break
			}
		}
		if sib < 0 {
			continue // no sibling runs: v waits for its turn, as under rr
		}
		j := p.coStartPCPU(v)
		if j < 0 {
			continue
		}
		p.runQueues.remove(v)
		if w := p.cur[j]; w != nil {
			p.q[j] = append([]*VCPU{w}, p.q[j]...)
			s.EndReason(w, EndCoStart)
		}
		p.cur[j], v.Home, v.SliceEnd = v, j, p.cur[sib].SliceEnd
		s.Acct.CoStarts++
		s.Mark(MarkCoStart, v)
	}
}

// coStartPCPU is the pCPU v is co-started on: an idle one, else one whose
// vCPU is of another VM, not co-stopped, and runs without its siblings (a
// VM running together is not broken up for another); -1 if none.
func (p *relaxedPolicy) coStartPCPU(v *VCPU) int {
	alone := func(w *VCPU) bool {
		for _, c := range p.cur {
			if c != nil && c != w && c.VM == w.VM {
				return false
			}
		}
		return true
	}
	for i, c := range p.cur {
		if c == nil {
			return i
		}
	}
	for i, c := range p.cur {
		if c.VM != v.VM && !p.costopped[c.Index] && alone(c) {
			return i
		}
	}
	return -1
}

func (p *relaxedPolicy) start(s *State, i int, v *VCPU) *VCPU {
	p.cur[i] = v
	v.Home = i
	v.SliceEnd = p.slice.endOn(s, i)
	return v
}

// laggard removes from its queue and returns the sibling of v with the least
// progress that waits for a pCPU and is not co-stopped, or nil.
func (p *relaxedPolicy) laggard(s *State, v *VCPU) *VCPU {
	bj, bk := -1, -1
	for j := range p.q {
		for k, w := range p.q[j] {
			if w.VM == v.VM && w != v && !p.costopped[w.Index] && w.Status == Runnable &&
				(bj < 0 || p.prog[w.Index] < p.prog[p.q[bj][bk].Index]) {
				bj, bk = j, k
			}
		}
	}
	if bj < 0 {
		return nil
	}
	l := p.q[bj][bk]
	p.q[bj] = slices.Delete(p.q[bj], bk, bk+1)
	return l
}

// take removes and returns what pCPU i runs next, or nil: the first vCPU of
// its queue that is not co-stopped, else (stealing) the last such vCPU of the
// other queue with the most of them; in either case replaced by its most
// lagging waiting sibling if that has less progress.
func (p *relaxedPolicy) take(i int) *VCPU {
	qi, at := -1, -1
	for k, w := range p.q[i] {
		if !p.costopped[w.Index] {
			qi, at = i, k
			break
		}
	}
	if qi < 0 {
		most := 0
		for j := range p.q {
			n, last := 0, -1
			for k, w := range p.q[j] {
				if !p.costopped[w.Index] {
					n, last = n+1, k
				}
			}
			if j != i && n > most {
				most, qi, at = n, j, last
			}
		}
	}
	if qi < 0 {
		return nil
	}
	w := p.q[qi][at]
	// The laggard: the sibling of w with the least progress that waits and
	// may run. It takes w's turn; w takes its place in its queue.
	lj, lk := qi, at
	for j := range p.q {
		for k, x := range p.q[j] {
			l := p.q[lj][lk]
			if x.VM == w.VM && !p.costopped[x.Index] && p.prog[x.Index] < p.prog[l.Index] {
				lj, lk = j, k
			}
		}
	}
	l := p.q[lj][lk]
	if l != w {
		p.q[lj][lk] = w
		w.Home = lj
	}
	p.q[qi] = slices.Delete(p.q[qi], at, at+1)
	return l
}

// next is when to decide again: a slice end if anyone waits, the moment a
// running vCPU would reach the skew threshold (it runs, its slowest waiting
// sibling does not), and the earliest moment a co-stopped vCPU could be
// released (a sibling runs, so its skew shrinks).
func (p *relaxedPolicy) next(s *State) time.Duration {
	var next time.Duration
	waiting := false
	for i := range p.q {
		waiting = waiting || len(p.q[i]) > 0
	}
	for _, c := range p.cur {
		if c == nil {
			continue
		}
		if waiting {
			next = earliest(next, c.SliceEnd)
		}
		// The slowest sibling that will wait: runnable and not given a pCPU
		// (one being preempted by this plan is still Running).
		slowest, found := time.Duration(0), false
		for _, w := range s.VMs[c.VM] {
			if relaxedRunnable(w) && p.pcpuOf(w) < 0 && (!found || p.prog[w.Index] < slowest) {
				slowest, found = p.prog[w.Index], true
			}
		}
		if found {
			// Not co-stopped, so the skew, at least prog-slowest, is below
			// the threshold and this is in the future.
			next = earliest(next, s.Now+max(p.skew-(p.prog[c.Index]-slowest), 1))
		}
	}
	for _, v := range s.VCPUs {
		if !p.costopped[v.Index] {
			continue
		}
		// v's skew shrinks only while every sibling with the least
		// progress runs.
		var waiting, running time.Duration = -1, -1
		for _, w := range s.VMs[v.VM] {
			switch {
			case p.pcpuOf(w) >= 0:
				if running < 0 || p.prog[w.Index] < running {
					running = p.prog[w.Index]
				}
			case relaxedRunnable(w): // will wait
				if waiting < 0 || p.prog[w.Index] < waiting {
					waiting = p.prog[w.Index]
				}
			}
		}
		if running >= 0 && (waiting < 0 || running < waiting) {
			next = earliest(next, s.Now+max(p.skewOf[v.Index]-p.skew/2, 1))
		}
	}
	return next
}

// Boost implements Queuer: v goes to the front of its queue and what runs on
// that pCPU stops at until at the latest — unless v is co-stopped: the skew
// rule wins, and cutting the slice would only let someone else in.
func (p *relaxedPolicy) Boost(s *State, v *VCPU, until time.Duration) {
	if v.Status != Runnable || p.pcpuOf(v) >= 0 {
		return
	}
	for i := range p.q {
		p.q[i] = removeVCPU(p.q[i], v)
	}
	p.q[v.Home] = append([]*VCPU{v}, p.q[v.Home]...)
	if c := p.cur[v.Home]; c != nil && c.SliceEnd > until && !p.costopped[v.Index] {
		c.SliceEnd = until
	}
}

// HandOff implements Queuer: from's pCPU and the rest of its slice go to to,
// which must wait in a queue and not be co-stopped; from goes to the tail of
// that pCPU's queue.
func (p *relaxedPolicy) HandOff(s *State, from, to *VCPU) bool {
	if p.where(to) != -1 || p.costopped[to.Index] {
		return false
	}
	return p.runQueues.HandOff(s, from, to)
}
