package sched

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pvdRig is a rig whose modifiers read the fake target's hints.
func pvdRig(t *testing.T, spec string, pcpus int, vms ...int) *rig {
	t.Helper()
	r := newRig(t, spec, pcpus, vms...)
	return r
}

// at moves the clock to an absolute time, running a deadline that passed.
func (r *rig) pvdAt(t time.Duration) {
	r.t.Helper()
	require.GreaterOrEqual(r.t, t, r.clock.now)
	r.advance(t - r.clock.now)
}

var pvSpecs = []string{"pv", "pv+delay", "delay+pv"}

func TestPVSpecs(t *testing.T) {
	for spec, name := range map[string]string{
		"pv": "rr+pv", "rr+pv": "rr+pv", "pv+delay": "rr+pv+delay", "delay+pv": "rr+delay+pv",
		"delay": "rr+delay", "rr+delay+pv": "rr+delay+pv",
	} {
		p, err := New(spec, Options{})
		require.NoError(t, err, spec)
		assert.Equal(t, name, p.Name(), spec)
		assert.True(t, p.Exclusive(), spec)
		assert.True(t, IsModifier("pv") && IsModifier("delay"))
	}
	st, err := NewState([]int{0}, []int{2}, 10*time.Millisecond)
	require.NoError(t, err)
	for _, mod := range []string{"pv", "delay"} {
		err := registry[mod].wrap(hostPolicy{}, Options{}).Admit(st)
		assert.ErrorContains(t, err, "Queuer", mod+" over host")
		_, err = New(mod+"+"+mod, Options{})
		assert.ErrorContains(t, err, `policy "`+mod+"+"+mod+`": `+mod+` appears twice`, "named as typed")
		// The modifier's own check, for a chain not built by New.
		f := registry[mod]
		p := f.wrap(f.wrap(registry["rr"].new(Options{}), Options{}), Options{})
		assert.ErrorContains(t, p.Admit(st), "twice", mod+"+"+mod)
	}
	_, err = New("host+pv", Options{})
	assert.Error(t, err)
}

func TestPVKickRunsWithinWakeGranularity(t *testing.T) {
	for _, spec := range append([]string{"rr"}, pvSpecs...) {
		t.Run(spec, func(t *testing.T) {
			r := pvdRig(t, spec, 1, 3)
			v0 := r.v(0, 0)
			r.pvdAt(time.Millisecond)
			require.Equal(t, Blocking, r.s.Block(v0, func() bool { return true }))
			r.check()
			assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "v1's slice runs to 11 ms")
			r.pvdAt(2 * time.Millisecond)
			r.s.Wake(v0, nil)
			r.check()
			r.pvdAt(2*time.Millisecond + 499*time.Microsecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
			r.pvdAt(2*time.Millisecond + 500*time.Microsecond)
			if spec == "rr" {
				assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "rr: the woken vCPU queues behind")
				return
			}
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "KICKed vCPU runs after the wake granularity")
			assert.Equal(t, []time.Duration{500 * time.Microsecond}, r.st.Acct.WakeLatencies)
			assert.Equal(t, 2*time.Millisecond+500*time.Microsecond+10*time.Millisecond, v0.SliceEnd, "with a full slice")
			// v2, which waited, comes next; the preempted v1 after it.
			r.pvdAt(v0.SliceEnd)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}}, r.running())
		})
	}
}

func TestPVKicksInARowEachGetATurn(t *testing.T) {
	for _, spec := range pvSpecs {
		t.Run(spec, func(t *testing.T) {
			r := pvdRig(t, spec, 1, 4)
			v0, v1 := r.v(0, 0), r.v(0, 1)
			r.pvdAt(time.Millisecond)
			require.Equal(t, Blocking, r.s.Block(v0, func() bool { return true }))
			r.pvdAt(2 * time.Millisecond)
			require.Equal(t, Blocking, r.s.Block(v1, func() bool { return true }))
			r.check()
			assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}}, r.running())
			r.pvdAt(3 * time.Millisecond)
			r.s.Wake(v0, nil)
			r.check()
			r.pvdAt(3*time.Millisecond + 100*time.Microsecond)
			r.s.Wake(v1, nil)
			r.check()
			// v1 jumped v0; v0's deadline passes at 3.5 ms and it runs first.
			r.pvdAt(3*time.Millisecond + 500*time.Microsecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
			// v1 gets its turn one granularity after its own deadline (3.6 ms).
			r.pvdAt(3*time.Millisecond + 600*time.Microsecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
			r.pvdAt(4*time.Millisecond + 100*time.Microsecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
			assert.Equal(t, []time.Duration{500 * time.Microsecond, time.Millisecond}, r.st.Acct.WakeLatencies)
		})
	}
}

