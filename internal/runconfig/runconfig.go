// Package runconfig resolves what a run is asked to be — the run command's
// settings, the scenario they name, or a scenario built in code (an
// experiment's cell) — into the VMs' configs and the machine's, by one set
// of rules: defaults, ranges, what the host can give (its CPUs, its
// memory), and an admission dry run of the policy, all before anything is
// created. A resolving error is a usage error (internal/errkind) that names
// the flag, or the scenario's file, line and key, it is about; Open, which
// opens the backend, fails as a run where the host lacks it.
//
// It sits between the scenario format (internal/scenario, which only
// parses) and the VMM (vmm, which builds and runs what it is given).
package runconfig

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/backend"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/param"
	"github.com/lhpvm/lhpvm/internal/scenario"
	"github.com/lhpvm/lhpvm/scenarios"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
)

// Flags are the run command's settings. The CLI fills them from its flags
// (their defaults included); Changed says which were given.
type Flags struct {
	VCPUs      int
	PCPUs      string
	Workload   string
	Iterations uint64
	Duration   time.Duration
	Mem        string
	Timeout    time.Duration
	Image      string
	Policy     string
	Slice      time.Duration
	Skew       time.Duration
	DelayMax   time.Duration
	BoostKick  bool
	Scenario   string
	Corunner   int
	Backend    string
	// Seed replays a run's start (sched.Start); a run without one draws a
	// fresh seed and reports it.
	Seed uint64

	Timeline       string // where the timeline goes: only whether one is drawn matters here
	TimelineWindow string
	// Traced: the run writes a trace (--trace); TraceClock is its clock
	// (vmm.TraceClocks).
	Traced     bool
	TraceClock string

	Lock              string
	Locks             int
	CSCycles          uint64
	ThinkCycles       uint64
	SpinThreshold     uint64
	DelayHint         bool
	PreemptedAware    bool
	PV                map[string]string // pvqspin's knobs by flag name (pv-steal, ...)
	SpinThresholdHead uint64
	PTicketShift      uint32

	// Changed reports whether the flag of that name was given; nil: none.
	Changed func(name string) bool
}

func (f Flags) changed(name string) bool { return f.Changed != nil && f.Changed(name) }

// LockFlags only mean something to the lock workload: the lock, the
// guest's options, and the knobs of the parameter table (internal/param)
// and pvqspin's (vmm.PVKnobList).
var LockFlags = lockFlags()

func lockFlags() []string {
	f := []string{"lock", param.Locks.Flag, param.CSCycles.Flag, param.ThinkCycles.Flag, param.SpinThreshold.Flag,
		"delay-hint", "preempted-aware"}
	for _, k := range vmm.PVKnobList() {
		f = append(f, k.Flag)
	}
	return append(f, param.SpinThresholdHead.Flag, param.PTicketShift.Flag)
}

// lockKeys are the scenario keys of a VM that only the lock workload
// reads: LockFlags' keys.
func lockKeys() []string {
	k := append([]string{"lock", "delay_hint", "preempted_aware"}, param.Keys()...)
	for _, p := range vmm.PVKnobList() {
		k = append(k, p.Key)
	}
	return k
}

// vmFlags shape the single VM of a flag-built run; with --scenario the
// scenario describes the VMs and these are refused.
var vmFlags = append([]string{"vcpus", "workload", "iterations", "mem", "image"}, LockFlags...)

// stringFlags may not be given empty: an empty value would silently mean
// the default.
var stringFlags = []string{"pcpus", "workload", "mem", "image", "sched", "scenario", "lock", "backend",
	"pv-steal", "pv-pending", "pv-prev-check", "pv-kick"}

// str is the value of one of stringFlags.
func (f Flags) str(name string) string {
	if v, ok := f.PV[name]; ok {
		return v
	}
	return map[string]string{"pcpus": f.PCPUs, "workload": f.Workload, "mem": f.Mem, "image": f.Image,
		"sched": f.Policy, "scenario": f.Scenario, "lock": f.Lock, "backend": f.Backend}[name]
}

// Bounds of the machine-level values (documented in --help).
const (
	MinTimeout  = 100 * time.Millisecond
	MaxDuration = 24 * time.Hour
	MinDuration = time.Millisecond
	// TimeoutGrace is what the default watchdog adds to the duration.
	TimeoutGrace = time.Minute
)

