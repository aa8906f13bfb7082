package main

import (
	"errors"
	"fmt"
	"slices"
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
	"think-cycles", "spin-threshold", "delay-hint", "preempted-aware",
	"pv-steal", "pv-pending", "pv-prev-check", "pv-kick", "spin-threshold-head"}

// stringFlags may not be given empty: an empty value would silently mean
// the default.
var stringFlags = []string{"pcpus", "workload", "mem", "image", "sched", "scenario", "lock", "backend",
	"pv-steal", "pv-pending", "pv-prev-check", "pv-kick"}

// Bounds of the machine-level values (documented in --help).
const (
	minTimeout  = 100 * time.Millisecond
	maxDuration = 24 * time.Hour
	minDuration = time.Millisecond
	minSkew     = time.Microsecond
	maxSkew     = time.Second
	minDelayMax = time.Microsecond
	// timeoutGrace is what the default watchdog adds to --duration.
	timeoutGrace = time.Minute
)

// where names the source of each value in messages: the flag, or the
// scenario file, line and key it came from.
type where struct {
	changed func(string) bool
	sc      *scenario.Scenario // with file != "": read from a file
	file    string
	fileVMs int // the VMs the file has (a --corunner VM follows them)
}

// machine names a machine-level value: the flag when given (it overrides
// the scenario) or when there is no scenario, else the scenario's key.
func (w where) machine(flag, key string) string {
	if w.file == "" || w.changed(flag) || !w.sc.Has(key) {
		return "--" + flag
	}
	return w.file + ": " + w.sc.At(key)
}

// vm names a value of VM i: the flag of a flag-built run (or of the
// corunner), else the scenario's key, "(default)" when the file leaves it
// out.
func (w where) vm(i int, flag, key string) string {
	if w.file == "" || i >= w.fileVMs {
		return "--" + flag
	}
	k := fmt.Sprintf("vms[%d].%s", i, key)
	if !w.sc.Has(k) {
		return fmt.Sprintf("%s: vm %s: %s (default)", w.file, w.sc.VMs[i].Name, key)
	}
	return w.file + ": " + w.sc.At(k)
}

// corunnerName is the VM --corunner adds.
const corunnerName = "hog"

// runPlan is a checked run: its VMs, its machine, and for a scenario a line
// that says what it is and where it runs.
type runPlan struct {
	cfgs  []vmm.Config
	mc    vmm.MachineConfig
	about string
	name  string // the scenario's, "" for a flag-built run
}

// buildRun turns the flags (and the scenario they name) into VM configs and
// the machine config, checking everything the host can check before
// anything is created. Every error is a usage error.
func buildRun(f runFlags) (runPlan, error) {
	cfgs, mc, about, err := build(f)
	name := ""
	if f.scenario != "" {
		name = "scenario " + f.scenario
	}
	return runPlan{cfgs, mc, about, name}, err
}

