package sched

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The guest code map of the monitor tests, and RIPs in and out of it.
var (
	monCode   = CodeMap{Spin: AddrRange{0x1000, 0x1100}, CS: AddrRange{0x2000, 0x2100}}
	monCSOnly = CodeMap{CS: monCode.CS}
)

const (
	monSpinRIP = 0x1040
	monCSRIP   = 0x2040
	monSafeRIP = 0x3000
	us         = time.Microsecond
)

// monRig is newRig with every VM's code map set before the scheduler starts
// (as vmm does).
func monRig(t *testing.T, spec string, code CodeMap, pcpus int, vms ...int) *rig {
	t.Helper()
	return monRigSlice(t, spec, code, 10*time.Millisecond, pcpus, vms...)
}

func monRigSlice(t *testing.T, spec string, code CodeMap, slice time.Duration, pcpus int, vms ...int) *rig {
	t.Helper()
	return newRigCode(t, spec, Options{Slice: slice, Skew: 3 * time.Millisecond, DelayMax: 50 * us}, code, pcpus, vms...)
}

// monAt moves the clock to t, running a deadline that passed.
func monAt(r *rig, t time.Duration) {
	r.t.Helper()
	require.GreaterOrEqual(r.t, t, r.clock.now)
	r.advance(t - r.clock.now)
}

// monOf finds the monitor policy inside r's policy chain.
func monOf(r *rig) *monitorPolicy {
	p := r.s.pol
	for {
		if m, ok := p.(*monitorPolicy); ok {
			return m
		}
		w, ok := p.(interface{ unwrap() Policy })
		if !ok {
			return nil
		}
		p = w.unwrap()
	}
}

func monCount(l []string, name string) int {
	n := 0
	for _, s := range l {
		if s == name {
			n++
		}
	}
	return n
}

// monDriver runs a rig forward, answering every probe lat after it was asked
// for with rip(v), or never if rip says no.
type monDriver struct {
	r     *rig
	lat   time.Duration
	rip   func(v *VCPU) (uint64, bool)
	seen  int                     // probes of r.tgt.probed taken in
	asked map[*VCPU]time.Duration // unanswered probes
}

func newMonDriver(r *rig, lat time.Duration, rip func(v *VCPU) (uint64, bool)) *monDriver {
	return &monDriver{r: r, lat: lat, rip: rip, asked: map[*VCPU]time.Duration{}}
}

func (d *monDriver) collect() {
	for ; d.seen < len(d.r.tgt.probed); d.seen++ {
		name := d.r.tgt.probed[d.seen]
		for _, v := range d.r.st.VCPUs {
			if v.Name == name {
				_, dup := d.asked[v]
				require.False(d.r.t, dup, "%s probed twice at once", name)
				d.asked[v] = d.r.clock.now
			}
		}
	}
}

// answer delivers the answers that are due, in vCPU order.
func (d *monDriver) answer() {
	for _, v := range d.r.st.VCPUs {
		if at, ok := d.asked[v]; ok && d.r.clock.now >= at+d.lat {
			delete(d.asked, v)
			if rip, ok := d.rip(v); ok {
				d.r.s.Probed(v, rip)
				d.r.check()
			}
			d.collect()
		}
	}
}

// runTo runs to time to, stopping at every deadline and answer.
func (d *monDriver) runTo(to time.Duration) {
	d.r.t.Helper()
	d.collect()
	d.answer()
	for d.r.clock.now < to {
		t := to
		if n := d.r.s.next; n > d.r.clock.now && n < t {
			t = n
		}
		for _, at := range d.asked {
			if a := at + d.lat; a > d.r.clock.now && a < t {
				t = a
			}
		}
		d.r.advance(t - d.r.clock.now)
		d.collect()
		d.answer()
	}
}

func TestMonitorSpec(t *testing.T) {
	p, err := New("monitor", Options{})
	require.NoError(t, err)
	assert.Equal(t, "monitor", p.Name())
	assert.True(t, p.Exclusive())
	assert.Implements(t, (*Queuer)(nil), p)
	assert.False(t, IsModifier("monitor"))
	assert.NotEmpty(t, Doc("monitor"))
}

