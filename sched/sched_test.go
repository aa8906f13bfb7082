package sched

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPolicySpecs(t *testing.T) {
	for _, ok := range []string{"host", "rr"} {
		p, err := New(ok, Options{})
		require.NoError(t, err, ok)
		assert.Equal(t, ok, p.Name())
	}
	for _, bad := range []string{"", "nope", "rr+nope", "rr+rr", "host+rr"} {
		_, err := New(bad, Options{})
		assert.Error(t, err, bad)
	}
}

// TestHasModifier: a spec has a modifier when it is one of its parts.
func TestHasModifier(t *testing.T) {
	for spec, want := range map[string]bool{"pv": true, "rr+pv": true, "gang+pv+delay": true, "rr": false, "delay": false, "": false} {
		assert.Equal(t, want, HasModifier(spec, "pv"), spec)
	}
	assert.True(t, HasModifier("balance+pv+delay", "delay"))
}

func TestRRTimeSlices(t *testing.T) {
	r := newRig(t, "rr-aligned", 2, 4) // one VM, 4 vCPUs, 2 pCPUs
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}}, r.running())
	r.advance(5 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}}, r.running(), "mid-slice: no change")
	r.advance(5 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}, 1: {"vm0/cpu3"}}, r.running(), "slice end: rotate")
	r.advance(10 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}}, r.running())
	assert.EqualValues(t, 1, r.v(0, 0).Acct.Preemptions)
	r.s.Stop()
	for _, v := range r.st.VCPUs {
		assert.Equal(t, 10*time.Millisecond, v.Acct.Run, v.Name)
		assert.Equal(t, 10*time.Millisecond, v.Acct.Steal, v.Name)
	}
	assert.EqualValues(t, 6, r.st.Acct.Switches)
	assert.Equal(t, 20*time.Millisecond, r.st.PCPUs[0].Busy)
}

// TestRRStaggersSlices: rr's pCPUs switch half a slice apart (2 pCPUs),
// and keep that phase: pCPU 1's first slice is cut to half.
func TestRRStaggersSlices(t *testing.T) {
	r := newRig(t, "rr", 2, 4)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}}, r.running())
	want := []map[int][]string{
		{0: {"vm0/cpu0"}, 1: {"vm0/cpu3"}}, // 5 ms: pCPU 1's half slice ends
		{0: {"vm0/cpu2"}, 1: {"vm0/cpu3"}}, // 10 ms: pCPU 0's whole slice ends
		{0: {"vm0/cpu2"}, 1: {"vm0/cpu1"}}, // 15 ms
		{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}}, // 20 ms
		{0: {"vm0/cpu0"}, 1: {"vm0/cpu3"}}, // 25 ms
	}
	for i, w := range want {
		r.advance(5 * time.Millisecond)
		assert.Equal(t, w, r.running(), "at %d ms", 5*(i+1))
	}
	p, err := New("rr-aligned", Options{})
	require.NoError(t, err)
	assert.Equal(t, "rr-aligned", p.Name())
}

func TestRRNoOvercommitNeverPreempts(t *testing.T) {
	r := newRig(t, "rr", 2, 2)
	for i := 0; i < 10; i++ {
		r.advance(10 * time.Millisecond)
	}
	assert.Zero(t, r.v(0, 0).Acct.Preemptions)
	assert.EqualValues(t, 2, r.st.Acct.Switches)
}

func TestLHPAccounting(t *testing.T) {
	r := newRig(t, "rr", 1, 2)
	r.tgt.hints[r.v(0, 0).Index] = Hints{Holding: true, InCS: true}
	r.tgt.hints[r.v(0, 1).Index] = Hints{Waiting: true, NextInLine: true}
	r.advance(10 * time.Millisecond) // preempts vCPU 0 while it holds
	assert.EqualValues(t, 1, r.v(0, 0).Acct.LHP)
	r.advance(10 * time.Millisecond) // preempts vCPU 1, next in line
	assert.EqualValues(t, 1, r.v(0, 1).Acct.LWP)
	assert.Zero(t, r.v(0, 1).Acct.LHP)
}