func build(f runFlags) ([]vmm.Config, vmm.MachineConfig, string, error) {
	var mc vmm.MachineConfig
	changed := func(name string) bool { return f.changed != nil && f.changed(name) }
	for _, name := range stringFlags {
		if changed(name) && strings.TrimSpace(flagString(f, name)) == "" {
			return nil, mc, "", fmt.Errorf("--%s is empty (leave it out for the default)", name)
		}
	}
	sc, file, err := scenarioOf(f)
	if err != nil {
		return nil, mc, "", err
	}
	w := where{changed: changed, sc: sc, file: file, fileVMs: len(sc.VMs)}
	if f.corunner < 0 || f.corunner > hypercall.MaxVCPUs {
		return nil, mc, "", fmt.Errorf("--corunner %d: must be between 0 and %d", f.corunner, hypercall.MaxVCPUs)
	}
	if f.corunner > 0 {
		for _, vm := range sc.VMs {
			if vm.Name == corunnerName {
				return nil, mc, "", fmt.Errorf("--corunner: the scenario already has a VM named %s", corunnerName)
			}
		}
		sc.VMs = append(sc.VMs, scenario.VM{Name: corunnerName, VCPUs: f.corunner, Workload: "hog"})
	}
	if len(sc.VMs) > scenario.MaxVMs {
		return nil, mc, "", fmt.Errorf("%d VMs: a run may have at most %d", len(sc.VMs), scenario.MaxVMs)
	}

	if err := backend.Check(sc.Backend); err != nil {
		return nil, mc, "", fmt.Errorf("%s: %w", w.machine("backend", "backend"), err)
	}
	mc.Backend = sc.Backend

	// The machine: pCPUs, policy, timing.
	if mc.PCPUs, err = machinePCPUs(sc, w); err != nil {
		return nil, mc, "", err
	}
	mc.Policy = sc.Sched.Policy
	mc.Options = sched.Options{Slice: time.Duration(sc.Sched.Slice), Skew: time.Duration(sc.Sched.Skew),
		DelayMax: time.Duration(sc.Sched.DelayMax), BoostKicked: sc.Sched.BoostKicked}
	if mc.Options.BoostKicked && !slices.Contains(strings.Split(mc.Policy, "+"), "pv") {
		return nil, mc, "", fmt.Errorf("%s: applies to a policy with pv (this run's is %s)", w.machine("boost-kicked", "sched.boost_kicked"), mc.Policy)
	}
	o := mc.Options
	switch {
	case o.Slice < sched.MinSlice || o.Slice > sched.MaxSlice:
		return nil, mc, "", fmt.Errorf("%s %v: must be between %v and %v", w.machine("slice", "sched.slice"), o.Slice, sched.MinSlice, sched.MaxSlice)
	case o.Skew < minSkew || o.Skew > maxSkew:
		return nil, mc, "", fmt.Errorf("%s %v: must be between %v and %v", w.machine("skew", "sched.skew"), o.Skew, minSkew, maxSkew)
	case o.DelayMax < minDelayMax || o.DelayMax > o.Slice:
		return nil, mc, "", fmt.Errorf("%s %v: must be between %v and the slice (%v)", w.machine("delay-max", "sched.delay_max"), o.DelayMax, minDelayMax, o.Slice)
	}
	pol, err := sched.New(mc.Policy, mc.Options)
	if err != nil {
		return nil, mc, "", fmt.Errorf("%s: %w", w.machine("sched", "sched.policy"), err)
	}
	if mc.Duration, mc.Timeout, err = timing(sc, w); err != nil {
		return nil, mc, "", err
	}

	// The VMs. The image is read once, for the flag-built VM only (a
	// corunner runs the built-in guest's hog).
	var image []byte
	if f.image != "" {
		if image, err = host.ReadFileLimited(f.image, vmm.MaxImageBytes); err != nil {
			return nil, mc, "", fmt.Errorf("--image: %w", err)
		}
	}
	var cfgs []vmm.Config
	counts := make([]int, 0, len(sc.VMs))
	names := make([]string, 0, len(sc.VMs))
	bounded := false
	var ram, vcpus uint64
	for i, v := range sc.VMs {
		img := image
		if i > 0 {
			img = nil
		}
		cfg, err := vmConfig(v, i, w, img, f.image, mc.Duration > 0)
		if err != nil {
			return nil, mc, "", err
		}
		bounded = bounded || !cfg.UntilOthers
		cfgs = append(cfgs, cfg)
		counts = append(counts, cfg.VCPUs)
		names = append(names, cfg.Name)
		ram += cfg.MemBytes
		vcpus += uint64(cfg.VCPUs)
	}
	if vcpus > scenario.MaxTotalVCPUs {
		return nil, mc, "", fmt.Errorf("%d vCPUs in all: a run may have at most %d", vcpus, scenario.MaxTotalVCPUs)
	}
	if avail, err := host.MemAvailable(); err == nil && ram > avail {
		return nil, mc, "", fmt.Errorf("the VMs have %d MiB of guest RAM in all, more than the %d MiB this host has available (MemAvailable)",
			ram>>20, avail>>20)
	}
	if mc.Duration == 0 && !bounded {
		return nil, mc, "", fmt.Errorf("nothing bounds the run: a hog runs as long as the other VMs; give --duration or --iterations")
	}
	// Let the policy refuse the machine now (gang and a VM wider than the
	// pCPUs), before any VM is built.
	st, err := sched.NewState(mc.PCPUs, counts, mc.Options.Slice)
	if err == nil {
		st.VMNames = names
		err = pol.Admit(st)
	}
	if err != nil {
		return nil, mc, "", err
	}
	about := ""
	if file != "" {
		about = fmt.Sprintf("%s: %s; on pCPUs %s", file, sc.Description, sched.FormatCPUList(mc.PCPUs))
		if sc.NPCPUs > 0 {
			about += fmt.Sprintf(" (npcpus %d: the first %d CPUs this process may use)", sc.NPCPUs, sc.NPCPUs)
		}
	}
	return cfgs, mc, about, nil
}

