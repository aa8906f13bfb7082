package sched

import "time"

// sliceClock hands out slice ends. Unless aligned, the first slice each
// pCPU hands out is cut short by its phase (State.phase: the run's seeded
// Start, or i/n on pCPU i of n), so that the pCPUs' slices end staggered,
// as a real host's do. Aligned slices (all pCPUs switching at the same
// instants) co-schedule the vCPUs that happen to share a phase by
// accident: no real scheduler does that, and it would flatter a baseline
// against co-scheduling.
type sliceClock struct {
	slice   time.Duration
	aligned bool
	started []bool // per pCPU: has handed out its first slice
}

func (c *sliceClock) length() time.Duration {
	if c.slice <= 0 {
		return DefaultSlice
	}
	return c.slice
}

// end is the end of a slice that continues a pCPU's rhythm from now.
func (c *sliceClock) end(now time.Duration) time.Duration { return now + c.length() }

// endOn is the end of a slice starting now on pCPU i of s.
func (c *sliceClock) endOn(s *State, i int) time.Duration {
	e := c.end(s.Now)
	n := len(s.PCPUs)
	if c.aligned || i < 0 || i >= n {
		return e
	}
	if c.started == nil {
		c.started = make([]bool, n)
	}
	if !c.started[i] {
		c.started[i] = true
		e -= cut(c.length(), s.phase(i))
	}
	return e
}

// earliest returns the earlier of two deadlines, 0 meaning none.
func earliest(a, b time.Duration) time.Duration {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

func removeVCPU(l []*VCPU, v *VCPU) []*VCPU {
	for i, w := range l {
		if w == v {
			return append(l[:i], l[i+1:]...)
		}
	}
	return l
}
