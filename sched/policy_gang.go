package sched

import (
	"fmt"
	"time"
)

// gang: strict co-scheduling, as VMware ESX 2 did it. A VM runs as a gang:
// every vCPU of it holds a pCPU of its own at the same time, or none does, so
// a lock holder is never preempted while a sibling spins on its lock — the
// price is the pCPU time that fragmentation and idle vCPUs leave unused.
//
// Time is cut into rounds of one slice. At the start of a round the next VM
// in round-robin order that has a runnable vCPU becomes the primary gang
// (VMs whose vCPUs are all blocked or exited are skipped) and gets its pCPUs.
// The pCPUs left over are not wasted when they can be used without breaking
// the rule: any other VM whose whole gang fits in them joins the round
// (backfill, in round-robin order after the primary, also mid-round when a
// VM wakes). Otherwise they stay idle: that is the fragmentation.
//
// A gang reserves one pCPU per live (not exited) vCPU, blocked ones
// included. A vCPU that blocks in WAIT leaves its pCPU idle but reserved, and
// when it is kicked it runs on it at once; reserving at the start of the
// round only for the runnable vCPUs would leave a vCPU woken mid-round with
// nowhere to go but a co-stop of its gang or a wait that breaks the rule. The
// same count decides whether a VM fits as a backfill.
//
// A gang whose vCPUs are all blocked gives its pCPUs back for the rest of the
// round (they can be backfilled); if no gang is left a new round starts.
//
// Siblings never drift apart here, so State.Acct.CoStops and MaxSkew (the
// relaxed policy's measures) stay zero.
type gangPolicy struct {
	slice sliceClock

	owner   []*VCPU // per pCPU: the gang member it is reserved for, or nil
	sched   []bool  // per VM: its gang holds pCPUs this round
	aside   []bool  // per VM: stepped aside this round (every vCPU yielded)
	yielded []bool  // per vCPU index: yielded during this round

	primary  int           // VM of the current round's primary gang, -1: none
	last     int           // round-robin pointer: the last primary chosen in turn
	boost    int           // VM to be the next primary (Boost), -1: none
	roundEnd time.Duration // end of the current round (0: no round)
	nominal  time.Duration // roundEnd before any Extend
}

func init() {
	register("gang", "strict co-scheduling (VMware ESX 2): all vCPUs of a VM run at once on distinct pCPUs, or none do; round-robin over VMs each slice",
		func(o Options) Policy { return &gangPolicy{slice: sliceClock{slice: o.Slice, aligned: true}} })
}

func (p *gangPolicy) Name() string    { return "gang" }
func (p *gangPolicy) Exclusive() bool { return true }

// Admit refuses a VM that cannot be co-scheduled at all.
func (p *gangPolicy) Admit(s *State) error {
	for vm, vs := range s.VMs {
		if len(vs) > len(s.PCPUs) {
			return fmt.Errorf("gang: %s has %d vCPUs but there are only %d pCPUs: strict co-scheduling needs one pCPU per vCPU",
				s.VMName(vm), len(vs), len(s.PCPUs))
		}
	}
	p.owner = make([]*VCPU, len(s.PCPUs))
	p.sched = make([]bool, len(s.VMs))
	p.aside = make([]bool, len(s.VMs))
	p.yielded = make([]bool, len(s.VCPUs))
	p.primary, p.last, p.boost = -1, len(s.VMs)-1, -1
	return nil
}

func (p *gangPolicy) Event(s *State, ev Event) {
	switch ev.Kind {
	case EvYield:
		p.yield(s, ev.V)
	case EvRunnable, EvBlocked, EvExit:
		// A fresh start after a WAIT: its earlier yield no longer says the
		// gang has nothing to do.
		p.yielded[ev.V.Index] = false
	}
	// The rest is read from State in Decide: a gang's pCPUs do not move when
	// its vCPUs block or wake.
}

func gangRunnable(v *VCPU) bool { return v.Status == Runnable || v.Status == Running }

func (p *gangPolicy) hasRunnable(s *State, vm int) bool {
	for _, v := range s.VMs[vm] {
		if gangRunnable(v) {
			return true
		}
	}
	return false
}

// live counts the vCPUs a gang of vm reserves pCPUs for.
func (p *gangPolicy) live(s *State, vm int) int {
	n := 0
	for _, v := range s.VMs[vm] {
		if v.Status != Done {
			n++
		}
	}
	return n
}

func (p *gangPolicy) free() int {
	n := 0
	for _, o := range p.owner {
		if o == nil {
			n++
		}
	}
	return n
}

// allYielded reports whether every runnable vCPU of vm yielded this round.
func (p *gangPolicy) allYielded(s *State, vm int) bool {
	some := false
	for _, v := range s.VMs[vm] {
		if gangRunnable(v) {
			if !p.yielded[v.Index] {
				return false
			}
			some = true
		}
	}
	return some
}

// place reserves a free pCPU for every live vCPU of vm, each on the pCPU it
// last had if it is free (no migration from round to round), else the lowest
// free one. The caller checked that they fit.
func (p *gangPolicy) place(s *State, vm int) {
	var rest []*VCPU
	for _, v := range s.VMs[vm] {
		if v.Status == Done {
			continue
		}
		if p.owner[v.Home] == nil {
			p.owner[v.Home] = v
		} else {
			rest = append(rest, v)
		}
	}
	for _, v := range rest {
		for i, o := range p.owner {
			if o == nil {
				p.owner[i], v.Home = v, i
				break
			}
		}
	}
	p.sched[vm] = true
}