func TestMonitorSafeRIPPreemptsAfterAnswer(t *testing.T) {
	r := monRig(t, "monitor", monCSOnly, 1, 2)
	v0 := r.v(0, 0)
	monAt(r, 10*time.Millisecond)
	assert.Equal(t, []string{"vm0/cpu0"}, r.tgt.probed, "the slice end asks for the RIP")
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "and keeps it running meanwhile")
	assert.Equal(t, 10*time.Millisecond+monitorProbeTimeout, r.s.next)
	monAt(r, 10*time.Millisecond+40*us)
	r.s.Probed(v0, monSafeRIP)
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "safe: preempted at once")
	assert.EqualValues(t, 1, v0.Acct.Preemptions)
	assert.EqualValues(t, 1, r.st.Acct.Probes)
	assert.Zero(t, r.st.Acct.Deferrals)
	// A spin-range RIP is safe too.
	monAt(r, 20*time.Millisecond+40*us)
	require.Len(t, r.tgt.probed, 2)
	r.s.Probed(r.v(0, 1), monSpinRIP)
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
	r.s.Stop()
	assert.Equal(t, 10*time.Millisecond+40*us, v0.Acct.Run, "ran to the answer")
	assert.Equal(t, 10*time.Millisecond, r.v(0, 1).Acct.Run)
}

func TestMonitorCSRIPDefersThenPreemptsAtBound(t *testing.T) {
	r := monRig(t, "monitor", monCSOnly, 1, 2)
	v0 := r.v(0, 0)
	at := 10 * time.Millisecond
	monAt(r, at)
	for i := 1; i <= monitorMaxDeferrals; i++ {
		require.Len(t, r.tgt.probed, i)
		at += 20 * us
		monAt(r, at)
		r.s.Probed(v0, monCSRIP)
		r.check()
		assert.EqualValues(t, i, r.st.Acct.Deferrals)
		assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "deferral %d", i)
		assert.Equal(t, at+monitorDeferStep, r.s.next)
		monAt(r, at+monitorDeferStep-1)
		assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "deferral %d lasts its step", i)
		at += monitorDeferStep
		monAt(r, at)
	}
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "out of deferrals: preempted")
	assert.Len(t, r.tgt.probed, monitorMaxDeferrals, "no probe after the last deferral")
	assert.Equal(t, 10*time.Millisecond+monitorMaxDeferrals*(20*us+monitorDeferStep), at)
	assert.EqualValues(t, 1, v0.Acct.Preemptions)
}

func TestMonitorCSThenSafe(t *testing.T) {
	r := monRig(t, "monitor", monCSOnly, 1, 2)
	v0 := r.v(0, 0)
	monAt(r, 10*time.Millisecond+30*us)
	r.s.Probed(v0, monCSRIP)
	r.check()
	monAt(r, 10*time.Millisecond+130*us)
	require.Len(t, r.tgt.probed, 2, "re-probed at the end of the deferral")
	monAt(r, 10*time.Millisecond+160*us)
	r.s.Probed(v0, monSafeRIP)
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "left the critical section: preempted")
	assert.EqualValues(t, 1, r.st.Acct.Deferrals)
	// A stale answer for v0, now waiting, and one nobody asked for: ignored.
	r.s.Probed(v0, monCSRIP)
	monAt(r, 15*time.Millisecond)
	r.s.Probed(r.v(0, 1), monCSRIP)
	r.check()
	assert.EqualValues(t, 1, r.st.Acct.Deferrals)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
	assert.EqualValues(t, 1, monOf(r).stale)
}

func TestMonitorNoAnswerPreemptsAtTimeout(t *testing.T) {
	r := monRig(t, "monitor", monCSOnly, 1, 2)
	v0 := r.v(0, 0)
	monAt(r, 10*time.Millisecond)
	require.Len(t, r.tgt.probed, 1)
	monAt(r, 10*time.Millisecond+monitorProbeTimeout-1)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
	monAt(r, 10*time.Millisecond+monitorProbeTimeout)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "no answer: preempted at the timeout")
	assert.EqualValues(t, 1, monOf(r).timeouts)
	// The late answer arrives while v0 waits: dropped.
	r.s.Probed(v0, monCSRIP)
	r.check()
	assert.Zero(t, r.st.Acct.Deferrals)
	assert.Equal(t, 20*time.Millisecond+monitorProbeTimeout, r.v(0, 1).SliceEnd, "a full slice from the preemption")
}

func TestMonitorNoProbeWithoutContentionOrYield(t *testing.T) {
	r := monRig(t, "monitor", monCode, 2, 2)
	for i := 0; i < 20; i++ {
		r.advance(5 * time.Millisecond)
	}
	assert.Empty(t, r.tgt.probed, "not overcommitted: nothing to monitor")
	assert.Zero(t, r.v(0, 0).Acct.Preemptions)

	r = monRig(t, "monitor", monCSOnly, 1, 3)
	monAt(r, time.Millisecond)
	r.s.Yield(r.v(0, 0), -1)
	r.check()
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "a YIELD is a preemption point of its own")
	assert.Empty(t, r.tgt.probed)
}