// defaultIterations per workload when nothing else bounds a VM's run.
var defaultIterations = map[string]uint64{"counter": 100000, "null": 20000, "lock": 100000}

// CorunnerName is the VM --corunner adds.
const CorunnerName = "hog"

// Plan is a checked run: its VMs, its machine, and for a scenario a line
// that says what it is and where it runs.
type Plan struct {
	Configs []vmm.Config
	Machine vmm.MachineConfig
	About   string // a scenario's description and pCPUs; "" for a flag-built run
	Next    string // a scenario's suggestion of what to try next
	Name    string // "scenario NAME", "" for a flag-built run
}

// Resolve turns the run command's settings (and the scenario they name)
// into a Plan, checking everything the host can check before anything is
// created: with --timeline, the Plan's machine collects its window. Every
// error is a usage error.
func Resolve(f Flags) (*Plan, error) {
	p, err := resolve(f)
	if err != nil {
		return nil, errkind.Usage(err)
	}
	return p, nil
}

func resolve(f Flags) (*Plan, error) {
	for _, name := range stringFlags {
		if f.changed(name) && strings.TrimSpace(f.str(name)) == "" {
			return nil, fmt.Errorf("--%s is empty (leave it out for the default)", name)
		}
	}
	sc, file, err := scenarioOf(f)
	if err != nil {
		return nil, err
	}
	w := where{changed: f.changed, sc: sc, file: file, fileVMs: len(sc.VMs)}
	if f.Corunner < 0 || f.Corunner > hypercall.MaxVCPUs {
		return nil, fmt.Errorf("--corunner %d: must be between 0 and %d", f.Corunner, hypercall.MaxVCPUs)
	}
	if f.Corunner > 0 {
		for _, vm := range sc.VMs {
			if vm.Name == CorunnerName {
				return nil, fmt.Errorf("--corunner: the scenario already has a VM named %s", CorunnerName)
			}
		}
		sc.VMs = append(sc.VMs, scenario.VM{Name: CorunnerName, VCPUs: f.Corunner, Workload: "hog"})
	}
	p, err := build(sc, w, f.Image)
	if err != nil {
		return nil, err
	}
	if f.Scenario != "" {
		p.Name = "scenario " + f.Scenario
	}
	if f.changed("seed") {
		seed := f.Seed
		p.Machine.Seed = &seed
	}
	if p.Machine.Timeline, err = timeline(f, p.Machine); err != nil {
		return nil, err
	}
	if f.changed("trace-clock") {
		switch {
		case !slices.Contains(vmm.TraceClocks(), f.TraceClock):
			return nil, fmt.Errorf("--trace-clock %q: must be one of %s", f.TraceClock, strings.Join(vmm.TraceClocks(), ", "))
		case !f.Traced:
			return nil, fmt.Errorf("--trace-clock applies to --trace")
		}
		p.Machine.TraceClock = f.TraceClock
	}
	return p, nil
}

// FromScenario resolves a scenario built in code (no file, no flags, as an
// experiment builds each cell) by the same rules as a run's; a value is
// named after the flag that sets it. What it leaves out is the run
// command's default. Every error is a usage error; one whose policy
// refuses the machine wraps a *sched.RefusedError.
func FromScenario(sc scenario.Scenario) (*Plan, error) {
	s := &sc
	s.VMs = append([]scenario.VM(nil), sc.VMs...)
	if s.Sched.Policy == "" {
		s.Sched.Policy = "host"
	}
	for _, d := range []struct {
		v   *scenario.Duration
		def time.Duration
	}{{&s.Sched.Slice, sched.DefaultSlice}, {&s.Sched.Skew, sched.DefaultSkew}, {&s.Sched.DelayMax, sched.DefaultDelayMax}} {
		if *d.v == 0 {
			*d.v = scenario.Duration(d.def)
		}
	}
	p, err := build(s, where{changed: func(string) bool { return false }, sc: s}, "")
	if err != nil {
		return nil, errkind.Usage(err)
	}
	return p, nil
}

