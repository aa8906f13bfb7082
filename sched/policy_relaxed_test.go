package sched

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRelaxedCoStopsTheLeader(t *testing.T) {
	r := newRig(t, "relaxed", 1, 2) // skew threshold 3 ms, slice 10 ms
	v0, v1 := r.v(0, 0), r.v(0, 1)
	r.advance(2 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
	assert.Zero(t, r.st.Acct.CoStops)
	r.advance(time.Millisecond) // 3 ms: vm0/cpu0 is 3 ms ahead of its waiting sibling
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "the leader is co-stopped long before its slice ends")
	assert.EqualValues(t, 1, r.st.Acct.CoStops)
	assert.Equal(t, 3*time.Millisecond, r.st.Acct.MaxSkew)
	// The laggard catches up and in turn gets ahead: siblings alternate
	// instead of drifting a whole slice apart.
	for r.clock.now < 9*time.Millisecond-500*time.Microsecond {
		r.advance(500 * time.Microsecond)
		assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "at %v", r.clock.now)
	}
	r.advance(500 * time.Microsecond) // 9 ms
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
	assert.EqualValues(t, 2, r.st.Acct.CoStops)
	for r.clock.now < 60*time.Millisecond {
		r.advance(500 * time.Microsecond)
		d := v0.Acct.Run - v1.Acct.Run
		assert.LessOrEqual(t, max(d, -d), 3*time.Millisecond, "at %v", r.clock.now)
	}
	assert.Equal(t, 3*time.Millisecond, r.st.Acct.MaxSkew)
	r.s.Stop()
	assert.Equal(t, 60*time.Millisecond, v0.Acct.Run+v1.Acct.Run)
}

func TestRelaxedBlockedSiblingMakesProgress(t *testing.T) {
	r := newRig(t, "relaxed", 1, 2)
	v0, v1 := r.v(0, 0), r.v(0, 1)
	r.clock.now = 2 * time.Millisecond
	r.s.Yield(v0, -1) // 2 ms ahead: below the threshold
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
	r.clock.now = 3 * time.Millisecond
	require.Equal(t, Blocking, r.s.Block(v1, func() bool { return true }))
	r.check()
	// v1 idles in WAIT: that is progress, so v0 runs on, never co-stopped.
	for r.clock.now < 30*time.Millisecond {
		r.advance(500 * time.Microsecond)
		assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "at %v", r.clock.now)
	}
	r.s.Wake(v1, nil)
	r.check()
	assert.Equal(t, 28*time.Millisecond, v1.Progress, "1 ms run, 27 ms blocked")
	r.advance(500 * time.Microsecond)
	assert.Zero(t, r.st.Acct.CoStops, "v1 is 1 ms behind, not 26")
	assert.Equal(t, 2*time.Millisecond, r.st.Acct.MaxSkew, "at the yield")
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "v0's slice ended long ago (as under rr)")
}

func TestRelaxedWaitingBehindAnotherVMIsNoSkew(t *testing.T) {
	// Two single-vCPU VMs have no siblings: relaxed is rr.
	r := newRig(t, "relaxed", 1, 1, 1)
	r.advance(10 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm1/cpu0"}}, r.running())
	r.advance(10 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
	assert.Zero(t, r.st.Acct.CoStops)
	assert.Zero(t, r.st.Acct.MaxSkew)
}

func TestRelaxedLaggardTakesItsSiblingsTurn(t *testing.T) {
	r := newRig(t, "relaxed", 1, 2, 1) // queue: vm0/cpu0, vm0/cpu1, vm1/cpu0
	r.clock.now = 2 * time.Millisecond
	r.s.Yield(r.v(0, 0), -1)
	r.check()
	r.clock.now = 3 * time.Millisecond
	r.s.Yield(r.v(0, 1), -1)
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm1/cpu0"}}, r.running())
	// Queue: vm0/cpu0 (2 ms of progress), vm0/cpu1 (1 ms). vm0's turn goes
	// to the one behind.
	r.advance(10 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
	assert.Zero(t, r.st.Acct.CoStops)
}

// TestRelaxedCoStopHandsThePCPUToTheLaggard: a co-stop frees its pCPU for
// the sibling that lags, which waits in another pCPU's queue, for the rest
// of the slice - not for the other VM queued behind the leader.
func TestRelaxedCoStopHandsThePCPUToTheLaggard(t *testing.T) {
	r := newRig(t, "relaxed", 2, 2, 2) // pCPU 0: vm0/cpu0, vm1/cpu0; pCPU 1: vm0/cpu1, vm1/cpu1
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}}, r.running())
	r.advance(5 * time.Millisecond) // pCPU 1's first (staggered) slice ends
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm1/cpu1"}}, r.running())
	// 8 ms: vm0/cpu0 is 3 ms ahead of vm0/cpu1, vm1/cpu1 3 ms ahead of
	// vm1/cpu0: both leaders are co-stopped, and each pCPU goes to the
	// leader's laggard, from the other queue.
	r.advance(3 * time.Millisecond)
	assert.EqualValues(t, 2, r.st.Acct.CoStops)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}, 1: {"vm1/cpu0"}}, r.running())
}

