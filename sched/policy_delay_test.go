package sched

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var delaySpecs = []string{"delay", "pv+delay", "delay+pv"}

const delayT = 50 * time.Microsecond // DelayMax of the rig

// pvdNext moves the clock to the scheduler's next deadline.
func (r *rig) pvdNext() {
	r.t.Helper()
	require.NotZero(r.t, r.s.next)
	r.pvdAt(r.s.next)
}

func TestDelayGrantEndsAtYield(t *testing.T) {
	for _, spec := range delaySpecs {
		t.Run(spec, func(t *testing.T) {
			r := pvdRig(t, spec, 1, 2)
			v0 := r.v(0, 0)
			r.tgt.hints[v0.Index] = Hints{InCS: true, Holding: true}
			r.pvdAt(10 * time.Millisecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "extended")
			assert.EqualValues(t, 1, r.st.Acct.DelayGrants)
			assert.True(t, r.tgt.published[v0.Index].YieldRequested)
			assert.Equal(t, 10*time.Millisecond+delayT, v0.SliceEnd)
			assert.Equal(t, 10*time.Millisecond+delayT, r.s.next, "back at the bound")
			// Releases after 20 us and yields as asked.
			r.pvdAt(10*time.Millisecond + 20*time.Microsecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
			r.tgt.hints[v0.Index] = Hints{}
			r.s.Yield(v0, -1)
			r.check()
			assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "the yield lets the next vCPU run")
			assert.False(t, r.tgt.published[v0.Index].YieldRequested)
			assert.Zero(t, r.st.Acct.DelayOverruns)
			assert.Zero(t, v0.Acct.LHP)
			// v1 is not in a critical section: preempted at its slice end.
			r.pvdNext()
			assert.Equal(t, 20*time.Millisecond+20*time.Microsecond, r.clock.now)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
			assert.EqualValues(t, 1, r.st.Acct.DelayGrants)
		})
	}
}

func TestDelayOverrunIsPreempted(t *testing.T) {
	for _, spec := range delaySpecs {
		t.Run(spec, func(t *testing.T) {
			r := pvdRig(t, spec, 1, 2)
			v0 := r.v(0, 0)
			r.tgt.hints[v0.Index] = Hints{InCS: true, Holding: true}
			r.pvdAt(10 * time.Millisecond)
			assert.EqualValues(t, 1, r.st.Acct.DelayGrants)
			r.pvdAt(10*time.Millisecond + delayT - time.Microsecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
			r.pvdAt(10*time.Millisecond + delayT)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "preempted at the bound")
			assert.EqualValues(t, 1, r.st.Acct.DelayOverruns)
			assert.EqualValues(t, 1, v0.Acct.LHP, "still holding")
			assert.False(t, r.tgt.published[v0.Index].YieldRequested)
			assert.True(t, r.tgt.published[v0.Index].Preempted)
		})
	}
}

func TestDelayNotInCSIsPreemptedAtSliceEnd(t *testing.T) {
	for _, spec := range delaySpecs {
		t.Run(spec, func(t *testing.T) {
			r := pvdRig(t, spec, 1, 2)
			v0 := r.v(0, 0)
			r.tgt.hints[v0.Index] = Hints{Holding: true} // holds, but not marked InCS
			r.pvdAt(10 * time.Millisecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
			assert.Zero(t, r.st.Acct.DelayGrants)
			assert.False(t, r.tgt.published[v0.Index].YieldRequested)
			assert.EqualValues(t, 1, v0.Acct.LHP)
		})
	}
}

func TestDelayNoGrantWithoutContention(t *testing.T) {
	for _, spec := range delaySpecs {
		t.Run(spec, func(t *testing.T) {
			r := pvdRig(t, spec, 2, 2)
			r.tgt.hints[r.v(0, 0).Index] = Hints{InCS: true}
			r.clock.now = 10 * time.Millisecond
			r.s.Tick()
			r.check()
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}}, r.running())
			assert.Zero(t, r.st.Acct.DelayGrants, "nobody waits: nothing to defer")
			assert.False(t, r.tgt.published[r.v(0, 0).Index].YieldRequested)
		})
	}
}

