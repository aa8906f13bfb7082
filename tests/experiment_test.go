package tests

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/internal/backendtest"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type expResults struct {
	Meta struct {
		Commit   string   `json:"commit"`
		Backend  string   `json:"backend"`
		Module   string   `json:"backend_module"`
		Kernel   string   `json:"kernel"`
		CPUModel string   `json:"cpu_model"`
		PCPUs    []int    `json:"pcpus"`
		Args     []string `json:"args"`
		Start    string   `json:"start"`
		End      string   `json:"end"`
	} `json:"meta"`
	Shards     []struct{ I, N int } `json:"shards"`
	References []struct {
		Shard     int               `json:"shard"`
		OpsPerSec float64           `json:"acq_per_s"`
		Before    []json.RawMessage `json:"before"`
		After     []json.RawMessage `json:"after"`
	} `json:"references"`
	Cells []struct {
		VCPUs    int     `json:"vcpus"`
		Lock     string  `json:"lock"`
		Policy   string  `json:"policy"`
		Shard    int     `json:"shard"`
		OK       bool    `json:"ok"`
		Relative float64 `json:"vs_ref"`
		Runs     []struct {
			OK bool `json:"ok"`
		} `json:"runs"`
	} `json:"cells"`
}

func readExp(t *testing.T, dir string) expResults {
	t.Helper()
	var r expResults
	require.NoError(t, json.Unmarshal(readFile(t, filepath.Join(dir, "results.json")), &r))
	return r
}

