package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/backend"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/scenario"
	"github.com/lhpvm/lhpvm/scenarios"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
)

// defaultIterations per workload when nothing else bounds a VM's run.
var defaultIterations = map[string]uint64{"counter": 100000, "null": 20000, "lock": 100000}

// vmFlags shape the single VM of a flag-built run; with --scenario the
// scenario describes the VMs and these are refused.
var vmFlags = []string{"vcpus", "workload", "iterations", "mem", "image", "lock", "locks", "cs-cycles",
	"think-cycles", "spin-threshold", "delay-hint", "preempted-aware"}

// buildRun turns the flags (and the scenario they name) into VM configs and
// the machine config. Every error is a usage error.
func buildRun(f runFlags) ([]vmm.Config, vmm.MachineConfig, error) {
	var mc vmm.MachineConfig
	sc, err := scenarioOf(f)
	if err != nil {
		return nil, mc, err
	}
	if f.corunner < 0 || f.corunner > hypercall.MaxVCPUs {
		return nil, mc, fmt.Errorf("--corunner %d: must be between 0 and %d", f.corunner, hypercall.MaxVCPUs)
	}
	if f.corunner > 0 {
		sc.VMs = append(sc.VMs, scenario.VM{Name: "hog", VCPUs: f.corunner, Workload: "hog"})
	}

	if err := backend.Check(sc.Backend); err != nil {
		return nil, mc, fmt.Errorf("--backend: %w", err)
	}
	mc.Backend = sc.Backend

	// The machine: pCPUs, policy, timing.
	allowed, err := host.AllowedCPUs()
	if err != nil {
		return nil, mc, err
	}
	mc.PCPUs = allowed
	if sc.PCPUs != "" {
		if mc.PCPUs, err = sched.ParseCPUList(sc.PCPUs); err != nil {
			return nil, mc, fmt.Errorf("--pcpus: %w", err)
		}
		ok := map[int]bool{}
		for _, c := range allowed {
			ok[c] = true
		}
		for _, c := range mc.PCPUs {
			if !ok[c] {
				return nil, mc, fmt.Errorf("--pcpus: CPU %d is not available to this process (have %s)", c, sched.FormatCPUList(allowed))
			}
		}
	}
	mc.Policy = sc.Sched.Policy
	mc.Options = sched.Options{Slice: time.Duration(sc.Sched.Slice), Skew: time.Duration(sc.Sched.Skew),
		DelayMax: time.Duration(sc.Sched.DelayMax)}
	if mc.Options.Slice < sched.MinSlice || mc.Options.Slice > sched.MaxSlice {
		return nil, mc, fmt.Errorf("--slice %v: must be between %v and %v", mc.Options.Slice, sched.MinSlice, sched.MaxSlice)
	}
	if mc.Options.Skew <= 0 || mc.Options.DelayMax <= 0 {
		return nil, mc, fmt.Errorf("--skew and --delay-max must be positive")
	}
	pol, err := sched.New(mc.Policy, mc.Options)
	if err != nil {
		return nil, mc, fmt.Errorf("--sched: %w", err)
	}
	mc.Duration, mc.Timeout = time.Duration(sc.Duration), time.Duration(sc.Timeout)
	if mc.Duration < 0 || mc.Timeout <= 0 {
		return nil, mc, fmt.Errorf("--duration and --timeout must be positive")
	}
	if mc.Duration > 0 && mc.Timeout <= mc.Duration {
		return nil, mc, fmt.Errorf("--timeout %v must be longer than --duration %v", mc.Timeout, mc.Duration)
	}

	// The VMs.
	var cfgs []vmm.Config
	counts := make([]int, 0, len(sc.VMs))
	bounded := false
	for _, v := range sc.VMs {
		cfg, err := vmConfig(v, f.image, mc.Duration > 0)
		if err != nil {
			if len(sc.VMs) > 1 || f.scenario != "" {
				err = fmt.Errorf("vm %s: %w", v.Name, err)
			}
			return nil, mc, err
		}
		bounded = bounded || !cfg.UntilOthers
		cfgs = append(cfgs, cfg)
		counts = append(counts, cfg.VCPUs)
	}
	if mc.Duration == 0 && !bounded {
		return nil, mc, fmt.Errorf("nothing bounds the run: a hog runs as long as the other VMs; give --duration or --iterations")
	}
	// Let the policy refuse the machine now (gang and a VM wider than the
	// pCPUs), before any VM is built.
	st, err := sched.NewState(mc.PCPUs, counts, mc.Options.Slice)
	if err == nil {
		err = pol.Admit(st)
	}
	if err != nil {
		return nil, mc, err
	}
	return cfgs, mc, nil
}

