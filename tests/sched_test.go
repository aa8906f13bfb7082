package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/backendtest"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/scenarios"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// policySpecs is every policy, and every modifier over every base it can wrap.
func policySpecs() []string {
	var base, mods, specs []string
	for _, n := range sched.Names() {
		if sched.IsModifier(n) {
			mods = append(mods, n)
		} else {
			base = append(base, n)
		}
	}
	specs = append(specs, base...)
	for _, b := range base {
		if b == "host" {
			continue
		}
		for _, m := range mods {
			specs = append(specs, b+"+"+m)
		}
	}
	if len(mods) >= 2 {
		specs = append(specs, mods[0]+"+"+mods[1])
	}
	return specs
}

// overcommitted is 4 vCPUs of lock workload on the 2 pCPUs: one VM, or two
// 2-vCPU VMs under gang (which refuses a VM wider than the pCPUs).
func overcommitted(t *testing.T, policy, lock string) []vmm.Config {
	cfg := lockConfig(t, lock, 4)
	if strings.Contains(policy, "delay") {
		cfg.Flags |= hypercall.FlagDelayHint
	}
	if strings.Contains(policy, "pv") {
		cfg.Flags |= hypercall.FlagPreemptedAware
	}
	if !strings.HasPrefix(policy, "gang") {
		return []vmm.Config{cfg}
	}
	a, b := cfg, cfg
	a.Name, b.Name, a.VCPUs, b.VCPUs = "a", "b", 2, 2
	return []vmm.Config{a, b}
}

// TestEveryPolicyEveryLock: 4 vCPUs on 2 pCPUs, exact counters, no lost
// wakeup, for every lock under every policy (and combination).
func TestEveryPolicyEveryLock(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		if len(pcpus(t)) < 2 {
			t.Skip("needs 2 host CPUs")
		}
		for _, policy := range policySpecs() {
			for _, lock := range vmm.LockNames(false) {
				t.Run(policy+"/"+lock, func(t *testing.T) {
					mc := lockMachine(t, policy, 150*time.Millisecond)
					mc.Options.Slice = 5 * time.Millisecond
					res := runM(t, h, mc, overcommitted(t, policy, lock)...)
					require.True(t, res.OK, res.Error)
					for _, vm := range res.VMs {
						assert.Equal(t, vm.LockStats.Acquisitions, *vm.CounterActual, vm.Name)
					}
					assert.Greater(t, res.Sched.Switches, uint64(0))
				})
			}
		}
	})
}

// TestRRShowsLHP is the scheduler issue's first check: a ticket lock on 4
// vCPUs over 2 pCPUs under rr preempts lock holders and next-in-line
// waiters, and its waiters spin through the preempted holders' slices: the
// spin fraction rises against 2 vCPUs on the same 2 pCPUs (about 97 %
// against 15 % on our hosts; throughput collapses tens of times, which is
// the benchmarks' and experiment's to measure, not a test's to assert).
// Preemptions are counted for what they are, so the run is lengthened
// where too few happened to show one (runUntil).
func TestRRShowsLHP(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		if len(pcpus(t)) < 2 {
			t.Skip("needs 2 host CPUs")
		}
		ref := runM(t, h, lockMachine(t, "rr", time.Second), lockConfig(t, "ticket", 2))
		requireExact(t, ref)
		over := runUntil(t, h, lockMachine(t, "rr", time.Second), func(r *vmm.Result) bool {
			return r.Sched.LHPEvents+r.Sched.LWPEvents > 0 && r.Sched.WaiterPreemptions > r.Sched.LWPEvents
		}, lockConfig(t, "ticket", 4))
		requireExact(t, over)
		t.Logf("ticket: 2 on 2 %.0f acq/s, 4 on 2 %.0f acq/s; LHP %d LWP %d", ref.VMs[0].OpsPerSec,
			over.VMs[0].OpsPerSec, over.Sched.LHPEvents, over.Sched.LWPEvents)
		assert.Greater(t, over.Sched.LHPEvents+over.Sched.LWPEvents, uint64(0))
		assert.Greater(t, over.Sched.WaiterPreemptions, over.Sched.LWPEvents, "the convoy: waiters preempted anywhere in the queue")
		assert.Greater(t, over.VMs[0].LockStats.SpinFraction, ref.VMs[0].LockStats.SpinFraction)
		assert.Greater(t, over.VMs[0].VCPU[0].Preemptions, uint64(0))
		assert.Greater(t, over.VMs[0].VCPU[0].StealNs, int64(0))
	})
}

// TestScale: 1024 vCPUs in 16 VMs on 2 pCPUs, every counter exact.
func TestScale(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		var cfgs []vmm.Config
		for i := 0; i < 16; i++ {
			cfg := config(t, "counter", 64)
			cfg.Name, cfg.Iterations = fmt.Sprintf("vm%d", i), 500
			cfgs = append(cfgs, cfg)
		}
		mc := machine(t)
		mc.Policy, mc.Options.Slice = "rr", time.Millisecond
		res := runM(t, h, mc, cfgs...)
		require.True(t, res.OK, res.Error)
		t.Logf("%s: 1024 vCPUs started in %.2f s; the run took %.2f s", h.Name(), res.StartupS, res.ElapsedS)
		n := 0
		for _, vm := range res.VMs {
			n += vm.VCPUs
			assert.Equal(t, *vm.CounterExpected, *vm.CounterActual, vm.Name)
			assert.EqualValues(t, 64*500, *vm.CounterActual, vm.Name)
		}
		assert.Equal(t, 1024, n)
	})
}

// TestBuiltinScenarios: every shipped scenario runs and checks itself.
func TestBuiltinScenarios(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		for _, name := range scenarios.Names() {
			t.Run(name, func(t *testing.T) {
				r := runJSON(t, 0, on(h, "run", "--scenario", name, "--duration", "300ms", "--quiet")...)
				require.True(t, r.OK, r.Error)
				assert.NotEmpty(t, r.VMs)
			})
		}
	})
}
