package sched

import "time"

// runQueues is the per-pCPU run-queue bookkeeping the round-robin family of
// policies shares (rr, monitor, balance): what each pCPU runs, a FIFO of
// runnable vCPUs waiting for it, and whether its vCPU yielded, with rr's
// rotation of a pCPU (rotate). It is not a policy: a policy embeds it and
// decides with it. Its Boost, HandOff, Extend and Expire are rr's Queuer
// semantics; an embedding policy may override them (balance does Boost,
// HandOff and stealing, to keep its placement rule).
type runQueues struct {
	cur     []*VCPU   // per pCPU: the vCPU it runs
	q       [][]*VCPU // per pCPU: runnable vCPUs waiting, FIFO
	yielded []bool    // per pCPU: cur yielded, rotate at once
}

func (p *runQueues) init(pcpus int) {
	p.cur, p.q, p.yielded = make([]*VCPU, pcpus), make([][]*VCPU, pcpus), make([]bool, pcpus)
}

// queueOf returns the queue that holds v (runs it or has it waiting), or -1.
func (p *runQueues) queueOf(v *VCPU) int {
	for i := range p.q {
		if p.cur[i] == v {
			return i
		}
		for _, w := range p.q[i] {
			if w == v {
				return i
			}
		}
	}
	return -1
}

// yield marks v's pCPU to rotate at once (YIELD).
func (p *runQueues) yield(v *VCPU) {
	if i := p.pcpuOf(v); i >= 0 {
		p.yielded[i] = true
	}
}

// rotate is rr's step on pCPU i: a slice that ended (or was yielded) puts
// what ran at the back of the queue and starts its head, stealing from the
// longest other queue when its own is empty; an idle pCPU starts its head
// (or a stolen waiter); a slice that ended with nobody waiting anywhere
// starts a new one. It returns what runs on i now (nil: idle).
func (p *runQueues) rotate(s *State, i int, slice *sliceClock) *VCPU {
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
			cur.SliceEnd = slice.endOn(s, i)
		}
	} else if expired {
		cur.SliceEnd = slice.end(s.Now) // nobody waits: a new slice
	}
	return cur
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
