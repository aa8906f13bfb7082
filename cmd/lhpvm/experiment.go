package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/backend"
	"github.com/lhpvm/lhpvm/internal/host"
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
}

// ExpRow is one cell of the experiment.
type ExpRow struct {
	Lock         string  `json:"lock"`
	Policy       string  `json:"policy"`
	VCPUs        int     `json:"vcpus"`
	VMs          int     `json:"vms"`
	OK           bool    `json:"ok"`
	Refused      bool    `json:"refused"` // the policy cannot schedule this machine (not a failure)
	Error        string  `json:"error"`
	OpsPerSec    float64 `json:"ops_per_s"`
	Relative     float64 `json:"relative"` // to the reference
	SpinFraction float64 `json:"spin_fraction"`
	LHPEvents    uint64  `json:"lhp_events"`
	LWPEvents    uint64  `json:"lwp_events"`
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
itself; a failed or refused cell says why.`,
		Example: `  lhpvm experiment --duration 1s
  lhpvm experiment --locks ticket,pvticket --policies rr,rr+pv --sizes 4,8
  lhpvm experiment --vm-vcpus 2 --policies rr,gang   # VMs of 2 vCPUs, so gang can run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runExperiment(cmd.OutOrStdout(), f) },
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

func runExperiment(out io.Writer, f expFlags) error {
	locks, policies := splitList(f.locks), splitList(f.policies)
	var sizes []int
	for _, s := range splitList(f.sizes) {
		var n int
		if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 1 || n > hypercall.MaxVCPUs {
			return fmt.Errorf("--sizes: %q is not a vCPU count", s)
		}
		sizes = append(sizes, n)
	}
	for _, l := range locks {
		if _, err := vmm.LookupLock(l); err != nil {
			return fmt.Errorf("--locks: %w", err)
		}
	}
	for _, p := range policies {
		if _, err := sched.New(p, sched.Options{}); err != nil {
			return fmt.Errorf("--policies: %w", err)
		}
	}
	switch {
	case len(locks) == 0 || len(policies) == 0 || len(sizes) == 0:
		return fmt.Errorf("--locks, --policies and --sizes may not be empty")
	case f.duration < minDuration || f.duration > maxDuration:
		return fmt.Errorf("--duration %v: must be between %v and %v", f.duration, minDuration, maxDuration)
	case f.vmVCPUs < 0 || f.vmVCPUs > hypercall.MaxVCPUs:
		return fmt.Errorf("--vm-vcpus %d: must be between 1 and %d (or 0: one VM)", f.vmVCPUs, hypercall.MaxVCPUs)
	case f.repeat < 1 || f.repeat > 100:
		return fmt.Errorf("--repeat %d: must be between 1 and 100", f.repeat)
	}
	allowed, err := host.AllowedCPUs()
	if err != nil {
		return err
	}
	pcpus := allowed[:min(2, len(allowed))]
	if f.pcpus != "" {
		if pcpus, err = checkCPUs("--pcpus", f.pcpus, allowed); err != nil {
			return err
		}
	}
	if err := backend.Check(f.backend); err != nil {
		return fmt.Errorf("--backend: %w", err)
	}
	h, err := openBackend(f.backend, nil)
	if err != nil {
		return err
	}
	defer h.Close()

	once := func(lock, policy string, n int) ExpRow {
		row := ExpRow{Lock: lock, Policy: policy, VCPUs: n}
		lk, _ := vmm.LookupLock(lock)
		wl, _ := vmm.LookupWorkload("lock")
		per := n
		if f.vmVCPUs > 0 {
			per = f.vmVCPUs
		}
		var cfgs []vmm.Config
		for left, i := n, 0; left > 0; i++ {
			k := min(per, left)
			cfg := vmm.Config{Name: fmt.Sprintf("vm%d", i), VCPUs: k, Workload: wl, LockKind: lk.ID, Locks: 1,
				CSCycles: f.cs, ThinkCycles: f.think, SpinThreshold: vmm.DefaultSpinThreshold}
			if strings.Contains(policy, "delay") {
				cfg.Flags |= hypercall.FlagDelayHint
			}
			if strings.Contains(policy, "pv") {
				cfg.Flags |= hypercall.FlagPreemptedAware
			}
			cfgs = append(cfgs, cfg)
			left -= k
		}
		row.VMs = len(cfgs)
		mc := vmm.MachineConfig{PCPUs: pcpus, Policy: policy, Duration: f.duration, Timeout: f.duration + time.Minute,
			Options: sched.Options{Slice: sched.DefaultSlice, Skew: sched.DefaultSkew, DelayMax: sched.DefaultDelayMax}}
		res := runMachine(h, mc, cfgs...)
		row.OK, row.Error = res.OK, res.Error
		var refused *sched.RefusedError
		row.Refused = errors.As(res.Err, &refused)
		var spin, acq float64
		for _, vm := range res.VMs {
			row.OpsPerSec += vm.OpsPerSec
			if vm.LockStats != nil {
				spin += vm.LockStats.SpinFraction * float64(vm.VCPUs)
				acq += float64(vm.VCPUs)
			}
		}
		if acq > 0 {
			row.SpinFraction = spin / acq
		}
		row.LHPEvents, row.LWPEvents = res.Sched.LHPEvents, res.Sched.LWPEvents
		return row
	}

	// cell runs a configuration --repeat times and keeps the median run (by
	// throughput); a failed run makes the cell fail.
	cell := func(lock, policy string, n int) ExpRow {
		var runs []ExpRow
		for i := 0; i < f.repeat; i++ {
			r := once(lock, policy, n)
			if !r.OK {
				return r
			}
			runs = append(runs, r)
		}
		sort.Slice(runs, func(i, j int) bool { return runs[i].OpsPerSec < runs[j].OpsPerSec })
		return runs[len(runs)/2]
	}

	// The reference is measured before and after the matrix and the median
	// of all those runs is used: our CPUs are themselves vCPUs of an outer
	// host, and one noisy window must not skew every ratio of the table.
	refRuns := func() []ExpRow {
		var rs []ExpRow
		for i := 0; i < f.repeat; i++ {
			rs = append(rs, once("ticket", "rr", 2))
		}
		return rs
	}
	before := refRuns()
	for _, r := range before {
		if !r.OK {
			return runFailed{fmt.Errorf("the reference run (ticket, 2 vCPUs, rr) failed, so no cell can be compared: %s", r.Error)}
		}
	}
	var rows []ExpRow
	for _, n := range sizes {
		for _, lock := range locks {
			for _, pol := range policies {
				rows = append(rows, cell(lock, pol, n))
			}
		}
	}
	all := append(before, refRuns()...)
	for _, r := range all {
		if !r.OK {
			return runFailed{fmt.Errorf("the reference run (ticket, 2 vCPUs, rr) failed after the matrix: %s", r.Error)}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].OpsPerSec < all[j].OpsPerSec })
	ref := all[len(all)/2]
	ref.Relative = 1
	for i := range rows {
		rows[i].Relative = rows[i].OpsPerSec / ref.OpsPerSec
	}
	rows = append([]ExpRow{ref}, rows...)
	refMin, refMax := all[0].OpsPerSec, all[len(all)-1].OpsPerSec
	var failed []string
	for _, r := range rows {
		if !r.OK && !r.Refused {
			failed = append(failed, fmt.Sprintf("%d vCPUs, %s, %s: %s", r.VCPUs, r.Lock, r.Policy, r.Error))
		}
	}
	var fail error
	if len(failed) > 0 {
		fail = runFailed{fmt.Errorf("%d of %d cells failed: %s", len(failed), len(rows)-1, strings.Join(failed, "; "))}
	}
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
		return fail
	}
	fmt.Fprintf(out, "Reference: ticket lock, 2 vCPUs on %d pCPUs, rr: %.3g acquisitions/s (median of %d runs before and after the matrix, range %.3g-%.3g). Each cell: the median of %d runs of %v; cs %d cycles, think %d cycles.\n\n",
		len(pcpus), ref.OpsPerSec, len(all), refMin, refMax, f.repeat, f.duration, f.cs, f.think)
	fmt.Fprintln(out, "| vCPUs | lock | policy | acq/s | vs ref | spin % | LHP | LWP | check |")
	fmt.Fprintln(out, "|---:|---|---|---:|---:|---:|---:|---:|---|")
	for _, r := range rows {
		check := "ok"
		if !r.OK {
			check = "FAILED: " + r.Error
			if r.Refused {
				check = "refused: " + r.Error
			}
			if len(check) > 90 {
				check = check[:90] + "…"
			}
		}
		fmt.Fprintf(out, "| %d | %s | %s | %.3g | %.2f | %.1f | %d | %d | %s |\n", r.VCPUs, r.Lock, r.Policy,
			r.OpsPerSec, r.Relative, 100*r.SpinFraction, r.LHPEvents, r.LWPEvents, check)
	}
	if len(failed) > 0 {
		fmt.Fprintf(out, "\nFailed cells (%d):\n", len(failed))
		for _, c := range failed {
			fmt.Fprintf(out, "- %s\n", c)
		}
	}
	return fail
}
