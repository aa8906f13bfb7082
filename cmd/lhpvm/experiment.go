package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/backend"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/runconfig"
	"github.com/lhpvm/lhpvm/internal/trace"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/spf13/cobra"
)

type expFlags struct {
	locks    string
	policies string
	sizes    string
	vmVCPUs  int
	duration time.Duration
	pcpus    string
	cs       uint64
	think    uint64
	repeat   int
	json     bool
	backend  string
	out      string
	shard    string
	trace    string
	quiet    bool
	ablation string
	variants string
	args     []string

	changed func(name string) bool
}

func newExperimentCmd() *cobra.Command {
	var f expFlags
	cmd := &cobra.Command{
		Use:   "experiment",
		Short: "Run every lock under every policy, overcommitted, against a 2-on-2 reference",
		Long: `Run the lock workload for every lock × policy × size and print throughput
relative to the reference (ticket lock, 2 vCPUs on 2 pCPUs under rr, no
overcommit), the spin fraction, and the LHP/LWP events.

Guest options follow the policy: a policy with delay runs the guest with
--delay-hint; one with pv runs it with --preempted-aware. Every run checks
itself; a failed or refused cell says why.

--ablation pvqspin runs Linux's pv-qspinlock with every mechanism on (and
the host boosting the kicked vCPU under a pv policy), then with each
switched off alone - lock stealing, the pending bit, the predecessor
check, the deferred kick, the boost - at 4 and 8 vCPUs under rr and pv,
and prints throughput, spin, acquire p99, the lock events and the damage
times per variant.`,
		Example: `  lhpvm experiment --duration 1s
  lhpvm experiment --locks ticket,pvticket --policies rr,rr+pv --sizes 4,8
  lhpvm experiment --vm-vcpus 2 --policies rr,gang   # VMs of 2 vCPUs, so gang can run
  lhpvm experiment --out results --sizes 2,4 --policies rr,pv --locks ticket,tas
  lhpvm experiment --out shard1 --shard 1/4 ... ; lhpvm merge --out all shard1 shard2 shard3 shard4
  lhpvm experiment --ablation pvqspin --out ablation
  lhpvm experiment --ablation pvqspin --variants full,no-steal --policies pv --sizes 4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.args = os.Args
			f.changed = func(name string) bool { return cmd.Flags().Changed(name) }
			return runExperiment(cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.locks, "locks", strings.Join(vmm.LockNames(false), ","), "locks to run")
	fl.StringVar(&f.policies, "policies", strings.Join(defaultPolicies(), ","), "policies to run (specs as for run --sched)")
	fl.StringVar(&f.sizes, "sizes", "4,8", "total vCPU counts to overcommit onto the pCPUs")
	fl.IntVar(&f.vmVCPUs, "vm-vcpus", 0, "split the vCPUs into VMs of this many vCPUs (default: one VM)")
	fl.DurationVar(&f.duration, "duration", time.Second, "length of each run")
	fl.StringVar(&f.pcpus, "pcpus", "", "host CPUs (default: the first two this process may use)")
	fl.Uint64Var(&f.cs, "cs-cycles", 1000, "critical-section length in TSC cycles")
	fl.Uint64Var(&f.think, "think-cycles", 2000, "work outside the lock in TSC cycles")
	fl.IntVar(&f.repeat, "repeat", 3, "runs per cell; the cell shows the run with the median throughput")
	fl.BoolVar(&f.json, "json", false, "print the rows as JSON")
	fl.StringVar(&f.backend, "backend", backend.Auto, "execution backend: "+backendHelp())
	fl.StringVar(&f.out, "out", "", "write results.json, runs.csv, cells.csv and SVG plots into this directory")
	fl.StringVar(&f.shard, "shard", "", "measure only shard I/N of the cells (deterministic; merge the shards' --out with lhpvm merge)")
	fl.StringVar(&f.trace, "trace", "", "write a Perfetto trace of every run into this directory")
	fl.BoolVar(&f.quiet, "quiet", false, "no progress (a bar on a terminal, a line per cell otherwise)")
	fl.StringVar(&f.ablation, "ablation", "", "run an ablation instead of the lock matrix: "+strings.Join(ablationNames(), ", ")+" (policies default to rr,pv)")
	fl.StringVar(&f.variants, "variants", "", "--ablation: the variants to run (default: all of them)")
	return cmd
}

func defaultPolicies() []string {
	want := []string{"host", "rr", "gang", "relaxed", "balance", "monitor", "pv", "delay", "rr+pv+delay"}
	var have []string
	for _, p := range want {
		if _, err := sched.New(p, sched.Options{}); err == nil {
			have = append(have, p)
		}
	}
	return have
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// expPlan is a checked experiment.
type expPlan struct {
	m     Matrix
	shard Shard
	pcpus []int
}

func checkExperiment(f expFlags) (expPlan, error) {
	var p expPlan
	changed := func(name string) bool { return f.changed != nil && f.changed(name) }
	var variants []string
	if f.ablation != "" {
		if changed("locks") {
			return p, fmt.Errorf("--locks: an ablation runs its own lock (%s: %s)", f.ablation, ablations[f.ablation].lock)
		}
		lock, vs, err := checkAblation(f.ablation, f.variants)
		if err != nil {
			return p, err
		}
		f.locks, variants = lock, vs
		if !changed("policies") {
			f.policies = "rr,pv"
		}
	} else if changed("variants") {
		return p, fmt.Errorf("--variants needs --ablation")
	}
	locks, policies := splitList(f.locks), splitList(f.policies)
	var sizes []int
	for _, s := range splitList(f.sizes) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > hypercall.MaxVCPUs {
			return p, fmt.Errorf("--sizes: %q is not a vCPU count", s)
		}
		sizes = append(sizes, n)
	}
	for _, l := range locks {
		if _, err := vmm.LookupLock(l); err != nil {
			return p, fmt.Errorf("--locks: %w", err)
		}
	}
	for _, pol := range policies {
		if _, err := sched.New(pol, sched.Options{}); err != nil {
			return p, fmt.Errorf("--policies: %w", err)
		}
	}
	switch {
	case len(locks) == 0 || len(policies) == 0 || len(sizes) == 0:
		return p, fmt.Errorf("--locks, --policies and --sizes may not be empty")
	case f.duration < runconfig.MinDuration || f.duration > runconfig.MaxDuration:
		return p, fmt.Errorf("--duration %v: must be between %v and %v", f.duration, runconfig.MinDuration, runconfig.MaxDuration)
	case f.vmVCPUs < 0 || f.vmVCPUs > hypercall.MaxVCPUs:
		return p, fmt.Errorf("--vm-vcpus %d: must be between 1 and %d (or 0: one VM)", f.vmVCPUs, hypercall.MaxVCPUs)
	case f.repeat < 1 || f.repeat > 100:
		return p, fmt.Errorf("--repeat %d: must be between 1 and 100", f.repeat)
	}
	allowed, err := host.AllowedCPUs()
	if err != nil {
		return p, err
	}
	p.pcpus = allowed[:min(2, len(allowed))]
	if f.pcpus != "" {
		if p.pcpus, err = runconfig.CheckCPUs("--pcpus", f.pcpus, allowed); err != nil {
			return p, err
		}
	}
	if err := backend.Check(f.backend); err != nil {
		return p, fmt.Errorf("--backend: %w", err)
	}
	p.shard = Shard{I: 1, N: 1}
	if f.shard != "" {
		if p.shard, err = parseShard(f.shard); err != nil {
			return p, fmt.Errorf("--shard %w", err)
		}
		if f.out == "" {
			return p, fmt.Errorf("--shard needs --out: a shard's results are for lhpvm merge")
		}
	}
	be := f.backend
	if be == "" {
		be = backend.Auto
	}
	p.m = Matrix{Locks: locks, Policies: policies, Sizes: sizes, VMVCPUs: f.vmVCPUs, Duration: f.duration.String(),
		Repeat: f.repeat, CSCycles: f.cs, Think: f.think, Backend: be, Ablation: f.ablation, Variants: variants}
	if len(p.m.cells()) == 0 {
		return p, fmt.Errorf("--variants %s: none of them differs from full under --policies %s (they need a policy with pv)", f.variants, f.policies)
	}
	return p, nil
}

func runExperiment(out, errOut io.Writer, f expFlags) error {
	p, err := checkExperiment(f)
	if err != nil {
		return errkind.Usage(err)
	}
	for _, dir := range []string{f.out, f.trace} {
		if dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return errkind.IO(dir, fmt.Errorf("creating %s: %w", dir, err))
			}
		}
	}
	h, err := runconfig.Open(f.backend, nil)
	if err != nil {
		return err
	}
	defer h.Close()
	kernel, cpu := hostFacts()
	res := &Results{Matrix: p.m, Shards: []Shard{p.shard},
		Meta: Meta{Version: version(), Commit: commit, Backend: h.Name(), Kernel: kernel, CPUModel: cpu,
			PCPUs: p.pcpus, Args: f.args, Start: time.Now(), Summary: SummaryRule, NoisyDrift: noisyDrift}}
	if res.Meta.Commit == "" {
		res.Meta.Commit, _ = buildInfo()
	}

	var mine []CellKey
	for i, k := range p.m.cells() {
		if p.shard.owns(i) {
			mine = append(mine, k)
		}
	}
	total := 2*f.repeat + len(mine)*f.repeat // runs: the reference twice, then the cells
	prog := newProgress(errOut, total, f.quiet)

	runs := 0
	once := func(k CellKey) (RunResult, int) {
		runs++
		tracePath := ""
		if f.trace != "" {
			lock := k.Lock
			if k.Variant != "" {
				lock += "-" + k.Variant
			}
			tracePath = filepath.Join(f.trace, fmt.Sprintf("%dvcpus-%s-%s-%d.json", k.VCPUs, lock, k.Policy, runs))
		}
		return runCell(h, k, p, f, tracePath)
	}
	ref := &Reference{Shard: p.shard.I}
	refKey := CellKey{VCPUs: 2, Lock: "ticket", Policy: "rr"}
	reference := func(into *[]RunResult, when string) error {
		for i := 0; i < f.repeat; i++ {
			prog.start(fmt.Sprintf("reference (%s)", when))
			r, _ := once(refKey)
			*into = append(*into, r)
			prog.done(fmt.Sprintf("reference (%s), run %d: %.3g acq/s", when, i+1, r.OpsPerSec), r.OK)
			if !r.OK {
				prog.finish()
				return errkind.Run(fmt.Errorf("the reference run (ticket, 2 vCPUs, rr) failed %s the matrix, so no cell can be compared: %s", when, r.Error))
			}
		}
		return nil
	}
	if err := reference(&ref.Before, "before"); err != nil {
		return err
	}
	for _, k := range mine {
		c := Cell{CellKey: k, Shard: p.shard.I}
		for i := 0; i < f.repeat; i++ {
			prog.start(k.String())
			r, vms := once(k)
			c.VMs = vms
			c.Runs = append(c.Runs, r)
			state := fmt.Sprintf("%.3g acq/s", r.OpsPerSec)
			switch {
			case r.Refused:
				state = "refused"
			case !r.OK:
				state = "FAILED: " + r.Error
			}
			prog.done(fmt.Sprintf("%v, run %d: %s", k, i+1, state), r.OK || r.Refused)
			if !r.OK {
				break // the cell has failed (or cannot run): no more runs of it
			}
		}
		res.Cells = append(res.Cells, c)
	}
	if err := reference(&ref.After, "after"); err != nil {
		return err
	}
	prog.finish()
	ref.summarize()
	res.References = []Reference{*ref}
	for i := range res.Cells {
		res.Cells[i].summarize(ref)
	}
	res.Meta.End = time.Now()
	return report(out, res, f.out, f.json)
}

// report writes the results (--out), prints them, and fails the command
// when a cell failed.
func report(out io.Writer, res *Results, dir string, asJSON bool) error {
	if dir != "" {
		if err := res.write(dir); err != nil {
			return errkind.IO(dir, fmt.Errorf("--out %s: %w", dir, err))
		}
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		res.printTable(out)
	}
	if f := res.failed(); len(f) > 0 {
		return errkind.Run(fmt.Errorf("%d of %d cells failed: %s", len(f), len(res.Cells), strings.Join(f, "; ")))
	}
	return nil
}

// runCell runs cell k once: its VMs (one, or VMs of --vm-vcpus), the
// guest options its policy reads, under the policy on the pCPUs.
func runCell(h *backend.Choice, k CellKey, p expPlan, f expFlags, tracePath string) (RunResult, int) {
	lk, _ := vmm.LookupLock(k.Lock)
	wl, _ := vmm.LookupWorkload("lock")
	per := k.VCPUs
	if f.vmVCPUs > 0 {
		per = f.vmVCPUs
	}
	var v variant
	if k.Variant != "" {
		v, _ = lookupVariant(p.m.Ablation, k.Variant)
	}
	var cfgs []vmm.Config
	for left, i := k.VCPUs, 0; left > 0; i++ {
		n := min(per, left)
		cfg := vmm.Config{Name: fmt.Sprintf("vm%d", i), VCPUs: n, Workload: wl, LockKind: lk.ID, Locks: 1,
			CSCycles: f.cs, ThinkCycles: f.think, SpinThreshold: vmm.DefaultSpinThreshold, PV: v.PV}
		if strings.Contains(k.Policy, "delay") {
			cfg.Flags |= hypercall.FlagDelayHint
		}
		if strings.Contains(k.Policy, "pv") {
			cfg.Flags |= hypercall.FlagPreemptedAware
		}
		cfgs = append(cfgs, cfg)
		left -= n
	}
	mc := vmm.MachineConfig{PCPUs: p.pcpus, Policy: k.Policy, Duration: f.duration, Timeout: f.duration + time.Minute,
		Options: sched.Options{Slice: sched.DefaultSlice, Skew: sched.DefaultSkew, DelayMax: sched.DefaultDelayMax,
			BoostKicked: v.Boost && hasPV(k.Policy)}}
	var r RunResult
	if tracePath != "" {
		w, err := trace.Create(tracePath, trace.DefaultLimit)
		if err != nil {
			r.Error = fmt.Sprintf("--trace: %v", err)
			return r, len(cfgs)
		}
		mc.Trace = w
		defer w.Close()
	}
	res := runMachine(h, mc, cfgs...)
	r.OK, r.Error, r.ElapsedS = res.OK, res.Error, res.ElapsedS
	var refused *sched.RefusedError
	r.Refused = errors.As(res.Err, &refused)
	var spin, n float64
	for i, vm := range res.VMs {
		r.OpsPerSec += vm.OpsPerSec
		l := vm.LockStats
		if l == nil {
			continue
		}
		spin += l.SpinFraction * float64(vm.VCPUs)
		n += float64(vm.VCPUs)
		r.AcquireP99Ns = max(r.AcquireP99Ns, l.AcquireNs.P99)
		r.LockEvents.Merge(l.Events)
		if i == 0 && l.HeldPreemptedNs != nil && l.GrantedPreemptedNs != nil {
			h, g := *l.HeldPreemptedNs, *l.GrantedPreemptedNs
			r.HeldPreemptedNs, r.GrantedPreemptedNs = &h, &g
		} else if r.HeldPreemptedNs != nil && l.HeldPreemptedNs != nil {
			*r.HeldPreemptedNs += *l.HeldPreemptedNs
			*r.GrantedPreemptedNs += *l.GrantedPreemptedNs
		}
	}
	if n > 0 {
		r.SpinFraction = spin / n
	}
	r.LHPEvents, r.LWPEvents = res.Sched.LHPEvents, res.Sched.LWPEvents
	return r, len(cfgs)
}