func TestMonitorSpinOnlyMapSamplesButDoesNotGate(t *testing.T) {
	r := monRig(t, "monitor", CodeMap{Spin: monCode.Spin}, 1, 2)
	d := newMonDriver(r, 30*us, func(*VCPU) (uint64, bool) { return monSafeRIP, true })
	d.runTo(10 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "slice end: preempted at once, as rr")
	assert.Equal(t, 9, monCount(r.tgt.probed, "vm0/cpu0"), "samples at 1..9 ms")
	assert.Zero(t, r.st.Acct.Deferrals+r.st.Acct.SpinPreempts)
}

func TestMonitorSpinnerGivesWayToSibling(t *testing.T) {
	// vm0 has cpu0 and cpu1, vm1 has cpu0; one pCPU: vm0/cpu0 runs, then
	// the queue is vm0/cpu1, vm1/cpu0.
	r := monRig(t, "monitor", monCode, 1, 2, 1)
	spinner := r.v(0, 1)
	d := newMonDriver(r, 30*us, func(v *VCPU) (uint64, bool) {
		if v == spinner {
			return monSpinRIP, true
		}
		return monSafeRIP, true
	})
	d.runTo(10*time.Millisecond + 30*us)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running(), "safe slice end")
	// Samples at 11.03, 12.03 and 13.03 ms, answered 30 us later: the third
	// makes it a spinner.
	d.runTo(13*time.Millisecond + 59*us)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
	assert.Zero(t, r.st.Acct.SpinPreempts)
	d.runTo(13*time.Millisecond + 60*us)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "the sibling, not vm1/cpu0 at the head of the queue")
	assert.EqualValues(t, 1, r.st.Acct.SpinPreempts)
	assert.Equal(t, 3, monCount(r.tgt.probed, "vm0/cpu1"))
	assert.EqualValues(t, 1, spinner.Acct.Preemptions)
	// The spinner went to the tail: vm1/cpu0 is next.
	d.runTo(23*time.Millisecond + 90*us)
	assert.Equal(t, map[int][]string{0: {"vm1/cpu0"}}, r.running())
}

func TestMonitorSpinnerSkipsKnownSpinners(t *testing.T) {
	// As above, but vm0/cpu0 was spinning when its slice ended: the spinner's
	// pCPU goes to vm1/cpu0.
	r := monRig(t, "monitor", monCode, 1, 2, 1)
	d := newMonDriver(r, 30*us, func(v *VCPU) (uint64, bool) {
		if v.VM == 0 && (v.ID == 1 || r.clock.now >= 10*time.Millisecond) {
			return monSpinRIP, true
		}
		return monSafeRIP, true
	})
	d.runTo(13*time.Millisecond + 60*us)
	assert.Equal(t, map[int][]string{0: {"vm1/cpu0"}}, r.running())
	assert.EqualValues(t, 1, r.st.Acct.SpinPreempts)

	// Everyone spins: spinners give way to those not known to spin, then
	// rotate among themselves (last seen spinning is stale: under a FIFO
	// lock the waiter whose turn came is among them).
	r = monRig(t, "monitor", monCode, 1, 3)
	d = newMonDriver(r, 30*us, func(*VCPU) (uint64, bool) { return monSpinRIP, true })
	d.runTo(3*time.Millisecond + 30*us)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
	d.runTo(6*time.Millisecond + 60*us)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu2"}}, r.running())
	d.runTo(9*time.Millisecond + 90*us)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running(), "back to the first spinner")
	assert.EqualValues(t, 3, r.st.Acct.SpinPreempts)
}

