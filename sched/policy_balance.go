package sched

import "time"

// balance: balance scheduling (Sukwong & Kim 2011). It is rr — one FIFO
// queue per pCPU, fixed slices, an idle pCPU steals — with one rule about
// where vCPUs are queued: two siblings (vCPUs of the same VM) in one pCPU's
// queue can never run at the same time, so the one that waits may be a
// preempted lock holder the other spins on. Balance scheduling never puts a
// vCPU in a queue that holds a sibling while another queue holds none; with
// more vCPUs in a VM than pCPUs siblings must share, and they are spread
// evenly. It needs no co-scheduling and wastes no pCPU time.
//
// A queue "holds" the vCPU it runs and those waiting in it. The rule is
// applied each time a vCPU is put in a queue:
//
//   - placement (start, wake): the queue with the fewest siblings of v, then
//     the least loaded, then v's previous one;
//   - the end of a slice: the vCPU that ran goes back to its own queue unless
//     another holds fewer of its siblings (a WAIT or an exit elsewhere can
//     leave the VM unevenly spread; this repairs it);
//   - stealing: pCPU i takes waiter w from another queue only if i holds no
//     more siblings of w than the queue that would hold the fewest. A pCPU
//     with nothing to run holds nothing, so it can always steal; a pCPU whose
//     slice ended with an empty queue (rr steals there to rotate) does not
//     steal a sibling of what it runs if a queue with fewer siblings exists:
//     the alternative, letting what runs go on, is always there. Among the
//     allowed waiters it prefers one that shares its queue with a sibling,
//     then rr's choice (the last waiter of the longest queue);
//   - HandOff within a VM swaps the two vCPUs' places, which leaves every
//     queue's sibling count as it was.
type balancePolicy struct {
	slice sliceClock
	runQueues
}

func init() {
	register("balance", "balance scheduling (Sukwong & Kim): rr, but sibling vCPUs never share a pCPU's queue while another pCPU has none of them",
		func(o Options) Policy { return &balancePolicy{slice: sliceClock{slice: o.Slice}} })
}

func (p *balancePolicy) Name() string    { return "balance" }
func (p *balancePolicy) Exclusive() bool { return true }

func (p *balancePolicy) Admit(s *State) error {
	p.init(len(s.PCPUs))
	return nil
}

func (p *balancePolicy) Event(s *State, ev Event) {
	v := ev.V
	switch ev.Kind {
	case EvRunnable:
		if p.queueOf(v) < 0 {
			p.enqueue(v, -1)
		}
	case EvBlocked, EvExit:
		p.remove(v)
	case EvYield:
		p.yield(v)
	}
}

// siblings counts the siblings of v that queue i holds (v excluded).
func (p *balancePolicy) siblings(i int, v *VCPU) int {
	n := 0
	if c := p.cur[i]; c != nil && c != v && c.VM == v.VM {
		n++
	}
	for _, w := range p.q[i] {
		if w != v && w.VM == v.VM {
			n++
		}
	}
	return n
}

func (p *balancePolicy) load(i int) int {
	n := len(p.q[i])
	if p.cur[i] != nil {
		n++
	}
	return n
}

// fewest is the least number of v's siblings any queue holds.
func (p *balancePolicy) fewest(v *VCPU) int {
	m := -1
	for i := range p.q {
		if n := p.siblings(i, v); m < 0 || n < m {
			m = n
		}
	}
	return m
}

// enqueue puts v (in no queue) at the tail of the queue with the fewest
// siblings of v; among those, stay if stay >= 0 is one, else the least
// loaded, then v's previous queue, then the lowest index.
func (p *balancePolicy) enqueue(v *VCPU, stay int) {
	best := -1
	key := func(i int) [4]int {
		k := [4]int{p.siblings(i, v), 1, p.load(i), 1}
		if i == stay {
			k[1] = 0
		}
		if i == v.Home {
			k[3] = 0
		}
		return k
	}
	for i := range p.q {
		if best < 0 || less4(key(i), key(best)) {
			best = i
		}
	}
	p.q[best] = append(p.q[best], v)
	v.Home = best
}

func less4(a, b [4]int) bool {
	for k := range a {
		if a[k] != b[k] {
			return a[k] < b[k]
		}
	}
	return false
}

