package sched

import "time"

// rr: our own round-robin with fixed slices, one FIFO queue per pCPU, vCPUs
// placed round-robin, an idle pCPU steals from the longest queue. It knows
// nothing of locks: the baseline that exhibits lock holder preemption.
type rrPolicy struct {
	slice   sliceClock
	cur     []*VCPU   // per pCPU: the vCPU it runs
	q       [][]*VCPU // per pCPU: runnable vCPUs waiting, FIFO
	yielded []bool    // per pCPU: cur yielded, rotate at once
}

func init() {
	register("rr", "round-robin with fixed slices: the baseline that shows LHP",
		func(o Options) Policy { return &rrPolicy{slice: sliceClock{o.Slice}} })
}

func (p *rrPolicy) Name() string    { return "rr" }
func (p *rrPolicy) Exclusive() bool { return true }

func (p *rrPolicy) Admit(s *State) error {
	n := len(s.PCPUs)
	p.cur, p.q, p.yielded = make([]*VCPU, n), make([][]*VCPU, n), make([]bool, n)
	return nil
}

func (p *rrPolicy) Event(s *State, ev Event) {
	v := ev.V
	switch ev.Kind {
	case EvRunnable:
		if !p.queued(v) {
			p.q[v.Home] = append(p.q[v.Home], v)
		}
	case EvBlocked, EvExit:
		p.remove(v)
	case EvYield:
		for i, c := range p.cur {
			if c == v {
				p.yielded[i] = true
			}
		}
	}
}

func (p *rrPolicy) queued(v *VCPU) bool {
	for i := range p.q {
		if p.cur[i] == v {
			return true
		}
		for _, w := range p.q[i] {
			if w == v {
				return true
			}
		}
	}
	return false
}

func (p *rrPolicy) remove(v *VCPU) {
	for i := range p.q {
		if p.cur[i] == v {
			p.cur[i] = nil
		}
		p.q[i] = removeVCPU(p.q[i], v)
	}
}

func (p *rrPolicy) Decide(s *State) Plan {
	var plan Plan
	for i := range p.cur {
		cur := p.cur[i]
		expired := cur != nil && (p.yielded[i] || s.Now >= cur.SliceEnd)
		if expired && len(p.q[i]) == 0 {
			p.stealInto(i)
		}
		if expired && len(p.q[i]) > 0 {
			p.q[i] = append(p.q[i], cur)
			p.cur[i], cur = nil, nil
		}
		p.yielded[i] = false
		if cur == nil {
			if len(p.q[i]) == 0 {
				p.stealInto(i)
			}
			if len(p.q[i]) > 0 {
				cur = p.q[i][0]
				p.q[i] = p.q[i][1:]
				p.cur[i] = cur
				cur.Home = i
				cur.SliceEnd = p.slice.end(s.Now)
			}
		} else if expired {
			cur.SliceEnd = p.slice.end(s.Now) // nobody waits: a new slice
		}
		if cur != nil {
			plan.Run = append(plan.Run, Assignment{V: cur, PCPU: i, SliceEnd: cur.SliceEnd})
			if len(p.q[i]) > 0 || p.longestOther(i) > 0 {
				plan.Next = earliest(plan.Next, cur.SliceEnd)
			}
		}
	}
	return plan
}

// stealInto moves the last waiter of the longest other queue to queue i.
func (p *rrPolicy) stealInto(i int) {
	best := -1
	for j := range p.q {
		if j != i && len(p.q[j]) > 0 && (best < 0 || len(p.q[j]) > len(p.q[best])) {
			best = j
		}
	}
	if best < 0 {
		return
	}
	v := p.q[best][len(p.q[best])-1]
	p.q[best] = p.q[best][:len(p.q[best])-1]
	p.q[i] = append(p.q[i], v)
}

func (p *rrPolicy) longestOther(i int) int {
	n := 0
	for j := range p.q {
		if j != i {
			n = max(n, len(p.q[j]))
		}
	}
	return n
}

func (p *rrPolicy) pcpuOf(v *VCPU) int {
	for i, c := range p.cur {
		if c == v {
			return i
		}
	}
	return -1
}

// Boost implements Queuer.
func (p *rrPolicy) Boost(s *State, v *VCPU, until time.Duration) {
	for i := range p.q {
		if removed := removeVCPU(p.q[i], v); len(removed) != len(p.q[i]) {
			p.q[i] = removed
			break
		}
	}
	if p.pcpuOf(v) >= 0 {
		return // already running
	}
	p.q[v.Home] = append([]*VCPU{v}, p.q[v.Home]...)
	if c := p.cur[v.Home]; c != nil && c.SliceEnd > until {
		c.SliceEnd = until
	}
}

// HandOff implements Queuer.
func (p *rrPolicy) HandOff(s *State, from, to *VCPU) bool {
	i := p.pcpuOf(from)
	if i < 0 || to.Status != Runnable || p.pcpuOf(to) >= 0 {
		return false
	}
	for j := range p.q {
		p.q[j] = removeVCPU(p.q[j], to)
	}
	p.q[i] = append(p.q[i], from)
	p.cur[i] = to
	to.Home = i
	// to inherits the rest of from's slice.
	to.SliceEnd = from.SliceEnd
	return true
}

// Extend implements Queuer.
func (p *rrPolicy) Extend(s *State, v *VCPU, until time.Duration) {
	if p.pcpuOf(v) >= 0 {
		v.SliceEnd = until
	}
}

// Expire implements Queuer.
func (p *rrPolicy) Expire(s *State, v *VCPU) {
	if i := p.pcpuOf(v); i >= 0 {
		p.yielded[i] = true
	}
}