func TestMonitorSiblingInCSFirst(t *testing.T) {
	// vm0: cpu0..cpu2, vm1: cpu0; one pCPU. cpu0 is in a critical section
	// at its slice end and stays there past the deferrals; cpu1 then spins
	// and hands the pCPU to cpu0 (the likely holder), ahead of cpu2 and
	// vm1/cpu0.
	r := monRig(t, "monitor", monCode, 1, 3, 1)
	d := newMonDriver(r, 30*us, func(v *VCPU) (uint64, bool) {
		switch {
		case v.VM == 0 && v.ID == 0:
			return monCSRIP, true
		case v.VM == 0 && v.ID == 1:
			return monSpinRIP, true
		}
		return monSafeRIP, true
	})
	d.runTo(11 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu1"}}, r.running())
	assert.EqualValues(t, monitorMaxDeferrals, r.st.Acct.Deferrals)
	d.runTo(15 * time.Millisecond)
	assert.Equal(t, map[int][]string{0: {"vm0/cpu0"}}, r.running())
	assert.EqualValues(t, 1, r.st.Acct.SpinPreempts)
}

func TestMonitorProbeTrafficBound(t *testing.T) {
	for _, rip := range []uint64{monSafeRIP, monCSRIP} {
		r := monRig(t, "monitor", monCode, 1, 2)
		d := newMonDriver(r, 50*us, func(*VCPU) (uint64, bool) { return rip, true })
		d.runTo(time.Second)
		r.s.Stop()
		var bound uint64
		for _, v := range r.st.VCPUs {
			// A sample per period of run time, and at most
			// monitorMaxDeferrals probes per slice end.
			bound += uint64(v.Acct.Run/monitorSamplePeriod) + monitorMaxDeferrals*(v.Acct.Dispatches+1)
		}
		assert.LessOrEqual(t, r.st.Acct.Probes, bound, "rip %#x", rip)
		assert.Greater(t, r.st.Acct.Probes, uint64(900), "rip %#x: sampled", rip)
		t.Logf("rip %#x: %d probes, bound %d, %d switches, %d deferrals", rip, r.st.Acct.Probes, bound, r.st.Acct.Switches, r.st.Acct.Deferrals)
	}
}

// TestMonitorEmptyCodeMapIsRR drives rr and monitor (alone and under the
// modifiers) with an image without the symbols through the same random
// sequence: the same decisions, and no probes.
func TestMonitorEmptyCodeMapIsRR(t *testing.T) {
	for _, pair := range [][2]string{{"rr", "monitor"}, {"pv", "monitor+pv"}, {"delay", "monitor+delay"}} {
		t.Run(pair[1], func(t *testing.T) {
			for seed := uint64(0); seed < 2; seed++ {
				rng := rand.New(rand.NewPCG(seed, 0x0d0c))
				a := monRig(t, pair[0], CodeMap{}, 3, 3, 4, 2)
				b := monRig(t, pair[1], CodeMap{}, 3, 3, 4, 2)
				for step := 0; step < 3000; step++ {
					n, i, k, d := rng.IntN(100), rng.IntN(len(a.st.VCPUs)), rng.IntN(10), time.Duration(rng.IntN(4000)+1)*us
					for _, r := range []*rig{a, b} {
						v := r.st.VCPUs[i]
						switch {
						case n < 40:
							r.advance(d)
						case n < 55:
							if v.Status == Running {
								r.s.Block(v, func() bool { return k > 1 })
							}
						case n < 75:
							r.s.Wake(v, nil)
						case n < 90:
							if v.Status == Running {
								r.s.Yield(v, k-1)
							}
						default:
							r.s.Probed(v, monCSRIP)
						}
						r.check()
					}
					require.Equal(t, a.running(), b.running(), "seed %d step %d", seed, step)
					require.Equal(t, a.s.next, b.s.next, "seed %d step %d", seed, step)
				}
				assert.Empty(t, b.tgt.probed)
				assert.Equal(t, a.tgt.dispatched, b.tgt.dispatched)
				assert.Equal(t, a.st.Acct.Switches, b.st.Acct.Switches)
			}
		})
	}
}

// TestMonitorRandom drives monitor (alone and under the modifiers) with a
// seeded random sequence of hypercalls, deadlines and probe answers
// (spinning, in a critical section, elsewhere, late, lost, unasked),
// checking the invariants at every step and the accounting at the end.
func TestMonitorRandom(t *testing.T) {
	for i, spec := range []string{"monitor", "monitor+pv", "monitor+delay"} {
		t.Run(spec, func(t *testing.T) {
			for seed := uint64(0); seed < 3; seed++ {
				monRandom(t, spec, uint64(i)*100+seed)
			}
		})
	}
}

func monRandom(t *testing.T, spec string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x3017))
	r := monRigSlice(t, spec, monCode, 5*time.Millisecond, 3, 3, 4, 2)
	m := monOf(r)
	require.NotNil(t, m)
	exited := map[*VCPU]time.Duration{}
	mode := make([]uint64, len(r.st.VCPUs)) // what each vCPU is doing: a RIP
	rips := []uint64{monSpinRIP, monCSRIP, monSafeRIP}
	for i := range mode {
		mode[i] = rips[rng.IntN(3)]
	}
	seen := 0
	asked := map[*VCPU]bool{}
	pick := func(st Status) *VCPU { return r.pickStatus(rng, st) }
	answer := func() {
		r.advance(time.Duration(rng.IntN(60)+1) * us)
		for _, v := range r.st.VCPUs {
			if asked[v] {
				delete(asked, v)
				if rng.IntN(10) > 0 {
					rip := mode[v.Index]
					if rng.IntN(6) == 0 {
						rip = rips[rng.IntN(3)]
					}
					r.s.Probed(v, rip)
				}
			}
		}
	}
	for step := 0; step < 4000; step++ {
		for ; seen < len(r.tgt.probed); seen++ {
			for _, v := range r.st.VCPUs {
				if v.Name == r.tgt.probed[seen] {
					asked[v] = true
				}
			}
		}
		switch n := rng.IntN(100); {
		case n < 30: // time passes, often exactly to the next deadline
			if rng.IntN(3) > 0 {
				answer()
			}
			d := time.Duration(rng.IntN(1500)+1) * us
			if rng.IntN(3) == 0 {
				d = time.Duration(rng.IntN(60)+1) * us
			}
			if next := r.s.next; next > r.clock.now && r.clock.now+d > next && rng.IntN(4) > 0 {
				d = next - r.clock.now
			}
			r.advance(d)
		case n < 50: // the probes asked for are answered a few us later (some lost)
			answer()
		case n < 55: // an answer nobody asked for (or a late one)
			v := r.st.VCPUs[rng.IntN(len(r.st.VCPUs))]
			r.s.Probed(v, rips[rng.IntN(3)])
		case n < 62: // a vCPU starts doing something else
			mode[rng.IntN(len(mode))] = rips[rng.IntN(3)]
		case n < 72: // WAIT
			r.randomWait(rng)
		case n < 87: // KICK, mostly of a blocked vCPU
			r.randomKick(rng)
		case n < 99: // YIELD
			if v := pick(Running); v != nil {
				r.s.Yield(v, rng.IntN(len(r.st.VCPUs)+1)-1)
			}
		default: // EXIT, rarely
			if v := pick(Running); v != nil && len(exited) < 3 {
				r.s.Exit(v)
				exited[v] = r.clock.now
			}
		}
		r.check()
		monCheck(t, r, m)
	}
	assert.NotZero(t, r.st.Acct.Deferrals, "seed %d exercises deferrals", seed)
	assert.NotZero(t, r.st.Acct.SpinPreempts, "seed %d exercises spin preemption", seed)
	r.s.Stop()
	t.Logf("seed %d: %v: probes %d deferrals %d spin preempts %d timeouts %d stale %d switches %d",
		seed, r.clock.now, r.st.Acct.Probes, r.st.Acct.Deferrals, r.st.Acct.SpinPreempts, m.timeouts, m.stale, r.st.Acct.Switches)
	for _, v := range r.st.VCPUs {
		end, ok := exited[v]
		if !ok {
			end = r.clock.now
		}
		assert.Equal(t, end, v.Acct.Run+v.Acct.Steal+v.Acct.Blocked, "seed %d: %s", seed, v.Name)
	}
}

