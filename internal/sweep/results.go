package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/internal/stats"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
)

// An experiment's results: what `experiment --out` writes and `merge` reads
// back and writes again, so a merged sweep has the same files as one run.

// Matrix is what an experiment measures: every (size, lock, policy) cell,
// with the run parameters. Shards of one sweep have equal matrices.
type Matrix struct {
	Locks    []string `json:"locks"`
	Policies []string `json:"policies"`
	Sizes    []int    `json:"sizes"`
	VMVCPUs  int      `json:"vm_vcpus"`
	Duration string   `json:"duration"`
	Repeat   int      `json:"repeat"`
	CSCycles uint64   `json:"cs_cycles"`
	Think    uint64   `json:"think_cycles"`
	Backend  string   `json:"backend"` // as asked for (auto, kvm, ptrace)
	// Ablation names the ablation the matrix is (experiment --ablation),
	// Variants its variants of the lock; both empty for a plain matrix.
	Ablation string   `json:"ablation,omitempty"`
	Variants []string `json:"variants,omitempty"`
	// BoostKicked: pv policies boost the kicked vCPU in every cell.
	BoostKicked bool `json:"boost_kicked,omitempty"`
	// Seed is the experiment's: each run's seed (its start) is derived
	// from it and the run's place in the plan.
	Seed uint64 `json:"seed"`
	// Precision and Budget: cells repeated past Repeat rounds until their
	// interval against the reference is this tight, within this time.
	Precision float64 `json:"precision,omitempty"`
	Budget    string  `json:"budget,omitempty"`
	// Pairs are the comparisons the matrix makes (a preset's claims).
	Pairs []Pair `json:"pairs,omitempty"`
}

// cells lists the matrix's cells in their canonical order: by size, then
// lock, then variant, then policy. Shards partition this list. A variant
// that only differs under a pv policy has no cell under the others.
func (m Matrix) Cells() []CellKey {
	var ks []CellKey
	variants := m.Variants
	if len(variants) == 0 {
		variants = []string{""}
	}
	for _, n := range m.Sizes {
		for _, l := range m.Locks {
			for _, v := range variants {
				for _, p := range m.Policies {
					if vr, ok := LookupVariant(m.Ablation, v); ok && vr.NeedsPV && !sched.HasModifier(p, "pv") {
						continue
					}
					ks = append(ks, CellKey{VCPUs: n, Lock: l, Variant: v, Policy: p})
				}
			}
		}
	}
	return ks
}

// equal: the same matrix, whatever seed each shard drew (its runs record
// theirs).
func (m Matrix) equal(o Matrix) bool {
	m.Seed, o.Seed = 0, 0
	a, _ := json.Marshal(m)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

// CellKey names a cell.
type CellKey struct {
	VCPUs   int    `json:"vcpus"`
	Lock    string `json:"lock"`
	Variant string `json:"variant,omitempty"` // of an ablation
	Policy  string `json:"policy"`
}

func (k CellKey) String() string {
	if k.Variant != "" {
		return fmt.Sprintf("%d vCPUs, %s %s, %s", k.VCPUs, k.Lock, k.Variant, k.Policy)
	}
	return fmt.Sprintf("%d vCPUs, %s, %s", k.VCPUs, k.Lock, k.Policy)
}

// Shard is which part of the matrix a results file holds.
type Shard struct {
	I int `json:"i"` // 1-based
	N int `json:"n"`
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.I, s.N) }

// ParseShard reads "i/n".
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || n > 10000 || i < 1 || i > n {
		return Shard{}, fmt.Errorf("%q: want I/N with 1 <= I <= N, e.g. 1/4", s)
	}
	return Shard{I: i, N: n}, nil
}

// ShardAuto is --shard's value that reads the shard from the job that
// runs the experiment (ShardFromEnv).
const ShardAuto = "auto"