func cellKeys(r expResults) []string {
	var ks []string
	for _, c := range r.Cells {
		ks = append(ks, strings.Join([]string{c.Lock, c.Policy, string(rune('0' + c.VCPUs))}, "/"))
	}
	return ks
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	return rows
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// TestExperimentOut: --out writes results.json with every cell, its runs
// and the metadata, runs.csv with a row per run (references too) and
// cells.csv one per cell, with the same column names as the JSON, and SVG
// plots; two shards merged hold exactly the unsharded run's cells; merge
// refuses what is not all the shards of one sweep.
func TestExperimentOut(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		dir := t.TempDir()
		matrix := []string{"--sizes", "2,4", "--policies", "rr,pv", "--locks", "ticket,tas", "--duration", "300ms", "--repeat", "2", "--quiet"}
		exp := func(out string, extra ...string) {
			t.Helper()
			args := append(append([]string{"experiment", "--out", filepath.Join(dir, out)}, matrix...), extra...)
			_, stderr, code := lhpvm(t, on(h, args...)...)
			require.Equal(t, 0, code, stderr)
		}
		exp("all")
		all := readExp(t, filepath.Join(dir, "all"))
		assert.Len(t, all.Cells, 8)
		assert.Equal(t, h.Name(), all.Meta.Backend)
		assert.NotEmpty(t, all.Meta.Kernel)
		assert.NotEmpty(t, all.Meta.CPUModel)
		assert.NotEmpty(t, all.Meta.Commit)
		assert.NotEmpty(t, all.Meta.Start)
		assert.NotEmpty(t, all.Meta.End)
		assert.Contains(t, all.Meta.Args, "--out")
		for _, c := range all.Cells {
			assert.True(t, c.OK, "%+v", c)
			assert.Len(t, c.Runs, 2, "every run is kept")
			assert.Greater(t, c.Relative, 0.0)
		}
		runs, cells := readCSV(t, filepath.Join(dir, "all", "runs.csv")), readCSV(t, filepath.Join(dir, "all", "cells.csv"))
		refRuns := len(all.References[0].Before) + len(all.References[0].After)
		assert.Len(t, runs, 1+8*2+refRuns, "a header, a row per run of every cell and of the reference")
		assert.Len(t, cells, 1+8, "a header, a row per cell")
		for _, col := range []string{"acq_per_s", "vs_ref", "lhp_events", "duration_s", "pcpus", "ref_acq_per_s", "pv_latency_wake_ns"} {
			assert.Contains(t, runs[0], col)
			assert.Contains(t, cells[0], col)
		}
		assert.Equal(t, "0.3", runs[1][indexOf(runs[0], "duration_s")], "every row has the run length")
		for _, plot := range []string{"throughput-2vcpus.svg", "throughput-4vcpus.svg", "spin-4vcpus.svg", "heatmap.svg"} {
			var doc struct{ XMLName xml.Name }
			require.NoError(t, xml.Unmarshal(readFile(t, filepath.Join(dir, "all", plot)), &doc), plot)
			assert.Equal(t, "svg", doc.XMLName.Local, plot)
		}

		exp("s1", "--shard", "1/2")
		exp("s2", "--shard", "2/2")
		s1, s2 := readExp(t, filepath.Join(dir, "s1")), readExp(t, filepath.Join(dir, "s2"))
		assert.Len(t, s1.Cells, 4)
		assert.Len(t, s2.Cells, 4)
		_, stderr, code := lhpvm(t, "merge", "--out", filepath.Join(dir, "merged"), filepath.Join(dir, "s2"), filepath.Join(dir, "s1"))
		require.Equal(t, 0, code, stderr)
		merged := readExp(t, filepath.Join(dir, "merged"))
		assert.Equal(t, cellKeys(all), cellKeys(merged), "the merged shards hold the unsharded run's cells, in its order")
		assert.Len(t, merged.References, 2, "each shard's own reference")
		assert.FileExists(t, filepath.Join(dir, "merged", "heatmap.svg"))
		assert.FileExists(t, filepath.Join(dir, "merged", "cells.csv"))
		assert.FileExists(t, filepath.Join(dir, "merged", "runs.csv"))

		// The merged folder is not merged into again without --force.
		usage(t, "already holds an experiment's files", "merge", "--out", filepath.Join(dir, "merged"), filepath.Join(dir, "s2"), filepath.Join(dir, "s1"))
		_, stderr, code = lhpvm(t, "merge", "--force", "--out", filepath.Join(dir, "merged"), filepath.Join(dir, "s2"), filepath.Join(dir, "s1"))
		require.Equal(t, 0, code, stderr)
		usage(t, "is one of the shards being merged", "merge", "--out", filepath.Join(dir, "s1"), filepath.Join(dir, "s1"), filepath.Join(dir, "s2"))
		for name, args := range map[string][]string{
			"missing":     {filepath.Join(dir, "s1")},
			"overlap":     {filepath.Join(dir, "s1"), filepath.Join(dir, "s1")},
			"mismatched":  {filepath.Join(dir, "s1"), filepath.Join(dir, "all")},
			"not results": {t.TempDir()},
		} {
			t.Run("merge "+name, func(t *testing.T) {
				usage(t, "", append([]string{"merge", "--out", filepath.Join(dir, "x")}, args...)...)
			})
		}
	})
}

// TestExperimentProgress: a progress bar on a terminal, and in a pipe one
// line per run and no carriage return.
func TestExperimentProgress(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		args := on(h, "experiment", "--sizes", "4", "--policies", "rr", "--locks", "tas", "--duration", "200ms", "--repeat", "1")
		_, stderr, code := lhpvm(t, args...)
		require.Equal(t, 0, code, stderr)
		assert.NotContains(t, stderr, "\r", "no carriage returns in a pipe")
		assert.Contains(t, stderr, "[1/3] reference (before), run 1:")
		assert.Contains(t, stderr, "[2/3] 4 vCPUs, tas, rr, run 1:")

		if _, err := exec.LookPath("script"); err != nil {
			t.Skip("no script(1) to give the command a terminal")
		}
		cmd := exec.Command("script", "-qec", lhpvmBin(t)+" "+strings.Join(args, " "), "/dev/null")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Contains(t, string(out), "\r", "the bar redraws in place on a terminal")
		assert.Contains(t, string(out), "(1/3)", "runs done / all")
		assert.NotContains(t, string(out), "[1/3]", "no line per run on a terminal")
	})
}

