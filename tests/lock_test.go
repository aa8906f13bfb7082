package tests

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/backendtest"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func lockConfig(t testing.TB, lock string, vcpus int) vmm.Config {
	lk, err := vmm.LookupLock(lock)
	require.NoError(t, err)
	cfg := config(t, "lock", vcpus)
	cfg.LockKind = lk.ID
	cfg.Locks = 1
	cfg.CSCycles, cfg.ThinkCycles = 500, 500
	cfg.SpinThreshold = vmm.DefaultSpinThreshold
	return cfg
}

// lockMachine bounds runs by time, not iterations: under overcommit a FIFO
// lock hands over to preempted waiters and an iteration count could take
// minutes.
func lockMachine(t testing.TB, policy string, d time.Duration) vmm.MachineConfig {
	mc := machine(t)
	mc.Policy, mc.Duration = policy, d
	return mc
}

// runUntil runs the machine for mc.Duration, and again for twice as long,
// up to 32 times as long, while enough says the run had too little time to
// show what the test checks. How much a VM gets done in a given time depends
// on the machine (the emulated kvm runner is 10-100 times slower than a
// host, a busy CI runner lends a CPU away); what it must get right does not.
// Only a run that failed its own checks, or the last one, is returned.
func runUntil(t testing.TB, h hv.Hypervisor, mc vmm.MachineConfig, enough func(*vmm.Result) bool, cfgs ...vmm.Config) *vmm.Result {
	t.Helper()
	last := mc.Duration * 32
	for {
		res := runM(t, h, mc, cfgs...)
		if !res.OK || enough(res) || mc.Duration >= last {
			return res
		}
		t.Logf("%v was too short here; running for %v", mc.Duration, 2*mc.Duration)
		mc.Duration *= 2
	}
}

func runLock(t testing.TB, h hv.Hypervisor, cfg vmm.Config) *vmm.Result {
	return runM(t, h, lockMachine(t, "host", 150*time.Millisecond), cfg)
}

// requireExact: the run is ok, and its exactness is derived again here
// from the raw figures (the guest's counter against the acquisitions, the
// owner-check failures per vCPU), independently of the lock workload's own
// Check that made it ok: a Check that stopped checking fails here.
func requireExact(t *testing.T, res *vmm.Result) {
	t.Helper()
	require.True(t, res.OK, res.Error)
	r := res.VMs[0]
	require.NotNil(t, r.LockStats)
	require.NotNil(t, r.CounterActual)
	assert.Equal(t, r.LockStats.Acquisitions, *r.CounterActual, "exact counter")
	assert.Greater(t, r.LockStats.Acquisitions, uint64(0))
	for _, v := range r.VCPU {
		assert.Zero(t, v.CheckFailures, "vCPU %d owner checks", v.ID)
	}
}

// TestLocks: every lock is exact with 1, 2, 4 and 8 vCPUs on (up to) 2 pCPUs.
func TestLocks(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		for _, lock := range vmm.LockNames(false) {
			for _, n := range []int{1, 2, 4, 8} {
				t.Run(fmt.Sprintf("%s/%d-vcpus", lock, n), func(t *testing.T) {
					requireExact(t, runLock(t, h, lockConfig(t, lock, n)))
				})
			}
		}
	})
}

// TestLockOptions: --delay-hint and --preempted-aware combine with every lock.
func TestLockOptions(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		for _, lock := range vmm.LockNames(false) {
			for name, flags := range map[string]uint32{
				"delay-hint": hypercall.FlagDelayHint, "preempted-aware": hypercall.FlagPreemptedAware,
				"both": hypercall.FlagDelayHint | hypercall.FlagPreemptedAware,
			} {
				t.Run(lock+"/"+name, func(t *testing.T) {
					cfg := lockConfig(t, lock, 4)
					cfg.Flags = flags
					requireExact(t, runLock(t, h, cfg))
				})
			}
		}
	})
}

// TestPTicketTimeoutShift: pticket's timeout unit is 1 << shift spins per
// place in line: at shift 1 a waiter leaves the queue order after a few
// spins, at 30 (a second or more of spinning) never within the run. Both
// stay exact.
func TestPTicketTimeoutShift(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		slow := map[uint32]uint64{}
		for _, shift := range []uint32{1, 30} {
			cfg := lockConfig(t, "pticket", 4)
			cfg.PTicketShift = shift
			res := runUntil(t, h, lockMachine(t, "host", 150*time.Millisecond), func(r *vmm.Result) bool {
				return r.VMs[0].LockStats.Acquisitions >= 1000
			}, cfg)
			requireExact(t, res)
			slow[shift] = res.VMs[0].LockStats.SlowPaths
		}
		assert.Greater(t, slow[1], uint64(0), "shift 1: waiters time out")
		assert.Zero(t, slow[30], "shift 30: nobody waits 2^30 spins")
	})
}

