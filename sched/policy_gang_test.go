package sched

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gangCheck asserts strict co-scheduling: a VM's runnable vCPUs all run, or
// none does.
func gangCheck(t *testing.T, r *rig) {
	t.Helper()
	for vm, vs := range r.st.VMs {
		running, waiting := 0, 0
		for _, v := range vs {
			switch v.Status {
			case Running:
				running++
			case Runnable:
				waiting++
			}
		}
		require.False(t, running > 0 && waiting > 0, "VM %d: %d vCPUs run while %d wait", vm, running, waiting)
	}
}

func TestCoPolicySpecs(t *testing.T) {
	for _, name := range []string{"gang", "relaxed", "balance"} {
		p, err := New(name, Options{})
		require.NoError(t, err, name)
		assert.Equal(t, name, p.Name())
		assert.True(t, p.Exclusive(), name)
		assert.Implements(t, (*Queuer)(nil), p, name)
		assert.NotEmpty(t, Doc(name))
	}
}

func TestGangCoStartAndAlternation(t *testing.T) {
	r := newRig(t, "gang", 2, 2, 2)
	both := func(vm string) map[int][]string { return map[int][]string{0: {vm + "/cpu0"}, 1: {vm + "/cpu1"}} }
	assert.Equal(t, both("vm0"), r.running(), "co-start")
	r.advance(5 * time.Millisecond)
	assert.Equal(t, both("vm0"), r.running(), "mid-slice: no change")
	r.advance(5 * time.Millisecond)
	assert.Equal(t, both("vm1"), r.running(), "slice end: the other VM as a whole")
	gangCheck(t, r)
	r.advance(10 * time.Millisecond)
	assert.Equal(t, both("vm0"), r.running())
	r.advance(10 * time.Millisecond)
	assert.Equal(t, both("vm1"), r.running())
	r.s.Stop()
	for _, v := range r.st.VMs[0] {
		assert.Equal(t, 20*time.Millisecond, v.Acct.Run, v.Name)
		assert.Equal(t, 10*time.Millisecond, v.Acct.Steal, v.Name)
	}
	for _, v := range r.st.VMs[1] {
		assert.Equal(t, 10*time.Millisecond, v.Acct.Run, v.Name)
		assert.Equal(t, 20*time.Millisecond, v.Acct.Steal, v.Name)
	}
	for _, p := range r.st.PCPUs {
		assert.Zero(t, p.Idle, "pCPU %d", p.Index)
	}
}

func TestGangBackfillsWhatFits(t *testing.T) {
	// 3 + 1 vCPUs on 4 pCPUs: the 1-vCPU VM fits in the pCPU the 3-vCPU VM
	// leaves over, whichever is the primary, and nothing ever moves.
	r := newRig(t, "gang", 4, 3, 1)
	want := map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}, 2: {"vm0/cpu2"}, 3: {"vm1/cpu0"}}
	assert.Equal(t, want, r.running())
	for i := 0; i < 5; i++ {
		r.advance(10 * time.Millisecond)
		assert.Equal(t, want, r.running(), "round %d", i+1)
	}
	assert.EqualValues(t, 4, r.st.Acct.Switches)
	for _, v := range r.st.VCPUs {
		assert.Zero(t, v.Acct.Preemptions, v.Name)
	}
}

func TestGangFragmentation(t *testing.T) {
	// 3 + 2 vCPUs on 4 pCPUs: they never fit together, so each round leaves
	// pCPUs idle.
	r := newRig(t, "gang", 4, 3, 2)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}, 2: {"vm0/cpu2"}}, r.running())
	r.advance(10 * time.Millisecond)
	// vm1's homes are pCPUs 3 and 0 (vCPUs 3 and 4 of the machine).
	assert.Equal(t, map[int][]string{0: {"vm1/cpu1"}, 3: {"vm1/cpu0"}}, r.running())
	r.advance(10 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}, 2: {"vm0/cpu2"}}, r.running())
	r.s.Stop()
	idle := []time.Duration{0, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}
	for i, p := range r.st.PCPUs {
		assert.Equal(t, idle[i], p.Idle, "pCPU %d", i)
		assert.Equal(t, 20*time.Millisecond, p.Idle+p.Busy, "pCPU %d", i)
	}
}

