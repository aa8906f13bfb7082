package sweep

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/stats"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var matrix = Matrix{Locks: []string{"ticket", "tas"}, Policies: []string{"rr", "pv"}, Sizes: []int{2, 4},
	Duration: "300ms", Repeat: 2, CSCycles: 1000, Think: 2000, Backend: "auto"}

// TestCells: the canonical order is by size, lock, variant and policy; a
// variant that needs pv has no cell under a policy without it.
func TestCells(t *testing.T) {
	ks := matrix.Cells()
	require.Len(t, ks, 8)
	assert.Equal(t, CellKey{VCPUs: 2, Lock: "ticket", Policy: "rr"}, ks[0])
	assert.Equal(t, CellKey{VCPUs: 2, Lock: "ticket", Policy: "pv"}, ks[1])
	assert.Equal(t, CellKey{VCPUs: 2, Lock: "tas", Policy: "rr"}, ks[2])
	assert.Equal(t, CellKey{VCPUs: 4, Lock: "tas", Policy: "pv"}, ks[7])

	abl := Matrix{Locks: []string{"pvqspin"}, Policies: []string{"rr", "pv"}, Sizes: []int{4},
		Ablation: "pvqspin", Variants: []string{"full", "no-boost"}}
	var got []string
	for _, k := range abl.Cells() {
		got = append(got, k.String())
	}
	assert.Equal(t, []string{"4 vCPUs, pvqspin full, rr", "4 vCPUs, pvqspin full, pv", "4 vCPUs, pvqspin no-boost, pv"}, got)
}

// TestShards: the shards of a matrix partition its cells: each cell in
// exactly one shard, round-robin in canonical order.
func TestShards(t *testing.T) {
	n := len(matrix.Cells())
	for shards := 1; shards <= n+1; shards++ {
		owners := make([]int, n)
		for i := 1; i <= shards; i++ {
			for idx := range matrix.Cells() {
				if (Shard{I: i, N: shards}).Owns(idx) {
					owners[idx]++
					assert.Equal(t, i, idx%shards+1)
				}
			}
		}
		for idx, o := range owners {
			assert.Equal(t, 1, o, "cell %d of %d shards", idx, shards)
		}
	}
	s, err := ParseShard("3/4")
	require.NoError(t, err)
	assert.Equal(t, Shard{I: 3, N: 4}, s)
	assert.Equal(t, "3/4", s.String())
	for _, bad := range []string{"", "1", "0/4", "5/4", "1/0", "a/b", "1/10001", "-1/2"} {
		_, err := ParseShard(bad)
		assert.Error(t, err, bad)
	}
}

// results makes the results of shard i of n of m, as experiment --out
// writes them, with a reference and one run per cell.
func results(m Matrix, i, n int) *Results {
	res := &Results{Matrix: m, Shards: []Shard{{I: i, N: n}}, Complete: true,
		Meta: Meta{Backend: "ptrace", PCPUs: []int{0, 1}, Start: time.Unix(int64(1000+i), 0), End: time.Unix(int64(2000+i), 0)}}
	ref := Reference{Shard: i, Before: []RunResult{{OK: true, OpsPerSec: 100}}, After: []RunResult{{OK: true, OpsPerSec: 100}}}
	ref.Summarize()
	res.References = []Reference{ref}
	for idx, k := range m.Cells() {
		if (Shard{I: i, N: n}).Owns(idx) {
			c := Cell{CellKey: k, Shard: i, VMs: 1, Runs: []RunResult{{OK: true, OpsPerSec: float64(10 * (idx + 1))}}}
			c.Summarize(&ref)
			res.Cells = append(res.Cells, c)
		}
	}
	return res
}

// save writes res's results.json into a new directory.
func save(t *testing.T, res *Results) string {
	t.Helper()
	dir := t.TempDir()
	b, err := json.Marshal(res)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644))
	return dir
}

func TestMerge(t *testing.T) {
	s1, s2, s3 := save(t, results(matrix, 1, 3)), save(t, results(matrix, 2, 3)), save(t, results(matrix, 3, 3))
	res, err := Merge([]string{s3, s1, s2})
	require.NoError(t, err)
	assert.Equal(t, []Shard{{1, 3}, {2, 3}, {3, 3}}, res.Shards)
	require.Len(t, res.Cells, len(matrix.Cells()))
	for i, k := range matrix.Cells() {
		assert.Equal(t, k, res.Cells[i].CellKey, "the canonical order")
		assert.Equal(t, i%3+1, res.Cells[i].Shard, "each cell keeps its shard")
	}
	require.Len(t, res.References, 3)
	for i, r := range res.References {
		assert.Equal(t, i+1, r.Shard)
	}
	assert.Equal(t, time.Unix(1001, 0), res.Meta.Start.Local(), "the earliest start")
	assert.Equal(t, time.Unix(2003, 0), res.Meta.End.Local(), "the latest end")

	// The summaries are recomputed from the runs, whatever a file says.
	lying := results(matrix, 1, 3)
	lying.Cells[0].OpsPerSec, lying.Cells[0].Relative = 1e9, 1e7
	res, err = Merge([]string{save(t, lying), s2, s3})
	require.NoError(t, err)
	assert.Equal(t, 10.0, res.Cells[0].OpsPerSec)
	assert.Equal(t, 0.1, res.Cells[0].Relative)
}

