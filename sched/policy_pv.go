package sched

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// pv: honours the paravirtual hypercalls on top of a base policy (any
// Queuer; "pv" alone is pv over rr).
//
//   - WAIT blocks (the mechanism does it).
//   - KICK: a vCPU woken from WAIT is boosted to the front of its queue and
//     whatever runs on that pCPU gives way at the latest after the wake
//     granularity, min(slice, 500us), instead of at the end of its slice.
//     A woken vCPU that is still waiting when its deadline passes (another
//     KICK jumped it) is boosted again, so every kicked vCPU gets a turn
//     within a granularity of the one before it.
//   - With Options.BoostKicked (Wanpeng Li's "boost queue head vCPU"), a
//     KICK from a running vCPU of the same VM hands the kicker's pCPU and
//     the rest of its slice to the kicked vCPU at once: the kicker is
//     almost always an unlocker that just passed the lock on.
//   - YIELD(target): a directed yield, as KVM's kvm_vcpu_on_spin: the rest
//     of the yielder's slice goes to the target if it is eligible — in the
//     same VM, Runnable (not running, not blocked, not exited) and not itself
//     spinning (its Hints do not say Waiting). Otherwise, and for YIELD(-1),
//     the yielder's slice just ends (yield to anyone).
type pvPolicy struct {
	base Policy
	q    Queuer // base as a Queuer; nil if it is not one (Admit refuses)
	gran time.Duration

	boost   bool            // Options.BoostKicked
	blocked []bool          // by vCPU index: in WAIT, so its next EvRunnable is a KICK
	kicked  []time.Duration // by vCPU index: boost deadline of a kicked, not yet dispatched vCPU (0: none)
}

// pvMaxWakeGranularity bounds how long a KICKed vCPU waits for the vCPU that
// runs on its pCPU to give way.
const pvMaxWakeGranularity = 500 * time.Microsecond

func init() {
	registerModifier("pv",
		"paravirtual hints: KICK runs the woken vCPU within min(slice, 500us), YIELD(target) is a directed yield to a runnable, non-spinning vCPU",
		func(base Policy, o Options) Policy {
			slice := o.Slice
			if slice <= 0 {
				slice = DefaultSlice
			}
			q, _ := base.(Queuer)
			return &pvPolicy{base: base, q: q, gran: min(slice, pvMaxWakeGranularity), boost: o.BoostKicked}
		})
}

func (p *pvPolicy) Name() string    { return p.base.Name() + "+pv" }
func (p *pvPolicy) Exclusive() bool { return p.base.Exclusive() }
func (p *pvPolicy) unwrap() Policy  { return p.base }

func (p *pvPolicy) Admit(s *State) error {
	if err := checkModifierBase(p, p.base, p.q, func(b Policy) bool { _, ok := b.(*pvPolicy); return ok }); err != nil {
		return err
	}
	if err := p.base.Admit(s); err != nil {
		return err
	}
	p.blocked = make([]bool, len(s.VCPUs))
	p.kicked = make([]time.Duration, len(s.VCPUs))
	return nil
}

func (p *pvPolicy) Event(s *State, ev Event) {
	v := ev.V
	switch ev.Kind {
	case EvYield:
		p.yield(s, v, ev.Target)
		return // the base learns of the yield through HandOff or Expire
	case EvBlocked:
		p.blocked[v.Index], p.kicked[v.Index] = true, 0
	case EvExit:
		p.blocked[v.Index], p.kicked[v.Index] = false, 0
	case EvDispatched:
		p.kicked[v.Index] = 0
	}
	p.base.Event(s, ev)
	if ev.Kind == EvRunnable && p.blocked[v.Index] {
		// KICK: woken from WAIT (not the start of the run).
		p.blocked[v.Index] = false
		p.kicked[v.Index] = s.Now + p.gran
		if f := ev.From; p.boost && f != nil && f.Status == Running && f.VM == v.VM && p.q.HandOff(s, f, v) {
			s.Acct.KickBoosts++
			s.EndReason(f, EndKickBoost)
			return
		}
		p.q.Boost(s, v, p.kicked[v.Index])
	}
}

// yield is YIELD(target) from v.
func (p *pvPolicy) yield(s *State, v *VCPU, target int) {
	if t := p.yieldTarget(s, v, target); t != nil && p.q.HandOff(s, v, t) {
		s.Acct.DirectedYields++
		return
	}
	p.q.Expire(s, v)
}

// yieldTarget returns the vCPU v may hand its slice to, or nil.
func (p *pvPolicy) yieldTarget(s *State, v *VCPU, target int) *VCPU {
	if target < 0 || target >= len(s.VCPUs) {
		return nil
	}
	t := s.VCPUs[target]
	if t == v || t.VM != v.VM || t.Status != Runnable || s.HintsOf(t).Waiting {
		return nil
	}
	return t
}

func (p *pvPolicy) Decide(s *State) Plan {
	// Boost again the kicked vCPUs whose deadline passed without a
	// dispatch, latest deadline first so the earliest ends up in front.
	var late []*VCPU
	for _, v := range s.VCPUs {
		if d := p.kicked[v.Index]; d != 0 && v.Status == Runnable && s.Now >= d {
			late = append(late, v)
		}
	}
	slices.SortStableFunc(late, func(a, b *VCPU) int { return cmp.Compare(p.kicked[b.Index], p.kicked[a.Index]) })
	for _, v := range late {
		p.kicked[v.Index] = s.Now + p.gran
		p.q.Boost(s, v, p.kicked[v.Index])
	}
	plan := p.base.Decide(s)
	// Come back at the deadline of every kicked vCPU that still waits.
	for _, v := range s.VCPUs {
		if d := p.kicked[v.Index]; d != 0 && v.Status == Runnable && !planRuns(plan, v) {
			plan.Next = earliest(plan.Next, d)
		}
	}
	return plan
}

// Boost implements Queuer (so that another modifier can wrap pv).
func (p *pvPolicy) Boost(s *State, v *VCPU, until time.Duration) { p.q.Boost(s, v, until) }

// HandOff implements Queuer.
func (p *pvPolicy) HandOff(s *State, from, to *VCPU) bool { return p.q.HandOff(s, from, to) }

// Extend implements Queuer.
func (p *pvPolicy) Extend(s *State, v *VCPU, until time.Duration) { p.q.Extend(s, v, until) }

// Expire implements Queuer.
func (p *pvPolicy) Expire(s *State, v *VCPU) { p.q.Expire(s, v) }

// Helpers shared by the modifiers (pv, delay).

// wrapper is a modifier around a base policy.
type wrapper interface{ unwrap() Policy }

// checkModifierBase refuses a base that is not a Queuer, and a chain that
// already holds the same modifier (same reports whether a policy is one).
func checkModifierBase(m, base Policy, q Queuer, same func(Policy) bool) error {
	if q == nil {
		return fmt.Errorf("policy %s: base policy %q does not offer queue operations (Queuer), so the modifier cannot act on it", m.Name(), base.Name())
	}
	for b := base; b != nil; {
		if same(b) {
			return fmt.Errorf("policy %s: the same modifier appears twice", m.Name())
		}
		w, ok := b.(wrapper)
		if !ok {
			break
		}
		b = w.unwrap()
	}
	return nil
}

// planRuns reports whether plan runs v.
func planRuns(plan Plan, v *VCPU) bool {
	for _, a := range plan.Run {
		if a.V == v {
			return true
		}
	}
	return false
}