// TestExperimentAblation: --ablation pvqspin prints the ablation's table
// and writes it with --out: a cell per variant and policy (no-boost only
// where the policy has pv), with the lock events and damage times.
func TestExperimentAblation(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		dir := filepath.Join(t.TempDir(), "abl")
		stdout, stderr, code := lhpvm(t, on(h, "experiment", "--ablation", "pvqspin", "--variants", "full,no-steal,no-boost",
			"--sizes", "4", "--duration", "200ms", "--repeat", "1", "--quiet", "--out", dir)...)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "Ablation pvqspin")
		assert.Contains(t, stdout, "| vCPUs | policy | variant |")
		for _, row := range []string{"| 4 | rr | full |", "| 4 | rr | no-steal |", "| 4 | pv | full |", "| 4 | pv | no-steal |", "| 4 | pv | no-boost |"} {
			assert.Contains(t, stdout, row)
		}
		assert.NotContains(t, stdout, "| 4 | rr | no-boost |", "no-boost is full under a policy without pv")

		var res struct {
			Matrix struct {
				Ablation string   `json:"ablation"`
				Variants []string `json:"variants"`
				Locks    []string `json:"locks"`
				Policies []string `json:"policies"`
			} `json:"matrix"`
			Cells []struct {
				Variant         string             `json:"variant"`
				Policy          string             `json:"policy"`
				OK              bool               `json:"ok"`
				HeldPreemptedNs *int64             `json:"held_preempted_ns"`
				LockEvents      map[string]float64 `json:"lock_events"`
			} `json:"cells"`
		}
		require.NoError(t, json.Unmarshal(readFile(t, filepath.Join(dir, "results.json")), &res))
		assert.Equal(t, "pvqspin", res.Matrix.Ablation)
		assert.Equal(t, []string{"pvqspin"}, res.Matrix.Locks)
		assert.Equal(t, []string{"rr", "pv"}, res.Matrix.Policies, "an ablation's default policies")
		require.Len(t, res.Cells, 5)
		for _, c := range res.Cells {
			assert.True(t, c.OK, "%+v", c)
			assert.NotNil(t, c.HeldPreemptedNs, "damage is measured under our policies")
			if c.Variant == "no-steal" {
				assert.Zero(t, c.LockEvents["pv_lock_stealing"])
			}
		}
		rows := readCSV(t, filepath.Join(dir, "cells.csv"))
		require.Len(t, rows, 1+5)
		assert.Contains(t, rows[0], "variant")
		assert.Contains(t, rows[0], "pv_lock_stealing")
		assert.Contains(t, rows[0], "granted_preempted_ns")
		assert.FileExists(t, filepath.Join(dir, "throughput-4vcpus.svg"))
	})
}