func TestRelaxedIdlePCPUWaitsForRelease(t *testing.T) {
	// vm0 has 3 vCPUs on 2 pCPUs: vm0/cpu2 waits, so the two that run are
	// co-stopped together at 3 ms and pCPU 1 idles (nothing else may run)
	// until they are back within half the threshold.
	r := newRig(t, "relaxed", 2, 3)
	r.advance(3 * time.Millisecond)
	assert.EqualValues(t, 2, r.st.Acct.CoStops)
	assert.Len(t, r.running(), 1)
	assert.Equal(t, []string{"vm0/cpu2"}, r.running()[0])
	r.advance(time.Millisecond)
	assert.Len(t, r.running(), 1, "4 ms: skews are 2 ms")
	r.advance(500 * time.Microsecond)
	assert.Len(t, r.running(), 2, "4.5 ms: released at 1.5 ms of skew, the idle pCPU takes one")
}

func TestRelaxedRandom(t *testing.T) {
	const skew = 3 * time.Millisecond
	// After every step, no running vCPU is Skew ahead of its slowest
	// runnable sibling (progress computed here from the accounting).
	skewCheck := func(t *testing.T, r *rig) {
		now := r.clock.now
		prog := func(v *VCPU) time.Duration {
			d := v.Acct.Run + v.Acct.Blocked
			if v.Status == Running || v.Status == Blocked {
				d += now - v.since
			}
			return d
		}
		for _, vs := range r.st.VMs {
			slowest := time.Duration(-1)
			for _, v := range vs {
				if v.Status == Runnable || v.Status == Running {
					if p := prog(v); slowest < 0 || p < slowest {
						slowest = p
					}
				}
			}
			for _, v := range vs {
				if v.Status == Running {
					require.Less(t, prog(v)-slowest, skew, "%s at %v", v.Name, now)
				}
			}
		}
	}
	for i, spec := range []string{"relaxed", "relaxed+pv", "relaxed+delay", "relaxed+pv+delay"} {
		t.Run(spec, func(t *testing.T) {
			for seed := uint64(0); seed < 3; seed++ {
				policyWalk(t, spec, 1000+uint64(i)*100+seed, 3, skewCheck, 4, 2, 1, 3)
			}
		})
	}
}

// TestRelaxedCoStart: a co-stopped vCPU, released, runs at once beside its
// running sibling, on the pCPU of a vCPU that runs without its own siblings
// (which goes back to the front of its queue), until that sibling's slice
// ends. Two 2-vCPU VMs on 2 pCPUs then run each VM's vCPUs together, where
// without co-start each VM alternates its vCPUs on one pCPU every skew.
func TestRelaxedCoStart(t *testing.T) {
	r := newRig(t, "relaxed", 2, 2, 2) // pCPU 0: vm0/cpu0, vm1/cpu0; pCPU 1: vm0/cpu1, vm1/cpu1
	r.advance(5 * time.Millisecond)    // as in TestRelaxedCoStopHandsThePCPUToTheLaggard
	r.advance(3 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}, 1: {"vm1/cpu0"}}, r.running())
	assert.Zero(t, r.st.Acct.CoStarts)
	// 9.5 ms: both leaders are back within half the threshold. vm0/cpu0 is
	// co-started beside vm0/cpu1, on pCPU 1, where vm1/cpu0 ran alone;
	// vm1/cpu1 then has no sibling running and waits its turn.
	r.advance(1500 * time.Microsecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}, 1: {"vm0/cpu0"}}, r.running())
	assert.EqualValues(t, 1, r.st.Acct.CoStarts)
	assert.Equal(t, r.v(0, 1).SliceEnd, r.v(0, 0).SliceEnd, "the co-started vCPU ends its slice with its sibling")
	// From here the VMs take turns running together: over 300 ms, each VM
	// has both vCPUs on the pCPUs most of the time it runs at all, and
	// co-stops are rare.
	together, running := [2]time.Duration{}, [2]time.Duration{}
	costops := r.st.Acct.CoStops
	for r.clock.now < 310*time.Millisecond {
		r.advance(500 * time.Microsecond)
		n := [2]int{}
		for _, names := range r.running() {
			for _, name := range names {
				n[name[2]-'0']++
			}
		}
		for vm := range n {
			if n[vm] > 0 {
				running[vm] += 500 * time.Microsecond
			}
			if n[vm] == 2 {
				together[vm] += 500 * time.Microsecond
			}
		}
	}
	for vm := range together {
		assert.Greater(t, together[vm], running[vm]*3/4, "vm%d: together %v of %v running", vm, together[vm], running[vm])
	}
	assert.Less(t, r.st.Acct.CoStops-costops, uint64(20), "co-stops in 300 ms")
}
