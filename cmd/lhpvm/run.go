package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/kvm"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/spf13/cobra"
)

type runFlags struct {
	vcpus      int
	pcpus      string
	workload   string
	iterations uint64
	duration   time.Duration
	mem        string
	timeout    time.Duration
	image      string
	policy     string
	slice      time.Duration
	skew       time.Duration
	delayMax   time.Duration
	json       bool
	quiet      bool

	lock           string
	locks          int
	csCycles       uint64
	thinkCycles    uint64
	spinThreshold  uint64
	delayHint      bool
	preemptedAware bool

	changed func(name string) bool // whether a flag was given
}

// lockFlags only mean something to the lock workload.
var lockFlags = []string{"lock", "locks", "cs-cycles", "think-cycles", "spin-threshold", "delay-hint", "preempted-aware"}

// policyHelp lists the policies and how they combine, for --help.
func policyHelp() string {
	var base, mods []string
	for _, n := range sched.Names() {
		if sched.IsModifier(n) {
			mods = append(mods, n)
		} else {
			base = append(base, n)
		}
	}
	h := strings.Join(base, ", ")
	if len(mods) > 0 {
		h += "; " + strings.Join(mods, ", ") + " alone (over rr) or after a base policy other than host, e.g. gang+" + mods[0]
	}
	return h
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Boot a VM and run a workload in it",
		Long: `Boot a VM from the built-in guest (or --image) with --vcpus vCPUs, each on its
own OS thread pinned round-robin to the host CPUs of --pcpus, run --workload
until --iterations (per vCPU) or --duration, and check the result.

Workloads: ` + strings.Join(vmm.WorkloadNames(false), ", ") + ` (and test workloads: lhpvm workloads).
Locks (--workload lock): ` + strings.Join(vmm.LockNames(false), ", ") + `.
Scheduling policy: host (threads pinned round-robin, Linux time-slices them).`,
		Example: `  lhpvm run --workload hello --vcpus 8 --pcpus 0,1
  lhpvm run --workload counter --vcpus 4 --pcpus 0-1 --iterations 1000000 --json
  lhpvm run --workload null --vcpus 1 --iterations 20000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.changed = cmd.Flags().Changed
			return runRun(cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.vcpus, "vcpus", 2, "number of vCPUs (1-1024)")
	fl.StringVar(&f.pcpus, "pcpus", "", "host CPUs to run vCPUs on, e.g. 0,1 or 0-1 (default: all this process may use)")
	fl.StringVar(&f.workload, "workload", "counter", "guest workload (see 'lhpvm workloads')")
	fl.Uint64Var(&f.iterations, "iterations", 0, "operations per vCPU (default depends on the workload)")
	fl.DurationVar(&f.duration, "duration", 0, "run for this long instead of a number of iterations, e.g. 1s")
	fl.StringVar(&f.mem, "mem", "64M", "guest memory, e.g. 64M, 1G (a multiple of 2 MiB)")
	fl.DurationVar(&f.timeout, "timeout", vmm.DefaultTimeout, "watchdog: fail the run if it has not finished by then")
	fl.StringVar(&f.image, "image", "", "boot this guest ELF instead of the built-in guest")
	fl.StringVar(&f.policy, "sched", "host", "scheduling policy: "+policyHelp())
	fl.DurationVar(&f.slice, "slice", sched.DefaultSlice, "time slice of our scheduler's policies (100us to 1s)")
	fl.DurationVar(&f.skew, "skew", sched.DefaultSkew, "relaxed: co-stop the vCPUs ahead when skew passes this")
	fl.DurationVar(&f.delayMax, "delay-max", sched.DefaultDelayMax, "delay: longest extension of a slice for a vCPU in a critical section")
	fl.BoolVar(&f.json, "json", false, "print the result as one JSON object")
	fl.BoolVar(&f.quiet, "quiet", false, "do not print the guest's console output")
	fl.StringVar(&f.lock, "lock", "ticket", "lock workload: the spinlock ("+strings.Join(vmm.LockNames(false), ", ")+")")
	fl.IntVar(&f.locks, "locks", 1, "lock workload: number of locks; vCPU i uses lock i mod N")
	fl.Uint64Var(&f.csCycles, "cs-cycles", 1000, "lock workload: critical-section length in TSC cycles")
	fl.Uint64Var(&f.thinkCycles, "think-cycles", 2000, "lock workload: work outside the lock per iteration, in TSC cycles")
	fl.Uint64Var(&f.spinThreshold, "spin-threshold", vmm.DefaultSpinThreshold, "lock workload: spins before a pv lock's slow path")
	fl.BoolVar(&f.delayHint, "delay-hint", false, "lock workload: flag critical sections for the host and YIELD after release when asked")
	fl.BoolVar(&f.preemptedAware, "preempted-aware", false, "lock workload: waiters check whether the holder is preempted and go to the slow path at once")
	return cmd
}

// defaultIterations per workload when neither --iterations nor --duration is set.
var defaultIterations = map[string]uint64{"counter": 100000, "null": 20000, "hog": 1000, "lock": 100000}

func buildConfig(f runFlags) (vmm.Config, vmm.MachineConfig, error) {
	cfg, mc, err := buildVMConfig(f)
	if err != nil {
		return cfg, mc, err
	}
	if f.slice < sched.MinSlice || f.slice > sched.MaxSlice {
		return cfg, mc, fmt.Errorf("--slice %v: must be between %v and %v", f.slice, sched.MinSlice, sched.MaxSlice)
	}
	if f.skew <= 0 || f.delayMax <= 0 {
		return cfg, mc, fmt.Errorf("--skew and --delay-max must be positive")
	}
	mc.Policy = f.policy
	mc.Options = sched.Options{Slice: f.slice, Skew: f.skew, DelayMax: f.delayMax}
	if _, err := sched.New(f.policy, mc.Options); err != nil {
		return cfg, mc, fmt.Errorf("--sched: %w", err)
	}
	mc.Duration, mc.Timeout = f.duration, f.timeout
	return cfg, mc, nil
}

func buildVMConfig(f runFlags) (vmm.Config, vmm.MachineConfig, error) {
	var cfg vmm.Config
	var mc vmm.MachineConfig
	wl, err := vmm.LookupWorkload(f.workload)
	if err != nil {
		return cfg, mc, err
	}
	if f.vcpus < 1 || f.vcpus > 1024 {
		return cfg, mc, fmt.Errorf("--vcpus %d: must be between 1 and 1024", f.vcpus)
	}
	if f.iterations > 0 && f.duration > 0 {
		return cfg, mc, fmt.Errorf("--iterations and --duration both bound the run: give one")
	}
	if f.duration < 0 || f.timeout <= 0 {
		return cfg, mc, fmt.Errorf("--duration and --timeout must be positive")
	}
	if f.duration > 0 && f.timeout <= f.duration {
		return cfg, mc, fmt.Errorf("--timeout %v must be longer than --duration %v", f.timeout, f.duration)
	}
	mem, err := parseSize(f.mem)
	if err != nil {
		return cfg, mc, fmt.Errorf("--mem %q: %w", f.mem, err)
	}
	layout, err := vmm.NewLayout(mem, f.vcpus)
	if err != nil {
		return cfg, mc, fmt.Errorf("--mem %s, --vcpus %d: %w", f.mem, f.vcpus, err)
	}
	allowed, err := host.AllowedCPUs()
	if err != nil {
		return cfg, mc, err
	}
	pcpus := allowed
	if f.pcpus != "" {
		if pcpus, err = sched.ParseCPUList(f.pcpus); err != nil {
			return cfg, mc, fmt.Errorf("--pcpus: %w", err)
		}
		ok := map[int]bool{}
		for _, c := range allowed {
			ok[c] = true
		}
		for _, c := range pcpus {
			if !ok[c] {
				return cfg, mc, fmt.Errorf("--pcpus: CPU %d is not available to this process (have %s)", c, sched.FormatCPUList(allowed))
			}
		}
	}
	mc.PCPUs = pcpus
	cfg = vmm.Config{Name: "vm0", VCPUs: f.vcpus, MemBytes: mem, Workload: wl, Iterations: f.iterations}
	if wl.Name == "lock" {
		lk, err := vmm.LookupLock(f.lock)
		if err != nil {
			return cfg, mc, fmt.Errorf("--lock: %w", err)
		}
		if f.locks < 1 || f.locks > hypercall.MaxLocks {
			return cfg, mc, fmt.Errorf("--locks %d: must be between 1 and %d", f.locks, hypercall.MaxLocks)
		}
		if f.spinThreshold == 0 {
			return cfg, mc, fmt.Errorf("--spin-threshold must be at least 1")
		}
		cfg.LockKind, cfg.Locks = lk.ID, f.locks
		cfg.CSCycles, cfg.ThinkCycles, cfg.SpinThreshold = f.csCycles, f.thinkCycles, f.spinThreshold
		if f.delayHint {
			cfg.Flags |= hypercall.FlagDelayHint
		}
		if f.preemptedAware {
			cfg.Flags |= hypercall.FlagPreemptedAware
		}
	} else if f.changed != nil {
		for _, name := range lockFlags {
			if f.changed(name) {
				return cfg, mc, fmt.Errorf("--%s applies to --workload lock only", name)
			}
		}
	}
	if cfg.Iterations == 0 && f.duration == 0 {
		cfg.Iterations = defaultIterations[wl.Name]
	}
	if f.image != "" {
		b, err := os.ReadFile(f.image)
		if err != nil {
			return cfg, mc, fmt.Errorf("--image: %w", err)
		}
		if _, err := vmm.ParseELF(b, layout.Image); err != nil {
			return cfg, mc, fmt.Errorf("--image %s: %w", f.image, err)
		}
		cfg.Image, cfg.ImageName = b, f.image
	}
	return cfg, mc, nil
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

func runRun(out io.Writer, f runFlags) error {
	cfg, mc, err := buildConfig(f)
	if err != nil {
		return err
	}
	if !f.quiet && !f.json {
		cfg.Console = out
	} else if !f.quiet {
		cfg.Console = os.Stderr
	}
	res := runMachine(mc, cfg)
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return runFailed{err}
		}
	} else {
		printTable(out, res)
	}
	if res.Err != nil {
		return runFailed{res.Err}
	}
	return nil
}

// runMachine builds the VMs and runs them under one scheduler. Errors before
// the run (KVM, policy admission) come back as a failed Result too.
func runMachine(mc vmm.MachineConfig, cfgs ...vmm.Config) *vmm.Result {
	start := time.Now()
	failed := func(err error) *vmm.Result {
		return &vmm.Result{Err: err, Error: err.Error(), ElapsedS: time.Since(start).Seconds(),
			Sched: vmm.SchedResult{Policy: mc.Policy, PCPUs: mc.PCPUs}}
	}
	sys, err := kvm.Open()
	if err != nil {
		return failed(err)
	}
	defer sys.Close()
	var vms []*vmm.VM
	defer func() {
		for _, vm := range vms {
			vm.Close()
		}
	}()
	for _, cfg := range cfgs {
		vm, err := vmm.New(sys, cfg)
		if err != nil {
			return failed(fmt.Errorf("%s: %w", cfg.Name, err))
		}
		vms = append(vms, vm)
	}
	m, err := vmm.NewMachine(mc, vms...)
	if err != nil {
		return failed(err)
	}

	// Ctrl-C ends the run like a failure, with the vCPUs stopped cleanly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	defer signal.Stop(sig)
	go func() {
		if _, ok := <-sig; ok {
			m.Abort(errors.New("interrupted"))
		}
	}()
	return m.Run()
}

func printTable(out io.Writer, rep *vmm.Result) {
	for _, r := range rep.VMs {
		fmt.Fprintf(out, "\n%s: workload %s, %d vCPUs, image %s\n", r.Name, r.Workload, r.VCPUs, r.Image)
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
		if r.LockStats != nil {
			fmt.Fprintln(w, "vcpu\tpcpu\tstate\tacquisitions\tspin%\tp50-ns\tp99-ns\tmax-ns\tslow\twaits\tkicks\tyields\texits\t")
			row := func(name, pcpu, state string, l *vmm.LockStats, exits uint64) {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%.1f\t%.0f\t%.0f\t%.0f\t%d\t%d\t%d\t%d\t%d\t\n", name, pcpu, state,
					l.Acquisitions, 100*l.SpinFraction, l.AcquireNs.P50, l.AcquireNs.P99, l.AcquireNs.Max,
					l.SlowPaths, l.Waits, l.Kicks, l.Yields, exits)
			}
			var exits uint64
			for _, v := range r.VCPU {
				row(fmt.Sprint(v.ID), fmt.Sprint(v.PCPU), v.State, v.LockStats, v.Exits)
				exits += v.Exits
			}
			row("all", "", "", r.LockStats, exits)
		} else {
			fmt.Fprintln(w, "vcpu\tpcpu\tstate\tops\texits\thypercalls\tbad\tkicks-recv\t")
			for _, v := range r.VCPU {
				fmt.Fprintf(w, "%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t\n", v.ID, v.PCPU, v.State, v.Ops, v.Exits,
					v.Hypercalls, v.BadHypercalls, v.KicksReceived)
			}
		}
		w.Flush()
		if r.LockStats != nil {
			fmt.Fprintf(out, "lock %s: ", r.LockStats.Lock)
		}
		fmt.Fprintf(out, "%d ops in %.3f s of guest time: %.0f ops/s\n", r.Ops, r.GuestSeconds, r.OpsPerSec)
		if r.CounterActual != nil && r.CounterExpected != nil {
			fmt.Fprintf(out, "counter %d, expected %d\n", *r.CounterActual, *r.CounterExpected)
		}
		if r.NsPerHypercall != nil {
			fmt.Fprintf(out, "%.0f ns per hypercall round trip (guest rdtsc)\n", *r.NsPerHypercall)
		}
	}
	status := "ok"
	if !rep.OK {
		status = "FAILED (the reason is on stderr)"
	}
	fmt.Fprintf(out, "\npolicy %s on pCPUs %s, %.3f s: %s\n", rep.Sched.Policy, sched.FormatCPUList(rep.Sched.PCPUs), rep.ElapsedS, status)
}