// flagString is the value of one of stringFlags.
func flagString(f runFlags, name string) string {
	if p, ok := f.pvKnobs[name]; ok {
		return *p
	}
	return map[string]string{"pcpus": f.pcpus, "workload": f.workload, "mem": f.mem, "image": f.image,
		"sched": f.policy, "scenario": f.scenario, "lock": f.lock, "backend": f.backend}[name]
}

// machinePCPUs are the host CPUs of the run: a list, a count of the CPUs
// this process may use (npcpus in a scenario), or all of those.
func machinePCPUs(sc *scenario.Scenario, w where) ([]int, error) {
	allowed, err := host.AllowedCPUs()
	if err != nil {
		return nil, err
	}
	if sc.NPCPUs != 0 && (sc.PCPUs == "" || !w.changed("pcpus")) {
		if sc.PCPUs != "" {
			return nil, fmt.Errorf("%s: give pcpus or npcpus, not both", w.machine("pcpus", "npcpus"))
		}
		if sc.NPCPUs < 1 || sc.NPCPUs > len(allowed) {
			return nil, fmt.Errorf("%s %d: this scenario needs %d host CPUs, this process may use %d (%s)",
				w.machine("pcpus", "npcpus"), sc.NPCPUs, sc.NPCPUs, len(allowed), sched.FormatCPUList(allowed))
		}
		return allowed[:sc.NPCPUs], nil
	}
	if sc.PCPUs == "" {
		return allowed, nil
	}
	return checkCPUs(w.machine("pcpus", "pcpus"), sc.PCPUs, allowed)
}

// checkCPUs parses a CPU list and checks every CPU is one this process may
// use (run --pcpus and experiment --pcpus alike).
func checkCPUs(name, list string, allowed []int) ([]int, error) {
	cpus, err := sched.ParseCPUList(list)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ok := map[int]bool{}
	for _, c := range allowed {
		ok[c] = true
	}
	for _, c := range cpus {
		if !ok[c] {
			return nil, fmt.Errorf("%s: CPU %d is not available to this process (have %s)", name, c, sched.FormatCPUList(allowed))
		}
	}
	return cpus, nil
}

// timing checks --duration and --timeout. Without --timeout the watchdog is
// vmm.DefaultTimeout, or --duration plus a minute.
func timing(sc *scenario.Scenario, w where) (d, timeout time.Duration, err error) {
	d, timeout = time.Duration(sc.Duration), time.Duration(sc.Timeout)
	dn, tn := w.machine("duration", "duration"), w.machine("timeout", "timeout")
	if d != 0 && (d < minDuration || d > maxDuration) {
		return 0, 0, fmt.Errorf("%s %v: must be between %v and %v (or left out: the workload's iterations bound the run)", dn, d, minDuration, maxDuration)
	}
	if timeout == 0 {
		timeout = vmm.DefaultTimeout
		if d > 0 {
			timeout = d + timeoutGrace
		}
		return d, timeout, nil
	}
	if timeout < minTimeout || timeout > maxDuration+timeoutGrace {
		return 0, 0, fmt.Errorf("%s %v: must be between %v and %v", tn, timeout, minTimeout, maxDuration+timeoutGrace)
	}
	if d > 0 && timeout <= d {
		return 0, 0, fmt.Errorf("%s %v must be longer than %s %v", tn, timeout, dn, d)
	}
	return d, timeout, nil
}

