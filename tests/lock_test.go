package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/backendtest"
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

func runLock(t testing.TB, h vmm.Hypervisor, cfg vmm.Config) *vmm.Result {
	return runM(t, h, lockMachine(t, "host", 150*time.Millisecond), cfg)
}

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
	backendtest.Each(t, func(t *testing.T, h vmm.Hypervisor) {
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
	backendtest.Each(t, func(t *testing.T, h vmm.Hypervisor) {
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

func TestManyLocks(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h vmm.Hypervisor) {
		cfg := lockConfig(t, "mcs", 8)
		cfg.Locks = 3
		requireExact(t, runLock(t, h, cfg))
	})
}

// TestBrokenLockIsCaught proves the self-check can fail.
func TestBrokenLockIsCaught(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h vmm.Hypervisor) {
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
	backendtest.Each(t, func(t *testing.T, h vmm.Hypervisor) {
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
// The gap is an order of magnitude on our hosts; the test only asks for more.
func TestOvercommitSpins(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h vmm.Hypervisor) {
		if len(pcpus(t)) < 2 {
			t.Skip("needs 2 host CPUs")
		}
		frac := func(h vmm.Hypervisor, n int) float64 {
			res := runM(t, h, lockMachine(t, "host", 300*time.Millisecond), lockConfig(t, "ticket", n))
			requireExact(t, res)
			return res.VMs[0].LockStats.SpinFraction
		}
		two, four := frac(h, 2), frac(h, 4)
		t.Logf("ticket spin fraction: 2 vCPUs %.3f, 4 vCPUs %.3f", two, four)
		assert.Greater(t, four, two)
	})
}