// TestExperimentPresets: each preset runs briefly (a check that it runs and
// checks itself, not a measurement: no number is asserted), writes every
// part's results under --out, prints the claim's report and rewrites its
// block in --doc, leaving the rest of the document alone. A preset takes
// none of the matrix flags.
func TestExperimentPresets(t *testing.T) {
	stdout, stderr, code := lhpvm(t, "experiment", "--preset", "list")
	require.Equal(t, 0, code, stderr)
	var names []string
	for _, l := range strings.Split(stdout, "\n") {
		if l != "" && !strings.HasPrefix(l, " ") {
			names = append(names, l)
		}
	}
	require.Equal(t, []string{"vee13-pticket", "pv-ticket", "pvqspin-steal", "kvm-boost", "coscheduling"}, names)
	for _, args := range [][]string{
		{"--preset", "nope"},
		{"--preset", "kvm-boost", "--locks", "tas"},
		{"--preset", "kvm-boost", "--sizes", "4"},
		{"--preset", "kvm-boost", "--ablation", "pvqspin"},
		{"--doc", "x.md"},
		{"--preset", "kvm-boost", "--doc", filepath.Join(t.TempDir(), "missing.md")},
		{"--preset", "kvm-boost", "--doc", writeTemp(t, "no markers\n")},
		{"--preset", "kvm-boost", "--doc", "/dev/zero"},
	} {
		_, stderr, code := lhpvm(t, append([]string{"experiment"}, args...)...)
		assert.NotEqual(t, 0, code, "%v must fail", args)
		assert.NotEmpty(t, stderr, "%v says why", args)
	}
	for _, args := range [][]string{
		{"--preset", "list", "--doc", "x.md"},
		{"--preset", "kvm-boost", "--repeat", "0"},
		{"--preset", "kvm-boost", "--duration", "0s"},
		{"--sizes", "4,4"},
		{"--locks", "ticket,ticket", "--sizes", "4"},
		{"--compare", "pticket:rr/ticket:rr", "--locks", "ticket", "--policies", "rr"},
		{"--precision", "25%", "--locks", "ticket", "--policies", "rr"},
		{"--resume", t.TempDir()},
	} {
		_, stderr, code := lhpvm(t, append([]string{"experiment"}, args...)...)
		assert.Equal(t, 2, code, "%v is a usage error", args)
		assert.NotEmpty(t, stderr, "%v says why", args)
	}

	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		for _, name := range names {
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				doc := writeTemp(t, "# Literature\n\n<!-- preset "+name+" -->\nold numbers\n<!-- end preset "+name+" -->\n\nverdict\n")
				stdout, stderr, code := lhpvm(t, on(h, "experiment", "--preset", name, "--duration", "5ms", "--repeat", "1",
					"--quiet", "--out", dir, "--doc", doc)...)
				require.Equal(t, 0, code, stderr)
				assert.Contains(t, stdout, "## "+name+"\n\nClaim: ")
				got := string(readFile(t, doc))
				assert.NotContains(t, got, "old numbers")
				assert.Contains(t, got, "<!-- preset "+name+" -->\nMeasured by `lhpvm experiment --preset "+name+"`")
				assert.True(t, strings.HasSuffix(got, "<!-- end preset "+name+" -->\n\nverdict\n"), got)
				entries, err := os.ReadDir(dir)
				require.NoError(t, err)
				require.NotEmpty(t, entries)
				for _, e := range entries {
					r := readExp(t, filepath.Join(dir, e.Name()))
					assert.Equal(t, h.Name(), r.Meta.Backend)
					// kvm names its vendor module (kvm_amd, kvm_intel, kvm_pvm),
					// in the results and in the doc; ptrace has none.
					name := h.Name()
					if r.Meta.Module != "" {
						name += " (" + r.Meta.Module + ")"
					}
					assert.Equal(t, h.Name() == "kvm", r.Meta.Module != "", "backend_module %q", r.Meta.Module)
					assert.Contains(t, got, "on the "+name+" backend")
					for _, c := range r.Cells {
						assert.True(t, c.OK, "%s/%s: %+v", name, e.Name(), c)
					}
				}
			})
		}
	})
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "doc.md")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// TestExperimentInterruptResume: SIGINT in the middle of a 12-run
// experiment leaves valid results marked incomplete and exits 130;
// --resume then finishes it, making no run twice; the folder is refused to
// a new experiment until --force.
func TestExperimentInterruptResume(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		dir := filepath.Join(t.TempDir(), "out")
		args := on(h, "experiment", "--locks", "ticket,tas", "--policies", "rr", "--sizes", "4", "--duration", "100ms",
			"--repeat", "3", "--out", dir, "--quiet")
		cmd := exec.Command(lhpvmBin(t), args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		journal := filepath.Join(dir, "journal.jsonl")
		lines := func() int { return countLines(journal) }
		require.Eventually(t, func() bool { return lines() >= 2 }, 5*time.Minute, 10*time.Millisecond, "two runs finished")
		require.NoError(t, cmd.Process.Signal(os.Interrupt))
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			// It ended before the signal came: nothing to resume.
			require.NoError(t, err)
			t.Skip("the experiment finished before it was interrupted")
		}
		require.Equal(t, 130, ee.ExitCode(), stderr.String())
		assert.Contains(t, stderr.String(), "--resume "+dir)
		var res struct {
			Complete bool `json:"complete"`
		}
		b, err := os.ReadFile(filepath.Join(dir, "results.json"))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &res), "results.json is whole")
		assert.False(t, res.Complete)
		before := lines()
		assert.Less(t, before, 12)

		_, stderr2, code := lhpvm(t, on(h, "experiment", "--locks", "ticket", "--sizes", "4", "--out", dir)...)
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr2, "--resume")

		_, stderr2, code = lhpvm(t, "experiment", "--resume", dir, "--quiet")
		require.Equal(t, 0, code, stderr2)
		b, err = os.ReadFile(filepath.Join(dir, "results.json"))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &res))
		assert.True(t, res.Complete)
		jb, err := os.ReadFile(journal)
		require.NoError(t, err)
		ids := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(string(jb)), "\n") {
			var e struct{ ID string }
			require.NoError(t, json.Unmarshal([]byte(l), &e))
			assert.False(t, ids[e.ID], "run %s twice", e.ID)
			ids[e.ID] = true
		}
		assert.Len(t, ids, 12, "3 reference runs before, 2 cells x 3, 3 after")

		_, _, code = lhpvm(t, on(h, "experiment", "--locks", "ticket", "--policies", "rr", "--sizes", "4", "--duration", "50ms",
			"--repeat", "1", "--out", dir, "--force", "--quiet")...)
		require.Equal(t, 0, code)
		_, err = os.Stat(filepath.Join(dir, "runs-4vcpus.svg"))
		assert.NoError(t, err)
		jb, _ = os.ReadFile(journal)
		assert.Equal(t, 3, bytes.Count(jb, []byte("\n")), "--force started a new journal")
	})
}