// FollowPolicy sets what a lock VM's guest does for its host's policy: a
// policy with pv makes the guest preempted-aware (waiters look at the
// holder's preempted flag), one with delay sets the delay hint (critical
// sections flagged, YIELD when asked).
func FollowPolicy(vm *scenario.VM, policy string) {
	vm.PreemptedAware = sched.HasModifier(policy, "pv")
	vm.DelayHint = sched.HasModifier(policy, "delay")
}

// build checks a scenario (flag-built, read from a file, or built in code)
// and makes the configs of its VMs and of the machine. imagePath, if set,
// is read here, once, for the first VM (a corunner runs the built-in
// guest's hog).
func build(sc *scenario.Scenario, w where, imagePath string) (*Plan, error) {
	var mc vmm.MachineConfig
	if len(sc.VMs) > scenario.MaxVMs {
		return nil, fmt.Errorf("%d VMs: a run may have at most %d", len(sc.VMs), scenario.MaxVMs)
	}
	if err := backend.Check(sc.Backend); err != nil {
		return nil, fmt.Errorf("%s: %w", w.machine("backend", "backend"), err)
	}
	mc.Backend = sc.Backend

	// The machine: pCPUs, policy, timing.
	var err error
	if mc.PCPUs, err = machinePCPUs(sc, w); err != nil {
		return nil, err
	}
	mc.Policy = sc.Sched.Policy
	mc.Options = sched.Options{Slice: time.Duration(sc.Sched.Slice), Skew: time.Duration(sc.Sched.Skew),
		DelayMax: time.Duration(sc.Sched.DelayMax), BoostKicked: sc.Sched.BoostKicked}
	if mc.Options.BoostKicked && !sched.HasModifier(mc.Policy, "pv") {
		return nil, fmt.Errorf("%s: applies to a policy with pv (this run's is %s)", w.machine("boost-kicked", "sched.boost_kicked"), mc.Policy)
	}
	// Settings the policy would silently ignore.
	given := func(flag, key string) bool { return w.changed(flag) || (w.file != "" && w.sc.Has(key)) }
	if given(param.DelayMax.Flag, param.DelayMax.Key) && !sched.HasModifier(mc.Policy, "delay") {
		return nil, fmt.Errorf("%s: applies to %s (this run's is %s)", w.machine(param.DelayMax.Flag, param.DelayMax.Key), param.DelayMax.AppliesTo, mc.Policy)
	}
	if given(param.Skew.Flag, param.Skew.Key) && strings.Split(mc.Policy, "+")[0] != "relaxed" {
		return nil, fmt.Errorf("%s: applies to %s (this run's is %s)", w.machine(param.Skew.Flag, param.Skew.Key), param.Skew.AppliesTo, mc.Policy)
	}
	if mc.Options.BoostKicked && !slices.ContainsFunc(sc.VMs, func(v scenario.VM) bool {
		lk, err := vmm.LookupLock(v.Lock)
		return v.Workload == "lock" && err == nil && lk.PV
	}) {
		return nil, fmt.Errorf("%s: boosts a vCPU that a lock's KICK woke, and no VM runs a lock that kicks (%s)", w.machine("boost-kicked", "sched.boost_kicked"), vmm.PVLocks())
	}
	o := mc.Options
	at := func(p *param.Param) string { return w.machine(p.Flag, p.Key) }
	for _, err := range []error{param.Slice.CheckD(at(param.Slice), o.Slice, 0, ""), param.Skew.CheckD(at(param.Skew), o.Skew, 0, ""),
		param.DelayMax.CheckD(at(param.DelayMax), o.DelayMax, o.Slice, "the slice")} {
		if err != nil {
			return nil, err
		}
	}
	pol, err := sched.New(mc.Policy, mc.Options)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.machine("sched", "sched.policy"), err)
	}
	if mc.Duration, mc.Timeout, err = timing(sc, w); err != nil {
		return nil, err
	}

	// The VMs.
	var image []byte
	if imagePath != "" {
		if image, err = host.ReadFileLimited(imagePath, vmm.MaxImageBytes); err != nil {
			return nil, fmt.Errorf("--image: %w", err)
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
		cfg, err := vmConfig(v, i, w, img, imagePath, mc.Duration > 0)
		if err != nil {
			return nil, err
		}
		bounded = bounded || !cfg.UntilOthers
		cfgs = append(cfgs, cfg)
		counts = append(counts, cfg.VCPUs)
		names = append(names, cfg.Name)
		ram += cfg.MemBytes
		vcpus += uint64(cfg.VCPUs)
	}
	if vcpus > scenario.MaxTotalVCPUs {
		return nil, fmt.Errorf("%d vCPUs in all: a run may have at most %d", vcpus, scenario.MaxTotalVCPUs)
	}
	if avail, err := host.MemAvailable(); err == nil && ram > avail {
		return nil, fmt.Errorf("the VMs have %d MiB of guest RAM in all, more than the %d MiB this host has available (MemAvailable)",
			ram>>20, avail>>20)
	}
	if mc.Duration == 0 && !bounded {
		return nil, fmt.Errorf("nothing bounds the run: a hog runs as long as the other VMs; give --duration or --iterations")
	}
	// Let the policy refuse the machine now (gang and a VM wider than the
	// pCPUs), before any VM is built.
	st, err := sched.NewState(mc.PCPUs, counts, mc.Options.Slice)
	if err == nil {
		st.VMNames = names
		err = sched.Admit(pol, st)
	}
	if err != nil {
		return nil, err
	}
	about := ""
	if w.file != "" {
		about = fmt.Sprintf("%s: %s; on pCPUs %s", w.file, sc.Description, sched.FormatCPUList(mc.PCPUs))
		if sc.NPCPUs > 0 {
			about += fmt.Sprintf(" (npcpus %d: the first %d CPUs this process may use)", sc.NPCPUs, sc.NPCPUs)
		}
	}
	return &Plan{Configs: cfgs, Machine: mc, About: about, Next: sc.Next}, nil
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
	return CheckCPUs(w.machine("pcpus", "pcpus"), sc.PCPUs, allowed)
}

