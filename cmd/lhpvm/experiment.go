package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/internal/backend"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/param"
	"github.com/lhpvm/lhpvm/internal/runconfig"
	"github.com/lhpvm/lhpvm/internal/sweep"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// expFlags are experiment's flags: what it measures (sweep.Options), and
// how its results are shown.
type expFlags struct {
	sweep.Options
	json   bool
	quiet  bool
	preset string
	doc    string
	given  []string // the flags given
	// precision is --precision as given (sweep.ParsePrecision reads it).
	precision string
	resume    string // --resume DIR
	compare   string // --compare A/B,... (sweep.ParsePairs reads it)
	force     bool
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
times per variant. --ablation pticket runs the preemptable ticket lock
with timeout units of 1 << 8 to 1 << 16 spins.

--preset NAME reproduces a published result about lock holder preemption
(` + "`" + `lhpvm experiment --preset list` + "`" + ` lists them): it runs the preset's parts,
each a matrix of its own with its reference, prints their tables and then
the claim's comparison beside the published figures. --out DIR writes each
part into DIR/PART; --doc FILE rewrites the preset's report between its
markers in FILE (docs/literature.md). Only --backend, --pcpus, --out,
--duration, --repeat, --quiet, --json and --doc go with --preset.`,
		Example: `  lhpvm experiment --duration 1s
  lhpvm experiment --locks ticket,pvticket --policies rr,rr+pv --sizes 4,8
  lhpvm experiment --vm-vcpus 2 --policies rr,gang   # VMs of 2 vCPUs, so gang can run
  lhpvm experiment --out results --sizes 2,4 --policies rr,pv --locks ticket,tas
  lhpvm experiment --out shard1 --shard 1/4 ... ; lhpvm merge --out all shard1 shard2 shard3 shard4
  lhpvm experiment --ablation pvqspin --out ablation
  lhpvm experiment --ablation pvqspin --variants full,no-steal --policies pv --sizes 4
  lhpvm experiment --preset vee13-pticket --out results/vee13
  lhpvm experiment --preset coscheduling --doc docs/literature.md`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.Changed = cmd.Flags().Changed
			cmd.Flags().Visit(func(fl *pflag.Flag) { f.given = append(f.given, fl.Name) })
			if f.Changed("compare") {
				pairs, err := sweep.ParsePairs(f.compare)
				if err != nil {
					return errkind.Usage(err)
				}
				f.Pairs = pairs
			}
			if f.Changed("precision") {
				x, err := sweep.ParsePrecision(f.precision)
				if err != nil {
					return errkind.Usage(err)
				}
				f.Precision = x
			}
			if f.preset != "" || f.Changed("doc") { // --resume with --preset is the preset's
				return runPreset(cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
			}
			return runExperiment(cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Locks, "locks", strings.Join(vmm.LockNames(false), ","), "locks to run")
	fl.StringVar(&f.Policies, "policies", strings.Join(sweep.DefaultPolicies(), ","), "policies to run (specs as for run --sched)")
	fl.StringVar(&f.Sizes, "sizes", "4,8", "total vCPU counts to overcommit onto the pCPUs")
	fl.IntVar(&f.VMVCPUs, "vm-vcpus", 0, "split the vCPUs into VMs of this many vCPUs (default: one VM)")
	fl.DurationVar(&f.Duration, "duration", time.Second, "length of each run")
	fl.StringVar(&f.PCPUs, "pcpus", "", "host CPUs (default: the first two this process may use)")
	param.CSCycles.Uint64(fl, &f.CSCycles)
	param.ThinkCycles.Uint64(fl, &f.ThinkCycles)
	fl.IntVar(&f.Repeat, "repeat", 3, "runs per cell (rounds, the cells interleaved); with --precision, the least")
	fl.StringVar(&f.compare, "compare", "", "ratios to judge, each with its 95 % interval and a verdict: A/B,... with A and B LOCK:POLICY cells (e.g. pticket:rr/ticket:rr); --precision aims at these")
	fl.StringVar(&f.precision, "precision", "", "repeat each cell past --repeat until the 95 % interval of its ratio to the reference is this tight, e.g. 25% (needs --budget)")
	fl.Uint64Var(&f.Seed, "seed", 0, "the experiment's seed: every run's start is derived from it and the run's place in the plan (default: a fresh one, recorded in results.json)")
	fl.DurationVar(&f.Budget, "budget", 0, "--precision: the most the whole experiment may take, e.g. 10m; cells still wide then are marked")
	fl.BoolVar(&f.json, "json", false, "print the rows as JSON")
	fl.StringVar(&f.Backend, "backend", backend.Auto, "execution backend: "+backendHelp())
	fl.StringVar(&f.Out, "out", "", "write results.json (after every run), journal.jsonl, runs.csv, cells.csv and SVG plots into this directory (new or empty)")
	fl.BoolVar(&f.force, "force", false, "--out: replace the files of an earlier experiment there")
	fl.StringVar(&f.resume, "resume", "", "continue the unfinished experiment in this --out directory: its plan, seed and backend; its finished runs kept")
	fl.StringVar(&f.Shard, "shard", "", "measure only shard I/N of the cells (deterministic; merge the shards' --out with lhpvm merge); auto: the task of a Slurm job array or a Kubernetes Indexed Job")
	fl.StringVar(&f.Trace, "trace", "", "write a Perfetto trace of every run into this directory")
	fl.BoolVar(&f.quiet, "quiet", false, "no progress (a bar on a terminal, a line per cell otherwise)")
	fl.StringVar(&f.Ablation, "ablation", "", "run an ablation instead of the lock matrix: "+strings.Join(sweep.AblationNames(), ", ")+" (policies default to rr,pv)")
	fl.StringVar(&f.Variants, "variants", "", "--ablation: the variants to run (default: all of them)")
	fl.BoolVar(&f.BoostKicked, "boost-kicked", false, "under a policy with pv, a KICK hands the rest of the kicker's slice to the kicked vCPU")
	fl.StringVar(&f.preset, "preset", "", "reproduce a published result: "+strings.Join(sweep.PresetNames(), ", ")+" (list: describe them)")
	fl.StringVar(&f.doc, "doc", "", "--preset: rewrite the preset's report between its markers in this markdown file")
	return cmd
}

func runExperiment(out, errOut io.Writer, f expFlags) error {
	var p *sweep.Plan
	var err error
	if f.resume != "" {
		for _, name := range f.given {
			if !slices.Contains([]string{"resume", "quiet", "json"}, name) {
				return errkind.Usagef("--%s: --resume continues the experiment as it was planned (give only --quiet or --json)", name)
			}
		}
		p, err = sweep.Resume(f.resume)
	} else {
		p, err = sweep.Check(f.Options)
		if err == nil && p.Out != "" {
			err = sweep.PrepareOut(p.Out, f.force)
		}
	}
	if err != nil {
		return err
	}
	if err := p.MakeDirs(); err != nil {
		return err
	}
	backendName := f.Backend
	if p.Resumed != nil {
		backendName = p.Resumed.Backend
	}
	h, meta, err := openSweep(backendName)
	if err != nil {
		if p.Resumed != nil {
			return fmt.Errorf("--resume: the experiment ran on %s, which this host cannot open: %w", p.Resumed.Backend, err)
		}
		return err
	}
	defer h.Close()
	if p.Out != "" {
		j, err := sweep.OpenJournal(p.Out)
		if err != nil {
			return err
		}
		defer j.Close()
		p.Journal = j.Record
	}
	st := newStopper(errOut, h)
	defer st.release()
	p.Stop = st.stop
	lk, err := lockPCPUs(errOut, p.PCPUs, st.stop)
	if err != nil {
		return err
	}
	defer lk.Release()
	prog := newProgress(errOut, p.Runs(), f.quiet)
	res, err := p.Run(st.run, prog, meta)
	prog.finish()
	if errors.Is(err, sweep.ErrInterrupted) {
		rerr := report(out, res, p.Out, f.json)
		how := "nothing was written (no --out)"
		if p.Out != "" {
			how = fmt.Sprintf("resume it with: lhpvm experiment --resume %s", p.Out)
		}
		fmt.Fprintf(errOut, "interrupted: the finished runs are summarised above; %s\n", how)
		if rerr != nil && !errors.As(rerr, new(*errkind.RunError)) {
			return rerr
		}
		return errkind.Interrupted(errors.New("interrupted"))
	}
	var ioe *errkind.IOError
	if errors.As(err, &ioe) && res != nil {
		// The files failed (a full or read-only disk): the table of what
		// finished still goes to stdout, and the error names the path.
		_ = report(out, res, "", f.json)
		return err
	}
	if err != nil {
		return err
	}
	err = report(out, res, p.Out, f.json)
	if !f.quiet && !f.json {
		fmt.Fprint(out, experimentLegend)
	}
	if p.Out != "" && !errors.As(err, &ioe) {
		fmt.Fprintf(errOut, "wrote %s: %s\n", p.Out, strings.Join(sweep.Written(p.Out), ", "))
	}
	return err
}

// report writes the results (--out), prints them, and fails the command
// when a cell failed.
func report(out io.Writer, res *sweep.Results, dir string, asJSON bool) error {
	// The files first, then the table, which goes to stdout whatever
	// happened to them; their error after it.
	var werr error
	if dir != "" {
		if err := res.Write(dir); err != nil {
			werr = fmt.Errorf("--out %s: %w", dir, err)
		}
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printResults(out, res)
	}
	if werr != nil {
		return werr
	}
	if f := res.Failed(); len(f) > 0 {
		return errkind.Run(fmt.Errorf("%d of %d cells failed: %s", len(f), len(res.Cells), strings.Join(f, "; ")))
	}
	return nil
}

// openSweep opens the backend an experiment or a preset runs on, and the
// metadata its results carry: this build, the backend and its module.
func openSweep(name string) (*backend.Choice, sweep.Meta, error) {
	h, err := runconfig.Open(name, nil)
	if err != nil {
		return nil, sweep.Meta{}, err
	}
	meta := sweep.Meta{Version: version(), Commit: commit, Backend: h.Name(), BackendModule: h.Module, Args: os.Args}
	if meta.Commit == "" {
		meta.Commit, _ = buildInfo()
	}
	return h, meta, nil
}

// stopper ends an experiment (or a preset) cleanly: the first Ctrl-C (or
// SIGTERM) abandons the run in flight and ends the experiment with what
// finished, written; the second exits at once (the journal and
// results.json are whole after every run).
type stopper struct {
	stop    chan struct{}
	ctx     context.Context
	cancel  context.CancelCauseFunc
	h       *backend.Choice
	release func()
}

func newStopper(errOut io.Writer, h *backend.Choice) *stopper {
	st := &stopper{stop: make(chan struct{}), h: h}
	st.ctx, st.cancel = context.WithCancelCause(context.Background())
	unlisten := onInterrupt(func(sig os.Signal) {
		fmt.Fprintf(errOut, "\n%v: stopping after writing what finished (again to quit at once)\n", sig)
		close(st.stop)
		st.cancel(errors.New("interrupted"))
	}, func(os.Signal) { os.Exit(130) })
	st.release = func() {
		unlisten()
		st.cancel(nil)
	}
	return st
}

// lockPCPUs takes the host CPUs this process measures on, so that no other
// lhpvm measures there at the same time (host.LockCPUs); it says on errOut
// whom it waits for. Closing stop while waiting is an interruption.
func lockPCPUs(errOut io.Writer, cpus []int, stop <-chan struct{}) (*host.CPULock, error) {
	l, err := host.LockCPUs(cpus, func(cpu int, holder string) {
		fmt.Fprintf(errOut, "waiting for host CPU %d: another lhpvm measures on it (%s)\n", cpu, holder)
	}, stop)
	switch {
	case errors.Is(err, host.ErrCPULockStopped):
		return nil, errkind.Interrupted(err)
	case err != nil:
		return nil, errkind.IO(host.CPULockDir(), err)
	}
	return l, nil
}

// run is a sweep.RunFunc on the stopper's backend, ended by a stop.
func (st *stopper) run(mc vmm.MachineConfig, cfgs ...vmm.Config) *vmm.Result {
	return runMachineCtx(st.ctx, st.h, mc, cfgs...)
}

// experimentLegend says what an experiment's table means (off with --quiet).
const experimentLegend = `
Terms: acq/s is a cell's median steady-state throughput (after a warm-up of
two rotations of every run queue), with the range of its runs; vs ref is
that over the reference's (ticket, 2 vCPUs on the pCPUs, rr), with its 95 %
bootstrap interval, the figure that decides; n is the runs behind it (n*:
--precision ran out of budget). spin % is the share of run time spent
waiting for a lock; LHP and LWP count vCPUs preempted holding a lock or next
in line for one (n/a under host: Linux schedules, and they are not seen).
noisy: the cell's own runs leave its median uncertain past ±25 %, or the
reference drifted more than 10 % across the matrix; schedule drifted: the
host was too busy to run the slices asked for.
`
