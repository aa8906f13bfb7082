package sched

import "time"

// delay: delayed preemption (Uhlig et al. 2004) on top of a base policy (any
// Queuer; "delay" alone is delay over rr). The guest sets InCS in its shared
// page around critical sections. When a running vCPU reaches the end of its
// slice inside one, and the slice end would let someone else run, the
// preemption is deferred by at most Options.DelayMax (a grant) and the guest
// sees yield_requested, so it YIELDs as soon as it releases: that YIELD ends
// the grant and the base moves on. A vCPU still InCS when the grant runs out
// is preempted anyway (an overrun).
//
// Eligible for a grant, at a slice end (SliceEnd <= Now) seen for the first
// time: the vCPU runs, its Hints say InCS, some other vCPU is Runnable (else
// the base would not preempt, and the guest would yield for nothing), and it
// is not backing off. One grant per slice end.
//
// Back-off: after delayOverrunLimit consecutive overruns (no cooperative end
// in between: a YIELD during the grant, or leaving the critical section
// before its bound) the vCPU gets no grant at its next delayBackoffSlices
// slice ends, then starts afresh.
type delayPolicy struct {
	base Policy
	q    Queuer // base as a Queuer; nil if it is not one (Admit refuses)
	max  time.Duration
	g    []delayGrant // by vCPU index
}

type delayGrant struct {
	active   bool
	end      time.Duration // bound of the active grant
	seen     time.Duration // last slice end considered (one decision each)
	overruns int           // consecutive overruns
	backoff  int           // slice ends left without grants
}

const (
	delayOverrunLimit  = 3
	delayBackoffSlices = 8
)

func init() {
	registerModifier("delay",
		"delayed preemption (Uhlig et al.): a vCPU InCS at its slice end runs up to DelayMax longer and is asked to YIELD at its release",
		func(base Policy, o Options) Policy {
			m := o.DelayMax
			if m <= 0 {
				m = DefaultDelayMax
			}
			q, _ := base.(Queuer)
			return &delayPolicy{base: base, q: q, max: m}
		})
}

func (p *delayPolicy) Name() string    { return p.base.Name() + "+delay" }
func (p *delayPolicy) Exclusive() bool { return p.base.Exclusive() }
func (p *delayPolicy) unwrap() Policy  { return p.base }

func (p *delayPolicy) Admit(s *State) error {
	if err := checkModifierBase(p, p.base, p.q, func(b Policy) bool { _, ok := b.(*delayPolicy); return ok }); err != nil {
		return err
	}
	if err := p.base.Admit(s); err != nil {
		return err
	}
	p.g = make([]delayGrant, len(s.VCPUs))
	return nil
}

func (p *delayPolicy) Event(s *State, ev Event) {
	g := &p.g[ev.V.Index]
	switch ev.Kind {
	case EvYield:
		if g.active {
			// The cooperative preemption point: end the grant and the slice.
			p.endCooperatively(g)
			p.q.Expire(s, ev.V)
			return
		}
	case EvPreempted, EvBlocked, EvExit:
		g.active = false
	}
	p.base.Event(s, ev)
}

func (p *delayPolicy) endCooperatively(g *delayGrant) {
	g.active = false
	g.overruns = 0
}

func (p *delayPolicy) Decide(s *State) Plan {
	contended := false
	for _, v := range s.VCPUs {
		if v.Status == Runnable {
			contended = true
			break
		}
	}
	for _, v := range s.VCPUs {
		if v.Status != Running {
			continue
		}
		g := &p.g[v.Index]
		if g.active {
			if s.Now < g.end {
				if v.SliceEnd < g.end {
					p.q.Extend(s, v, g.end) // the base cut it short (a Boost): hold the bound
				}
				continue
			}
			// The bound: the base proceeds (v.SliceEnd <= Now).
			g.active = false
			g.seen = v.SliceEnd
			s.EndReason(v, EndDelay)
			if s.HintsOf(v).InCS {
				s.Acct.DelayOverruns++
				if g.overruns++; g.overruns >= delayOverrunLimit {
					g.overruns, g.backoff = 0, delayBackoffSlices
				}
			} else {
				g.overruns = 0 // left the critical section in time but did not yield
			}
			continue
		}
		if v.SliceEnd == 0 || v.SliceEnd > s.Now || v.SliceEnd == g.seen {
			continue
		}
		g.seen = v.SliceEnd
		if g.backoff > 0 {
			g.backoff--
			continue
		}
		if !contended || !s.HintsOf(v).InCS {
			continue
		}
		g.active, g.end = true, s.Now+p.max
		p.q.Extend(s, v, g.end)
		g.seen = g.end
		s.Acct.DelayGrants++
		s.Mark(MarkDelayGrant, v)
	}
	plan := p.base.Decide(s)
	for _, v := range s.VCPUs {
		g := &p.g[v.Index]
		if !g.active {
			continue
		}
		if !planRuns(plan, v) {
			g.active = false // the base took it off for its own reasons
			continue
		}
		plan.YieldRequest = append(plan.YieldRequest, v)
		plan.Next = earliest(plan.Next, g.end)
	}
	return plan
}

// Boost implements Queuer (so that another modifier can wrap delay).
func (p *delayPolicy) Boost(s *State, v *VCPU, until time.Duration) { p.q.Boost(s, v, until) }

// HandOff implements Queuer. A vCPU under a grant does not hand off the few
// microseconds left: false, so a directed YIELD falls back to Expire, which
// ends the grant.
func (p *delayPolicy) HandOff(s *State, from, to *VCPU) bool {
	if p.g[from.Index].active {
		return false
	}
	return p.q.HandOff(s, from, to)
}

// Extend implements Queuer.
func (p *delayPolicy) Extend(s *State, v *VCPU, until time.Duration) { p.q.Extend(s, v, until) }

// Expire implements Queuer. A YIELD seen by an outer modifier (delay+pv)
// arrives here: under a grant it is the cooperative end.
func (p *delayPolicy) Expire(s *State, v *VCPU) {
	if g := &p.g[v.Index]; g.active {
		p.endCooperatively(g)
	}
	p.q.Expire(s, v)
}