// ShardFromEnv is the shard of a task of a Slurm job array
// (SLURM_ARRAY_TASK_ID among SLURM_ARRAY_TASK_MIN..MAX, step 1, so that
// --array=0-3 and --array=1-4 are both shards 1..4 of 4) or of a
// Kubernetes Indexed Job (JOB_COMPLETION_INDEX, 0-based, of
// JOB_COMPLETIONS, which the Job's manifest passes from its
// spec.completions). getenv is os.Getenv.
func ShardFromEnv(getenv func(string) string) (Shard, error) {
	num := func(name string) (int, error) {
		v := getenv(name)
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q is not a number", name, v)
		}
		return n, nil
	}
	var s Shard
	switch {
	case getenv("SLURM_ARRAY_TASK_ID") != "":
		var id, lo, hi, count int
		var err error
		for _, f := range []struct {
			p    *int
			name string
		}{{&id, "SLURM_ARRAY_TASK_ID"}, {&lo, "SLURM_ARRAY_TASK_MIN"}, {&hi, "SLURM_ARRAY_TASK_MAX"}, {&count, "SLURM_ARRAY_TASK_COUNT"}} {
			if *f.p, err = num(f.name); err != nil {
				return Shard{}, err
			}
		}
		if step := getenv("SLURM_ARRAY_TASK_STEP"); (step != "" && step != "1") || hi-lo+1 != count {
			return Shard{}, fmt.Errorf("the job array is %d-%d with %d tasks (step %s): give it one task per shard, a range with step 1 (--array=1-%d)", lo, hi, count, step, count)
		}
		s = Shard{I: id - lo + 1, N: count}
	case getenv("JOB_COMPLETION_INDEX") != "":
		idx, err := num("JOB_COMPLETION_INDEX")
		if err != nil {
			return Shard{}, err
		}
		n, err := num("JOB_COMPLETIONS")
		if err != nil {
			return Shard{}, fmt.Errorf("%w: an Indexed Job passes its spec.completions as JOB_COMPLETIONS (deploy/k8s)", err)
		}
		s = Shard{I: idx + 1, N: n}
	default:
		return Shard{}, errors.New("neither a Slurm job array (SLURM_ARRAY_TASK_ID) nor a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) says which shard this is")
	}
	if s.N < 1 || s.N > 10000 || s.I < 1 || s.I > s.N {
		return Shard{}, fmt.Errorf("shard %v from the environment is not I/N with 1 <= I <= N <= 10000", s)
	}
	return s, nil
}

// Owns reports whether cell number idx (in canonical order) is the shard's.
func (s Shard) Owns(idx int) bool { return idx%s.N == s.I-1 }

// RunResult is one run of a cell or of the reference.
type RunResult struct {
	OK      bool   `json:"ok"`
	Refused bool   `json:"refused"` // the policy cannot schedule this machine (not a failure)
	Error   string `json:"error"`
	// OpsPerSec is the steady-state throughput, after the warm-up
	// (vmm.Warmup), when every VM ran for the duration; else the whole
	// run's (Throughput says which). WholeOpsPerSec is the whole run's,
	// start transient included.
	OpsPerSec      float64 `json:"acq_per_s"`
	Throughput     string  `json:"throughput"` // "steady" or "whole run"
	WholeOpsPerSec float64 `json:"whole_run_acq_per_s"`
	ElapsedS       float64 `json:"elapsed_s"`
	// ScheduleDrift: how the schedule that ran was not the one asked for
	// (vmm.ScheduleDriftRule), or empty.
	ScheduleDrift string `json:"schedule_drift,omitempty"`
	// Seed drew the run's start, Start (run --seed replays it).
	Seed  uint64       `json:"seed"`
	Start *sched.Start `json:"start,omitempty"`
	Measured
}

// Measured is what a run measured beside its throughput (a cell: the
// median of each over its runs, summarizeMeasures).
type Measured struct {
	SpinFraction float64 `json:"spin_fraction"`
	// Lock holder and lock waiter preemptions: null under the host
	// policy, whose preemptions lhpvm does not see.
	LHPEvents *uint64 `json:"lhp_events"`
	LWPEvents *uint64 `json:"lwp_events"`
	// AcquireP99Ns: the 99th percentile of an acquisition, over the VMs.
	AcquireP99Ns float64 `json:"acquire_p99_ns"`
	// The damage times, summed over the VMs; null under the host policy.
	HeldPreemptedNs    *int64         `json:"held_preempted_ns"`
	GrantedPreemptedNs *int64         `json:"granted_preempted_ns"`
	LockEvents         vmm.LockEvents `json:"lock_events"`
	// Fairness of the least fair VM: Jain's index of its vCPUs'
	// acquisitions, and their max/min (0: a vCPU took none).
	FairnessJain  float64 `json:"fairness_jain"`
	AcqMaxOverMin float64 `json:"acq_max_over_min"`
	// VMAcqPerS is each VM's own throughput, in the cell's VM order.
	VMAcqPerS []float64 `json:"vm_acq_per_s"`
	// Acquisitions and SlowPaths (timeouts of a pv lock's spinning),
	// summed over the VMs.
	Acquisitions uint64 `json:"acquisitions"`
	SlowPaths    uint64 `json:"slow_paths"`
}