// Shards from two hosts: each cell keeps its own host's reference, and a
// comparison whose cells were measured on different hosts is not made.
func TestMergeHosts(t *testing.T) {
	m := matrix
	m.Pairs = []Pair{{A: CellKey{Lock: "tas", Policy: "rr"}, B: CellKey{Lock: "ticket", Policy: "pv"}}}
	parts := []*Results{results(m, 1, 2), results(m, 2, 2)}
	var dirs []string
	for i, r := range parts {
		r.Meta.Host = fmt.Sprintf("node%d", i+1)
		r.References[0].Host = r.Meta.Host
		dirs = append(dirs, save(t, r))
	}
	res, err := Merge(dirs)
	require.NoError(t, err)
	assert.Equal(t, "node1, node2", res.Meta.Host)
	require.NotEmpty(t, res.Comparisons)
	for _, c := range res.Comparisons {
		assert.Contains(t, string(c.Verdict), "not compared: measured on hosts node")
	}
}

// TestMergeRefuses: what is not all the shards of one sweep is refused,
// in one line, as bad usage.
func TestMergeRefuses(t *testing.T) {
	s1, s2 := save(t, results(matrix, 1, 2)), save(t, results(matrix, 2, 2))
	other := matrix
	other.Repeat = 3
	extra := results(matrix, 2, 2)
	extra.Cells = append(extra.Cells, Cell{CellKey: CellKey{VCPUs: 8, Lock: "tas", Policy: "rr"}, Shard: 2, Runs: []RunResult{{OK: true}}})
	dup := results(matrix, 2, 2)
	dup.Cells[0].CellKey = results(matrix, 1, 2).Cells[0].CellKey
	noShards := results(matrix, 1, 1)
	noShards.Shards = nil
	// Crafted or damaged shards, and shards that do not make one table.
	crafted := func(f func(r *Results)) string {
		r := results(matrix, 2, 2)
		f(r)
		return save(t, r)
	}
	negative := crafted(func(r *Results) { r.Cells[0].Runs[0].OpsPerSec = -5 })
	shard32 := crafted(func(r *Results) { r.Shards = []Shard{{I: 3, N: 2}} })
	shardNeg := crafted(func(r *Results) { r.Shards = []Shard{{I: -1, N: -1}} })
	noRef := crafted(func(r *Results) { r.References = nil })
	okRefused := crafted(func(r *Results) { r.Cells[1].Runs[0].Refused = true })
	stopped := crafted(func(r *Results) { r.Complete = false })
	commit := crafted(func(r *Results) { r.Meta.Commit = "abc123" })
	backend := crafted(func(r *Results) { r.Meta.Backend = "kvm" })
	pcpus := crafted(func(r *Results) { r.Meta.PCPUs = []int{2, 3} })
	notJSON := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(notJSON, "results.json"), []byte("{"), 0o644))
	empty := t.TempDir()
	for name, tt := range map[string]struct {
		dirs []string
		want string
	}{
		"missing":    {[]string{s1}, "missing shards 2/2"},
		"overlap":    {[]string{s1, s1}, "shard 1/2 is in both " + s1 + " and " + s1},
		"mismatched": {[]string{s1, save(t, results(other, 2, 2))}, "measured another matrix than " + s1},
		"another N":  {[]string{s1, save(t, results(matrix, 2, 3))}, "is shard 2/3, " + s1 + " one of 2: not shards of one sweep"},
		"extra cell": {[]string{s1, save(t, extra)}, "the shards hold 9 cells, the matrix has 8"},
		"dup cell":   {[]string{s1, save(t, dup)}, "is in two shards"},
		"no shards":  {[]string{save(t, noShards)}, "no shards recorded: not lhpvm experiment results"},
		"not JSON":   {[]string{notJSON}, "not lhpvm results"},
		"no results": {[]string{empty}, "no such file or directory"},
		"none":       {nil, "no shard directories given"},
		"good first": {[]string{s1, s2, empty}, "no such file or directory"},
		"negative":   {[]string{s1, negative}, "run 1 of cell 2 vCPUs, ticket, pv has a throughput or time of -5"},
		"shard 3/2":  {[]string{s1, shard32}, "shard 3/2 is not I/N"},
		"shard -1":   {[]string{s1, shardNeg}, "shard -1/-1 is not I/N"},
		"no ref":     {[]string{s1, noRef}, "shard 2/2 has no reference runs"},
		"ok refused": {[]string{s1, okRefused}, "has both ok and refused"},
		"stopped":    {[]string{s1, stopped}, "did not finish"},
		"commit":     {[]string{s1, commit}, "was measured with commit abc123"},
		"backend":    {[]string{s1, backend}, "was measured with backend kvm, " + s1 + " with ptrace"},
		"pcpus":      {[]string{s1, pcpus}, "was measured with pCPUs [2 3]"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Merge(tt.dirs)
			var u *errkind.UsageError
			require.ErrorAs(t, err, &u)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

// TestReadResultsErrors: a directory without results.json is bad usage; a
// results.json that cannot be read is an I/O error.
func TestReadResultsErrors(t *testing.T) {
	_, err := ReadResults(t.TempDir())
	var u *errkind.UsageError
	require.ErrorAs(t, err, &u)
	assert.ErrorIs(t, err, fs.ErrNotExist)

	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "results.json"), 0o755))
	_, err = ReadResults(dir)
	require.ErrorAs(t, err, &u, "a directory where the file should be")
	assert.Contains(t, err.Error(), "not a regular file")
}