func (p *gangPolicy) unschedule(vm int) {
	for i, o := range p.owner {
		if o != nil && o.VM == vm {
			p.owner[i] = nil
		}
	}
	p.sched[vm] = false
}

// newRound picks the next primary gang: the boosted VM if it can run, else
// the next VM in turn that has a runnable vCPU.
func (p *gangPolicy) newRound(s *State) {
	for vm := range p.sched {
		p.unschedule(vm)
		p.aside[vm] = false
	}
	clear(p.yielded)
	p.primary, p.roundEnd, p.nominal = -1, 0, 0
	if b := p.boost; b >= 0 && p.hasRunnable(s, b) {
		p.primary = b // out of turn: the round-robin pointer stays
	}
	p.boost = -1
	for k := 1; p.primary < 0 && k <= len(s.VMs); k++ {
		if vm := (p.last + k) % len(s.VMs); p.hasRunnable(s, vm) {
			p.primary, p.last = vm, vm
		}
	}
	if p.primary < 0 {
		return
	}
	p.place(s, p.primary)
	p.roundEnd = p.slice.end(s.Now)
	p.nominal = p.roundEnd
}

// backfill adds every waiting VM whose whole gang fits in the free pCPUs.
func (p *gangPolicy) backfill(s *State) {
	if p.primary < 0 {
		return
	}
	for k := 1; k < len(s.VMs); k++ {
		vm := (p.primary + k) % len(s.VMs)
		if !p.sched[vm] && !p.aside[vm] && p.hasRunnable(s, vm) && p.live(s, vm) <= p.free() {
			p.place(s, vm)
			if p.boost == vm {
				p.boost = -1 // it runs already
			}
		}
	}
}

func (p *gangPolicy) Decide(s *State) Plan {
	for i, o := range p.owner {
		if o != nil && o.Status == Done {
			p.owner[i] = nil // an exited vCPU needs its pCPU no more
		}
	}
	scheduled := false
	for vm, on := range p.sched {
		switch {
		case !on:
		case !p.hasRunnable(s, vm):
			p.unschedule(vm) // all blocked: give the pCPUs back for this round
		case p.allYielded(s, vm):
			p.unschedule(vm)
			p.aside[vm] = true
		default:
			scheduled = true
		}
	}
	if !scheduled || s.Now >= p.roundEnd {
		p.newRound(s)
	}
	p.backfill(s)

	var plan Plan
	for i, v := range p.owner {
		if v != nil && gangRunnable(v) {
			plan.Run = append(plan.Run, Assignment{V: v, PCPU: i, SliceEnd: p.roundEnd})
		}
	}
	// Come back at the round's end only if some other VM waits for it.
	for vm, on := range p.sched {
		if !on && p.hasRunnable(s, vm) {
			plan.Next = p.roundEnd
			break
		}
	}
	return plan
}

// member reports whether v belongs to a gang that holds pCPUs.
func (p *gangPolicy) member(v *VCPU) bool {
	for _, o := range p.owner {
		if o == v {
			return true
		}
	}
	return false
}

// yield is EvYield and Expire. One vCPU giving up its pCPU helps nobody
// under strict co-scheduling: every sibling it could wait for already runs,
// and another VM can only use the pCPU with its whole gang. So the gang
// steps aside for the rest of the round only once all its runnable vCPUs
// yielded. A yield past the round's nominal end (the round was extended, as
// the delay modifier does for a critical section) ends the round.
func (p *gangPolicy) yield(s *State, v *VCPU) {
	if !p.member(v) {
		return
	}
	if p.nominal != 0 && s.Now >= p.nominal {
		p.roundEnd = s.Now
		return
	}
	p.yielded[v.Index] = true
}

// Boost implements Queuer: the VM of v runs as a whole as soon as possible.
// If its gang holds pCPUs, v runs on its reserved pCPU at the next Decide;
// if it fits in the free pCPUs, the next Decide backfills it. Otherwise it
// is the next round's primary (out of turn) and the current round ends at
// until at the latest.
func (p *gangPolicy) Boost(s *State, v *VCPU, until time.Duration) {
	if p.sched[v.VM] || (!p.aside[v.VM] && p.primary >= 0 && p.live(s, v.VM) <= p.free()) {
		return
	}
	p.boost = v.VM
	if p.roundEnd == 0 || p.roundEnd > until {
		p.roundEnd = until
	}
}

// HandOff implements Queuer: never possible. A runnable sibling of from
// already runs (or will at the next Decide, on its reserved pCPU), and a
// vCPU of another VM cannot run without its whole gang.
func (p *gangPolicy) HandOff(s *State, from, to *VCPU) bool { return false }

// Extend implements Queuer: the slice is the round's, shared by every gang
// in it, so the round ends at until.
func (p *gangPolicy) Extend(s *State, v *VCPU, until time.Duration) {
	if p.member(v) {
		p.roundEnd = until
	}
}

// Expire implements Queuer, as a yield (see yield).
func (p *gangPolicy) Expire(s *State, v *VCPU) { p.yield(s, v) }
