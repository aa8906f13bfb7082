package sched

import "time"

// sliceClock hands out slice ends.
type sliceClock struct{ slice time.Duration }

func (c sliceClock) end(now time.Duration) time.Duration {
	if c.slice <= 0 {
		return now + DefaultSlice
	}
	return now + c.slice
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
