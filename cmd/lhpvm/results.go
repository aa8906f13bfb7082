package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
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
}

// cells lists the matrix's cells in their canonical order: by size, then
// lock, then variant, then policy. Shards partition this list. A variant
// that only differs under a pv policy has no cell under the others.
func (m Matrix) cells() []CellKey {
	var ks []CellKey
	variants := m.Variants
	if len(variants) == 0 {
		variants = []string{""}
	}
	for _, n := range m.Sizes {
		for _, l := range m.Locks {
			for _, v := range variants {
				for _, p := range m.Policies {
					if vr, ok := lookupVariant(m.Ablation, v); ok && vr.NeedsPV && !hasPV(p) {
						continue
					}
					ks = append(ks, CellKey{VCPUs: n, Lock: l, Variant: v, Policy: p})
				}
			}
		}
	}
	return ks
}

func (m Matrix) equal(o Matrix) bool {
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

// parseShard reads "i/n".
func parseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || n > 10000 || i < 1 || i > n {
		return Shard{}, fmt.Errorf("%q: want I/N with 1 <= I <= N, e.g. 1/4", s)
	}
	return Shard{I: i, N: n}, nil
}

// owns reports whether cell number idx (in canonical order) is the shard's.
func (s Shard) owns(idx int) bool { return idx%s.N == s.I-1 }

// RunResult is one run of a cell or of the reference.
type RunResult struct {
	OK        bool    `json:"ok"`
	Refused   bool    `json:"refused"` // the policy cannot schedule this machine (not a failure)
	Error     string  `json:"error"`
	OpsPerSec float64 `json:"acq_per_s"`
	ElapsedS  float64 `json:"elapsed_s"`
	Measured
}

// Measured is what a run measured beside its throughput (a cell: its
// median run's).
type Measured struct {
	SpinFraction float64 `json:"spin_fraction"`
	LHPEvents    uint64  `json:"lhp_events"`
	LWPEvents    uint64  `json:"lwp_events"`
	// AcquireP99Ns: the 99th percentile of an acquisition, over the VMs.
	AcquireP99Ns float64 `json:"acquire_p99_ns"`
	// The damage times, summed over the VMs; null under the host policy.
	HeldPreemptedNs    *int64         `json:"held_preempted_ns"`
	GrantedPreemptedNs *int64         `json:"granted_preempted_ns"`
	LockEvents         vmm.LockEvents `json:"lock_events"`
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
	Measured                 // the median run's
	// Noisy: the reference of its shard drifted more than noisyDrift
	// between before and after the matrix.
	Noisy bool `json:"noisy"`
}

// Reference is one shard's reference: ticket lock, 2 vCPUs on the pCPUs
// under rr, measured before and after its cells.
type Reference struct {
	Shard     int         `json:"shard"`
	Before    []RunResult `json:"before"`
	After     []RunResult `json:"after"`
	OpsPerSec float64     `json:"acq_per_s"` // the median of all of them
	Min       float64     `json:"min_acq_per_s"`
	Max       float64     `json:"max_acq_per_s"`
	Drift     float64     `json:"drift"` // |median after - median before| / median before
}

// noisyDrift is how far the reference may drift across the matrix before
// the cells it normalises are flagged noisy.
const noisyDrift = 0.10