func TestGangAdmitRefusesWideVM(t *testing.T) {
	const msg = "gang: VM 1 has 4 vCPUs but there are only 2 pCPUs: strict co-scheduling needs one pCPU per vCPU"
	for _, spec := range []string{"gang", "gang+pv", "gang+delay"} {
		st, err := NewState([]int{0, 1}, []int{2, 4}, 10*time.Millisecond)
		require.NoError(t, err)
		pol, err := New(spec, Options{})
		require.NoError(t, err, spec)
		_, err = NewScheduler(st, pol, newFakeTarget(), &fakeClock{})
		assert.ErrorContains(t, err, msg, spec)
		if spec == "gang" {
			assert.EqualError(t, err, msg, "one clear line")
		}
	}
}

func TestGangBlockedVCPUKeepsItsPCPU(t *testing.T) {
	r := newRig(t, "gang", 2, 2, 2)
	v0, v1 := r.v(0, 0), r.v(0, 1)
	r.clock.now = 2 * time.Millisecond
	require.Equal(t, Blocking, r.s.Block(v1, func() bool { return true }))
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "pCPU 1 stays reserved: vm1 does not fit in it")
	r.advance(8 * time.Millisecond) // 10 ms
	assert.Equal(t, map[int][]string{0: {"vm1/cpu0"}, 1: {"vm1/cpu1"}}, r.running())
	r.advance(10 * time.Millisecond) // 20 ms: vm0 again, pCPU 1 held for its blocked vCPU
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
	r.clock.now = 25 * time.Millisecond
	r.s.Wake(v1, nil)
	r.check()
	gangCheck(t, r)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}, 1: {"vm0/cpu1"}}, r.running(), "kicked: runs on its reserved pCPU at once")
	r.advance(5 * time.Millisecond) // 30 ms
	assert.Equal(t, map[int][]string{0: {"vm1/cpu0"}, 1: {"vm1/cpu1"}}, r.running())
	r.s.Stop()
	assert.Equal(t, 13*time.Millisecond, r.st.PCPUs[1].Idle, "2-10 ms and 20-25 ms")
	assert.Zero(t, r.st.PCPUs[0].Idle)
	assert.Equal(t, 23*time.Millisecond, v1.Acct.Blocked)
	assert.Equal(t, 20*time.Millisecond, v0.Acct.Run)
}

func TestGangAllBlockedGivesWayAndWakes(t *testing.T) {
	r := newRig(t, "gang", 2, 2, 1)
	r.clock.now = time.Millisecond
	for _, v := range r.st.VMs[0] {
		require.Equal(t, Blocking, r.s.Block(v, func() bool { return true }))
		r.check()
	}
	assert.Equal(t, map[int][]string{0: {"vm1/cpu0"}}, r.running(), "a gang with nothing to run gives its pCPUs back")
	r.clock.now = 2 * time.Millisecond
	r.s.Wake(r.v(0, 1), nil)
	r.check()
	gangCheck(t, r)
	assert.Equal(t, map[int][]string{0: {"vm1/cpu0"}}, r.running(), "vm0 (2 live vCPUs) does not fit in the free pCPU")
	r.advance(9 * time.Millisecond) // vm1's round ends at 11 ms
	assert.Equal(t, map[int][]string{1: {"vm0/cpu1"}}, r.running(), "pCPU 0 held for the blocked vm0/cpu0")
}

func TestGangQueuer(t *testing.T) {
	r := newRig(t, "gang", 2, 2, 2, 2)
	q := r.s.pol.(Queuer)
	vm := func(n int) map[int][]string {
		return map[int][]string{0: {r.v(n, 0).Name}, 1: {r.v(n, 1).Name}}
	}
	assert.Equal(t, vm(0), r.running())
	// Boost: vm2 runs out of turn once the round is cut at 1 ms.
	r.s.Snapshot(func(st *State) {
		q.Boost(st, r.v(0, 1), st.Now+time.Millisecond) // a scheduled gang: nothing to do
		q.Boost(st, r.v(2, 0), st.Now+time.Millisecond)
	})
	r.s.Tick()
	assert.Equal(t, vm(0), r.running())
	r.advance(time.Millisecond)
	assert.Equal(t, vm(2), r.running(), "boosted VM")
	// HandOff is never possible.
	r.s.Snapshot(func(st *State) { assert.False(t, q.HandOff(st, r.v(2, 0), r.v(1, 0))) })
	// The round-robin pointer did not move: vm1 is next, then vm2.
	r.advance(10 * time.Millisecond) // 11 ms
	assert.Equal(t, vm(1), r.running())
	// Extend moves the round's end.
	r.s.Snapshot(func(st *State) { q.Extend(st, r.v(1, 0), 25*time.Millisecond) })
	r.s.Tick()
	r.advance(10 * time.Millisecond) // 21 ms
	assert.Equal(t, vm(1), r.running(), "extended to 25 ms")
	// A yield past the nominal end ends the round.
	r.clock.now = 22 * time.Millisecond
	r.s.Yield(r.v(1, 1), -1)
	r.check()
	assert.Equal(t, vm(2), r.running())
	// One yield is not enough to step aside; all of the gang's is.
	r.clock.now = 23 * time.Millisecond
	r.s.Yield(r.v(2, 0), -1)
	r.check()
	assert.Equal(t, vm(2), r.running())
	r.s.Snapshot(func(st *State) { q.Expire(st, r.v(2, 1)) })
	r.s.Tick()
	r.check()
	assert.Equal(t, vm(0), r.running(), "vm2 stepped aside")
	assert.Equal(t, 33*time.Millisecond, r.v(0, 0).SliceEnd, "a fresh round")
}