// scenarioOf is the scenario to run: the one --scenario names, with the
// machine flags given on the command line overriding it, or one VM from
// the flags.
func scenarioOf(f runFlags) (*scenario.Scenario, error) {
	changed := func(name string) bool { return f.changed != nil && f.changed(name) }
	if f.scenario == "" {
		if f.iterations > 0 && f.duration > 0 {
			return nil, fmt.Errorf("--iterations and --duration both bound the run: give one")
		}
		if f.workload != "lock" {
			for _, name := range lockFlags {
				if changed(name) {
					return nil, fmt.Errorf("--%s applies to --workload lock only", name)
				}
			}
		}
		return &scenario.Scenario{
			Name: "flags", PCPUs: f.pcpus, Backend: f.backend,
			Sched: scenario.Sched{Policy: f.policy, Slice: scenario.Duration(f.slice),
				Skew: scenario.Duration(f.skew), DelayMax: scenario.Duration(f.delayMax)},
			Duration: scenario.Duration(f.duration), Timeout: scenario.Duration(f.timeout),
			VMs: []scenario.VM{{Name: "vm0", VCPUs: f.vcpus, Mem: f.mem, Workload: f.workload,
				Iterations: f.iterations, Lock: f.lock, Locks: f.locks, CSCycles: f.csCycles,
				ThinkCycles: f.thinkCycles, SpinThreshold: f.spinThreshold, DelayHint: f.delayHint,
				PreemptedAware: f.preemptedAware}},
		}, nil
	}
	for _, name := range vmFlags {
		if changed(name) {
			return nil, fmt.Errorf("--%s shapes a VM: with --scenario the scenario describes the VMs", name)
		}
	}
	b, ok := scenarios.Get(f.scenario)
	if !ok {
		var err error
		if b, err = os.ReadFile(f.scenario); err != nil {
			return nil, fmt.Errorf("--scenario: %w (built-in scenarios: %s)", err, strings.Join(scenarios.Names(), ", "))
		}
	}
	sc, err := scenario.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("--scenario %s: %w", f.scenario, err)
	}
	// Defaults for what the scenario leaves out, then command-line overrides.
	set := func(flag string, dst *scenario.Duration, v time.Duration) {
		if changed(flag) || *dst == 0 {
			*dst = scenario.Duration(v)
		}
	}
	if changed("sched") || sc.Sched.Policy == "" {
		sc.Sched.Policy = f.policy
	}
	if changed("pcpus") {
		sc.PCPUs = f.pcpus
	}
	if changed("backend") || sc.Backend == "" {
		sc.Backend = f.backend
	}
	set("slice", &sc.Sched.Slice, f.slice)
	set("skew", &sc.Sched.Skew, f.skew)
	set("delay-max", &sc.Sched.DelayMax, f.delayMax)
	set("timeout", &sc.Timeout, f.timeout)
	if changed("duration") {
		sc.Duration = scenario.Duration(f.duration)
	}
	return sc, nil
}

// vmConfig checks one VM of a scenario and builds its config.
func vmConfig(v scenario.VM, image string, timed bool) (vmm.Config, error) {
	var cfg vmm.Config
	wl, err := vmm.LookupWorkload(v.Workload)
	if err != nil {
		return cfg, err
	}
	if v.VCPUs < 1 || v.VCPUs > hypercall.MaxVCPUs {
		return cfg, fmt.Errorf("--vcpus %d: must be between 1 and %d", v.VCPUs, hypercall.MaxVCPUs)
	}
	if v.Mem == "" {
		v.Mem = "64M"
	}
	mem, err := parseSize(v.Mem)
	if err != nil {
		return cfg, fmt.Errorf("--mem %q: %w", v.Mem, err)
	}
	layout, err := vmm.NewLayout(mem, v.VCPUs)
	if err != nil {
		return cfg, fmt.Errorf("--mem %s, --vcpus %d: %w", v.Mem, v.VCPUs, err)
	}
	if timed && v.Iterations > 0 {
		return cfg, fmt.Errorf("--iterations and --duration both bound the run: give one")
	}
	cfg = vmm.Config{Name: v.Name, VCPUs: v.VCPUs, MemBytes: mem, Workload: wl, Iterations: v.Iterations}
	if !timed && cfg.Iterations == 0 {
		cfg.Iterations = defaultIterations[wl.Name]
		// A hog with no bound runs as long as the other VMs.
		cfg.UntilOthers = wl.Name == "hog"
	}
	if wl.Name == "lock" {
		if v.Lock == "" {
			v.Lock = "ticket"
		}
		lk, err := vmm.LookupLock(v.Lock)
		if err != nil {
			return cfg, fmt.Errorf("--lock: %w", err)
		}
		if v.Locks == 0 {
			v.Locks = 1
		}
		if v.Locks < 1 || v.Locks > hypercall.MaxLocks {
			return cfg, fmt.Errorf("--locks %d: must be between 1 and %d", v.Locks, hypercall.MaxLocks)
		}
		if v.SpinThreshold == 0 {
			v.SpinThreshold = vmm.DefaultSpinThreshold
		}
		cfg.LockKind, cfg.Locks = lk.ID, v.Locks
		cfg.CSCycles, cfg.ThinkCycles, cfg.SpinThreshold = v.CSCycles, v.ThinkCycles, v.SpinThreshold
		if v.DelayHint {
			cfg.Flags |= hypercall.FlagDelayHint
		}
		if v.PreemptedAware {
			cfg.Flags |= hypercall.FlagPreemptedAware
		}
	}
	if image != "" {
		b, err := os.ReadFile(image)
		if err != nil {
			return cfg, fmt.Errorf("--image: %w", err)
		}
		if _, err := vmm.ParseELF(b, layout.Image); err != nil {
			return cfg, fmt.Errorf("--image %s: %w", image, err)
		}
		cfg.Image, cfg.ImageName = b, image
	}
	return cfg, nil
}

// parseSize reads "64M", "64MiB", "1G", "65536K" or a plain number of MiB.
func parseSize(s string) (uint64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "IB"), "B")
	mult := uint64(1 << 20)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		t = strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n == 0 || n > (1<<44)/mult {
		return 0, fmt.Errorf("not a size (try 64M or 1G)")
	}
	return n * mult, nil
}