// Meta says what measured the results, where and when.
type Meta struct {
	Version  string    `json:"lhpvm"`
	Commit   string    `json:"commit"`
	Backend  string    `json:"backend"` // the one that ran
	Kernel   string    `json:"kernel"`
	CPUModel string    `json:"cpu_model"`
	PCPUs    []int     `json:"pcpus"`
	Args     []string  `json:"args"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	// How the reference and the cells were summarised from their runs,
	// and the reference drift above which cells are flagged noisy.
	Summary    map[string]string `json:"summary"`
	NoisyDrift float64           `json:"noisy_drift_limit"`
}

// Results is results.json.
type Results struct {
	Meta       Meta        `json:"meta"`
	Matrix     Matrix      `json:"matrix"`
	Shards     []Shard     `json:"shards"` // what these results hold: one shard, or all of a merge
	References []Reference `json:"references"`
	Cells      []Cell      `json:"cells"`
}

// summarize fills a cell's summary from its runs: the median run by
// throughput; a failed run fails the cell.
func (c *Cell) summarize(ref *Reference) {
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
	c.OpsPerSec = median(opsPerSec(ok))
	// The other measures are one real run's, the one nearest the
	// median: for an even count the lower of the two middle runs.
	c.Measured = ok[(len(ok)-1)/2].Measured
	c.MinOpsPerSec, c.MaxOpsPerSec = ok[0].OpsPerSec, ok[len(ok)-1].OpsPerSec
	if ref != nil && ref.OpsPerSec > 0 {
		c.Relative = c.OpsPerSec / ref.OpsPerSec
		c.Noisy = ref.Drift > noisyDrift
	}
}

// SummaryRule says in the results how the reference and each cell were
// summarised from their runs.
var SummaryRule = map[string]string{
	"reference":         "acq_per_s: the median of its runs before and after the matrix (the mean of the two middle ones for an even count); drift: |median after - median before| / median before",
	"cell_acq_per_s":    "the median of the cell's runs (the mean of the two middle ones for an even count)",
	"cell_measures":     "spin, LHP, LWP, p99, damage and lock events: those of the run nearest the median throughput (for an even count, the lower of the two middle runs)",
	"noisy":             fmt.Sprintf("a cell is noisy when its reference drifted more than %.0f %%", noisyDrift*100),
	"noisy_drift_limit": strconv.FormatFloat(noisyDrift, 'g', -1, 64),
}

// median is the median of xs: the middle value, or the mean of the two
// middle values for an even count (0 for none). gonum's stat.Quantile
// returns the lower middle value for an even count, with either of its
// cumulant kinds.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func opsPerSec(rs []RunResult) []float64 {
	xs := make([]float64, 0, len(rs))
	for _, x := range rs {
		xs = append(xs, x.OpsPerSec)
	}
	return xs
}

// summarize computes the reference's median, range and drift.
func (r *Reference) summarize() {
	med := func(rs []RunResult) float64 { return median(opsPerSec(rs)) }
	all := append(append([]RunResult(nil), r.Before...), r.After...)
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

// failed lists the cells that failed (refused ones are not failures).
func (res *Results) failed() []string {
	var f []string
	for _, c := range res.Cells {
		if !c.OK && !c.Refused {
			f = append(f, fmt.Sprintf("%v: %s", c.CellKey, c.Error))
		}
	}
	return f
}

// reference returns the reference of shard i.
func (res *Results) reference(i int) *Reference {
	for k := range res.References {
		if res.References[k].Shard == i {
			return &res.References[k]
		}
	}
	return nil
}

// write puts results.json, runs.csv, cells.csv and the plots into dir.
func (res *Results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	for name, write := range map[string]func(io.Writer) error{"runs.csv": res.writeRunsCSV, "cells.csv": res.writeCellsCSV} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := write(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return plotResults(res, dir)
}

// The CSV files: runs.csv has a row per run (every cell's and every
// reference's), cells.csv a row per cell (its summary); neither mixes the
// two, so a column's mean counts nothing twice. Their columns carry their
// units and have results.json's names; every row says its run length,
// pCPU count and reference.

// csvKey are the columns that say which cell (or reference) a row is.
var csvKey = []string{"vcpus", "vms", "lock", "variant", "policy", "shard"}

// csvMeasures are a run's measures, as in results.json, then its lock
// events (with units: vmm.LockEvents).
func csvMeasures() []string {
	h := []string{"spin_fraction", "lhp_events", "lwp_events", "acquire_p99_ns", "held_preempted_ns", "granted_preempted_ns"}
	for _, e := range (&vmm.LockEvents{}).Named() {
		h = append(h, e.Name)
	}
	return h
}

func csvG(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }

func (m Measured) csv() []string {
	ns := func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	}
	rec := []string{csvG(m.SpinFraction), strconv.FormatUint(m.LHPEvents, 10), strconv.FormatUint(m.LWPEvents, 10),
		csvG(m.AcquireP99Ns), ns(m.HeldPreemptedNs), ns(m.GrantedPreemptedNs)}
	for _, e := range m.LockEvents.Named() {
		rec = append(rec, csvG(e.Value))
	}
	return rec
}

// csvCommon are the columns every row has: run length, pCPUs, reference.
func (res *Results) csvCommon(ref *Reference) []string {
	d, _ := time.ParseDuration(res.Matrix.Duration)
	refOps := ""
	if ref != nil {
		refOps = csvG(ref.OpsPerSec)
	}
	return []string{csvG(d.Seconds()), strconv.Itoa(len(res.Meta.PCPUs)), refOps}
}

var csvCommonHead = []string{"duration_s", "pcpus", "ref_acq_per_s"}

// writeRunsCSV writes runs.csv: kind is "cell", "reference_before" or
// "reference_after"; run is the run's number within its cell or reference.
func (res *Results) writeRunsCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := append(append([]string{"kind"}, csvKey...), "run", "ok", "refused", "acq_per_s", "vs_ref")
	head = append(append(append(head, csvCommonHead...), csvMeasures()...), "error")
	_ = cw.Write(head)
	row := func(kind string, key []string, ref *Reference, i int, r RunResult) {
		vs := ""
		if ref != nil && ref.OpsPerSec > 0 {
			vs = csvG(r.OpsPerSec / ref.OpsPerSec)
		}
		rec := append(append([]string{kind}, key...), strconv.Itoa(i+1), strconv.FormatBool(r.OK),
			strconv.FormatBool(r.Refused), csvG(r.OpsPerSec), vs)
		rec = append(append(append(rec, res.csvCommon(ref)...), r.Measured.csv()...), r.Error)
		_ = cw.Write(rec)
	}
	for k := range res.References {
		ref := &res.References[k]
		key := []string{"2", "1", "ticket", "", "rr", strconv.Itoa(ref.Shard)}
		for i, r := range ref.Before {
			row("reference_before", key, ref, i, r)
		}
		for i, r := range ref.After {
			row("reference_after", key, ref, i, r)
		}
	}
	for _, c := range res.Cells {
		ref := res.reference(c.Shard)
		for i, r := range c.Runs {
			row("cell", c.csvKey(), ref, i, r)
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeCellsCSV writes cells.csv: each cell's summary (SummaryRule).
func (res *Results) writeCellsCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := append(append([]string{}, csvKey...), "runs", "ok", "refused", "acq_per_s", "min_acq_per_s", "max_acq_per_s", "vs_ref")
	head = append(append(append(head, csvCommonHead...), csvMeasures()...), "noisy", "error")
	_ = cw.Write(head)
	for _, c := range res.Cells {
		rec := append(c.csvKey(), strconv.Itoa(len(c.Runs)), strconv.FormatBool(c.OK), strconv.FormatBool(c.Refused),
			csvG(c.OpsPerSec), csvG(c.MinOpsPerSec), csvG(c.MaxOpsPerSec), csvG(c.Relative))
		rec = append(append(append(rec, res.csvCommon(res.reference(c.Shard))...), c.Measured.csv()...),
			strconv.FormatBool(c.Noisy), c.Error)
		_ = cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

func (c Cell) csvKey() []string {
	return []string{strconv.Itoa(c.VCPUs), strconv.Itoa(c.VMs), c.Lock, c.Variant, c.Policy, strconv.Itoa(c.Shard)}
}

// printTable prints the cells as the markdown table the README quotes.
func (res *Results) printTable(out io.Writer) {
	for _, ref := range res.References {
		drift := ""
		if ref.Drift > noisyDrift {
			drift = fmt.Sprintf(" It drifted %.0f %% across the matrix: its cells are flagged noisy.", 100*ref.Drift)
		}
		shard := ""
		if len(res.References) > 1 {
			shard = fmt.Sprintf(" (shard %d)", ref.Shard)
		}
		fmt.Fprintf(out, "Reference%s: ticket lock, 2 vCPUs on %d pCPUs, rr: %.3g acquisitions/s (median of %d runs before and after the matrix, range %.3g-%.3g).%s\n",
			shard, len(res.Meta.PCPUs), ref.OpsPerSec, len(ref.Before)+len(ref.After), ref.Min, ref.Max, drift)
	}
	m := res.Matrix
	fmt.Fprintf(out, "Each cell: the median of %d runs of %s (range of acq/s in brackets); cs %d cycles, think %d cycles; on %s.\n\n",
		m.Repeat, m.Duration, m.CSCycles, m.Think, res.Meta.Backend)
	if m.Ablation != "" {
		res.printAblation(out)
		return
	}
	fmt.Fprintln(out, "| vCPUs | lock | policy | acq/s | vs ref | spin % | LHP | LWP | check |")
	fmt.Fprintln(out, "|---:|---|---|---:|---:|---:|---:|---:|---|")
	for _, c := range res.Cells {
		check := c.check()
		acq := fmt.Sprintf("%.3g", c.OpsPerSec)
		if len(c.Runs) > 1 && c.OK {
			acq += fmt.Sprintf(" [%.3g-%.3g]", c.MinOpsPerSec, c.MaxOpsPerSec)
		}
		fmt.Fprintf(out, "| %d | %s | %s | %s | %.2f | %.1f | %d | %d | %s |\n", c.VCPUs, c.Lock, c.Policy,
			acq, c.Relative, 100*c.SpinFraction, c.LHPEvents, c.LWPEvents, check)
	}
	if f := res.failed(); len(f) > 0 {
		fmt.Fprintf(out, "\nFailed cells (%d):\n", len(f))
		for _, c := range f {
			fmt.Fprintf(out, "- %s\n", c)
		}
	}
}

// check is a cell's verdict for a table.
func (c Cell) check() string {
	check := "ok"
	if c.Noisy {
		check = "ok, noisy"
	}
	if !c.OK {
		check = "FAILED: " + c.Error
		if c.Refused {
			check = "refused: " + c.Error
		}
		if len(check) > 90 {
			check = check[:90] + "…"
		}
	}
	return check
}

// printAblation is an ablation's table: per size and policy, the lock with
// every mechanism, then with each switched off alone.
func (res *Results) printAblation(out io.Writer) {
	a := ablations[res.Matrix.Ablation]
	fmt.Fprintf(out, "Ablation %s: %s. Variants:\n", res.Matrix.Ablation, a.doc)
	for _, name := range res.Matrix.Variants {
		if v, ok := lookupVariant(res.Matrix.Ablation, name); ok {
			fmt.Fprintf(out, "- %s: %s\n", v.Name, v.Doc)
		}
	}
	fmt.Fprintf(out, "\nDamage: the lock held by a vCPU that did not run / handed to a waiter that did not run, ms per run of %s.\n\n", res.Matrix.Duration)
	fmt.Fprintln(out, "| vCPUs | policy | variant | acq/s | vs ref | spin % | acquire p99 µs | held-preempted ms | granted-preempted ms | pv_lock_stealing | pv_wait_node | pv_wait_head | pv_wait_early | pv_kick_unlock | pv_latency_wake µs | check |")
	fmt.Fprintln(out, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	ms := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(*p)/1e6)
	}
	// Grouped by size and policy, variants in order.
	cells := append([]Cell(nil), res.Cells...)
	order := map[string]int{}
	for i, v := range res.Matrix.Variants {
		order[v] = i
	}
	porder := map[string]int{}
	for i, p := range res.Matrix.Policies {
		porder[p] = i
	}
	sort.SliceStable(cells, func(i, j int) bool {
		a, b := cells[i], cells[j]
		if a.VCPUs != b.VCPUs {
			return a.VCPUs < b.VCPUs
		}
		if porder[a.Policy] != porder[b.Policy] {
			return porder[a.Policy] < porder[b.Policy]
		}
		return order[a.Variant] < order[b.Variant]
	})
	for _, c := range cells {
		acq := fmt.Sprintf("%.3g", c.OpsPerSec)
		if len(c.Runs) > 1 && c.OK {
			acq += fmt.Sprintf(" [%.3g-%.3g]", c.MinOpsPerSec, c.MaxOpsPerSec)
		}
		e := c.LockEvents
		fmt.Fprintf(out, "| %d | %s | %s | %s | %.2f | %.1f | %.1f | %s | %s | %d | %d | %d | %d | %d | %.0f | %s |\n",
			c.VCPUs, c.Policy, c.Variant, acq, c.Relative, 100*c.SpinFraction, c.AcquireP99Ns/1e3,
			ms(c.HeldPreemptedNs), ms(c.GrantedPreemptedNs), e.PVLockStealing, e.PVWaitNode, e.PVWaitHead,
			e.PVWaitEarly, e.PVKickUnlock, e.PVLatencyWake/1e3, c.check())
	}
	if f := res.failed(); len(f) > 0 {
		fmt.Fprintf(out, "\nFailed cells (%d):\n", len(f))
		for _, c := range f {
			fmt.Fprintf(out, "- %s\n", c)
		}
	}
}

// readResults reads the results.json of an --out directory.
func readResults(dir string) (*Results, error) {
	path := filepath.Join(dir, "results.json")
	b, err := host.ReadFileLimited(path, 64<<20)
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errkind.Usage(err) // not an --out directory
	case errors.As(err, &pe):
		return nil, errkind.IO(path, err) // one that cannot be read
	case err != nil:
		return nil, errkind.Usage(err) // not a regular file, too large
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, errkind.Usagef("%s: not lhpvm results: %w", path, err)
	}
	if len(res.Shards) == 0 {
		return nil, errkind.Usagef("%s: no shards recorded: not lhpvm experiment results", dir)
	}
	return &res, nil
}

// merge joins the results of the shards of one sweep: all of 1..N, each
// once, over the same matrix. The cells keep their own shard's reference
// (ratios only hold within one machine).
func merge(dirs []string) (*Results, error) {
	var parts []*Results
	for _, d := range dirs {
		r, err := readResults(d)
		if err != nil {
			return nil, err
		}
		parts = append(parts, r)
	}
	if len(parts) == 0 {
		return nil, errkind.Usage(errors.New("no shard directories given"))
	}
	first := parts[0]
	n := first.Shards[0].N
	seen := map[int]string{}
	out := &Results{Meta: first.Meta, Matrix: first.Matrix}
	for k, p := range parts {
		if !p.Matrix.equal(first.Matrix) {
			return nil, errkind.Usagef("%s measured another matrix than %s (locks, policies, sizes or run parameters differ): not shards of one sweep", dirs[k], dirs[0])
		}
		for _, s := range p.Shards {
			if s.N != n {
				return nil, errkind.Usagef("%s is shard %v, %s one of %d: not shards of one sweep", dirs[k], s, dirs[0], n)
			}
			if d, dup := seen[s.I]; dup {
				return nil, errkind.Usagef("shard %d/%d is in both %s and %s", s.I, n, d, dirs[k])
			}
			seen[s.I] = dirs[k]
			out.Shards = append(out.Shards, s)
		}
		out.References = append(out.References, p.References...)
		out.Cells = append(out.Cells, p.Cells...)
		if p.Meta.Start.Before(out.Meta.Start) {
			out.Meta.Start = p.Meta.Start
		}
		if p.Meta.End.After(out.Meta.End) {
			out.Meta.End = p.Meta.End
		}
	}
	var missing []string
	for i := 1; i <= n; i++ {
		if _, ok := seen[i]; !ok {
			missing = append(missing, fmt.Sprintf("%d/%d", i, n))
		}
	}
	if len(missing) > 0 {
		return nil, errkind.Usagef("missing shards %s", strings.Join(missing, ", "))
	}
	// Cells back in the canonical order, and exactly the matrix's.
	order := map[CellKey]int{}
	for i, k := range first.Matrix.cells() {
		order[k] = i
	}
	if len(out.Cells) != len(order) {
		return nil, errkind.Usagef("the shards hold %d cells, the matrix has %d", len(out.Cells), len(order))
	}
	for _, c := range out.Cells {
		if _, ok := order[c.CellKey]; !ok {
			return nil, errkind.Usagef("cell %v is not in the matrix", c.CellKey)
		}
	}
	sort.Slice(out.Cells, func(i, j int) bool { return order[out.Cells[i].CellKey] < order[out.Cells[j].CellKey] })
	for i := 1; i < len(out.Cells); i++ {
		if out.Cells[i].CellKey == out.Cells[i-1].CellKey {
			return nil, errkind.Usagef("cell %v is in two shards", out.Cells[i].CellKey)
		}
	}
	sort.Slice(out.Shards, func(i, j int) bool { return out.Shards[i].I < out.Shards[j].I })
	sort.Slice(out.References, func(i, j int) bool { return out.References[i].Shard < out.References[j].Shard })
	return out, nil
}

// hostFacts are the kernel and CPU model, for the metadata.
func hostFacts() (kernel, cpu string) {
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