// CheckCPUs parses a CPU list and checks every CPU is one this process may
// use (allowed); name is what messages call the list (run --pcpus and
// experiment --pcpus alike).
func CheckCPUs(name, list string, allowed []int) ([]int, error) {
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

// timing checks the duration and the timeout. Without a timeout the
// watchdog is vmm.DefaultTimeout, or the duration plus a minute.
func timing(sc *scenario.Scenario, w where) (d, timeout time.Duration, err error) {
	d, timeout = time.Duration(sc.Duration), time.Duration(sc.Timeout)
	dn, tn := w.machine("duration", "duration"), w.machine("timeout", "timeout")
	if d != 0 && (d < MinDuration || d > MaxDuration) {
		return 0, 0, fmt.Errorf("%s %v: must be between %v and %v (or left out: the workload's iterations bound the run)", dn, d, MinDuration, MaxDuration)
	}
	if timeout == 0 {
		timeout = vmm.DefaultTimeout
		if d > 0 {
			timeout = d + TimeoutGrace
		}
		return d, timeout, nil
	}
	if timeout < MinTimeout || timeout > MaxDuration+TimeoutGrace {
		return 0, 0, fmt.Errorf("%s %v: must be between %v and %v", tn, timeout, MinTimeout, MaxDuration+TimeoutGrace)
	}
	if d > 0 && timeout <= d {
		return 0, 0, fmt.Errorf("%s %v must be longer than %s %v", tn, timeout, dn, d)
	}
	return d, timeout, nil
}

// scenarioOf is the scenario to run and the name of its file ("" for a
// flag-built one): the one --scenario names, with the machine flags given
// on the command line overriding it, or one VM from the flags.
func scenarioOf(f Flags) (*scenario.Scenario, string, error) {
	if f.Scenario == "" {
		if f.Iterations > 0 && f.Duration > 0 {
			return nil, "", fmt.Errorf("--iterations and --duration both bound the run: give one")
		}
		if f.Workload != "lock" {
			for _, name := range LockFlags {
				if f.changed(name) {
					return nil, "", fmt.Errorf("--%s applies to --workload lock only", name)
				}
			}
		}
		vm := scenario.VM{Name: "vm0", VCPUs: f.VCPUs, Mem: f.Mem, Workload: f.Workload,
			Iterations: f.Iterations, Lock: f.Lock, Locks: f.Locks, CSCycles: f.CSCycles,
			ThinkCycles: f.ThinkCycles, SpinThreshold: f.SpinThreshold, DelayHint: f.DelayHint,
			PreemptedAware: f.PreemptedAware, SpinThresholdHead: f.SpinThresholdHead}
		if f.changed(param.PTicketShift.Flag) {
			vm.PTicketTimeoutShift = f.PTicketShift
		}
		for _, k := range vmm.PVKnobList() {
			if v, ok := f.PV[k.Flag]; ok && f.changed(k.Flag) {
				*vm.PVKnob(k.Key) = v
			}
		}
		return &scenario.Scenario{
			Name: "flags", PCPUs: f.PCPUs, Backend: f.Backend,
			Sched: scenario.Sched{Policy: f.Policy, Slice: scenario.Duration(f.Slice),
				Skew: scenario.Duration(f.Skew), DelayMax: scenario.Duration(f.DelayMax), BoostKicked: f.BoostKick},
			Duration: scenario.Duration(f.Duration), Timeout: scenario.Duration(f.Timeout),
			VMs: []scenario.VM{vm},
		}, "", nil
	}
	for _, name := range vmFlags {
		if f.changed(name) {
			return nil, "", fmt.Errorf("--%s shapes a VM: with --scenario the scenario describes the VMs", name)
		}
	}
	file := f.Scenario
	b, ok := scenarios.Get(f.Scenario)
	if ok {
		file = "scenario " + f.Scenario
	} else {
		var err error
		if b, err = host.ReadFileLimited(f.Scenario, scenario.MaxBytes); err != nil {
			return nil, "", fmt.Errorf("--scenario: %w (built-in scenarios: %s)", err, strings.Join(scenarios.Names(), ", "))
		}
	}
	sc, err := scenario.Parse(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", file, err)
	}
	// Defaults for what the scenario leaves out, then command-line overrides.
	set := func(flag string, dst *scenario.Duration, v time.Duration) {
		if f.changed(flag) || *dst == 0 {
			*dst = scenario.Duration(v)
		}
	}
	if f.changed("sched") || sc.Sched.Policy == "" {
		sc.Sched.Policy = f.Policy
	}
	if f.changed("pcpus") {
		sc.PCPUs, sc.NPCPUs = f.PCPUs, 0
	}
	if f.changed("backend") || sc.Backend == "" {
		sc.Backend = f.Backend
	}
	set(param.Slice.Flag, &sc.Sched.Slice, f.Slice)
	set(param.Skew.Flag, &sc.Sched.Skew, f.Skew)
	set(param.DelayMax.Flag, &sc.Sched.DelayMax, f.DelayMax)
	if f.changed("boost-kicked") {
		sc.Sched.BoostKicked = f.BoostKick
	}
	if f.changed("timeout") {
		sc.Timeout = scenario.Duration(f.Timeout)
	}
	if f.changed("duration") {
		sc.Duration = scenario.Duration(f.Duration)
	}
	return sc, file, nil
}

// vmConfig checks VM i of a scenario and builds its config; image (already
// read, from path) replaces the built-in guest, parsed here once.
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
	mem, err := ParseSize(v.Mem)
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
		for _, key := range lockKeys() {
			if has(key) {
				return cfg, fmt.Errorf("%s: applies to workload lock only (this VM runs %s)", at(key, key), wl.Name)
			}
		}
	} else if err := lockConfig(&cfg, v, i, w); err != nil {
		return cfg, err
	}
	if image != nil {
		img, err := vmm.ParseELF(image, layout.Image)
		if err != nil {
			return cfg, fmt.Errorf("--image %s: %w", path, err)
		}
		cfg.Image, cfg.ImageName, cfg.Parsed = image, path, img
	}
	return cfg, nil
}