func TestPVDirectedYield(t *testing.T) {
	for _, spec := range pvSpecs {
		t.Run(spec, func(t *testing.T) {
			r := pvdRig(t, spec, 1, 3)
			v0, v2 := r.v(0, 0), r.v(0, 2)
			r.pvdAt(time.Millisecond)
			r.s.Yield(v0, v2.Index)
			r.check()
			assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}}, r.running(), "v2 jumps v1")
			assert.EqualValues(t, 1, r.st.Acct.DirectedYields)
			assert.Equal(t, 10*time.Millisecond, v2.SliceEnd, "the rest of v0's slice")
			r.pvdAt(10 * time.Millisecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
			r.pvdAt(20 * time.Millisecond)
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "the yielder went back to its queue")
		})
	}
}

func TestPVYieldToIneligibleTargetIsPlainYield(t *testing.T) {
	for _, spec := range pvSpecs {
		t.Run(spec, func(t *testing.T) {
			// Blocked target.
			r := pvdRig(t, spec, 1, 3)
			v0, v1, v2 := r.v(0, 0), r.v(0, 1), r.v(0, 2)
			r.pvdAt(time.Millisecond)
			require.Equal(t, Blocking, r.s.Block(v0, func() bool { return true }))
			r.pvdAt(2 * time.Millisecond)
			r.s.Yield(v1, v0.Index)
			r.check()
			assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}}, r.running(), "plain yield to the queue head")
			assert.Equal(t, Blocked, v0.Status)
			assert.Zero(t, r.st.Acct.DirectedYields)

			// Spinning target: v2 waits for a lock.
			r = pvdRig(t, spec, 1, 3)
			v0, v1, v2 = r.v(0, 0), r.v(0, 1), r.v(0, 2)
			r.tgt.hints[v2.Index] = Hints{Waiting: true, NextInLine: true}
			r.pvdAt(time.Millisecond)
			r.s.Yield(v0, v2.Index)
			r.check()
			assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "not to the spinning v2")
			assert.Zero(t, r.st.Acct.DirectedYields)

			// Running target (2 pCPUs), itself, another VM, out of range, -1.
			r = pvdRig(t, spec, 2, 3, 1)
			v1, other := r.v(0, 1), r.v(1, 0)
			require.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}}, r.running())
			require.Equal(t, Runnable, other.Status)
			for i, target := range []func(y *VCPU) int{
				func(*VCPU) int { return v1.Index },    // running
				func(y *VCPU) int { return y.Index },   // itself
				func(*VCPU) int { return other.Index }, // runnable, but in another VM
				func(*VCPU) int { return 99 },
				func(*VCPU) int { return -1 },
			} {
				// Within pCPU 1's first (staggered, half) slice.
				r.pvdAt(time.Duration(i+1) * 500 * time.Microsecond)
				y := r.st.PCPUs[0].Running[0]
				r.s.Yield(y, target(y))
				r.check()
				assert.NotEqual(t, y.Name, r.running()[0][0], "case %d: the yielder's slice ends", i)
				assert.Equal(t, map[int][]string{1: {"vm0/cpu1"}}, map[int][]string{1: r.running()[1]}, "case %d", i)
			}
			assert.Zero(t, r.st.Acct.DirectedYields)
		})
	}
}

func TestPVBoostKicked(t *testing.T) {
	for _, spec := range []string{"pv", "pv+delay", "delay+pv", "balance+pv", "monitor+pv"} {
		t.Run(spec, func(t *testing.T) {
			o := Options{Slice: 10 * time.Millisecond, Skew: 3 * time.Millisecond, DelayMax: 50 * time.Microsecond, BoostKicked: true}
			r := newRigOpts(t, spec, o, 1, 3)
			v0, v1 := r.v(0, 0), r.v(0, 1)
			r.pvdAt(time.Millisecond)
			require.Equal(t, Blocking, r.s.Block(v0, func() bool { return true }))
			r.check()
			running := r.running()[0][0]
			kicker := v1
			if running != v1.Name {
				kicker = r.v(0, 2)
			}
			end := kicker.SliceEnd
			r.pvdAt(2 * time.Millisecond)
			r.s.Wake(v0, kicker)
			r.check()
			assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "the kicked vCPU takes the kicker's pCPU at once")
			assert.Equal(t, end, v0.SliceEnd, "and the rest of its slice")
			assert.EqualValues(t, 1, r.st.Acct.KickBoosts)
			assert.Equal(t, Runnable, kicker.Status)

			// A KICK from outside the VM (or no vCPU) boosts as before.
			r.pvdAt(3 * time.Millisecond)
			require.Equal(t, Blocking, r.s.Block(v0, func() bool { return true }))
			r.s.Wake(v0, nil)
			r.check()
			assert.EqualValues(t, 1, r.st.Acct.KickBoosts)
		})
	}
}

func TestPVBoostKickedOff(t *testing.T) {
	r := newRig(t, "pv", 1, 2)
	v0, v1 := r.v(0, 0), r.v(0, 1)
	r.pvdAt(time.Millisecond)
	require.Equal(t, Blocking, r.s.Block(v0, func() bool { return true }))
	r.pvdAt(2 * time.Millisecond)
	r.s.Wake(v0, v1)
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "without the boost the kicker keeps its pCPU for the wake granularity")
	assert.Zero(t, r.st.Acct.KickBoosts)
}