func TestManyLocks(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		cfg := lockConfig(t, "mcs", 8)
		cfg.Locks = 3
		requireExact(t, runLock(t, h, cfg))
	})
}

// TestBrokenLockIsCaught proves the self-check can fail.
func TestBrokenLockIsCaught(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		cfg := lockConfig(t, "broken", 4)
		cfg.CSCycles = 5000
		r := runLock(t, h, cfg)
		assert.False(t, r.OK)
		assert.ErrorIs(t, r.Err, vmm.ErrCheckFailed)
		assert.Contains(t, r.Error, "lock broken")
	})
}

// TestPVSoak: with a spin threshold of 1 nearly every contended acquisition
// of a pv lock goes through WAIT and KICK; none may be lost.
func TestPVSoak(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		for _, lock := range []string{"pvticket", "pvqspin"} {
			t.Run(lock, func(t *testing.T) {
				cfg := lockConfig(t, lock, 4)
				cfg.SpinThreshold = 1
				res := runM(t, h, lockMachine(t, "host", 400*time.Millisecond), cfg)
				requireExact(t, res)
				r := res.VMs[0]
				assert.Greater(t, r.LockStats.SlowPaths, uint64(0))
				assert.Greater(t, r.LockStats.Waits, uint64(0))
				assert.Greater(t, r.LockStats.Kicks, uint64(0))
			})
		}
	})
}

// TestOvercommitSpins: with more vCPUs than pCPUs a ticket lock's waiters
// spin through preempted holders' time slices, so the spin fraction rises.
// Our round-robin scheduler preempts for certain (under host, Linux may
// or may not, and in the emulated kvm runner under -race it once did not:
// 0.69 at 2 vCPUs against 0.60 at 4), and each fraction is the median of 3
// runs. The gap is large (about 0.3 against 0.95 here); the test only asks
// for more.
func TestOvercommitSpins(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		if len(pcpus(t)) < 2 {
			t.Skip("needs 2 host CPUs")
		}
		frac := func(h hv.Hypervisor, n int) float64 {
			var fs []float64
			for range 3 {
				mc := lockMachine(t, "rr", 300*time.Millisecond)
				mc.Options.Slice = 10 * time.Millisecond
				res := runM(t, h, mc, lockConfig(t, "ticket", n))
				requireExact(t, res)
				fs = append(fs, res.VMs[0].LockStats.SpinFraction)
			}
			sort.Float64s(fs)
			return fs[1]
		}
		two, four := frac(h, 2), frac(h, 4)
		t.Logf("ticket spin fraction: 2 vCPUs %.3f, 4 vCPUs %.3f", two, four)
		assert.Greater(t, four, two)
	})
}

// TestQueuedLocksEveryPolicy: Linux's qspinlock, pv-qspinlock and
// virt_spin_lock are exact at 1, 2 and 8 vCPUs on 2 pCPUs under every
// policy (4 vCPUs: TestEveryPolicyEveryLock).
func TestQueuedLocksEveryPolicy(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		if len(pcpus(t)) < 2 {
			t.Skip("needs 2 host CPUs")
		}
		for _, policy := range policySpecs() {
			for _, lock := range []string{"qspinlock", "pvqspin", "virt"} {
				for _, n := range []int{1, 2, 8} {
					t.Run(fmt.Sprintf("%s/%s/%d-vcpus", policy, lock, n), func(t *testing.T) {
						mc := lockMachine(t, policy, 100*time.Millisecond)
						mc.Options.Slice = 5 * time.Millisecond
						res := runUntil(t, h, mc, func(r *vmm.Result) bool {
							for _, vm := range r.VMs {
								if vm.LockStats == nil || vm.LockStats.Acquisitions == 0 {
									return false
								}
							}
							return true
						}, sized(t, policy, lock, n)...)
						require.True(t, res.OK, res.Error)
						for _, vm := range res.VMs {
							assert.Equal(t, vm.LockStats.Acquisitions, *vm.CounterActual, vm.Name)
							assert.Greater(t, vm.LockStats.Acquisitions, uint64(0), vm.Name)
						}
					})
				}
			}
		}
	})
}

