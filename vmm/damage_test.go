package vmm

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// damageRig is a VM's memory and two locks, the scheduler's view of three
// vCPUs, and the damage tracker over them.
func damageRig(t *testing.T) (*damage, *VM, []*sched.VCPU) {
	t.Helper()
	layout, err := NewLayout(8<<20, 3)
	require.NoError(t, err)
	mem, err := host.NewMemory(8 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	vm := &VM{cfg: Config{Name: "vm0", Locks: 2}, layout: layout, mem: mem}
	sv := []*sched.VCPU{{ID: 0, Status: sched.Running}, {ID: 1, Status: sched.Running}, {ID: 2, Status: sched.Runnable}}
	return newDamage(vm, sv), vm, sv
}

func grant(vm *VM, lock int, v uint64) {
	vm.mem.Store64(vm.layout.LockSlot(lock)+hypercall.OffGranted, v)
}

func TestDamageHeldAndHanded(t *testing.T) {
	d, vm, sv := damageRig(t)
	ms := time.Millisecond
	var spans []string
	d.span = func(lock int, iv lockDamage, end time.Duration) {
		spans = append(spans, iv.what(vm))
	}

	grant(vm, 0, 1) // lock 0 held by vCPU 0, which runs: no damage
	d.observe(0, nil, 0)
	d.observe(1*ms, sv[0], sched.Runnable) // vCPU 0 preempted holding it
	sv[0].Status = sched.Runnable
	d.observe(4*ms, sv[0], sched.Running) // dispatched again: 3 ms held
	sv[0].Status = sched.Running

	grant(vm, 0, 3|hypercall.GrantHanded) // handed to vCPU 2, which does not run
	d.observe(5*ms, nil, 0)               // the sampler notices
	d.observe(9*ms, sv[2], sched.Running) // dispatched: 4 ms granted
	sv[2].Status = sched.Running
	grant(vm, 0, 3) // it took the lock
	d.observe(10*ms, nil, 0)

	// A hostile guest's grant names no vCPU of the VM: no damage.
	grant(vm, 1, 77)
	sv[1].Status = sched.Runnable
	d.observe(10*ms, nil, 0)
	d.finish(20 * ms)

	assert.Equal(t, 3*ms, d.locks[0].held)
	assert.Equal(t, 4*ms, d.locks[0].granted)
	assert.Zero(t, d.locks[1].held+d.locks[1].granted)
	assert.Equal(t, []time.Duration{3 * ms, 0, 0}, d.held)
	assert.Equal(t, []time.Duration{0, 0, 4 * ms}, d.granted)
	assert.Equal(t, []string{"held by vm0/cpu0, which does not run", "handed to vm0/cpu2, which does not run"}, spans)
}

func TestDamageOpenAtTheEnd(t *testing.T) {
	d, vm, sv := damageRig(t)
	grant(vm, 1, 2) // vCPU 1 holds lock 1 and is preempted for good
	sv[1].Status = sched.Runnable
	d.observe(time.Millisecond, nil, 0)
	d.finish(5 * time.Millisecond)
	assert.Equal(t, 4*time.Millisecond, d.locks[1].held)
	d.finish(9 * time.Millisecond) // closed once
	assert.Equal(t, 4*time.Millisecond, d.locks[1].held)
}

func TestLockEvents(t *testing.T) {
	var s LockStats
	p := hypercall.VCPUPage{Acquisitions: 10, StartTSC: 1, EndTSC: 2, PVLockStealing: 4, LockSlowpath: 6,
		Kicks: 2, PVLatencyKick: 5200, PVKickWake: 1, PVLatencyWake: 26000, PVHashOps: 4, PVHashHops: 6}
	s.add(&p)
	s.add(&p)
	s.finish(2_600_000) // 2.6 cycles per ns
	e := s.Events
	assert.EqualValues(t, 8, e.PVLockStealing)
	assert.EqualValues(t, 12, e.LockSlowpath)
	assert.InDelta(t, 1.5, e.PVHashHops, 1e-9)
	assert.InDelta(t, 1000, e.PVLatencyKick, 1e-9, "2600 cycles per KICK")
	assert.InDelta(t, 10000, e.PVLatencyWake, 1e-9)
	named := e.Named()
	require.Len(t, named, 13)
	assert.Equal(t, "pv_lock_stealing", named[2].Name)
	assert.EqualValues(t, 8, named[2].Value)
}

func TestPVKnobs(t *testing.T) {
	ks := PVKnobList()
	require.Len(t, ks, 4)
	var p PVKnobs
	assert.True(t, p.IsDefault())
	for _, k := range ks {
		assert.Equal(t, k.Values[0], k.Name(p), k.Flag)
		v, err := k.Parse(k.Values[len(k.Values)-1])
		require.NoError(t, err)
		k.Set(&p, v)
		assert.Equal(t, k.Values[len(k.Values)-1], k.Name(p))
		_, err = k.Parse("bogus")
		assert.ErrorContains(t, err, k.Values[0])
	}
	assert.False(t, p.IsDefault())
	assert.EqualValues(t, hypercall.PVStealOnce, p.Steal)
	assert.EqualValues(t, hypercall.PVPendingOff, p.Pending)
	assert.EqualValues(t, hypercall.PVPrevCheckPreempted, p.PrevCheck)
	assert.EqualValues(t, hypercall.PVKickImmediate, p.Kick)
}

func TestLockEventsMerge(t *testing.T) {
	var a, b LockStats
	a.add(&hypercall.VCPUPage{PVLockStealing: 3, Kicks: 1, PVLatencyKick: 2600, PVHashOps: 1, PVHashHops: 1})
	b.add(&hypercall.VCPUPage{PVLockStealing: 5, Kicks: 3, PVLatencyKick: 3 * 5200, PVHashOps: 1, PVHashHops: 3})
	a.finish(2_600_000)
	b.finish(2_600_000)
	e := a.Events
	e.Merge(b.Events)
	assert.EqualValues(t, 8, e.PVLockStealing)
	assert.InDelta(t, (1000+3*2000)/4.0, e.PVLatencyKick, 1e-9, "weighted by kicks")
	assert.InDelta(t, 2, e.PVHashHops, 1e-9)
	var z LockEvents
	z.Merge(LockEvents{})
	assert.Zero(t, z.PVLatencyKick)
}

// TestLockEventsJSON: the events' JSON is one object in Linux's order,
// counters as integers, and reads back.
func TestLockEventsJSON(t *testing.T) {
	e := LockEvents{LockSlowpath: 1234567, PVLockStealing: 3, PVLatencyWake: 1500.5}
	b, err := json.Marshal(e)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), `{"lock_slowpath":1234567,"lock_pending":0,"pv_lock_stealing":3,`), string(b))
	assert.Contains(t, string(b), `"pv_latency_wake_ns":1500.5}`)
	var back LockEvents
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, e.Named(), back.Named())
}
