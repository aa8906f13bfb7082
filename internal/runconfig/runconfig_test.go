package runconfig

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/guest/prebuilt"
	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/scenario"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// defaults are the run command's flag defaults; given names the flags
// given on top of them.
func defaults(given ...string) Flags {
	set := map[string]bool{}
	for _, g := range given {
		set[g] = true
	}
	return Flags{VCPUs: 2, Workload: "counter", Mem: "64M", Policy: "host", Slice: sched.DefaultSlice,
		Skew: sched.DefaultSkew, DelayMax: sched.DefaultDelayMax, Backend: "auto", Lock: "ticket", Locks: 1,
		CSCycles: 1000, ThinkCycles: 2000, SpinThreshold: vmm.DefaultSpinThreshold,
		PV:      map[string]string{"pv-steal": "hybrid", "pv-pending": "on", "pv-prev-check": "node", "pv-kick": "deferred"},
		Changed: func(name string) bool { return set[name] }}
}

func allowed(t *testing.T) []int {
	cpus, err := host.AllowedCPUs()
	require.NoError(t, err)
	return cpus
}

// usage requires err to be a usage error with message want.
func usage(t *testing.T, err error, want string) {
	t.Helper()
	var u *errkind.UsageError
	require.ErrorAs(t, err, &u)
	assert.EqualError(t, err, want)
}

func TestResolveFlags(t *testing.T) {
	p, err := Resolve(defaults())
	require.NoError(t, err)
	require.Len(t, p.Configs, 1)
	c := p.Configs[0]
	assert.Equal(t, "vm0", c.Name)
	assert.Equal(t, 2, c.VCPUs)
	assert.EqualValues(t, 64<<20, c.MemBytes)
	assert.Equal(t, "counter", c.Workload.Name)
	assert.EqualValues(t, 100000, c.Iterations, "the counter's default")
	assert.Nil(t, c.Image, "the built-in guest")
	assert.Zero(t, c.LockKind, "not a lock VM: the lock flags' defaults are not applied")
	m := p.Machine
	assert.Equal(t, "host", m.Policy)
	assert.Equal(t, allowed(t), m.PCPUs, "all the CPUs this process may use")
	assert.Equal(t, vmm.DefaultTimeout, m.Timeout)
	assert.Zero(t, m.Duration)
	assert.Nil(t, m.Timeline)
	assert.Empty(t, p.About)
	assert.Empty(t, p.Name)

	f := defaults("workload", "lock", "duration", "sched", "pv-steal", "corunner")
	f.Workload, f.Lock, f.Duration, f.Policy, f.PV["pv-steal"], f.Corunner = "lock", "pvqspin", 2*time.Second, "rr+pv", "off", 1
	p, err = Resolve(f)
	require.NoError(t, err)
	require.Len(t, p.Configs, 2)
	c = p.Configs[0]
	assert.EqualValues(t, hypercall.LockPVQSpin, c.LockKind)
	assert.Zero(t, c.Iterations, "timed")
	assert.EqualValues(t, hypercall.PVStealOff, c.PV.Steal)
	assert.EqualValues(t, vmm.DefaultSpinThreshold, c.SpinThreshold)
	assert.Equal(t, 2*time.Second+TimeoutGrace, p.Machine.Timeout, "the watchdog follows the duration")
	hog := p.Configs[1]
	assert.Equal(t, CorunnerName, hog.Name)
	assert.Equal(t, "hog", hog.Workload.Name)
	assert.Equal(t, 1, hog.VCPUs)
}

