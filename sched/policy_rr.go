package sched

// rr: our own round-robin with fixed slices, one FIFO queue per pCPU, vCPUs
// placed round-robin, an idle pCPU steals from the longest queue. It knows
// nothing of locks: the baseline that exhibits lock holder preemption. Its
// pCPUs' slices end staggered (sliceClock); rr-aligned is the same with
// every pCPU switching at the same instants, which co-schedules sibling
// vCPUs by accident.
type rrPolicy struct {
	name  string
	slice sliceClock
	runQueues
}

func init() {
	register("rr", "round-robin with fixed slices, staggered across pCPUs: the baseline that shows LHP",
		func(o Options) Policy { return &rrPolicy{name: "rr", slice: sliceClock{slice: o.Slice}} })
	register("rr-aligned", "rr with every pCPU's slices ending at the same instants (co-schedules siblings by accident)",
		func(o Options) Policy {
			return &rrPolicy{name: "rr-aligned", slice: sliceClock{slice: o.Slice, aligned: true}}
		})
}

func (p *rrPolicy) Name() string    { return p.name }
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
		cur := p.rotate(s, i, &p.slice)
		if cur != nil {
			plan.Run = append(plan.Run, Assignment{V: cur, PCPU: i, SliceEnd: cur.SliceEnd})
			if len(p.q[i]) > 0 || p.longestOther(i) > 0 {
				plan.Next = earliest(plan.Next, cur.SliceEnd)
			}
		}
	}
	return plan
}