// Cell is a cell with all its runs and their summary: the median run's
// numbers, the throughput range, and against the reference of its shard.
type Cell struct {
	CellKey
	VMs          int         `json:"vms"`
	Shard        int         `json:"shard"` // which shard measured it (1 unsharded)
	Runs         []RunResult `json:"runs"`
	OK           bool        `json:"ok"`
	Refused      bool        `json:"refused"`
	Error        string      `json:"error"`
	OpsPerSec    float64     `json:"acq_per_s"` // the median of its runs
	MinOpsPerSec float64     `json:"min_acq_per_s"`
	MaxOpsPerSec float64     `json:"max_acq_per_s"`
	Relative     float64     `json:"vs_ref"` // to its shard's reference
	// N is how many runs the cell's summary rests on; VsRefCI95 is the 95 %
	// interval of Relative (stats.RatioOfMedians over the cell's runs and
	// the reference's), null when it cannot be computed.
	N         int         `json:"n"`
	VsRefCI95 *[2]float64 `json:"vs_ref_ci95"`
	// OutOfBudget: under --precision, the budget ran out before the
	// cell's interval was as tight as asked.
	OutOfBudget bool `json:"out_of_budget,omitempty"`
	Measured         // each the median of its runs'
	// CI95 is the 95 % interval of each median, by measure name (and
	// acq_per_s): null when unbounded, absent when not measured.
	CI95 map[string]*[2]float64 `json:"ci95"`
	// Noisy: its runs spread so that its median is known only to more
	// than ±NoisySpread, or the reference of its shard drifted more than
	// NoisyDrift between before and after the matrix; NoisyWhy says which.
	Noisy    bool     `json:"noisy"`
	NoisyWhy []string `json:"noisy_why,omitempty"`
	// Drifted counts its runs whose schedule drifted (RunResult.ScheduleDrift).
	Drifted int `json:"drifted_runs"`
}

// Reference is one shard's reference: ticket lock, 2 vCPUs on the pCPUs
// under rr, measured before and after its cells.
type Reference struct {
	Shard int `json:"shard"`
	// Host is the machine that measured the shard (its hostname): cells
	// are compared only within one.
	Host   string      `json:"host,omitempty"`
	Before []RunResult `json:"before"`
	// During: one run per extra round of a --precision experiment.
	During    []RunResult `json:"during,omitempty"`
	After     []RunResult `json:"after"`
	OpsPerSec float64     `json:"acq_per_s"` // the median of all of them
	Min       float64     `json:"min_acq_per_s"`
	Max       float64     `json:"max_acq_per_s"`
	Drift     float64     `json:"drift"` // |median after - median before| / median before
}

// NoisyDrift is how far the reference may drift across the matrix before
// the cells it normalises are flagged noisy.
const NoisyDrift = 0.10

// NoisySpread is the relative half-width of a cell's median throughput
// interval (its own runs' spread) above which the cell is flagged noisy,
// judged from MinSpreadRuns runs on: ±25 %, the precision the presets ask
// for (--precision), so a cell flagged noisy is one whose own runs could
// not give a preset's precision.
const (
	NoisySpread   = 0.25
	MinSpreadRuns = 3
)

// Meta says what measured the results, where and when.
type Meta struct {
	Version string `json:"lhpvm"`
	Commit  string `json:"commit"`
	Backend string `json:"backend"` // the one that ran
	// BackendModule is kvm's vendor module (kvm_amd, kvm_intel, kvm_pvm).
	BackendModule string    `json:"backend_module,omitempty"`
	Kernel        string    `json:"kernel"`
	Host          string    `json:"host,omitempty"` // the hostname
	CPUModel      string    `json:"cpu_model"`
	PCPUs         []int     `json:"pcpus"`
	Args          []string  `json:"args"`
	Start         time.Time `json:"start"`
	End           time.Time `json:"end"`
	// How the reference and the cells were summarised from their runs,
	// and the reference drift above which cells are flagged noisy.
	Summary    map[string]string `json:"summary"`
	NoisyDrift float64           `json:"noisy_drift_limit"`
	// PauseNs is what one PAUSE costs on this host's CPU (host.PauseNs),
	// measured before the runs: spin thresholds count spins, so the same
	// threshold is a different time on another CPU.
	PauseNs float64 `json:"pause_ns"`
}

