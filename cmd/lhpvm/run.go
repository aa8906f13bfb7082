package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lhpvm/lhpvm/internal/backend"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/figures"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/param"
	"github.com/lhpvm/lhpvm/internal/runconfig"
	"github.com/lhpvm/lhpvm/internal/trace"
	"github.com/lhpvm/lhpvm/scenarios"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/spf13/cobra"
)

// runFlags are run's flags: what the run is (runconfig.Flags), and how its
// result is shown.
type runFlags struct {
	runconfig.Flags
	json       bool
	quiet      bool
	trace      string
	traceLimit int
	pvKnobs    map[string]*string // by flag name (pv-steal, ...)
}

// policyList is one line per policy, for --help.
func policyList() string {
	var b strings.Builder
	for _, n := range sched.Names() {
		fmt.Fprintf(&b, "  %-8s %s\n", n, sched.Doc(n))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

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
		Long: `Boot a VM from the built-in guest (or --image) with --vcpus vCPUs, run
--workload until --iterations (per vCPU) or --duration under the host
scheduler's --sched policy on the host CPUs of --pcpus, and check the result.
--scenario runs several VMs described in YAML; --corunner adds a CPU hog VM.

Workloads: ` + strings.Join(vmm.WorkloadNames(false), ", ") + ` (and test workloads: lhpvm workloads).
Locks (--workload lock): ` + strings.Join(vmm.LockNames(false), ", ") + `.

Scheduling policies (--sched):
` + policyList() + `
pv and delay combine with every base policy but host: gang+pv, balance+pv+delay, ...`,
		Example: `  lhpvm run --workload hello --vcpus 8 --pcpus 0,1
  lhpvm run --workload counter --vcpus 4 --pcpus 0-1 --iterations 1000000 --json
  lhpvm run --workload lock --lock ticket --vcpus 4 --pcpus 0,1 --sched rr --duration 3s
  lhpvm run --workload lock --lock pvticket --vcpus 4 --sched rr+pv --duration 3s --json
  lhpvm run --scenario slide8-lhp-two-vms
  lhpvm run --workload lock --vcpus 2 --corunner 2 --sched gang --duration 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.Changed = cmd.Flags().Changed
			f.Traced = f.trace != ""
			f.PV = map[string]string{}
			for name, v := range f.pvKnobs {
				f.PV[name] = *v
			}
			return runRun(cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.VCPUs, "vcpus", 2, "number of vCPUs (1-1024)")
	fl.StringVar(&f.PCPUs, "pcpus", "", "host CPUs to run vCPUs on, e.g. 0,1 or 0-1 (default: all this process may use; with --scenario, the scenario's)")
	fl.StringVar(&f.Workload, "workload", "counter", "guest workload (see 'lhpvm workloads')")
	fl.Uint64Var(&f.Iterations, "iterations", 0, "operations per vCPU (default depends on the workload)")
	fl.DurationVar(&f.Duration, "duration", 0, "run for this long (1ms to 24h) instead of a number of iterations, e.g. 1s")
	fl.StringVar(&f.Mem, "mem", "64M", "guest memory: a multiple of 2 MiB from 4M to 2G, e.g. 64M, 1G")
	fl.DurationVar(&f.Timeout, "timeout", 0, "watchdog: fail the run if it has not finished by then (100ms to 24h; default 1m, or --duration plus 1m)")
	fl.StringVar(&f.Image, "image", "", "boot this guest ELF (a regular file of at most 256 MiB) instead of the built-in guest")
	fl.StringVar(&f.Policy, "sched", "host", "scheduling policy: "+policyHelp())
	param.Slice.Duration(fl, &f.Slice)
	param.Skew.Duration(fl, &f.Skew)
	param.DelayMax.Duration(fl, &f.DelayMax)
	fl.BoolVar(&f.BoostKick, "boost-kicked", false, "pv: a KICK hands the rest of the kicker's slice to the kicked vCPU (boost the new queue head)")
	fl.BoolVar(&f.json, "json", false, "print the result as one JSON object")
	fl.BoolVar(&f.quiet, "quiet", false, "do not print the guest's console output")
	fl.StringVar(&f.Scenario, "scenario", "", "run the VMs of a scenario: a YAML file of at most 1 MiB, or a built-in one ("+strings.Join(scenarios.Names(), ", ")+")")
	fl.StringVar(&f.Backend, "backend", backend.Auto, "execution backend: "+backendHelp())
	fl.Uint64Var(&f.Seed, "seed", 0, "replay a run's start (which pCPU each vCPU starts on, their start order, each pCPU's slice phase) from the seed it reported (default: a fresh seed)")
	fl.StringVar(&f.trace, "trace", "", "write a Perfetto / Chrome trace of the run to this file (ui.perfetto.dev opens it)")
	fl.IntVar(&f.traceLimit, "trace-limit", trace.DefaultLimit, "--trace: at most this many events (the file says when it was cut)")
	fl.StringVar(&f.TraceClock, "trace-clock", vmm.TraceClockRun, "--trace: the clock of its timestamps: "+strings.Join(vmm.TraceClocks(), " (from the start of scheduling), ")+
		" (the host's CLOCK_MONOTONIC, as trace-cmd record -C mono and perf record -k CLOCK_MONOTONIC stamp theirs)")
	fl.StringVar(&f.Timeline, "timeline", "", "draw who held each pCPU, LHP and LWP marked, as an SVG (our policies only, not host)")
	fl.StringVar(&f.TimelineWindow, "timeline-window", "", "--timeline: the window, e.g. 0-200ms (default: the first 20 slices)")
	fl.IntVar(&f.Corunner, "corunner", 0, "add a VM named hog with this many vCPUs running the hog workload as long as the others run")
	fl.StringVar(&f.Lock, "lock", "ticket", "lock workload: the spinlock ("+strings.Join(vmm.LockNames(false), ", ")+")")
	param.Locks.Int(fl, &f.Locks)
	param.CSCycles.Uint64(fl, &f.CSCycles)
	param.ThinkCycles.Uint64(fl, &f.ThinkCycles)
	param.SpinThreshold.Uint64(fl, &f.SpinThreshold)
	fl.BoolVar(&f.DelayHint, "delay-hint", false, "lock workload: flag critical sections for the host and YIELD after release when asked")
	fl.BoolVar(&f.PreemptedAware, "preempted-aware", false, "lock workload: waiters check whether the holder is preempted and go to the slow path at once")
	f.pvKnobs = map[string]*string{}
	for _, k := range vmm.PVKnobList() {
		f.pvKnobs[k.Flag] = fl.String(k.Flag, k.Values[0], k.Doc)
	}
	param.SpinThresholdHead.Uint64(fl, &f.SpinThresholdHead)
	param.PTicketShift.Uint32(fl, &f.PTicketShift)
	return cmd
}

func runRun(out io.Writer, f runFlags) error {
	plan, err := runconfig.Resolve(f.Flags)
	if err != nil {
		return err
	}
	cfgs, mc := plan.Configs, plan.Machine
	h, err := runconfig.Open(mc.Backend, cfgs)
	if err != nil {
		var rf *errkind.RunError
		if f.json && errors.As(err, &rf) { // the run could not start: no VM ran
			_ = printJSON(out, &vmm.Result{Error: err.Error(), VMs: []*vmm.VMResult{}, Backend: mc.Backend,
				Sched: vmm.SchedResult{Policy: mc.Policy, PCPUs: mc.PCPUs}})
		}
		return err
	}
	defer h.Close()
	var console io.Writer
	if !f.quiet && !f.json {
		console = out
	} else if !f.quiet {
		console = os.Stderr
	}
	for i := range cfgs {
		cfgs[i].Console = console
	}
	stop := make(chan struct{})
	unlisten := onInterrupt(func(os.Signal) { close(stop) }, nil)
	lk, err := lockPCPUs(os.Stderr, mc.PCPUs, stop)
	unlisten()
	if err != nil {
		return err
	}
	defer lk.Release()
	if f.trace != "" {
		if mc.Trace, err = trace.Create(f.trace, f.traceLimit); err != nil {
			return errkind.IO(f.trace, fmt.Errorf("--trace: %w", err))
		}
	}
	res := runMachine(h, mc, cfgs...)
	if err := finishPictures(f, mc, plan, res); err != nil {
		return err
	}
	if f.json {
		if err := printJSON(out, res); err != nil {
			return errkind.Run(err)
		}
	} else if len(res.VMs) > 0 { // a run that never started has no table, only its error
		if plan.About != "" {
			fmt.Fprintf(out, "\n%s\n", plan.About)
		}
		printTable(out, res)
		if !f.quiet {
			printLegend(out, res, plan.Next)
		}
	}
	if res.Err != nil {
		return errkind.Run(res.Err)
	}
	return nil
}

func printJSON(out io.Writer, res *vmm.Result) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// backendHelp lists the backends for --help.
func backendHelp() string {
	return backend.Auto + " (kvm where /dev/kvm works, else ptrace), " + strings.Join(backend.Names(), ", ")
}

// finishPictures closes the trace and draws the timeline of a finished run.
func finishPictures(f runFlags, mc vmm.MachineConfig, plan *runconfig.Plan, res *vmm.Result) error {
	if mc.Trace != nil {
		mc.Trace.Meta(trace.S("backend", res.Backend), trace.S("lhpvm", version()))
		if err := mc.Trace.Close(); err != nil {
			return errkind.IO(f.trace, fmt.Errorf("--trace %s: %w", f.trace, err))
		}
		res.Trace = &vmm.TraceInfo{Path: f.trace, Events: mc.Trace.Events(), Dropped: mc.Trace.Dropped()}
	}
	if tl := mc.Timeline; tl != nil && len(res.VMs) > 0 {
		title := plan.Name
		if title == "" {
			title = "lhpvm run"
		}
		title = fmt.Sprintf("%s: %s, %v slices, on %s, %v-%v", title, mc.Policy, mc.Options.Slice, res.Backend, tl.From, tl.To)
		if err := figures.Timeline(tl, title, f.Timeline); err != nil {
			return errkind.IO(f.Timeline, fmt.Errorf("--timeline %s: %w", f.Timeline, err))
		}
	}
	return nil
}

// runMachine runs the VMs on backend h (vmm.RunMachine); Ctrl-C during the
// run ends it like a failure, with the vCPUs stopped cleanly.
func runMachine(h *backend.Choice, mc vmm.MachineConfig, cfgs ...vmm.Config) *vmm.Result {
	ctx, cancel := context.WithCancelCause(context.Background())
	release := onInterrupt(func(sig os.Signal) { cancel(fmt.Errorf("interrupted (%v)", sig)) }, nil)
	defer func() {
		release()
		cancel(nil)
	}()
	return runMachineCtx(ctx, h, mc, cfgs...)
}

// runMachineCtx runs the VMs on backend h until they end or ctx is done.
func runMachineCtx(ctx context.Context, h *backend.Choice, mc vmm.MachineConfig, cfgs ...vmm.Config) *vmm.Result {
	res := vmm.RunMachine(ctx, h, mc, cfgs...)
	res.BackendReason = h.Reason
	return res
}

// onInterrupt calls first at the first SIGINT or SIGTERM and again (if
// not nil) at the second; release stops listening.
func onInterrupt(first, again func(os.Signal)) (release func()) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, host.StopSignals...)
	done := make(chan struct{})
	go func() {
		for n := 0; ; n++ {
			select {
			case s := <-sig:
				if n == 0 {
					first(s)
				} else if again != nil {
					again(s)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}

func printTable(out io.Writer, rep *vmm.Result) {
	for _, r := range rep.VMs {
		fmt.Fprintf(out, "\n%s: workload %s, %d vCPUs, image %s\n", r.Name, r.Workload, r.VCPUs, r.Image)
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
		if r.LockStats != nil {
			fmt.Fprintln(w, "vcpu\tpcpu\tacquisitions\tspin%\tp50-ns\tp99-ns\tmax-ns\tslow\twaits\tkicks\tyields\trun-ms\tsteal-ms\tpreempt\tlhp\tlwp\t")
			// Under host Linux preempts, unseen: n/a, not 0.
			seen := len(r.VCPU) > 0 && r.VCPU[0].PreemptionsSeen()
			n := func(x uint64) string {
				if !seen {
					return "n/a"
				}
				return fmt.Sprint(x)
			}
			row := func(name, pcpu string, l *vmm.LockStats, v vmm.VCPUResult) {
				fmt.Fprintf(w, "%s\t%s\t%d\t%.1f\t%.0f\t%.0f\t%.0f\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%s\t%s\t%s\t\n", name, pcpu,
					l.Acquisitions, 100*l.SpinFraction, l.AcquireNs.P50, l.AcquireNs.P99, l.AcquireNs.Max,
					l.SlowPaths, l.Waits, l.Kicks, l.Yields, float64(v.RunNs)/1e6, float64(v.StealNs)/1e6,
					n(v.Preemptions), n(v.LHPEvents), n(v.LWPEvents))
			}
			var all vmm.VCPUResult
			for _, v := range r.VCPU {
				row(fmt.Sprint(v.ID), fmt.Sprint(v.PCPU), v.LockStats, v)
				all.RunNs += v.RunNs
				all.StealNs += v.StealNs
				all.Preemptions += v.Preemptions
				all.LHPEvents += v.LHPEvents
				all.LWPEvents += v.LWPEvents
			}
			row("all", "", r.LockStats, all)
		} else {
			fmt.Fprintln(w, "vcpu\tpcpu\tops\texits\thypercalls\tbad\tkicks-recv\trun-ms\tsteal-ms\tpreempt\t")
			for _, v := range r.VCPU {
				preempt := "n/a"
				if v.PreemptionsSeen() {
					preempt = fmt.Sprint(v.Preemptions)
				}
				fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%s\t\n", v.ID, v.PCPU, v.Ops, v.Exits,
					v.Hypercalls, v.BadHypercalls, v.KicksReceived, float64(v.RunNs)/1e6, float64(v.StealNs)/1e6, preempt)
			}
		}
		w.Flush()
		if r.LockStats != nil {
			printLockEvents(out, r)
			printDamage(out, r)
			if f := r.LockStats.Fairness; f != nil && r.VCPUs > 1 {
				ratio := "a vCPU took none"
				if f.MaxOverMin > 0 {
					ratio = fmt.Sprintf("max/min %.2f", f.MaxOverMin)
				}
				fmt.Fprintf(out, "fairness: acquisitions per vCPU min %d, mean %.0f, max %d (%s), Jain's index %.3f\n",
					f.MinAcq, f.AvgAcq, f.MaxAcq, ratio, f.Jain)
			}
			fmt.Fprintf(out, "lock %s: ", r.LockStats.Lock)
		}
		fmt.Fprintf(out, "%d ops in %.3f s of guest time: %.0f ops/s over the whole run", r.Ops, r.GuestSeconds, r.OpsPerSec)
		if r.SteadyOpsPerSec != nil {
			fmt.Fprintf(out, "; %.0f ops/s in the steady state, after a %.0f ms warm-up", *r.SteadyOpsPerSec, 1e3*r.WarmupS)
		}
		fmt.Fprintln(out)
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
	sc := rep.Sched
	fmt.Fprintf(out, "\nsched %s on pCPUs %s", sc.Policy, sched.FormatCPUList(sc.PCPUs))
	if sc.SliceUs > 0 {
		fmt.Fprintf(out, ", slice %v", time.Duration(sc.SliceUs)*time.Microsecond)
	}
	if sc.SliceUs > 0 {
		fmt.Fprintf(out, ": %d switches, %d LHP, %d LWP (%d waiter preemptions), idle %.1f%%, wake p50 %.0fus p99 %.0fus",
			sc.Switches, sc.LHPEvents, sc.LWPEvents, sc.WaiterPreemptions, 100*sc.IdleFraction, sc.WakeUs.P50, sc.WakeUs.P99)
	} else { // Linux decides who runs: we do not see its preemptions
		fmt.Fprintf(out, ": %d switches, LHP n/a, LWP n/a (Linux schedules), idle %.1f%%", sc.Switches, 100*sc.IdleFraction)
	}
	if sc.StopUs.P99 > 0 {
		fmt.Fprintf(out, ", stop p50 %.0fus p99 %.0fus", sc.StopUs.P50, sc.StopUs.P99)
	}
	if sc.RunPerDispatchUs > 0 {
		fmt.Fprintf(out, ", %.1f ms run per dispatch", sc.RunPerDispatchUs/1e3)
	}
	if sc.CoStops > 0 {
		fmt.Fprintf(out, ", %d co-stops, %d co-starts (max skew %.0fus)", sc.CoStops, sc.CoStarts, sc.MaxSkewUs)
	}
	if sc.DelayGrants > 0 || sc.DelayOverruns > 0 {
		fmt.Fprintf(out, ", %d delay grants, %d overruns", sc.DelayGrants, sc.DelayOverruns)
	}
	if sc.DirectedYields > 0 {
		fmt.Fprintf(out, ", %d directed yields", sc.DirectedYields)
	}
	if sc.KickBoosts > 0 {
		fmt.Fprintf(out, ", %d kick boosts", sc.KickBoosts)
	}
	if t := rep.Trace; t != nil {
		cut := ""
		if t.Dropped > 0 {
			cut = fmt.Sprintf(", %d more cut by --trace-limit", t.Dropped)
		}
		fmt.Fprintf(out, "\ntrace %s: %d events%s (open it in ui.perfetto.dev)", t.Path, t.Events, cut)
	}
	if sc.ScheduleDrift != "" {
		fmt.Fprintf(out, "\nschedule DRIFTED from the one asked for (%s): %s; this host was too busy to run it", vmm.ScheduleDriftRule, sc.ScheduleDrift)
	}
	fmt.Fprintf(out, "\n%.3f s on %s, seed %d: %s\n", rep.ElapsedS, rep.Backend, rep.Seed, status)
}

// printLockEvents is the table of the lock events that happened (Linux's
// names), per vCPU and for the VM.
func printLockEvents(out io.Writer, r *vmm.VMResult) {
	all := r.LockStats.Events.Named()
	var cols []int
	for i, e := range all {
		if e.Value != 0 {
			cols = append(cols, i)
		}
	}
	if len(cols) == 0 {
		return
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(w, "lock events\t")
	for _, i := range cols {
		fmt.Fprintf(w, "%s\t", all[i].Name)
	}
	fmt.Fprintln(w)
	row := func(name string, ev []vmm.NamedEvent) {
		fmt.Fprintf(w, "%s\t", name)
		for _, i := range cols {
			if e := ev[i]; e.Value == float64(uint64(e.Value)) {
				fmt.Fprintf(w, "%d\t", uint64(e.Value))
			} else {
				fmt.Fprintf(w, "%.1f\t", e.Value)
			}
		}
		fmt.Fprintln(w)
	}
	for _, v := range r.VCPU {
		row(fmt.Sprintf("vcpu %d", v.ID), v.LockStats.Events.Named())
	}
	row("all", all)
	w.Flush()
	fmt.Fprintln(out, "(pv_hash_hops: average probes per hash insertion; pv_latency_kick_ns, pv_latency_wake_ns: averages)")
}

// printDamage says how long the locks spent with a vCPU that did not run.
func printDamage(out io.Writer, r *vmm.VMResult) {
	l := r.LockStats
	if l.HeldPreemptedNs == nil || l.GrantedPreemptedNs == nil {
		fmt.Fprintln(out, "damage: not measured under the host policy (only our scheduler knows who runs)")
		return
	}
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	fmt.Fprintf(out, "damage: locks held by a vCPU that did not run %.1f ms, handed to a waiter that did not run %.1f ms",
		ms(*l.HeldPreemptedNs), ms(*l.GrantedPreemptedNs))
	if len(r.Locks) > 1 {
		var worst vmm.LockDamage
		for _, d := range r.Locks {
			if d.HeldPreemptedNs+d.GrantedPreemptedNs > worst.HeldPreemptedNs+worst.GrantedPreemptedNs {
				worst = d
			}
		}
		fmt.Fprintf(out, " (most: lock %d, %.1f + %.1f ms; every lock in --json)", worst.Lock,
			ms(worst.HeldPreemptedNs), ms(worst.GrantedPreemptedNs))
	}
	fmt.Fprintln(out)
}

// printLegend says what the terms of run's tables mean, and what to try
// next when the scenario suggests something.
func printLegend(out io.Writer, res *vmm.Result, next string) {
	fmt.Fprint(out, `
Terms: spin% is the share of its run time a vCPU spent waiting for a lock
(time off its pCPU excluded); p50/p99/max-ns are acquisition latencies.
LHP: a vCPU preempted while holding a lock (lock holder preemption); LWP: a
vCPU preempted while next in line for a FIFO lock (lock waiter preemption);
waiter preemptions: preempted while waiting anywhere in line. held / handed
off-CPU (damage): how long a lock was held by, or handed to, a vCPU that was
not running. stop: from a preemption decision until the vCPU is off its pCPU;
wake: from a KICK until the kicked vCPU runs. steal: runnable, waiting for a
pCPU. Under --sched host Linux schedules and none of these preemptions is
seen (n/a). ops/s over the whole run includes the start; the steady state
leaves out a warm-up of two rotations of every run queue. --quiet drops
this legend.
`)
	if next != "" {
		fmt.Fprintf(out, "\nNext: %s.\n", next)
	}
}
