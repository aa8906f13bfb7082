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
		if p.queueOf(v) < 0 {
			p.q[v.Home] = append(p.q[v.Home], v)
		}
	case EvBlocked, EvExit:
		p.remove(v)
	case EvYield:
		p.yield(v)
	}
}

func (p *rrPolicy) Decide(s *State) Plan {
	var plan Plan
	for i := range p.cur {
		cur := p.rotate(s, i, p.slice)
		if cur != nil {
			plan.Run = append(plan.Run, Assignment{V: cur, PCPU: i, SliceEnd: cur.SliceEnd})
			if len(p.q[i]) > 0 || p.longestOther(i) > 0 {
				plan.Next = earliest(plan.Next, cur.SliceEnd)
			}
		}
	}
	return plan
}