// TestExperimentKilledResumes: SIGKILL in the middle of an experiment (no
// handler runs) loses at most the run in flight: the journal and
// results.json on disk are whole, and --resume redoes only what is missing,
// no run twice.
func TestExperimentKilledResumes(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		dir := filepath.Join(t.TempDir(), "out")
		cmd := exec.Command(lhpvmBin(t), on(h, "experiment", "--locks", "ticket,tas", "--policies", "rr", "--sizes", "4",
			"--duration", "100ms", "--repeat", "3", "--out", dir, "--quiet")...)
		require.NoError(t, cmd.Start())
		journal := filepath.Join(dir, "journal.jsonl")
		lines := func() int { return countLines(journal) }
		require.Eventually(t, func() bool { return lines() >= 2 }, 5*time.Minute, 10*time.Millisecond, "two runs finished")
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()
		var res struct {
			Complete bool `json:"complete"`
		}
		require.NoError(t, json.Unmarshal(readFile(t, filepath.Join(dir, "results.json")), &res), "results.json is whole")
		if res.Complete {
			t.Skip("the experiment finished before it was killed")
		}
		before := lines()
		_, stderr, code := lhpvm(t, "experiment", "--resume", dir, "--quiet")
		require.Equal(t, 0, code, stderr)
		require.NoError(t, json.Unmarshal(readFile(t, filepath.Join(dir, "results.json")), &res))
		assert.True(t, res.Complete)
		ids := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(string(readFile(t, journal))), "\n") {
			var e struct{ ID string }
			if json.Unmarshal([]byte(l), &e) != nil {
				continue // a line the kill cut short: that run is redone
			}
			assert.False(t, ids[e.ID], "run %s twice", e.ID)
			ids[e.ID] = true
		}
		assert.Len(t, ids, 12, "every planned run once: %d were on disk when it was killed", before)
	})
}

// countLines is how many whole lines the file at path has (0 if none yet).
func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}