// scenarioOf is the scenario to run and the name of its file ("" for a
// flag-built one): the one --scenario names, with the machine flags given
// on the command line overriding it, or one VM from the flags.
func scenarioOf(f runFlags) (*scenario.Scenario, string, error) {
	changed := func(name string) bool { return f.changed != nil && f.changed(name) }
	if f.scenario == "" {
		if f.iterations > 0 && f.duration > 0 {
			return nil, "", fmt.Errorf("--iterations and --duration both bound the run: give one")
		}
		if f.workload != "lock" {
			for _, name := range lockFlags {
				if changed(name) {
					return nil, "", fmt.Errorf("--%s applies to --workload lock only", name)
				}
			}
		}
		if changed("locks") && f.locks < 1 {
			return nil, "", fmt.Errorf("--locks %d: must be between 1 and %d", f.locks, hypercall.MaxLocks)
		}
		if changed("spin-threshold") && f.spinThreshold < 1 {
			return nil, "", fmt.Errorf("--spin-threshold 0: must be at least 1 (leave it out for %d)", vmm.DefaultSpinThreshold)
		}
		vm := scenario.VM{Name: "vm0", VCPUs: f.vcpus, Mem: f.mem, Workload: f.workload,
			Iterations: f.iterations, Lock: f.lock, Locks: f.locks, CSCycles: f.csCycles,
			ThinkCycles: f.thinkCycles, SpinThreshold: f.spinThreshold, DelayHint: f.delayHint,
			PreemptedAware: f.preemptedAware, SpinThresholdHead: f.spinHead}
		for _, k := range vmm.PVKnobList() {
			if p := f.pvKnobs[k.Flag]; p != nil && changed(k.Flag) {
				*vm.PVKnob(k.Key) = *p
			}
		}
		return &scenario.Scenario{
			Name: "flags", PCPUs: f.pcpus, Backend: f.backend,
			Sched: scenario.Sched{Policy: f.policy, Slice: scenario.Duration(f.slice),
				Skew: scenario.Duration(f.skew), DelayMax: scenario.Duration(f.delayMax), BoostKicked: f.boostKick},
			Duration: scenario.Duration(f.duration), Timeout: scenario.Duration(f.timeout),
			VMs: []scenario.VM{vm},
		}, "", nil
	}
	for _, name := range vmFlags {
		if changed(name) {
			return nil, "", fmt.Errorf("--%s shapes a VM: with --scenario the scenario describes the VMs", name)
		}
	}
	file := f.scenario
	b, ok := scenarios.Get(f.scenario)
	if ok {
		file = "scenario " + f.scenario
	} else {
		var err error
		if b, err = host.ReadFileLimited(f.scenario, scenario.MaxBytes); err != nil {
			return nil, "", fmt.Errorf("--scenario: %w (built-in scenarios: %s)", err, strings.Join(scenarios.Names(), ", "))
		}
	}
	sc, err := scenario.Parse(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", file, err)
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
		sc.PCPUs, sc.NPCPUs = f.pcpus, 0
	}
	if changed("backend") || sc.Backend == "" {
		sc.Backend = f.backend
	}
	set("slice", &sc.Sched.Slice, f.slice)
	set("skew", &sc.Sched.Skew, f.skew)
	set("delay-max", &sc.Sched.DelayMax, f.delayMax)
	if changed("boost-kicked") {
		sc.Sched.BoostKicked = f.boostKick
	}
	if changed("timeout") {
		sc.Timeout = scenario.Duration(f.timeout)
	}
	if changed("duration") {
		sc.Duration = scenario.Duration(f.duration)
	}
	return sc, file, nil
}