// TestLHPIsReadWhenTheVCPUStops: a preempted vCPU runs until its thread
// sees the request, and its lock state is read then, not at the decision:
// a holder that releases the lock before it stops is no LHP, one that takes
// the lock before it stops is; a preemption undone before the vCPU stopped
// (dispatched again) is not classified at all. The marks carry the time of
// the decision.
func TestLHPIsReadWhenTheVCPUStops(t *testing.T) {
	rec := &recorded{}
	r := newRig(t, "rr", 1, 2)
	r.st.Rec = rec
	v0, v1 := r.v(0, 0), r.v(0, 1)
	r.tgt.hints[v0.Index] = Hints{Holding: true, InCS: true}
	r.clock.now = 10 * time.Millisecond
	r.s.Tick() // decides to preempt v0, holding
	require.True(t, v0.StopPending())
	r.tgt.hints[v0.Index] = Hints{} // it releases before its thread sees the kick
	r.clock.now += 60 * time.Microsecond
	r.stopped()
	assert.Zero(t, v0.Acct.LHP, "released before it stopped")
	assert.EqualValues(t, 1, v0.Acct.Preemptions)
	assert.Equal(t, []time.Duration{60 * time.Microsecond}, r.st.Acct.StopLatencies)

	r.tgt.hints[v1.Index] = Hints{Waiting: true}
	r.clock.now = 20 * time.Millisecond
	r.s.Tick()                                   // preempts v1, waiting
	r.tgt.hints[v1.Index] = Hints{Holding: true} // it takes the lock before it stops
	r.clock.now += 30 * time.Microsecond
	r.stopped()
	assert.EqualValues(t, 1, v1.Acct.LHP, "took the lock before it stopped")
	assert.Zero(t, v1.Acct.WaiterPreempt)
	var lhpAt time.Duration
	for _, x := range rec.recs {
		if x.Kind == RecMark && x.Mark == MarkLHP {
			lhpAt = x.At
		}
		if x.Kind == RecRan && x.V == v1 {
			assert.Equal(t, 20*time.Millisecond, x.At, "the stay ends at the decision")
			assert.Equal(t, 20*time.Millisecond+30*time.Microsecond, x.StoppedAt)
			assert.Equal(t, Hints{Holding: true}, x.Hints)
		}
	}
	assert.Equal(t, 20*time.Millisecond, lhpAt)

	// Preempted, then dispatched again before it stopped: it never left.
	r.clock.now = 30 * time.Millisecond
	r.tgt.hints[v0.Index] = Hints{Holding: true}
	r.s.Tick() // v0 off (holding), v1 on
	require.True(t, v0.StopPending())
	r.tgt.stopping = nil // v0's thread never gets to park
	r.s.Block(v1, func() bool { return true })
	assert.False(t, v0.StopPending())
	assert.Equal(t, Running, v0.Status, "dispatched again")
	assert.Zero(t, v0.Acct.LHP, "a preemption it never stopped for is not classified")
	r.check()
}

func TestOffCPUChangePossible(t *testing.T) {
	none, wait, next, hold := Hints{}, Hints{Waiting: true, LockID: 1}, Hints{Waiting: true, NextInLine: true, LockID: 1}, Hints{Holding: true, LockID: 1}
	for _, tt := range []struct {
		was, now Hints
		ok       bool
	}{
		{none, none, true}, {hold, hold, true},
		{wait, hold, true}, {next, hold, true}, // a FIFO grant
		{wait, next, true}, {next, wait, true}, // the queue moved
		{hold, none, false}, {none, hold, false}, {none, wait, false}, {wait, none, false},
		{hold, wait, false}, {wait, Hints{Holding: true, LockID: 2}, false},
		{Hints{InCS: true, Holding: true}, hold, false},
		{Hints{Holding: true, Handed: true, LockID: 1}, wait, true}, // stolen from under it
		{Hints{Holding: true, Handed: true, LockID: 1}, none, false},
	} {
		assert.Equal(t, tt.ok, OffCPUChangePossible(tt.was, tt.now), "%v -> %v", tt.was, tt.now)
	}
}