func TestResolveBuiltinScenario(t *testing.T) {
	if len(allowed(t)) < 2 {
		t.Skip("the scenario needs 2 host CPUs")
	}
	f := defaults("scenario", "duration")
	f.Scenario, f.Duration = "slide8-lhp-two-vms", 300*time.Millisecond
	p, err := Resolve(f)
	require.NoError(t, err)
	assert.Equal(t, "scenario slide8-lhp-two-vms", p.Name)
	assert.Contains(t, p.About, "scenario slide8-lhp-two-vms: ticket lock VM (2 vCPUs) + CPU hog VM (1 vCPU) on 2 pCPUs, round-robin; on pCPUs ")
	assert.Contains(t, p.About, "(npcpus 2: the first 2 CPUs this process may use)")
	require.Len(t, p.Configs, 2)
	assert.Equal(t, "app", p.Configs[0].Name)
	assert.EqualValues(t, hypercall.LockTicket, p.Configs[0].LockKind)
	assert.Equal(t, "noisy", p.Configs[1].Name)
	assert.Equal(t, allowed(t)[:2], p.Machine.PCPUs)
	assert.Equal(t, "rr", p.Machine.Policy)
	assert.Equal(t, 30*time.Millisecond, p.Machine.Options.Slice)
	assert.Equal(t, 300*time.Millisecond, p.Machine.Duration, "--duration overrides the scenario's")
}

// TestResolveErrors: each error is a usage error naming where the value
// came from: the flag, or the scenario's file, line and key.
func TestResolveErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(yaml string) string {
		p := filepath.Join(dir, "d.yaml")
		require.NoError(t, os.WriteFile(p, []byte(yaml), 0o644))
		return p
	}
	f := defaults("vcpus")
	f.VCPUs = 0
	_, err := Resolve(f)
	usage(t, err, "--vcpus 0: must be between 1 and 1024")

	f = defaults("mem")
	f.Mem = ""
	_, err = Resolve(f)
	usage(t, err, "--mem is empty (leave it out for the default)")

	f = defaults("scenario")
	f.Scenario = file("vms:\n  - name: a\n    vcpus: 2\n    workload: counter\n    mem: 1T\n")
	_, err = Resolve(f)
	usage(t, err, f.Scenario+": line 5: vms[0].mem 1T: must be a multiple of 2 MiB between 4 MiB and 2048 MiB, e.g. 64M or 1G")

	f.Scenario = file("vms:\n  - {vcpus: 2, workload: lock, lock: ticket, pv_steal: off}\n")
	_, err = Resolve(f)
	usage(t, err, f.Scenario+": line 2: vms[0].pv_steal: applies to lock pvqspin only (this VM runs ticket)")

	f = defaults("scenario", "vcpus")
	f.Scenario = "default"
	_, err = Resolve(f)
	usage(t, err, "--vcpus shapes a VM: with --scenario the scenario describes the VMs")

	f = defaults("timeline-window")
	f.TimelineWindow = "0-1ms"
	_, err = Resolve(f)
	usage(t, err, "--timeline-window needs --timeline")

	f = defaults()
	f.Timeline = "t.svg"
	_, err = Resolve(f)
	usage(t, err, "--timeline: under --sched host Linux decides who runs where, so there is no timeline to draw; use one of our policies (rr, gang, ...)")

	f = defaults("sched", "pcpus", "vcpus")
	f.Policy, f.PCPUs, f.VCPUs = "gang", strconv.Itoa(allowed(t)[0]), 2
	_, err = Resolve(f)
	var refused *sched.RefusedError
	assert.ErrorAs(t, err, &refused, "the admission dry run refuses what the policy cannot schedule")
	assert.Contains(t, err.Error(), "gang: vm0 has 2 vCPUs but there are only 1 pCPUs")
}

func TestResolveTimeline(t *testing.T) {
	f := defaults("sched", "slice")
	f.Policy, f.Slice, f.Timeline = "rr", 5*time.Millisecond, "t.svg"
	p, err := Resolve(f)
	require.NoError(t, err)
	require.NotNil(t, p.Machine.Timeline)
	assert.Equal(t, 100*time.Millisecond, p.Machine.Timeline.To, "the first 20 slices")

	for in, want := range map[string][2]time.Duration{
		"0-200ms": {0, 200 * time.Millisecond}, "50ms-1s": {50 * time.Millisecond, time.Second}, "100-300ms": {100 * time.Millisecond, 300 * time.Millisecond},
	} {
		from, to, err := parseWindow(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, [2]time.Duration{from, to}, in)
	}
	for _, bad := range []string{"200ms", "x-1s", "1s-x", "2s-1s", "-1s"} {
		_, _, err := parseWindow(bad)
		assert.Error(t, err, bad)
	}
}