// lockConfig checks the lock workload's values of VM i and sets them in cfg.
func lockConfig(cfg *vmm.Config, v scenario.VM, i int, w where) error {
	at := func(p *param.Param) string { return w.vm(i, p.Flag, p.Key) }
	has := func(key string) bool { return w.file != "" && w.sc.Has(fmt.Sprintf("vms[%d].%s", i, key)) }
	// given: the value was set by the flag (VM 0 of a flag-built run) or
	// the VM's key in the file.
	given := func(flag, key string) bool {
		if w.file == "" {
			return i == 0 && w.changed(flag)
		}
		return i < w.fileVMs && has(key)
	}
	if v.Lock == "" {
		v.Lock = "ticket"
	}
	lk, err := vmm.LookupLock(v.Lock)
	if err != nil {
		return fmt.Errorf("%s: %w", w.vm(i, "lock", "lock"), err)
	}
	// The table's knobs: a value given is checked against its range; a
	// count left out (0) takes its default. The cycle knobs have none
	// here: 0 is a valid length (think 0: saturated contention), and the
	// CLI's flags give theirs.
	knob := func(p *param.Param, v *uint64) error {
		if *v == 0 && !given(p.Flag, p.Key) {
			if p.Unit != param.Cycles {
				*v = p.Default
			}
			return nil
		}
		return p.Check(at(p), *v)
	}
	locks := uint64(v.Locks)
	if err := knob(param.Locks, &locks); err != nil {
		return err
	}
	v.Locks = int(locks)
	if !lk.Threshold && given(param.SpinThreshold.Flag, param.SpinThreshold.Key) {
		return fmt.Errorf("%s: applies to a lock that spins a threshold (%s; this VM runs %s)", at(param.SpinThreshold), vmm.ThresholdLocks(), lk.Name)
	}
	for _, k := range []struct {
		p *param.Param
		v *uint64
	}{{param.SpinThreshold, &v.SpinThreshold}, {param.CSCycles, &v.CSCycles}, {param.ThinkCycles, &v.ThinkCycles},
		{param.SpinThresholdHead, &v.SpinThresholdHead}} {
		if err := knob(k.p, k.v); err != nil {
			return err
		}
	}
	// pvqspin's knobs: given for another lock they would silently do
	// nothing.
	for _, k := range vmm.PVKnobList() {
		if lk.ID != hypercall.LockPVQSpin && given(k.Flag, k.Key) {
			return fmt.Errorf("%s: applies to lock pvqspin only (this VM runs %s)", w.vm(i, k.Flag, k.Key), lk.Name)
		}
	}
	if lk.ID != hypercall.LockPVQSpin && given(param.SpinThresholdHead.Flag, param.SpinThresholdHead.Key) {
		return fmt.Errorf("%s: applies to lock pvqspin only (this VM runs %s)", at(param.SpinThresholdHead), lk.Name)
	}
	for _, k := range vmm.PVKnobList() {
		s := *v.PVKnob(k.Key)
		if s == "" {
			if given(k.Flag, k.Key) {
				return fmt.Errorf("%s is empty (leave it out for the default, %s)", w.vm(i, k.Flag, k.Key), k.Values[0])
			}
			continue
		}
		val, err := k.Parse(s)
		if err != nil {
			return fmt.Errorf("%s %w", w.vm(i, k.Flag, k.Key), err)
		}
		k.Set(&cfg.PV, val)
	}
	cfg.PV.SpinThresholdHead = v.SpinThresholdHead
	if v.PTicketTimeoutShift != 0 || given(param.PTicketShift.Flag, param.PTicketShift.Key) {
		if lk.ID != hypercall.LockPTicket {
			return fmt.Errorf("%s: applies to lock pticket only (this VM runs %s)", at(param.PTicketShift), lk.Name)
		}
		if err := param.PTicketShift.Check(at(param.PTicketShift), uint64(v.PTicketTimeoutShift)); err != nil {
			return err
		}
	}
	cfg.PTicketShift = v.PTicketTimeoutShift
	cfg.LockKind, cfg.Locks = lk.ID, v.Locks
	cfg.CSCycles, cfg.ThinkCycles, cfg.SpinThreshold = v.CSCycles, v.ThinkCycles, v.SpinThreshold
	if v.DelayHint {
		cfg.Flags |= hypercall.FlagDelayHint
	}
	if v.PreemptedAware {
		cfg.Flags |= hypercall.FlagPreemptedAware
	}
	return nil
}

// memRule is what --mem accepts.
var memRule = fmt.Sprintf("must be a multiple of 2 MiB between 4 MiB and %d MiB, e.g. 64M or 1G", hypercall.MaxMemBytes>>20)

// ParseSize reads "64M", "64MiB", "1G", "65536K", "1T" or a plain number of
// MiB. Range checks are the caller's.
func ParseSize(s string) (uint64, error) {
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