func TestBlockWakeFutexRules(t *testing.T) {
	r := newRig(t, "rr", 1, 2)
	v0, v1 := r.v(0, 0), r.v(0, 1)
	// A KICK to a running vCPU stays pending and its next WAIT returns at once.
	r.s.Wake(v0, nil)
	assert.Equal(t, KickWasThere, r.s.Block(v0, func() bool { return true }))
	// A changed value: no block.
	assert.Equal(t, ValueChanged, r.s.Block(v0, func() bool { return false }))
	// A real block frees the pCPU for the other vCPU.
	r.clock.now = time.Millisecond
	assert.Equal(t, Blocking, r.s.Block(v0, func() bool { return true }))
	r.check()
	assert.Equal(t, Blocked, v0.Status)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
	// Blocked time accrues; KICK makes it runnable and records wake latency.
	r.clock.now = 3 * time.Millisecond
	r.s.Wake(v0, nil)
	r.check()
	assert.Equal(t, Runnable, v0.Status)
	assert.Equal(t, 2*time.Millisecond, v0.Acct.Blocked)
	r.advance(8 * time.Millisecond) // v1's slice (from 1 ms) ends at 11 ms
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
	p50, _ := r.st.Acct.WakePercentiles()
	assert.Equal(t, 8*time.Millisecond, p50)
	r.s.Exit(v1)
	r.s.Exit(v0)
	r.check()
	assert.Empty(t, r.running())
}

func TestHostRunsEverything(t *testing.T) {
	r := newRig(t, "host", 2, 5)
	assert.Len(t, r.running()[0], 3)
	assert.Len(t, r.running()[1], 2)
	assert.Equal(t, Blocking, r.s.Block(r.v(0, 0), func() bool { return true }))
	assert.Len(t, r.running()[0], 2)
	r.s.Wake(r.v(0, 0), nil)
	assert.Len(t, r.running()[0], 3)
	r.advance(time.Second)
	assert.Zero(t, r.v(0, 1).Acct.Preemptions)
}

func TestRRYield(t *testing.T) {
	r := newRig(t, "rr", 1, 3)
	r.clock.now = time.Millisecond
	r.s.Yield(r.v(0, 0), -1)
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "yield hands the pCPU to the next in queue")
}

func TestRRStealsWhenIdle(t *testing.T) {
	r := newRig(t, "rr", 2, 3) // homes: 0,1,0
	r.clock.now = time.Millisecond
	assert.Equal(t, Blocking, r.s.Block(r.v(0, 1), func() bool { return true }))
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu2"}}, r.running(), "pCPU 1 steals the waiter of pCPU 0")
}

func TestRRQueuer(t *testing.T) {
	r := newRig(t, "rr", 1, 3)
	q := r.s.pol.(Queuer)
	v0, v1, v2 := r.v(0, 0), r.v(0, 1), r.v(0, 2)
	// HandOff: v0 gives its slice to v2, jumping v1.
	r.s.Snapshot(func(st *State) { require.True(t, q.HandOff(st, v0, v2)) })
	r.s.Tick()
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}}, r.running())
	assert.Equal(t, 10*time.Millisecond, v2.SliceEnd, "the rest of v0's slice")
	r.s.Snapshot(func(st *State) { assert.False(t, q.HandOff(st, v2, v2), "not to itself") })
	// Extend and Expire.
	r.s.Snapshot(func(st *State) { q.Extend(st, v2, 15*time.Millisecond) })
	r.advance(12 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}}, r.running(), "extended past 10 ms")
	r.s.Snapshot(func(st *State) { q.Expire(st, v2) })
	r.s.Tick()
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
	// Boost: blocked v0 woken to the front, runs by the given time.
	assert.Equal(t, Blocking, r.s.Block(r.v(0, 1), func() bool { return true }))
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
	assert.Equal(t, Blocking, r.s.Block(v0, func() bool { return true }))
	r.check()
	r.s.Wake(v1, nil)
	r.s.Snapshot(func(st *State) { q.Boost(st, v1, st.Now+time.Millisecond) })
	r.s.Tick() // modifiers boost inside Event, before Decide; here we re-plan by hand
	r.advance(time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "boosted ahead of v2")
}
