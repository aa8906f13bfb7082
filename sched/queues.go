package sched

import "time"

// runQueues is the per-pCPU run-queue bookkeeping the round-robin family of
// policies shares (rr, monitor): what each pCPU runs, a FIFO of runnable
// vCPUs waiting for it, and whether its vCPU yielded. It is not a policy: a
// policy embeds it and decides with it. Its Boost, HandOff, Extend and
// Expire are rr's Queuer semantics; an embedding policy may override them.
type runQueues struct {
	cur     []*VCPU   // per pCPU: the vCPU it runs
	q       [][]*VCPU // per pCPU: runnable vCPUs waiting, FIFO
	yielded []bool    // per pCPU: cur yielded, rotate at once
}

func (p *runQueues) init(pcpus int) {
	p.cur, p.q, p.yielded = make([]*VCPU, pcpus), make([][]*VCPU, pcpus), make([]bool, pcpus)
}

func (p *runQueues) queued(v *VCPU) bool {
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

func (p *runQueues) remove(v *VCPU) {
	for i := range p.q {
		if p.cur[i] == v {
			p.cur[i] = nil
		}
		p.q[i] = removeVCPU(p.q[i], v)
	}
}

// stealInto moves the last waiter of the longest other queue to queue i.
func (p *runQueues) stealInto(i int) {
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

func (p *runQueues) longestOther(i int) int {
	n := 0
	for j := range p.q {
		if j != i {
			n = max(n, len(p.q[j]))
		}
	}
	return n
}

func (p *runQueues) pcpuOf(v *VCPU) int {
	for i, c := range p.cur {
		if c == v {
			return i
		}
	}
	return -1
}

// Boost implements Queuer: v to the front of its queue, the current
// slice there cut at until.
func (p *runQueues) Boost(s *State, v *VCPU, until time.Duration) {
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

// HandOff implements Queuer: to takes the rest of from's slice.
func (p *runQueues) HandOff(s *State, from, to *VCPU) bool {
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
func (p *runQueues) Extend(s *State, v *VCPU, until time.Duration) {
	if p.pcpuOf(v) >= 0 {
		v.SliceEnd = until
	}
}

// Expire implements Queuer.
func (p *runQueues) Expire(s *State, v *VCPU) {
	if i := p.pcpuOf(v); i >= 0 {
		p.yielded[i] = true
	}
}