func TestDelayRepeatedOverrunsBackOff(t *testing.T) {
	for _, spec := range delaySpecs {
		t.Run(spec, func(t *testing.T) {
			r := pvdRig(t, spec, 1, 2)
			v0 := r.v(0, 0)
			r.tgt.hints[v0.Index] = Hints{InCS: true} // never leaves
			run := func(name string) { t.Helper(); assert.Equal(t, map[int][]string{0: {name}}, r.running()) }
			for k := 1; k <= delayOverrunLimit; k++ {
				r.pvdNext() // v0's slice end: granted
				run("vm0/cpu0")
				assert.EqualValues(t, k, r.st.Acct.DelayGrants)
				assert.True(t, r.tgt.published[v0.Index].YieldRequested)
				r.pvdNext() // the bound: overrun
				run("vm0/cpu1")
				assert.EqualValues(t, k, r.st.Acct.DelayOverruns)
				r.pvdNext() // v1's slice end
				run("vm0/cpu0")
			}
			for k := 0; k < delayBackoffSlices; k++ {
				end := v0.SliceEnd
				r.pvdNext() // v0's slice end: no grant
				assert.Equal(t, end, r.clock.now)
				run("vm0/cpu1")
				assert.EqualValues(t, delayOverrunLimit, r.st.Acct.DelayGrants, "backing off, slice %d", k)
				r.pvdNext()
				run("vm0/cpu0")
			}
			r.pvdNext() // granted again
			run("vm0/cpu0")
			assert.EqualValues(t, delayOverrunLimit+1, r.st.Acct.DelayGrants)
		})
	}
}

func TestDelayCooperativeEndResetsOverruns(t *testing.T) {
	r := pvdRig(t, "delay", 1, 2)
	v0 := r.v(0, 0)
	for round := 0; round < 3; round++ {
		for k := 0; k < delayOverrunLimit-1; k++ {
			r.tgt.hints[v0.Index] = Hints{InCS: true}
			r.pvdNext() // grant
			r.pvdNext() // overrun
			r.pvdNext() // v1's slice end
		}
		r.pvdNext() // grant
		r.tgt.hints[v0.Index] = Hints{}
		r.s.Yield(v0, -1)
		r.check()
		r.pvdNext() // v1's slice end
	}
	assert.EqualValues(t, 3*delayOverrunLimit, r.st.Acct.DelayGrants, "never backed off")
	assert.EqualValues(t, 3*(delayOverrunLimit-1), r.st.Acct.DelayOverruns)
}

func TestDelayDirectedYieldDuringGrant(t *testing.T) {
	for _, spec := range []string{"pv+delay", "delay+pv"} {
		t.Run(spec, func(t *testing.T) {
			r := pvdRig(t, spec, 1, 3)
			v0 := r.v(0, 0)
			r.tgt.hints[v0.Index] = Hints{InCS: true}
			r.pvdAt(10 * time.Millisecond)
			assert.EqualValues(t, 1, r.st.Acct.DelayGrants)
			r.pvdAt(10*time.Millisecond + 10*time.Microsecond)
			r.tgt.hints[v0.Index] = Hints{}
			r.s.Yield(v0, r.v(0, 2).Index)
			r.check()
			assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "ends the grant like a plain yield")
			assert.Zero(t, r.st.Acct.DirectedYields)
			assert.False(t, r.tgt.published[v0.Index].YieldRequested)
			assert.Equal(t, 20*time.Millisecond+10*time.Microsecond, r.v(0, 1).SliceEnd, "a full slice")
		})
	}
}