// BackendName is the backend that ran, with kvm's vendor module:
// "kvm (kvm_pvm)", "ptrace".
func (m Meta) BackendName() string {
	if m.BackendModule == "" {
		return m.Backend
	}
	return m.Backend + " (" + m.BackendModule + ")"
}

// Results is results.json.
type Results struct {
	Meta       Meta        `json:"meta"`
	Matrix     Matrix      `json:"matrix"`
	Shards     []Shard     `json:"shards"` // what these results hold: one shard, or all of a merge
	References []Reference `json:"references"`
	Cells      []Cell      `json:"cells"`
	// Comparisons are the matrix's pairs (a preset's claims), each with its
	// interval and computed verdict.
	Comparisons []Comparison `json:"comparisons,omitempty"`
	// Complete: every planned run was made. False for an experiment that
	// was stopped (experiment --resume DIR finishes it) or is under way.
	Complete bool `json:"complete"`
}

// Comparison is one claim's ratio at one size: A ÷ B, the 95 % interval,
// and the verdict on the claim that A beats B (stats.Judge).
type Comparison struct {
	A         CellKey       `json:"a"`
	B         CellKey       `json:"b"`
	Ratio     float64       `json:"ratio"`
	RatioCI95 *[2]float64   `json:"ratio_ci95"` // null: unbounded
	Verdict   stats.Verdict `json:"verdict"`
	Runs      [2]int        `json:"runs"`
}

// Summarize fills a cell's summary from its runs: the median run by
// throughput; a failed run fails the cell.
func (c *Cell) Summarize(ref *Reference) {
	c.OK, c.Refused, c.Error = true, false, ""
	var ok []RunResult
	for _, r := range c.Runs {
		if !r.OK {
			c.OK, c.Refused, c.Error = false, r.Refused, r.Error
			return
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		c.OK, c.Error = false, "no runs"
		return
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].OpsPerSec < ok[j].OpsPerSec })
	med, lo, hi, _ := stats.MedianInterval(opsPerSec(ok))
	c.OpsPerSec = med
	ms := make([]Measured, 0, len(ok))
	for _, r := range ok {
		ms = append(ms, r.Measured)
	}
	c.Measured, c.CI95 = summarizeMeasures(ms)
	c.CI95["acq_per_s"] = &[2]float64{lo, hi}
	c.MinOpsPerSec, c.MaxOpsPerSec = ok[0].OpsPerSec, ok[len(ok)-1].OpsPerSec
	c.N = len(ok)
	c.Drifted = 0
	for _, r := range ok {
		if r.ScheduleDrift != "" {
			c.Drifted++
		}
	}
	c.Noisy, c.NoisyWhy = false, nil
	if hw := (hi - lo) / 2 / med; c.N >= MinSpreadRuns && med > 0 && hw > NoisySpread {
		c.NoisyWhy = append(c.NoisyWhy, fmt.Sprintf("its median is known to ±%.0f %% only", 100*hw))
	}
	if ref != nil && ref.OpsPerSec > 0 {
		c.Relative = c.OpsPerSec / ref.OpsPerSec
		if ref.Drift > NoisyDrift {
			c.NoisyWhy = append(c.NoisyWhy, fmt.Sprintf("its reference drifted %.0f %%", 100*ref.Drift))
		}
		if iv, good := stats.RatioOfMedians(opsPerSec(ok), opsPerSec(ref.all())); good && iv.Bounded() {
			c.VsRefCI95 = &[2]float64{iv.Lo, iv.Hi}
		}
	}
	c.Noisy = len(c.NoisyWhy) > 0
}

// all is every run of the reference, before and after.
func (r *Reference) all() []RunResult {
	return append(append([]RunResult(nil), r.Before...), r.After...)
}