// stealInto moves to queue i a waiter of another queue that the balance rule
// lets i hold (see the type's comment). False if there is none.
func (p *balancePolicy) stealInto(i int) bool {
	bj, bk := -1, -1
	var bkey [3]int
	for j := range p.q {
		if j == i {
			continue
		}
		for k, w := range p.q[j] {
			if p.siblings(i, w) > p.fewest(w) {
				continue
			}
			shares := 1
			if p.siblings(j, w) > 0 {
				shares = 0
			}
			key := [3]int{shares, -len(p.q[j]), len(p.q[j]) - 1 - k}
			if bj < 0 || key[0] < bkey[0] || (key[0] == bkey[0] && (key[1] < bkey[1] || (key[1] == bkey[1] && key[2] < bkey[2]))) {
				bj, bk, bkey = j, k, key
			}
		}
	}
	if bj < 0 {
		return false
	}
	w := p.q[bj][bk]
	p.q[bj] = append(p.q[bj][:bk], p.q[bj][bk+1:]...)
	p.q[i] = append(p.q[i], w)
	w.Home = i
	return true
}

func (p *balancePolicy) Decide(s *State) Plan {
	// Idle pCPUs with waiters of their own first, so that a slice end does
	// not steal those from them.
	for i, cur := range p.cur {
		if cur == nil && len(p.q[i]) > 0 {
			p.start(s, i)
		}
	}
	// Slice ends, before idle pCPUs steal, so that vCPUs moved to another
	// queue by the balance rule are there when idle pCPUs look for work.
	for i, cur := range p.cur {
		expired := cur != nil && (p.yielded[i] || s.Now >= cur.SliceEnd)
		p.yielded[i] = false
		if !expired {
			continue
		}
		if len(p.q[i]) == 0 {
			p.stealInto(i)
		}
		if len(p.q[i]) == 0 {
			cur.SliceEnd = p.slice.end(s.Now) // nobody waits: a new slice
			continue
		}
		p.cur[i] = nil
		p.start(s, i)
		p.enqueue(cur, i)
	}
	for i, cur := range p.cur {
		if cur != nil {
			continue
		}
		if len(p.q[i]) == 0 {
			p.stealInto(i)
		}
		if len(p.q[i]) > 0 {
			p.start(s, i)
		}
	}
	var plan Plan
	waiting := false
	for i := range p.q {
		waiting = waiting || len(p.q[i]) > 0
	}
	for i, cur := range p.cur {
		if cur != nil {
			plan.Run = append(plan.Run, Assignment{V: cur, PCPU: i, SliceEnd: cur.SliceEnd})
			if waiting {
				plan.Next = earliest(plan.Next, cur.SliceEnd)
			}
		}
	}
	return plan
}

// start runs the head of queue i.
func (p *balancePolicy) start(s *State, i int) {
	v := p.q[i][0]
	p.q[i] = p.q[i][1:]
	p.cur[i] = v
	v.Home = i
	v.SliceEnd = p.slice.endOn(s, i)
}

// Boost implements Queuer: v goes to the front of the queue it is in (the
// placement stays balanced) and what runs there stops at until at the
// latest.
func (p *balancePolicy) Boost(s *State, v *VCPU, until time.Duration) {
	if v.Status != Runnable || p.pcpuOf(v) >= 0 {
		return
	}
	i := p.queueOf(v)
	if i < 0 {
		p.enqueue(v, -1)
		i = v.Home
	}
	p.q[i] = append([]*VCPU{v}, removeVCPU(p.q[i], v)...)
	if c := p.cur[i]; c != nil && c.SliceEnd > until {
		c.SliceEnd = until
	}
}

// HandOff implements Queuer: to (waiting in queue j) runs on from's pCPU i
// for the rest of from's slice. A sibling from takes to's place in queue j,
// so no queue's sibling count changes; a vCPU of another VM is queued by the
// balance rule, preferring i.
func (p *balancePolicy) HandOff(s *State, from, to *VCPU) bool {
	i := p.pcpuOf(from)
	if i < 0 || to.Status != Runnable || p.pcpuOf(to) >= 0 {
		return false
	}
	j := p.queueOf(to)
	if j < 0 {
		return false
	}
	p.q[j] = removeVCPU(p.q[j], to)
	p.cur[i] = to
	to.Home = i
	to.SliceEnd = from.SliceEnd
	if from.VM == to.VM {
		p.q[j] = append(p.q[j], from)
		from.Home = j
	} else {
		p.enqueue(from, i)
	}
	return true
}
