package sched

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type recorded struct{ recs []Record }

func (r *recorded) Record(rec Record) { r.recs = append(r.recs, rec) }

// TestRecorderAgreesWithAccounting: what a Recorder is told adds up to the
// scheduler's own accounting, under every policy, through a random walk of
// slice ends, WAITs, KICKs and YIELDs: slices on one pCPU never overlap,
// each vCPU's slices sum to its run time and its status intervals to its
// run, steal and blocked time, and there is one LHP/LWP/waiter-preempt mark
// per preemption counted as such.
func TestRecorderAgreesWithAccounting(t *testing.T) {
	ends := map[EndReason]bool{EndSlice: true, EndWait: true, EndYield: true, EndCoStop: true, EndCoStart: true, EndDelay: true,
		EndSpin: true, EndExit: true, EndRunOver: true}
	for _, policy := range []string{"rr", "gang", "relaxed", "balance", "monitor", "pv", "delay", "balance+pv+delay"} {
		t.Run(policy, func(t *testing.T) {
			o := Options{Slice: 10 * time.Millisecond, Skew: 3 * time.Millisecond, DelayMax: 50 * time.Microsecond}
			st, err := NewState([]int{0, 1}, []int{2, 2}, o.Slice)
			require.NoError(t, err)
			rec := &recorded{}
			st.Rec = rec
			pol, err := New(policy, o)
			require.NoError(t, err)
			clock, tgt := &fakeClock{}, newFakeTarget()
			s, err := NewScheduler(st, pol, tgt, clock)
			require.NoError(t, err)
			s.Start(true)
			rng := rand.New(rand.NewPCG(1, uint64(len(policy))))
			for step := 0; step < 2000; step++ {
				// Guests that hold, wait for, or are next for locks;
				// only one that runs (a preempted one does until it is
				// seen stopped) changes what it says.
				for _, v := range st.VCPUs {
					if v.Status == Running || v.StopPending() {
						tgt.hints[v.Index] = Hints{Holding: rng.IntN(4) == 0, Waiting: rng.IntN(3) == 0, NextInLine: rng.IntN(5) == 0, InCS: rng.IntN(3) == 0}
					}
				}
				if rng.IntN(2) == 0 { // the preempted ones' threads see their kicks
					for _, v := range tgt.stopping {
						s.Stopped(v)
					}
					tgt.stopping = nil
				}
				clock.now += time.Duration(rng.IntN(3000)) * time.Microsecond
				var running []*VCPU
				for _, v := range st.VCPUs {
					if v.Status == Running {
						running = append(running, v)
					}
				}
				switch rng.IntN(6) {
				case 0:
					if len(running) > 0 {
						s.Block(running[rng.IntN(len(running))], func() bool { return true })
					}
				case 1:
					s.Wake(st.VCPUs[rng.IntN(len(st.VCPUs))], st.VCPUs[rng.IntN(len(st.VCPUs))])
				case 2:
					if len(running) > 0 {
						s.Yield(running[rng.IntN(len(running))], -1)
					}
				default:
					s.Tick()
				}
			}
			s.Exit(st.VCPUs[0])
			clock.now += time.Millisecond
			s.Stop()

			run := map[int]time.Duration{}
			status := map[int]map[Status]time.Duration{}
			byPCPU := map[int][]Record{}
			marks := map[MarkKind]uint64{}
			for _, r := range rec.recs {
				switch r.Kind {
				case RecRan:
					require.LessOrEqual(t, r.Start, r.At)
					assert.True(t, ends[r.Why], "end reason %q", r.Why)
					run[r.V.Index] += r.At - r.Start
					byPCPU[r.PCPU] = append(byPCPU[r.PCPU], r)
				case RecStatus:
					if status[r.V.Index] == nil {
						status[r.V.Index] = map[Status]time.Duration{}
					}
					status[r.V.Index][r.From] += r.At - r.Start
				case RecMark:
					marks[r.Mark]++
				}
			}
			for p, slices := range byPCPU {
				sort.Slice(slices, func(i, j int) bool { return slices[i].Start < slices[j].Start })
				for i := 1; i < len(slices); i++ {
					require.GreaterOrEqual(t, slices[i].Start, slices[i-1].At, "pCPU %d: %s overlaps %s", p, slices[i].V.Name, slices[i-1].V.Name)
				}
			}
			var lhp, lwp, waiter uint64
			for _, v := range st.VCPUs {
				assert.Equal(t, v.Acct.Run, run[v.Index], "%s: slices sum to its run time", v.Name)
				assert.Equal(t, v.Acct.Run, status[v.Index][Running], v.Name)
				assert.Equal(t, v.Acct.Steal, status[v.Index][Runnable], v.Name)
				assert.Equal(t, v.Acct.Blocked, status[v.Index][Blocked], v.Name)
				lhp, lwp, waiter = lhp+v.Acct.LHP, lwp+v.Acct.LWP, waiter+v.Acct.WaiterPreempt
			}
			assert.Greater(t, lhp, uint64(0))
			assert.Empty(t, st.Acct.Impossible)
			assert.Equal(t, lhp, marks[MarkLHP])
			assert.Equal(t, lwp, marks[MarkLWP])
			assert.Equal(t, waiter, marks[MarkWaiterPreempt])
		})
	}
}
