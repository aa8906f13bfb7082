package sched

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is advanced by hand.
type fakeClock struct{ now time.Duration }

func (c *fakeClock) Now() time.Duration { return c.now }

// fakeTarget records what the mechanism did and serves settable hints.
type fakeTarget struct {
	dispatched []string
	preempted  []string
	published  map[int]Published
	hints      map[int]Hints
	probed     []string
	// stopping: preempted from outside, not yet seen out of the guest
	// (rig.stopped reports them to the scheduler, as a vCPU thread's
	// OnPark does).
	stopping []*VCPU
}

func newFakeTarget() *fakeTarget {
	return &fakeTarget{published: map[int]Published{}, hints: map[int]Hints{}}
}

func (t *fakeTarget) Dispatch(v *VCPU, cpu int) { t.dispatched = append(t.dispatched, v.Name) }
func (t *fakeTarget) Preempt(v *VCPU, self bool) {
	t.preempted = append(t.preempted, v.Name)
	if !self {
		t.stopping = append(t.stopping, v)
	}
}
func (t *fakeTarget) Publish(v *VCPU, p Published) { t.published[v.Index] = p }
func (t *fakeTarget) Hints(v *VCPU) Hints          { return t.hints[v.Index] }
func (t *fakeTarget) Probe(v *VCPU)                { t.probed = append(t.probed, v.Name) }

// rig is a scheduler over fake vCPUs.
type rig struct {
	t     *testing.T
	clock *fakeClock
	tgt   *fakeTarget
	s     *Scheduler
	st    *State
}

func newRig(t *testing.T, policy string, pcpus int, vms ...int) *rig {
	t.Helper()
	return newRigOpts(t, policy, Options{Slice: 10 * time.Millisecond, Skew: 3 * time.Millisecond, DelayMax: 50 * time.Microsecond}, pcpus, vms...)
}

func newRigOpts(t *testing.T, policy string, o Options, pcpus int, vms ...int) *rig {
	t.Helper()
	return newRigCode(t, policy, o, CodeMap{}, pcpus, vms...)
}

// newRigCode is newRigOpts with every VM's code map set before the
// scheduler starts (as vmm does).
func newRigCode(t *testing.T, policy string, o Options, code CodeMap, pcpus int, vms ...int) *rig {
	t.Helper()
	cpus := make([]int, pcpus)
	for i := range cpus {
		cpus[i] = i
	}
	st, err := NewState(cpus, vms, o.Slice)
	require.NoError(t, err)
	for i := range st.Code {
		st.Code[i] = code
	}
	pol, err := New(policy, o)
	require.NoError(t, err)
	r := &rig{t: t, clock: &fakeClock{}, tgt: newFakeTarget(), st: st}
	r.s, err = NewScheduler(st, pol, r.tgt, r.clock)
	require.NoError(t, err)
	r.s.Start(true)
	r.check()
	return r
}

// advance moves time forward and runs the deadline if one passed.
func (r *rig) advance(d time.Duration) {
	r.clock.now += d
	if r.s.next != 0 && r.clock.now >= r.s.next {
		r.s.Tick()
	}
	r.check()
}

// running lists the names of running vCPUs by pCPU.
func (r *rig) running() map[int][]string {
	out := map[int][]string{}
	for _, p := range r.st.PCPUs {
		for _, v := range p.Running {
			out[p.Index] = append(out[p.Index], v.Name)
		}
	}
	return out
}

func (r *rig) v(vm, id int) *VCPU { return r.st.VMs[vm][id] }

// stopped reports every vCPU preempted from outside as out of the guest
// now, as its thread would on its way to park.
func (r *rig) stopped() {
	for len(r.tgt.stopping) > 0 {
		v := r.tgt.stopping[0]
		r.tgt.stopping = r.tgt.stopping[1:]
		r.s.Stopped(v)
	}
}

// check settles the preemptions under way (stopped) and asserts the
// invariants that hold under every policy.
func (r *rig) check() {
	r.t.Helper()
	r.stopped()
	require.Empty(r.t, r.st.Acct.Impossible, "lock state changed off-CPU")
	for _, p := range r.st.PCPUs {
		if r.s.pol.Exclusive() {
			require.LessOrEqual(r.t, len(p.Running), 1, "pCPU %d runs %d vCPUs", p.Index, len(p.Running))
		}
		for _, v := range p.Running {
			require.Equal(r.t, Running, v.Status, v.Name)
			require.Equal(r.t, p.Index, v.PCPU, v.Name)
		}
	}
	for _, v := range r.st.VCPUs {
		if v.Status == Running {
			require.NotEqual(r.t, -1, v.PCPU, v.Name)
		} else {
			require.Equal(r.t, -1, v.PCPU, v.Name)
		}
		if v.Status == Runnable {
			require.True(r.t, r.tgt.published[v.Index].Preempted, "%s runnable but not marked preempted", v.Name)
		}
		if v.Status == Running {
			require.False(r.t, r.tgt.published[v.Index].Preempted, "%s running but marked preempted", v.Name)
		}
	}
}

// Steps shared by the policies' seeded random walks.

// pickStatus returns a random vCPU whose status is st, or nil.
func (r *rig) pickStatus(rng *rand.Rand, st Status) *VCPU {
	var l []*VCPU
	for _, v := range r.st.VCPUs {
		if v.Status == st {
			l = append(l, v)
		}
	}
	if len(l) == 0 {
		return nil
	}
	return l[rng.IntN(len(l))]
}

// randomWait is a WAIT of a running vCPU whose word mostly still holds the
// expected value.
func (r *rig) randomWait(rng *rand.Rand) {
	if v := r.pickStatus(rng, Running); v != nil {
		r.s.Block(v, func() bool { return rng.IntN(5) > 0 })
	}
}

// randomKick is a KICK, mostly of a blocked vCPU.
func (r *rig) randomKick(rng *rand.Rand) {
	v := r.pickStatus(rng, Blocked)
	if v == nil || rng.IntN(5) == 0 {
		v = r.st.VCPUs[rng.IntN(len(r.st.VCPUs))]
	}
	r.s.Wake(v, nil)
}