// TestImageParsedOnce: --image is read and parsed here, once; the config
// carries the parsed image to vmm.New.
func TestImageParsedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "guest.elf")
	require.NoError(t, os.WriteFile(path, prebuilt.Image, 0o644))
	f := defaults("image", "corunner")
	f.Image, f.Corunner = path, 1
	p, err := Resolve(f)
	require.NoError(t, err)
	c := p.Configs[0]
	assert.Equal(t, path, c.ImageName)
	assert.Equal(t, prebuilt.Image, c.Image)
	require.NotNil(t, c.Parsed)
	assert.NotZero(t, c.Parsed.UserEntry)
	assert.Nil(t, p.Configs[1].Image, "a corunner runs the built-in guest")
	assert.Nil(t, p.Configs[1].Parsed)

	require.NoError(t, os.WriteFile(path, []byte("not an ELF\n"), 0o644))
	_, err = Resolve(f)
	usage(t, err, "--image "+path+": bad guest image: not an ELF file")
}

// TestFromScenario: a scenario built in code (an experiment's cell) gets
// the run command's defaults and the same checks.
func TestFromScenario(t *testing.T) {
	cpu := sched.FormatCPUList(allowed(t)[:1])
	vm := scenario.VM{Name: "vm0", VCPUs: 2, Workload: "lock", Lock: "pvqspin", CSCycles: 1000, ThinkCycles: 2000, PVSteal: "off"}
	FollowPolicy(&vm, "rr+pv")
	p, err := FromScenario(scenario.Scenario{PCPUs: cpu, Sched: scenario.Sched{Policy: "rr+pv", BoostKicked: true},
		Duration: scenario.Duration(time.Second), VMs: []scenario.VM{vm}})
	require.NoError(t, err)
	m := p.Machine
	assert.Equal(t, sched.Options{Slice: sched.DefaultSlice, Skew: sched.DefaultSkew, DelayMax: sched.DefaultDelayMax, BoostKicked: true}, m.Options)
	assert.Equal(t, time.Second, m.Duration)
	assert.Equal(t, time.Second+time.Minute, m.Timeout)
	c := p.Configs[0]
	assert.Equal(t, uint32(hypercall.FlagPreemptedAware), c.Flags)
	assert.Equal(t, vmm.PVKnobs{Steal: hypercall.PVStealOff}, c.PV)
	assert.Equal(t, 1, c.Locks)
	assert.EqualValues(t, vmm.DefaultSpinThreshold, c.SpinThreshold)
	assert.EqualValues(t, 64<<20, c.MemBytes)
	assert.Zero(t, c.Iterations)

	_, err = FromScenario(scenario.Scenario{PCPUs: cpu, Sched: scenario.Sched{Policy: "gang"}, Duration: scenario.Duration(time.Second),
		VMs: []scenario.VM{{Name: "vm0", VCPUs: 2, Workload: "lock"}}})
	var refused *sched.RefusedError
	require.ErrorAs(t, err, &refused)
	var u *errkind.UsageError
	assert.ErrorAs(t, err, &u)

	_, err = FromScenario(scenario.Scenario{Sched: scenario.Sched{Policy: "rr", BoostKicked: true}, Duration: scenario.Duration(time.Second),
		VMs: []scenario.VM{{Name: "vm0", VCPUs: 2, Workload: "lock"}}})
	usage(t, err, "--boost-kicked: applies to a policy with pv (this run's is rr)")
}

// TestFollowPolicy: the one rule for what the guest does under a policy.
func TestFollowPolicy(t *testing.T) {
	for policy, want := range map[string][2]bool{ // preempted-aware, delay hint
		"host": {}, "rr": {}, "gang": {}, "pv": {true, false}, "rr+pv": {true, false}, "delay": {false, true},
		"rr+pv+delay": {true, true}, "balance+delay": {false, true},
	} {
		vm := scenario.VM{PreemptedAware: true, DelayHint: true}
		FollowPolicy(&vm, policy)
		assert.Equal(t, want, [2]bool{vm.PreemptedAware, vm.DelayHint}, policy)
	}
}

func TestOpenUnknownBackend(t *testing.T) {
	_, err := Open("xen", nil)
	usage(t, err, `--backend: unknown backend "xen" (have: kvm, ptrace, or auto)`)
}
