package sched

// rr: our own round-robin with fixed slices, one FIFO queue per pCPU, vCPUs
// placed round-robin, an idle pCPU steals from the longest queue. It knows
// nothing of locks: the baseline that exhibits lock holder preemption.
type rrPolicy struct {
	slice sliceClock
	runQueues
}

func init() {
	register("rr", "round-robin with fixed slices: the baseline that shows LHP",
		func(o Options) Policy { return &rrPolicy{slice: sliceClock{o.Slice}} })
}

func (p *rrPolicy) Name() string    { return "rr" }
func (p *rrPolicy) Exclusive() bool { return true }

func (p *rrPolicy) Admit(s *State) error {
	n := len(s.PCPUs)
	p.init(n)
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