func TestDelayGrantHoldsAgainstKickBoost(t *testing.T) {
	for _, spec := range []string{"pv+delay", "delay+pv"} {
		t.Run(spec, func(t *testing.T) {
			// A grant longer than pv's wake granularity: a KICK does not cut it.
			r := newRigOpts(t, spec, Options{Slice: 10 * time.Millisecond, DelayMax: time.Millisecond}, 1, 3)
			v0, v1 := r.v(0, 0), r.v(0, 1)
			r.pvdAt(time.Millisecond)
			require.Equal(t, Blocking, r.s.Block(v0, func() bool { return true }))
			r.tgt.hints[v1.Index] = Hints{InCS: true}
			r.pvdAt(11 * time.Millisecond)
			assert.EqualValues(t, 1, r.st.Acct.DelayGrants)
			r.pvdAt(11*time.Millisecond + 100*time.Microsecond)
			r.s.Wake(v0, nil)
			r.check()
			assert.Equal(t, 12*time.Millisecond, v1.SliceEnd, "the grant's bound holds")
			r.pvdAt(11*time.Millisecond + 600*time.Microsecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
			r.pvdAt(12 * time.Millisecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "the kicked vCPU runs at the bound")
			assert.EqualValues(t, 1, r.st.Acct.DelayOverruns)
		})
	}
}

// TestPVDelayRandom drives each spec with a seeded random sequence of
// hypercalls, deadlines and hint flips, checking the invariants at every
// step and the accounting at the end.
func TestPVDelayRandom(t *testing.T) {
	for i, spec := range []string{"pv", "delay", "pv+delay", "delay+pv"} {
		t.Run(spec, func(t *testing.T) {
			for seed := uint64(0); seed < 4; seed++ {
				pvdRandom(t, spec, uint64(i)*100+seed)
			}
		})
	}
}

func pvdRandom(t *testing.T, spec string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	r := pvdRig(t, spec, 3, 3, 4, 2)
	hasDelay := strings.Contains(spec, "delay")
	exited := map[*VCPU]time.Duration{}
	targeted := uint64(0)
	pick := func(st Status) *VCPU { return r.pickStatus(rng, st) }
	for step := 0; step < 4000; step++ {
		switch n := rng.IntN(100); {
		case n < 35: // time passes, often exactly to the next deadline
			d := time.Duration(rng.IntN(3000)+1) * time.Microsecond
			if rng.IntN(4) == 0 {
				d = time.Duration(rng.IntN(60)+1) * time.Microsecond
			}
			if next := r.s.next; next > r.clock.now && r.clock.now+d > next && rng.IntN(5) > 0 {
				d = next - r.clock.now
			}
			r.advance(d)
		case n < 50: // the guest of a running vCPU changes its hints
			v := r.st.VCPUs[rng.IntN(len(r.st.VCPUs))]
			if v.Status != Running {
				break // a guest that does not run says what it said
			}
			h := Hints{InCS: rng.IntN(2) == 0, Waiting: rng.IntN(3) == 0}
			h.Holding = h.InCS && rng.IntN(2) == 0
			h.NextInLine = h.Waiting && rng.IntN(2) == 0
			r.tgt.hints[v.Index] = h
		case n < 62: // WAIT
			r.randomWait(rng)
		case n < 80: // KICK, mostly of a blocked vCPU
			r.randomKick(rng)
		case n < 99: // YIELD
			if v := pick(Running); v != nil {
				target := -1
				if rng.IntN(3) > 0 {
					target = rng.IntN(len(r.st.VCPUs)+1) - 1
				}
				if target >= 0 {
					targeted++
				}
				r.s.Yield(v, target)
			}
		default: // EXIT, rarely
			if v := pick(Running); v != nil && len(exited) < 3 {
				r.s.Exit(v)
				exited[v] = r.clock.now
			}
		}
		r.check()
		pvdCheck(t, r, hasDelay)
	}
	assert.LessOrEqual(t, r.st.Acct.DirectedYields, targeted)
	assert.LessOrEqual(t, r.st.Acct.DelayOverruns, r.st.Acct.DelayGrants)
	if hasDelay {
		assert.NotZero(t, r.st.Acct.DelayGrants, "seed %d exercises grants", seed)
	}
	if strings.Contains(spec, "pv") {
		assert.NotZero(t, r.st.Acct.DirectedYields, "seed %d exercises directed yields", seed)
	}
	r.s.Stop()
	t.Logf("seed %d: %v: grants %d overruns %d directed yields %d/%d switches %d",
		seed, r.clock.now, r.st.Acct.DelayGrants, r.st.Acct.DelayOverruns, r.st.Acct.DirectedYields, targeted, r.st.Acct.Switches)
	for _, v := range r.st.VCPUs {
		end, ok := exited[v]
		if !ok {
			end = r.clock.now
		}
		assert.Equal(t, end, v.Acct.Run+v.Acct.Steal+v.Acct.Blocked, "seed %d: %s", seed, v.Name)
	}
}

// pvdCheck asserts what pv and delay promise on top of rig.check.
func pvdCheck(t *testing.T, r *rig, hasDelay bool) {
	t.Helper()
	runnable := false
	for _, v := range r.st.VCPUs {
		pub := r.tgt.published[v.Index]
		if v.Status == Runnable {
			runnable = true
		}
		if !pub.YieldRequested || v.Status == Blocked || v.Status == Done {
			continue // the mechanism leaves a blocked vCPU's flags as they were; it cannot act on them
		}
		require.True(t, hasDelay, "%s: yield requested without delay", v.Name)
		require.Equal(t, Running, v.Status, "%s: yield requested while not running", v.Name)
		require.Greater(t, v.SliceEnd, r.st.Now, "%s: grant past its bound", v.Name)
		require.LessOrEqual(t, v.SliceEnd, r.st.Now+delayT, "%s: grant longer than DelayMax", v.Name)
		require.NotZero(t, r.s.next)
		require.LessOrEqual(t, r.s.next, v.SliceEnd, "%s: the mechanism comes back at the bound", v.Name)
	}
	if runnable {
		require.Greater(t, r.s.next, r.clock.now, "a vCPU waits but no deadline is set")
	}
}