func readCSV(t *testing.T, write func(w *bytes.Buffer) error) [][]string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, write(&b))
	rows, err := csv.NewReader(&b).ReadAll()
	require.NoError(t, err)
	return rows
}

// TestCSV: the columns of runs.csv and cells.csv, named as results.json
// names them, with their units; a row per run and a row per cell.
func TestCSV(t *testing.T) {
	res := results(matrix, 1, 1)
	ns := int64(1500)
	res.Cells[0].Runs[0].HeldPreemptedNs = &ns
	res.Cells[0].Summarize(&res.References[0])
	events := []string{"lock_slowpath", "lock_pending", "pv_lock_stealing", "pv_wait_node", "pv_wait_head", "pv_wait_early",
		"pv_wait_again", "pv_spurious_wakeup", "pv_kick_unlock", "pv_kick_wake", "pv_hash_hops", "pv_latency_kick_ns", "pv_latency_wake_ns"}
	measures := append([]string{"spin_fraction", "lhp_events", "lwp_events", "acquire_p99_ns", "held_preempted_ns", "granted_preempted_ns",
		"fairness_jain", "acq_max_over_min", "acq_max_over_min_unbounded", "acquisitions", "slow_paths"}, events...)

	runs := readCSV(t, func(w *bytes.Buffer) error { return res.writeRunsCSV(w) })
	head := append([]string{"kind", "vcpus", "vms", "lock", "variant", "policy", "shard", "run", "seed", "ok", "refused", "acq_per_s", "throughput", "whole_run_acq_per_s", "vs_ref",
		"duration_s", "pcpus", "ref_acq_per_s"}, measures...)
	assert.Equal(t, append(head, "error"), runs[0])
	require.Len(t, runs, 1+2+8, "a header, the reference's runs before and after, a run per cell")
	col := func(rows [][]string, name string) int {
		for i, c := range rows[0] {
			if c == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return -1
	}
	assert.Equal(t, "reference_before", runs[1][0])
	assert.Equal(t, "reference_after", runs[2][0])
	assert.Equal(t, []string{"2", "1", "ticket", "", "rr", "1"}, runs[1][1:7], "the reference's key")
	assert.Equal(t, "cell", runs[3][0])
	assert.Equal(t, "0.3", runs[3][col(runs, "duration_s")])
	assert.Equal(t, "2", runs[3][col(runs, "pcpus")])
	assert.Equal(t, "100", runs[3][col(runs, "ref_acq_per_s")])
	assert.Equal(t, "0.1", runs[3][col(runs, "vs_ref")], "10 acq/s against a reference of 100")
	assert.Equal(t, "1500", runs[3][col(runs, "held_preempted_ns")])
	assert.Equal(t, "", runs[4][col(runs, "held_preempted_ns")], "null: not measured")

	cells := readCSV(t, func(w *bytes.Buffer) error { return res.writeCellsCSV(w) })
	head = append([]string{"vcpus", "vms", "lock", "variant", "policy", "shard", "runs", "ok", "refused", "acq_per_s", "min_acq_per_s",
		"max_acq_per_s", "vs_ref", "vs_ref_ci95_lo", "vs_ref_ci95_hi", "duration_s", "pcpus", "ref_acq_per_s"}, measures...)
	head = append(head, "noisy", "error")
	for _, m := range append([]string{"acq_per_s"}, measures...) {
		if m != "acq_max_over_min_unbounded" {
			head = append(head, m+"_ci95_lo", m+"_ci95_hi")
		}
	}
	assert.Equal(t, head, cells[0])
	require.Len(t, cells, 1+8)
	assert.Equal(t, "1500", cells[1][col(cells, "held_preempted_ns")], "the median of one run")
	assert.Equal(t, "1500", cells[1][col(cells, "held_preempted_ns_ci95_lo")])
	assert.Equal(t, []string{"2", "1", "ticket", "", "rr", "1", "1", "true", "false", "10"}, cells[1][:10])
}

// TestWrite: --out gets results.json (which reads back), the CSVs and the
// plots; a directory that cannot be made is an I/O error.
func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	res := results(matrix, 1, 1)
	require.NoError(t, res.Write(dir))
	for _, f := range []string{"results.json", "runs.csv", "cells.csv", "throughput-2vcpus.svg", "spin-4vcpus.svg", "heatmap.svg"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
	back, err := ReadResults(dir)
	require.NoError(t, err)
	assert.Equal(t, res.Cells, back.Cells)

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	err = res.Write(filepath.Join(file, "out"))
	var io *errkind.IOError
	require.ErrorAs(t, err, &io)
	assert.Contains(t, err.Error(), file)
}

func TestCheck(t *testing.T) {
	opts := func() Options {
		return Options{Locks: "ticket,tas", Policies: "rr,pv", Sizes: "2,4", Duration: 300 * time.Millisecond, Repeat: 2,
			CSCycles: 1000, ThinkCycles: 2000, Backend: "auto"}
	}
	p, err := Check(opts())
	require.NoError(t, err)
	assert.NotZero(t, p.Matrix.Seed, "a fresh experiment seed")
	got := p.Matrix
	got.Seed = 0
	assert.Equal(t, matrix, got)
	assert.Equal(t, Shard{1, 1}, p.Shard)
	assert.Len(t, p.Mine(), 8)
	assert.Equal(t, 2*2+8*2, p.Runs())

	o := opts()
	o.Shard, o.Out = "2/3", t.TempDir()
	p, err = Check(o)
	require.NoError(t, err)
	assert.Equal(t, []CellKey{matrix.Cells()[1], matrix.Cells()[4], matrix.Cells()[7]}, p.Mine())

	o = opts()
	o.Ablation, o.Changed = "pvqspin", func(string) bool { return false }
	p, err = Check(o)
	require.NoError(t, err)
	assert.Equal(t, []string{"pvqspin"}, p.Matrix.Locks)
	assert.Equal(t, []string{"rr", "pv"}, p.Matrix.Policies)
	assert.Len(t, p.Matrix.Variants, len(Ablations["pvqspin"].Variants))

	for want, edit := range map[string]func(*Options){
		"--repeat 0: must be between 1 and 100":                         func(o *Options) { o.Repeat = 0 },
		"--shard needs --out: a shard's results are for lhpvm merge":    func(o *Options) { o.Shard = "1/2" },
		`--shard "3/2": want I/N with 1 <= I <= N, e.g. 1/4`:            func(o *Options) { o.Shard = "3/2" },
		"--locks, --policies and --sizes may not be empty":              func(o *Options) { o.Locks = "," },
		`--sizes: "x" is not a vCPU count`:                              func(o *Options) { o.Sizes = "2,x" },
		"--variants needs --ablation":                                   func(o *Options) { o.Changed = func(n string) bool { return n == "variants" } },
		`--ablation "ticket": have pticket, pvqspin`:                    func(o *Options) { o.Ablation = "ticket" },
		"--duration 0s: must be between 1ms and 24h0m0s":                func(o *Options) { o.Duration = 0 },
		"--vm-vcpus -1: must be between 1 and 1024 (or 0: one VM)":      func(o *Options) { o.VMVCPUs = -1 },
		`--backend: unknown backend "xen" (have: kvm, ptrace, or auto)`: func(o *Options) { o.Backend = "xen" },
		"--variants no-boost: none of them differs from full under --policies rr (they need a policy with pv)": func(o *Options) {
			o.Ablation, o.Variants, o.Policies = "pvqspin", "no-boost", "rr"
			o.Changed = func(n string) bool { return n == "policies" || n == "variants" }
		},
	} {
		o := opts()
		edit(&o)
		_, err := Check(o)
		var u *errkind.UsageError
		require.ErrorAs(t, err, &u, want)
		assert.EqualError(t, err, want)
	}
}

// fakeRuns records what an experiment asks to run and answers every run
// with throughput by lock, failing the locks in fail.
type fakeRuns struct {
	runs []string
	mcs  []vmm.MachineConfig
	cfgs [][]vmm.Config
	fail map[string]bool
}

func lockName(id uint32) string {
	for _, k := range vmm.LockKinds() {
		if k.ID == id {
			return k.Name
		}
	}
	return "?"
}

func (f *fakeRuns) run(mc vmm.MachineConfig, cfgs ...vmm.Config) *vmm.Result {
	lock := lockName(cfgs[0].LockKind)
	f.runs = append(f.runs, fmt.Sprintf("%d/%s/%s", len(cfgs), lock, mc.Policy))
	f.mcs, f.cfgs = append(f.mcs, mc), append(f.cfgs, cfgs)
	res := &vmm.Result{OK: true, Sched: vmm.SchedResult{LHPEvents: 1}}
	if mc.Policy != "host" { // lhpvm's own policies count LHP
		res.Sched.SliceUs = 30000
	}
	if f.fail[lock] {
		res.OK, res.Err, res.Error = false, errors.New("self-check failed"), "self-check failed"
	}
	for _, c := range cfgs {
		ns := int64(100)
		res.VMs = append(res.VMs, &vmm.VMResult{VCPUs: c.VCPUs, OpsPerSec: 1000, LockStats: &vmm.LockStats{
			SpinFraction: 0.5, AcquireNs: vmm.Latency{P99: float64(c.VCPUs)}, HeldPreemptedNs: &ns, GrantedPreemptedNs: &ns}})
	}
	return res
}

type lines []string

func (l *lines) Start(string)              {}
func (l *lines) Done(line string, ok bool) { *l = append(*l, fmt.Sprintf("%s %v", line, ok)) }

// TestRun: the reference before and after, every cell of the shard Repeat
// times, interleaved (A B A B), each resolved as a run is; a failed cell is not run again, and a
// failed reference ends the experiment.
func TestRun(t *testing.T) {
	cpus, err := host.AllowedCPUs()
	require.NoError(t, err)
	p, err := Check(Options{Locks: "tas,mcs", Policies: "rr+pv+delay", Sizes: "2", Duration: 50 * time.Millisecond,
		Repeat: 2, PCPUs: sched.FormatCPUList(cpus[:1]), CSCycles: 10, ThinkCycles: 20, VMVCPUs: 1, Backend: "auto"})
	require.NoError(t, err)
	f := &fakeRuns{fail: map[string]bool{"mcs": true}}
	var prog lines
	res, err := p.Run(f.run, &prog, Meta{Version: "v"})
	require.NoError(t, err)
	assert.Equal(t, []string{"2/ticket/rr", "2/ticket/rr", "2/tas/rr+pv+delay", "2/mcs/rr+pv+delay", "2/tas/rr+pv+delay",
		"2/ticket/rr", "2/ticket/rr"}, f.runs, "VMs/lock/policy of every run, in order: the cells interleaved round by round")

	// A cell's machine and VMs, as runconfig resolves them.
	mc, cfgs := f.mcs[2], f.cfgs[2]
	assert.Equal(t, cpus[:1], mc.PCPUs)
	assert.Equal(t, 50*time.Millisecond, mc.Duration)
	assert.Equal(t, 50*time.Millisecond+time.Minute, mc.Timeout)
	assert.Equal(t, sched.DefaultSlice, mc.Options.Slice)
	require.Len(t, cfgs, 2, "--vm-vcpus 1: two VMs of one vCPU")
	assert.Equal(t, "vm1", cfgs[1].Name)
	assert.Equal(t, uint32(hypercall.FlagPreemptedAware|hypercall.FlagDelayHint), cfgs[0].Flags, "the guest follows pv and delay")
	assert.EqualValues(t, 10, cfgs[0].CSCycles)
	assert.EqualValues(t, 20, cfgs[0].ThinkCycles)
	assert.Zero(t, f.cfgs[0][0].Flags, "the reference runs under rr: no hints")
	assert.Len(t, f.cfgs[0], 2, "the reference, too, is split into VMs of --vm-vcpus")

	require.Len(t, res.Cells, 2)
	assert.Equal(t, "v", res.Meta.Version)
	assert.Equal(t, cpus[:1], res.Meta.PCPUs)
	assert.False(t, res.Meta.End.Before(res.Meta.Start))
	require.Len(t, res.References, 1)
	assert.Len(t, res.References[0].Before, 2)
	assert.Len(t, res.References[0].After, 2)
	tas := res.Cells[0]
	assert.True(t, tas.OK)
	assert.Equal(t, 2, tas.VMs)
	assert.Len(t, tas.Runs, 2)
	assert.Equal(t, 2000.0, tas.OpsPerSec, "both VMs' throughput")
	assert.Equal(t, 1.0, tas.Relative, "against the reference's 2000")
	assert.Equal(t, 0.5, tas.SpinFraction)
	assert.EqualValues(t, 200, *tas.HeldPreemptedNs, "the VMs' damage summed")
	require.NotNil(t, tas.LHPEvents)
	assert.EqualValues(t, 1, *tas.LHPEvents)
	mcs := res.Cells[1]
	assert.False(t, mcs.OK)
	assert.Len(t, mcs.Runs, 1, "a failed cell is not run again")
	assert.Equal(t, []string{"2 vCPUs, mcs, rr+pv+delay: self-check failed"}, res.Failed())
	assert.Contains(t, prog, "reference (before), run 1: 2e+03 acq/s true")
	assert.Contains(t, prog, "2 vCPUs, mcs, rr+pv+delay, run 1: FAILED: self-check failed false")

	f = &fakeRuns{fail: map[string]bool{"ticket": true}}
	_, err = p.Run(f.run, nil, Meta{})
	var r *errkind.RunError
	require.ErrorAs(t, err, &r)
	assert.EqualError(t, err, "the reference run (ticket, 2 vCPUs, rr) failed before the matrix, so no cell can be compared: self-check failed")
	assert.Equal(t, []string{"2/ticket/rr"}, f.runs)
}

// TestRunRefused: a cell its policy refuses (gang, a VM wider than the
// pCPUs) is refused by the admission dry run: never run, not a failure.
func TestRunRefused(t *testing.T) {
	cpus, err := host.AllowedCPUs()
	require.NoError(t, err)
	p, err := Check(Options{Locks: "tas", Policies: "gang", Sizes: "2", Duration: 50 * time.Millisecond,
		Repeat: 2, PCPUs: sched.FormatCPUList(cpus[:1]), Backend: "auto"})
	require.NoError(t, err)
	f := &fakeRuns{}
	var prog lines
	res, err := p.Run(f.run, &prog, Meta{})
	require.NoError(t, err)
	assert.Equal(t, []string{"1/ticket/rr", "1/ticket/rr", "1/ticket/rr", "1/ticket/rr"}, f.runs, "the references only")
	require.Len(t, res.Cells, 1)
	c := res.Cells[0]
	assert.True(t, c.Refused)
	assert.False(t, c.OK)
	assert.Equal(t, 1, c.VMs)
	assert.Len(t, c.Runs, 1)
	assert.Contains(t, c.Error, "gang: vm0 has 2 vCPUs but there are only 1 pCPUs")
	assert.Empty(t, res.Failed())
	assert.Contains(t, prog, "2 vCPUs, tas, gang, run 1: refused true")
}

// TestAblationCells: an ablation's variants set the lock's knobs as a
// scenario writes them, and the boost under a pv policy only.
func TestAblationCells(t *testing.T) {
	p, err := Check(Options{Ablation: "pvqspin", Variants: "full,no-steal,no-boost", Sizes: "4", Duration: 50 * time.Millisecond,
		Repeat: 1, Backend: "auto"})
	require.NoError(t, err)
	f := &fakeRuns{}
	_, err = p.Run(f.run, nil, Meta{})
	require.NoError(t, err)
	byCell := map[string]int{}
	for i, k := range p.Mine() {
		byCell[k.Variant+"/"+k.Policy] = i + 1 // after the reference run
	}
	assert.Len(t, byCell, 5, "no-boost only under pv")
	mc := func(cell string) vmm.MachineConfig { return f.mcs[byCell[cell]] }
	cfg := func(cell string) vmm.Config { return f.cfgs[byCell[cell]][0] }
	assert.True(t, mc("full/pv").Options.BoostKicked)
	assert.False(t, mc("full/rr").Options.BoostKicked, "no boost without pv")
	assert.False(t, mc("no-boost/pv").Options.BoostKicked)
	assert.Equal(t, vmm.PVKnobs{}, cfg("full/pv").PV)
	assert.Equal(t, vmm.PVKnobs{Steal: hypercall.PVStealOff}, cfg("no-steal/rr").PV)
	for _, v := range Ablations["pvqspin"].Variants {
		for key := range v.Knobs {
			assert.Contains(t, []string{"pv_steal", "pv_pending", "pv_prev_check", "pv_kick"}, key, v.Name)
		}
	}
}

// noisyRuns is a fake backend whose runs scatter log-normally (σ 0.3)
// around a throughput per lock: ticket 1000, tas 2000.
type noisyRuns struct {
	r    *rand.Rand
	runs map[string]int
}

func (f *noisyRuns) run(mc vmm.MachineConfig, cfgs ...vmm.Config) *vmm.Result {
	lock := lockName(cfgs[0].LockKind)
	f.runs[lock+"/"+mc.Policy]++
	base := map[string]float64{"ticket": 1000, "tas": 2000}[lock]
	x := base * math.Exp(0.3*f.r.NormFloat64())
	return &vmm.Result{OK: true, VMs: []*vmm.VMResult{{VCPUs: cfgs[0].VCPUs, SteadyOpsPerSec: &x, OpsPerSec: 10 * x,
		LockStats: &vmm.LockStats{}}}}
}

// TestPrecision: --precision repeats the cells of a pair past Repeat until
// the pair's interval is as tight as asked, and judges the pair; a budget
// too small for another round marks the cells instead.
func TestPrecision(t *testing.T) {
	cpus, err := host.AllowedCPUs()
	require.NoError(t, err)
	o := Options{Locks: "tas,ticket", Policies: "rr", Sizes: "2", Duration: time.Second, Repeat: 3,
		PCPUs: sched.FormatCPUList(cpus[:1]), Backend: "auto", Precision: 0.1, Budget: time.Hour,
		Pairs: []Pair{{CellKey{Lock: "tas", Policy: "rr"}, CellKey{Lock: "ticket", Policy: "rr"}}}}
	p, err := Check(o)
	require.NoError(t, err)
	f := &noisyRuns{r: rand.New(rand.NewPCG(3, 4)), runs: map[string]int{}}
	res, err := p.Run(f.run, nil, Meta{})
	require.NoError(t, err)
	require.Len(t, res.Comparisons, 1)
	c := res.Comparisons[0]
	require.NotNil(t, c.RatioCI95)
	assert.LessOrEqual(t, (c.RatioCI95[1]-c.RatioCI95[0])/2/c.Ratio, 0.1, "as tight as asked")
	assert.Greater(t, c.Runs[0], 3, "more rounds than --repeat")
	assert.Equal(t, c.Runs[0], c.Runs[1], "both cells of the pair, round by round")
	assert.Equal(t, stats.Holds, c.Verdict, "tas (2000) beats ticket (1000): %v", c)
	for _, cell := range res.Cells {
		assert.False(t, cell.OutOfBudget)
		assert.Equal(t, "steady", cell.Runs[0].Throughput)
	}
	assert.NotEmpty(t, res.References[0].During, "a reference run per extra round")

	o.Budget = time.Nanosecond
	p, err = Check(o)
	require.NoError(t, err)
	f = &noisyRuns{r: rand.New(rand.NewPCG(3, 4)), runs: map[string]int{}}
	res, err = p.Run(f.run, nil, Meta{Start: time.Now()})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"tas/rr": 3, "ticket/rr": 3 + 6}, f.runs, "no round past --repeat (ticket: the reference too)")
	for _, cell := range res.Cells {
		assert.True(t, cell.OutOfBudget, "%v", cell.CellKey)
	}
}