func TestGangRandom(t *testing.T) {
	for i, spec := range []string{"gang", "gang+pv", "gang+delay", "gang+pv+delay"} {
		t.Run(spec, func(t *testing.T) {
			for seed := uint64(0); seed < 3; seed++ {
				policyWalk(t, spec, uint64(i)*100+seed, 4, gangCheck, 3, 2, 1, 4)
			}
		})
	}
}

// policyWalk drives a rig over spec with a seeded random sequence of
// hypercalls, deadlines and Queuer calls, checking rig.check and extra after
// every step and the time accounting at the end. Shared by the gang, relaxed
// and balance tests.
func policyWalk(t *testing.T, spec string, seed uint64, pcpus int, extra func(*testing.T, *rig), vms ...int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x9a46))
	r := newRig(t, spec, pcpus, vms...)
	exited := map[*VCPU]time.Duration{}
	pick := func(st Status) *VCPU { return r.pickStatus(rng, st) }
	q, _ := r.s.pol.(Queuer)
	require.NotNil(t, q, spec)
	for step := 0; step < 3000; step++ {
		switch n := rng.IntN(100); {
		case n < 30: // time passes, never beyond the next deadline
			d := time.Duration(rng.IntN(15000)+1) * time.Microsecond
			if next := r.s.next; next > r.clock.now && r.clock.now+d > next {
				d = next - r.clock.now
			}
			r.advance(d)
		case n < 45: // WAIT
			r.randomWait(rng)
		case n < 65: // KICK, mostly of a blocked vCPU
			r.randomKick(rng)
		case n < 80: // YIELD
			if v := pick(Running); v != nil {
				r.s.Yield(v, rng.IntN(len(r.st.VCPUs)+1)-1)
			}
		case n < 99: // what a modifier does
			run, wait := pick(Running), pick(Runnable)
			r.s.Snapshot(func(st *State) {
				until := st.Now + time.Duration(rng.IntN(2000))*time.Microsecond
				switch rng.IntN(4) {
				case 0:
					if wait != nil {
						q.Boost(st, wait, until)
					}
				case 1:
					if run != nil && wait != nil {
						q.HandOff(st, run, wait)
					}
				case 2:
					if run != nil {
						q.Extend(st, run, until+time.Duration(rng.IntN(20))*time.Millisecond)
					}
				case 3:
					if run != nil {
						q.Expire(st, run)
					}
				}
			})
			r.s.Tick()
		default: // EXIT, rarely
			if v := pick(Running); v != nil && len(exited) < 2 {
				r.s.Exit(v)
				exited[v] = r.clock.now
			}
		}
		r.check()
		if extra != nil {
			extra(t, r)
		}
	}
	r.s.Stop()
	for _, v := range r.st.VCPUs {
		end, ok := exited[v]
		if !ok {
			end = r.clock.now
		}
		assert.Equal(t, end, v.Acct.Run+v.Acct.Steal+v.Acct.Blocked, "seed %d: %s", seed, v.Name)
	}
	busy := time.Duration(0)
	for _, p := range r.st.PCPUs {
		assert.Equal(t, r.clock.now, p.Busy+p.Idle, "seed %d: pCPU %d", seed, p.Index)
		busy += p.Busy
	}
	run := time.Duration(0)
	for _, v := range r.st.VCPUs {
		run += v.Acct.Run
	}
	assert.Equal(t, busy, run, "seed %d: pCPU busy time is vCPU run time", seed)
}