// SummaryRule says in the results how the reference and each cell were
// summarised from their runs.
var SummaryRule = map[string]string{
	"reference":         "acq_per_s: the median of its runs before and after the matrix (the mean of the two middle ones for an even count); drift: |median after - median before| / median before",
	"cell_acq_per_s":    "the median of the cell's runs (the mean of the two middle ones for an even count)",
	"run_acq_per_s":     "the steady state: acquisitions after the warm-up, " + vmm.WarmupRule + ", until the duration ran out, per second (throughput: steady); whole_run_acq_per_s includes the start transient",
	"intervals":         "vs_ref_ci95 and every ratio of the reports: " + stats.Method + "; runs are independent, each from its own seed (sched.Start), and a sweep runs its cells interleaved, round by round",
	"cell_measures":     "every measure of a cell (spin, LHP, LWP, p99, damage, fairness, lock events, each VM's throughput) is the median of its runs' (counts rounded), with its 95 % interval in ci95: a percentile bootstrap of the median, 2000 resamples; LHP, LWP and damage are null under host",
	"noisy":             fmt.Sprintf("a cell is noisy when, from %d runs on, the interval of its median acq/s is wider than ±%.0f %%, or when its reference drifted more than %.0f %%; noisy_why says which", MinSpreadRuns, NoisySpread*100, NoisyDrift*100),
	"schedule_drift":    "a run's schedule drifted when " + vmm.ScheduleDriftRule + "; a cell counts its drifted runs",
	"noisy_drift_limit": strconv.FormatFloat(NoisyDrift, 'g', -1, 64),
}

func opsPerSec(rs []RunResult) []float64 {
	xs := make([]float64, 0, len(rs))
	for _, x := range rs {
		xs = append(xs, x.OpsPerSec)
	}
	return xs
}

// Summarize computes the reference's median, range and drift.
func (r *Reference) Summarize() {
	med := func(rs []RunResult) float64 { return stats.Median(opsPerSec(rs)) }
	all := r.all()
	r.OpsPerSec = med(all)
	r.Min, r.Max = 0, 0
	for i, x := range all {
		if i == 0 || x.OpsPerSec < r.Min {
			r.Min = x.OpsPerSec
		}
		r.Max = max(r.Max, x.OpsPerSec)
	}
	if b, a := med(r.Before), med(r.After); b > 0 && len(r.After) > 0 {
		r.Drift = abs(a-b) / b
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// Failed lists the cells that failed (refused ones are not failures).
func (res *Results) Failed() []string {
	var f []string
	for _, c := range res.Cells {
		if !c.OK && !c.Refused {
			f = append(f, fmt.Sprintf("%v: %s", c.CellKey, c.Error))
		}
	}
	return f
}

// Reference returns the reference of shard i.
func (res *Results) Reference(i int) *Reference {
	for k := range res.References {
		if res.References[k].Shard == i {
			return &res.References[k]
		}
	}
	return nil
}

// host is the machine that measured cell c (its shard's reference's).
func (res *Results) host(c *Cell) string {
	if r := res.Reference(c.Shard); r != nil {
		return r.Host
	}
	return ""
}

// HostFacts are the kernel and CPU model, for the metadata.
func HostFacts() (kernel, cpu string) {
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return kernel, cpu
}

// VsRefText is the cell against its reference as the tables print it: the
// ratio of medians and its 95 % interval, "0.78 [0.61–1.02]"; "-" for a
// cell that did not run well.
func (c *Cell) VsRefText() string {
	if !c.OK || c.Relative <= 0 {
		return "-"
	}
	if ci := c.VsRefCI95; ci != nil && c.N > 1 {
		return fmt.Sprintf("%s [%s–%s]", ratioNum(c.Relative), ratioNum(ci[0]), ratioNum(ci[1]))
	}
	return ratioNum(c.Relative)
}

// ratioNum prints a ratio with two decimals, or three significant digits
// where two decimals would round it to 0 (a steady state far below the
// reference's).
func ratioNum(x float64) string {
	if x == 0 || (x >= 0.1 && x < 1e4) {
		return fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%.3g", x)
}

// Text is the comparison as the tables print it: "0.78 [0.61–1.02]".
func (c Comparison) Text() string {
	if c.RatioCI95 == nil {
		return ratioNum(c.Ratio) + " [unbounded]"
	}
	return fmt.Sprintf("%s [%s–%s]", ratioNum(c.Ratio), ratioNum(c.RatioCI95[0]), ratioNum(c.RatioCI95[1]))
}

// CellName is a cell as a comparison names it: LOCK:POLICY (or
// LOCK-VARIANT:POLICY).
func CellName(k CellKey) string {
	name := k.Lock
	if k.Variant != "" {
		if name != "" {
			name += "-"
		}
		name += k.Variant
	}
	return name + ":" + k.Policy
}