// stopAfter is a fake backend that closes stop after n runs.
type stopAfter struct {
	noisyRuns
	n    int
	stop chan struct{}
	runs int
}

func (f *stopAfter) run(mc vmm.MachineConfig, cfgs ...vmm.Config) *vmm.Result {
	f.runs++
	if f.runs == f.n {
		close(f.stop)
		return &vmm.Result{Err: errors.New("interrupted"), Error: "interrupted"} // the run in flight
	}
	r := f.noisyRuns.run(mc, cfgs...)
	r.Seed = *mc.Seed
	return r
}

// TestInterruptResume: an experiment stopped midway writes what finished
// (complete false, every finished run in the journal); --resume finishes it
// with the same plan and seeds, making no run twice, and the result is the
// uninterrupted experiment's.
func TestInterruptResume(t *testing.T) {
	cpus, err := host.AllowedCPUs()
	require.NoError(t, err)
	dir := t.TempDir()
	o := Options{Locks: "tas,ticket", Policies: "rr", Sizes: "2,4", Duration: time.Second, Repeat: 2,
		PCPUs: sched.FormatCPUList(cpus[:1]), Backend: "auto", Seed: 42, Out: dir}
	p, err := Check(o)
	require.NoError(t, err)
	require.NoError(t, PrepareOut(dir, false))
	j, err := OpenJournal(dir)
	require.NoError(t, err)
	f := &stopAfter{noisyRuns: noisyRuns{r: rand.New(rand.NewPCG(1, 1)), runs: map[string]int{}}, n: 6, stop: make(chan struct{})}
	p.Stop, p.Journal = f.stop, j.Record
	res, err := p.Run(f.run, nil, Meta{Backend: "ptrace"})
	require.ErrorIs(t, err, ErrInterrupted)
	require.NoError(t, j.Close())
	assert.False(t, res.Complete)
	require.NoError(t, res.Write(dir))
	done, err := ReadJournal(dir)
	require.NoError(t, err)
	assert.Len(t, done, 5, "the five runs before the one in flight")
	err = PrepareOut(dir, false)
	require.Error(t, err, "an unfinished experiment's folder is not reused")
	assert.Contains(t, err.Error(), "--resume")

	q, err := Resume(dir)
	require.NoError(t, err)
	assert.Equal(t, p.Matrix, q.Matrix)
	j, err = OpenJournal(dir)
	require.NoError(t, err)
	q.Journal = j.Record
	g := &stopAfter{noisyRuns: noisyRuns{r: rand.New(rand.NewPCG(1, 1)), runs: map[string]int{}}, n: -1}
	res, err = q.Run(g.run, nil, Meta{Backend: "ptrace"})
	require.NoError(t, err)
	require.NoError(t, j.Close())
	assert.True(t, res.Complete)
	assert.Equal(t, 2*2+4*2-5, g.runs, "only the runs not in the journal")
	done, err = ReadJournal(dir) // no run twice: it refuses duplicates
	require.NoError(t, err)
	assert.Len(t, done, 12)

	// The seeds are the uninterrupted experiment's.
	u, err := Check(o)
	require.NoError(t, err)
	h := &stopAfter{noisyRuns: noisyRuns{r: rand.New(rand.NewPCG(1, 1)), runs: map[string]int{}}, n: -1}
	whole, err := u.Run(h.run, nil, Meta{})
	require.NoError(t, err)
	seeds := func(r *Results) []uint64 {
		var s []uint64
		for _, c := range r.Cells {
			for _, run := range c.Runs {
				s = append(s, run.Seed)
			}
		}
		return s
	}
	assert.Equal(t, seeds(whole), seeds(res))
}