// TestPVQSpinKnobs: every combination of pvqspin's mechanisms is exact at
// 4 vCPUs on 2 pCPUs, under pv with the kicked vCPU boosted and under rr,
// and the events follow the knobs.
func TestPVQSpinKnobs(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		if len(pcpus(t)) < 2 {
			t.Skip("needs 2 host CPUs")
		}
		knobs := vmm.PVKnobList()
		var combos []vmm.PVKnobs
		var walk func(i int, p vmm.PVKnobs)
		walk = func(i int, p vmm.PVKnobs) {
			if i == len(knobs) {
				combos = append(combos, p)
				return
			}
			for v := range knobs[i].Values {
				knobs[i].Set(&p, uint32(v))
				walk(i+1, p)
			}
		}
		walk(0, vmm.PVKnobs{SpinThresholdHead: 256})
		require.Len(t, combos, 36)
		for i, p := range combos {
			policy := "pv"
			if i%2 == 1 {
				policy = "rr"
			}
			var name []string
			for _, k := range knobs {
				name = append(name, k.Key+"="+k.Name(p))
			}
			t.Run(policy+"/"+strings.Join(name, ","), func(t *testing.T) {
				cfg := lockConfig(t, "pvqspin", 4)
				cfg.PV = p
				cfg.SpinThreshold = 1024 // the slow paths, often
				mc := lockMachine(t, policy, 100*time.Millisecond)
				mc.Options.Slice = 5 * time.Millisecond
				mc.Options.BoostKicked = policy == "pv"
				res := runM(t, h, mc, cfg)
				requireExact(t, res)
				e := res.VMs[0].LockStats.Events
				assert.Zero(t, e.LockPending, "pv skips the pending fast path")
				if p.Steal == hypercall.PVStealOff {
					assert.Zero(t, e.PVLockStealing, "no stealing when it is off")
				}
				if p.PrevCheck == hypercall.PVPrevCheckOff {
					assert.Zero(t, e.PVWaitEarly, "no early WAIT without the predecessor check")
				}
				if p.Kick == hypercall.PVKickImmediate {
					assert.LessOrEqual(t, e.PVKickUnlock, e.PVWaitHead, "only a queue head that hashed itself is kicked at unlock")
				}
			})
		}
	})
}

// sized is n vCPUs of lock workload with the guest options the policy
// reads; under gang, VMs of at most 2 vCPUs (it refuses wider ones).
func sized(t *testing.T, policy, lock string, n int) []vmm.Config {
	cfg := overcommitted(t, policy, lock)[0]
	cfg.Name, cfg.VCPUs = "", n
	if !strings.HasPrefix(policy, "gang") || n <= 2 {
		return []vmm.Config{cfg}
	}
	var cfgs []vmm.Config
	for i := 0; i < n/2; i++ {
		c := cfg
		c.Name, c.VCPUs = fmt.Sprintf("vm%d", i), 2
		cfgs = append(cfgs, c)
	}
	return cfgs
}

// TestSpinFractionBounded: a vCPU preempted in the middle of its spin
// window (a ticket lock, 4 vCPUs on 2 pCPUs under rr: waiters are
// preempted while they spin) is not charged the time it was off its pCPU,
// so no spin fraction exceeds 1: the guest takes the steal the host
// publishes out of every acquisition's window.
func TestSpinFractionBounded(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		cfg := lockConfig(t, "ticket", 4)
		mc := lockMachine(t, "rr", 300*time.Millisecond)
		mc.Options.Slice = 10 * time.Millisecond
		res := runUntil(t, h, mc, func(r *vmm.Result) bool {
			var waiters uint64
			for _, v := range r.VMs[0].VCPU {
				waiters += v.WaiterPreemptions
			}
			return waiters > 0
		}, cfg)
		require.True(t, res.OK, res.Error)
		vm := res.VMs[0]
		var waiters uint64
		for _, v := range vm.VCPU {
			waiters += v.WaiterPreemptions
			require.NotNil(t, v.LockStats)
			assert.LessOrEqual(t, v.LockStats.SpinFraction, 1.0, "vCPU %d", v.ID)
			assert.Positive(t, v.StealNs, "vCPU %d was preempted", v.ID)
		}
		assert.Positive(t, waiters, "preemptions inside a spin window")
		assert.LessOrEqual(t, vm.LockStats.SpinFraction, 1.0)
	})
}
