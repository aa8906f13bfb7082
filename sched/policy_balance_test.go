package sched

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// balanceQueues lists by pCPU what its queue holds: the running vCPU first
// (or "-"), then the waiters in order.
func balanceQueues(r *rig) map[int][]string {
	p := r.s.pol.(*balancePolicy)
	out := map[int][]string{}
	for i := range p.q {
		name := "-"
		if p.cur[i] != nil {
			name = p.cur[i].Name
		}
		out[i] = []string{name}
		for _, v := range p.q[i] {
			out[i] = append(out[i], v.Name)
		}
	}
	return out
}

func TestBalancePlacesSiblingsApart(t *testing.T) {
	r := newRig(t, "balance", 2, 2, 2)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0", "vm1/cpu0"}, 1: {"vm0/cpu1", "vm1/cpu1"}}, balanceQueues(r))
	for i := 0; i < 4; i++ {
		vm := []string{"vm0", "vm1"}[i%2]
		assert.Equal(t, map[int][]string{0: {vm + "/cpu0"}, 1: {vm + "/cpu1"}}, r.running(), "siblings always run together")
		r.advance(10 * time.Millisecond)
	}
}

func TestBalanceWakePlacement(t *testing.T) {
	// rr would queue a woken vCPU on its last pCPU; balance picks the one
	// without a sibling even if it is busier.
	r := newRig(t, "balance", 2, 1, 2, 1)
	// vm0/cpu0 -> 0, vm1/cpu0 -> 1 (least loaded), vm1/cpu1 -> 0 (no
	// sibling), vm2/cpu0 -> 1 (least loaded).
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0", "vm1/cpu1"}, 1: {"vm1/cpu0", "vm2/cpu0"}}, balanceQueues(r))
	r.clock.now = time.Millisecond
	require.Equal(t, Blocking, r.s.Block(r.v(1, 0), func() bool { return true }))
	r.check()
	r.clock.now = 2 * time.Millisecond
	require.Equal(t, Blocking, r.s.Block(r.v(0, 0), func() bool { return true }))
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm1/cpu1"}, 1: {"vm2/cpu0"}}, balanceQueues(r))
	r.clock.now = 3 * time.Millisecond
	r.s.Wake(r.v(1, 0), nil) // its last pCPU is 1, but pCPU 0 holds its sibling
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm1/cpu1"}, 1: {"vm2/cpu0", "vm1/cpu0"}}, balanceQueues(r))
	r.s.Wake(r.v(0, 0), nil) // no siblings anywhere: the least loaded queue
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm1/cpu1", "vm0/cpu0"}, 1: {"vm2/cpu0", "vm1/cpu0"}}, balanceQueues(r))
}

func TestBalanceStealKeepsSiblingsApart(t *testing.T) {
	// vm0 has 3 vCPUs, vm1 2, on 3 pCPUs.
	r := newRig(t, "balance", 3, 3, 2)
	assert.Equal(t, map[int][]string{
		0: {"vm0/cpu0", "vm1/cpu0"}, 1: {"vm0/cpu1", "vm1/cpu1"}, 2: {"vm0/cpu2"},
	}, balanceQueues(r))
	// 10 ms: pCPU 2's slice ends with an empty queue. rr would steal
	// vm0/cpu0 and queue it behind its sibling vm0/cpu2; balance does not
	// (pCPUs 0 and 1 hold no other vCPU of vm0), and vm0/cpu2 runs on.
	r.advance(10 * time.Millisecond)
	assert.Equal(t, map[int][]string{
		0: {"vm1/cpu0", "vm0/cpu0"}, 1: {"vm1/cpu1", "vm0/cpu1"}, 2: {"vm0/cpu2"},
	}, balanceQueues(r))
	// An idle pCPU may always steal: it holds no sibling of anything.
	r.clock.now = 11 * time.Millisecond
	require.Equal(t, Blocking, r.s.Block(r.v(0, 2), func() bool { return true }))
	r.check()
	assert.Equal(t, map[int][]string{
		0: {"vm1/cpu0"}, 1: {"vm1/cpu1", "vm0/cpu1"}, 2: {"vm0/cpu0"},
	}, balanceQueues(r))
	// Compare: rr puts the siblings together at 10 ms.
	rr := newRig(t, "rr", 3, 3, 2)
	rr.advance(10 * time.Millisecond)
	assert.Equal(t, []string{"vm0/cpu0"}, rr.running()[2], "rr: stolen, its sibling vm0/cpu2 now waits on pCPU 2")
}

func TestBalanceStealPrefersASharedQueue(t *testing.T) {
	// vm0 has 3 vCPUs on 2 pCPUs, so two of them must share a queue.
	r := newRig(t, "balance", 2, 3, 1)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0", "vm0/cpu2"}, 1: {"vm0/cpu1", "vm1/cpu0"}}, balanceQueues(r))
	r.clock.now = time.Millisecond
	require.Equal(t, Blocking, r.s.Block(r.v(0, 1), func() bool { return true }))
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0", "vm0/cpu2"}, 1: {"vm1/cpu0"}}, balanceQueues(r))
	// 10 ms: vm0/cpu0's slice ends; vm0/cpu2 runs and vm0/cpu0 leaves the
	// queue it would share with it for pCPU 1, which holds no vm0 vCPU now.
	r.advance(9 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}, 1: {"vm1/cpu0", "vm0/cpu0"}}, balanceQueues(r))
	r.advance(time.Millisecond) // 11 ms: vm1/cpu0's slice ends
	assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}, 1: {"vm0/cpu0", "vm1/cpu0"}}, balanceQueues(r))
	assert.Len(t, r.running(), 2)
}

func TestBalanceHandOffSwapsPlaces(t *testing.T) {
	r := newRig(t, "balance", 2, 4)
	q := r.s.pol.(Queuer)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0", "vm0/cpu2"}, 1: {"vm0/cpu1", "vm0/cpu3"}}, balanceQueues(r))
	r.s.Snapshot(func(st *State) { require.True(t, q.HandOff(st, r.v(0, 0), r.v(0, 3))) })
	r.s.Tick()
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu3", "vm0/cpu2"}, 1: {"vm0/cpu1", "vm0/cpu0"}}, balanceQueues(r),
		"two vCPUs per queue still")
	assert.Equal(t, 10*time.Millisecond, r.v(0, 3).SliceEnd)
	r.s.Snapshot(func(st *State) {
		assert.False(t, q.HandOff(st, r.v(0, 3), r.v(0, 1)), "not to a running vCPU")
		q.Boost(st, r.v(0, 0), st.Now+time.Millisecond)
		q.Extend(st, r.v(0, 3), 20*time.Millisecond)
	})
	r.s.Tick()
	r.advance(time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu3"}, 1: {"vm0/cpu0"}}, r.running(), "boosted on its own queue; extended")
	r.s.Snapshot(func(st *State) { q.Expire(st, r.v(0, 3)) })
	r.s.Tick()
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}, 1: {"vm0/cpu0"}}, r.running())
}

func TestBalanceRandom(t *testing.T) {
	for i, spec := range []string{"balance", "balance+pv", "balance+delay", "balance+pv+delay"} {
		t.Run(spec, func(t *testing.T) {
			for seed := uint64(0); seed < 3; seed++ {
				policyWalk(t, spec, 2000+uint64(i)*100+seed, 3, nil, 4, 2, 1, 3)
			}
		})
	}
}