func TestParsePairs(t *testing.T) {
	got, err := ParsePairs("pticket:rr/ticket, tas:delay/tas:rr")
	require.NoError(t, err)
	assert.Equal(t, []Pair{
		{CellKey{Lock: "pticket", Policy: "rr"}, CellKey{Lock: "ticket", Policy: "rr"}},
		{CellKey{Lock: "tas", Policy: "delay"}, CellKey{Lock: "tas", Policy: "rr"}},
	}, got)
	for _, bad := range []string{"pticket", "pticket/", "/ticket", "pticket/ticket"} {
		_, err := ParsePairs(bad)
		assert.Error(t, err, bad)
	}
	cpus, err := host.AllowedCPUs()
	require.NoError(t, err)
	o := Options{Locks: "ticket", Policies: "rr", Sizes: "4", Duration: time.Second, Repeat: 1,
		PCPUs: sched.FormatCPUList(cpus[:1]), Backend: "auto", Pairs: got[:1]}
	_, err = Check(o)
	assert.ErrorContains(t, err, "pticket:rr is not a cell of the matrix")
}

// TestCSVEmptyNotZero: a failed cell's measures are empty in cells.csv,
// and an unbounded max/min is empty with its flag set, never 0.
func TestCSVEmptyNotZero(t *testing.T) {
	res := &Results{Matrix: Matrix{Duration: "1s"}, Shards: []Shard{{1, 1}}, References: []Reference{{Shard: 1, OpsPerSec: 100}},
		Cells: []Cell{
			{CellKey: CellKey{VCPUs: 4, Lock: "ticket", Policy: "rr"}, Shard: 1, OK: false, Error: "self-check failed"},
			{CellKey: CellKey{VCPUs: 4, Lock: "tas", Policy: "rr"}, Shard: 1, OK: true, OpsPerSec: 50, Relative: 0.5,
				Measured: Measured{Acquisitions: 10, AcqMaxOverMin: 0}},
		}}
	var b strings.Builder
	require.NoError(t, res.writeCellsCSV(&b))
	rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	require.NoError(t, err)
	col := func(name string) int {
		for i, h := range rows[0] {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return -1
	}
	assert.Equal(t, "", rows[1][col("acq_per_s")], "failed: empty")
	assert.Equal(t, "", rows[1][col("spin_fraction")])
	assert.Equal(t, "50", rows[2][col("acq_per_s")])
	assert.Equal(t, "", rows[2][col("acq_max_over_min")], "a vCPU took none: unbounded")
	assert.Equal(t, "true", rows[2][col("acq_max_over_min_unbounded")])
}