// vmConfig checks VM i of a scenario and builds its config; image (already
// read, from path) replaces the built-in guest.
func vmConfig(v scenario.VM, i int, w where, image []byte, path string, timed bool) (vmm.Config, error) {
	var cfg vmm.Config
	at := func(flag, key string) string { return w.vm(i, flag, key) }
	has := func(key string) bool { return w.file != "" && w.sc.Has(fmt.Sprintf("vms[%d].%s", i, key)) }
	wl, err := vmm.LookupWorkload(v.Workload)
	if err != nil {
		return cfg, fmt.Errorf("%s: %w", at("workload", "workload"), err)
	}
	if wl.ID == hypercall.WorkloadCode {
		return cfg, fmt.Errorf("%s %s: runs machine code that only a test can supply (vmm.Config.Code)", at("workload", "workload"), wl.Name)
	}
	if v.VCPUs < 1 || v.VCPUs > hypercall.MaxVCPUs {
		return cfg, fmt.Errorf("%s %d: must be between 1 and %d", at("vcpus", "vcpus"), v.VCPUs, hypercall.MaxVCPUs)
	}
	if v.Mem == "" {
		v.Mem = "64M"
	}
	mem, err := parseSize(v.Mem)
	if err == nil {
		_, err = vmm.NewLayout(mem, 1)
	}
	if err != nil {
		return cfg, fmt.Errorf("%s %s: %s", at("mem", "mem"), v.Mem, memRule)
	}
	layout, err := vmm.NewLayout(mem, v.VCPUs)
	if err != nil {
		return cfg, fmt.Errorf("%s %s with %s %d: %w", at("mem", "mem"), v.Mem, at("vcpus", "vcpus"), v.VCPUs, err)
	}
	if timed && v.Iterations > 0 {
		return cfg, fmt.Errorf("%s and %s both bound the run: give one", at("iterations", "iterations"), w.machine("duration", "duration"))
	}
	cfg = vmm.Config{Name: v.Name, VCPUs: v.VCPUs, MemBytes: mem, Workload: wl, Iterations: v.Iterations}
	if !timed && cfg.Iterations == 0 {
		cfg.Iterations = defaultIterations[wl.Name]
		// A hog with no bound runs as long as the other VMs.
		cfg.UntilOthers = wl.Name == "hog"
	}
	if wl.Name != "lock" {
		for _, key := range scenario.LockKeys {
			if has(key) {
				return cfg, fmt.Errorf("%s: applies to workload lock only (this VM runs %s)", at(key, key), wl.Name)
			}
		}
	} else {
		if v.Lock == "" {
			v.Lock = "ticket"
		}
		lk, err := vmm.LookupLock(v.Lock)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", at("lock", "lock"), err)
		}
		if v.Locks == 0 && !has("locks") {
			v.Locks = 1
		}
		if v.Locks < 1 || v.Locks > hypercall.MaxLocks {
			return cfg, fmt.Errorf("%s %d: must be between 1 and %d", at("locks", "locks"), v.Locks, hypercall.MaxLocks)
		}
		if v.SpinThreshold == 0 {
			if has("spin_threshold") {
				return cfg, fmt.Errorf("%s 0: must be at least 1 (leave it out for %d)", at("spin-threshold", "spin_threshold"), vmm.DefaultSpinThreshold)
			}
			v.SpinThreshold = vmm.DefaultSpinThreshold
		}
		// pvqspin's knobs: given for another lock they would silently do
		// nothing.
		given := func(flag, key string) bool {
			if w.file == "" {
				return i == 0 && w.changed(flag)
			}
			return i < w.fileVMs && has(key)
		}
		for _, key := range scenario.PVKeys {
			flag := strings.ReplaceAll(key, "_", "-")
			if lk.ID != hypercall.LockPVQSpin && given(flag, key) {
				return cfg, fmt.Errorf("%s: applies to lock pvqspin only (this VM runs %s)", at(flag, key), lk.Name)
			}
		}
		for _, k := range vmm.PVKnobList() {
			s := *v.PVKnob(k.Key)
			if s == "" {
				if given(k.Flag, k.Key) {
					return cfg, fmt.Errorf("%s is empty (leave it out for the default, %s)", at(k.Flag, k.Key), k.Values[0])
				}
				continue
			}
			val, err := k.Parse(s)
			if err != nil {
				return cfg, fmt.Errorf("%s %w", at(k.Flag, k.Key), err)
			}
			k.Set(&cfg.PV, val)
		}
		if v.SpinThresholdHead == 0 && given("spin-threshold-head", "spin_threshold_head") {
			return cfg, fmt.Errorf("%s 0: must be at least 1 (leave it out for the spin threshold)", at("spin-threshold-head", "spin_threshold_head"))
		}
		cfg.PV.SpinThresholdHead = v.SpinThresholdHead
		cfg.LockKind, cfg.Locks = lk.ID, v.Locks
		cfg.CSCycles, cfg.ThinkCycles, cfg.SpinThreshold = v.CSCycles, v.ThinkCycles, v.SpinThreshold
		if v.DelayHint {
			cfg.Flags |= hypercall.FlagDelayHint
		}
		if v.PreemptedAware {
			cfg.Flags |= hypercall.FlagPreemptedAware
		}
	}
	if image != nil {
		if _, err := vmm.ParseELF(image, layout.Image); err != nil {
			return cfg, fmt.Errorf("--image %s: %w", path, err)
		}
		cfg.Image, cfg.ImageName = image, path
	}
	return cfg, nil
}

// memRule is what --mem accepts.
var memRule = fmt.Sprintf("must be a multiple of 2 MiB between 4 MiB and %d MiB, e.g. 64M or 1G", hypercall.MaxMemBytes>>20)

// parseSize reads "64M", "64MiB", "1G", "65536K", "1T" or a plain number of
// MiB. Range checks are the caller's.
func parseSize(s string) (uint64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "IB"), "B")
	mult := uint64(1 << 20)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}} {
		if strings.HasSuffix(t, u.suffix) {
			mult, t = u.mult, strings.TrimSuffix(t, u.suffix)
			break
		}
	}
	if t == "" || strings.TrimLeft(t, "0123456789") != "" {
		return 0, errors.New("not a size")
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n > (1<<50)/mult {
		return 0, errors.New("not a size")
	}
	return n * mult, nil
}