// monCheck asserts what monitor promises on top of rig.check.
func monCheck(t *testing.T, r *rig, m *monitorPolicy) {
	t.Helper()
	now := r.clock.now
	require.True(t, r.s.next == 0 || r.s.next > now, "deadline %v not after now %v", r.s.next, now)
	runnable := false
	for _, v := range r.st.VCPUs {
		mv := m.m[v.Index]
		if v.Status == Runnable {
			runnable = true
		}
		if mv.probing {
			require.Equal(t, Running, v.Status, "%s: probe in flight while not running", v.Name)
			require.Less(t, now, mv.sentAt+m.probeTimeout, "%s: a lost probe not noticed", v.Name)
		}
		require.NotEqual(t, gateGo, mv.gate, "%s: a decided preemption did not happen", v.Name)
		require.LessOrEqual(t, mv.deferrals, m.maxDeferrals, v.Name)
		if mv.gate == gateNone {
			continue
		}
		require.Equal(t, Running, v.Status, "%s: held while not running", v.Name)
		if mv.gate == gateProbing {
			require.True(t, mv.probing, "%s: waits for an answer that cannot come", v.Name)
		}
		require.LessOrEqual(t, v.SliceEnd, now+max(m.probeTimeout, m.deferStep), "%s: held too long", v.Name)
		require.NotZero(t, r.s.next)
		require.LessOrEqual(t, r.s.next, v.SliceEnd, "%s: the mechanism comes back at the hold's end", v.Name)
	}
	if runnable {
		require.Greater(t, r.s.next, now, "a vCPU waits but no deadline is set")
	}
}
