package sweep

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMedian: a reference of 810,648 and 525,195 acq/s is 667,921.5, the
// mean of the two, not the lower run (gonum's Quantile(0.5) gives that).
func TestMedian(t *testing.T) {
	ref := Reference{Before: []RunResult{{OpsPerSec: 810648}}, After: []RunResult{{OpsPerSec: 525195}}}
	ref.Summarize()
	assert.Equal(t, 667921.5, ref.OpsPerSec)
	assert.InDelta(t, (810648-525195)/810648.0, ref.Drift, 1e-12)

	u := func(x uint64) *uint64 { return &x }
	c := Cell{Runs: []RunResult{
		{OK: true, OpsPerSec: 100, Measured: Measured{LHPEvents: u(1), SpinFraction: 0.4, Acquisitions: 10}},
		{OK: true, OpsPerSec: 400, Measured: Measured{LHPEvents: u(4), SpinFraction: 0.1, Acquisitions: 40}},
		{OK: true, OpsPerSec: 200, Measured: Measured{LHPEvents: u(2), SpinFraction: 0.3, Acquisitions: 20}},
		{OK: true, OpsPerSec: 300, Measured: Measured{LHPEvents: u(3), SpinFraction: 0.2, Acquisitions: 30}},
	}}
	c.Summarize(&ref)
	assert.Equal(t, 250.0, c.OpsPerSec)
	assert.Equal(t, 100.0, c.MinOpsPerSec)
	assert.Equal(t, 400.0, c.MaxOpsPerSec)
	// Every measure the same way: its own median over the runs (a count
	// rounded), with an interval, whichever run it came from.
	require.NotNil(t, c.LHPEvents)
	assert.EqualValues(t, 3, *c.LHPEvents, "median 2.5, rounded")
	assert.InDelta(t, 0.25, c.SpinFraction, 1e-12)
	assert.EqualValues(t, 25, c.Acquisitions)
	for _, m := range []string{"acq_per_s", "spin_fraction", "lhp_events", "acquisitions", "fairness_jain"} {
		require.NotNil(t, c.CI95[m], m)
		assert.LessOrEqual(t, c.CI95[m][0], c.CI95[m][1], m)
	}
	assert.Equal(t, [2]float64{0.1, 0.4}, [2]float64{min(c.CI95["spin_fraction"][0], 0.1), max(c.CI95["spin_fraction"][1], 0.4)},
		"the interval lies within the runs' range")
	// Under host nothing measures LHP: null, never 0.
	c = Cell{Runs: []RunResult{{OK: true, OpsPerSec: 100}, {OK: true, OpsPerSec: 200}}}
	c.Summarize(&ref)
	assert.Nil(t, c.LHPEvents)
	assert.Nil(t, c.HeldPreemptedNs)
	assert.NotContains(t, c.CI95, "lhp_events")
	b, err := json.Marshal(c)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"lhp_events":null`)
}

// A kvm run names its vendor module: nested paravirtual KVM (kvm_pvm) and
// hardware SVM (kvm_amd) are different machines to measure on.
func TestBackendName(t *testing.T) {
	assert.Equal(t, "ptrace", Meta{Backend: "ptrace"}.BackendName())
	assert.Equal(t, "kvm (kvm_pvm)", Meta{Backend: "kvm", BackendModule: "kvm_pvm"}.BackendName())
}

// A cell is noisy for its own spread, not only its reference's drift, and
// says why; too few runs to judge a spread flag nothing.
func TestCellNoise(t *testing.T) {
	ref := Reference{Before: []RunResult{{OpsPerSec: 100}}, After: []RunResult{{OpsPerSec: 101}}}
	ref.Summarize()
	cell := func(xs ...float64) Cell {
		c := Cell{}
		for _, x := range xs {
			c.Runs = append(c.Runs, RunResult{OK: true, OpsPerSec: x})
		}
		c.Summarize(&ref)
		return c
	}
	tight := cell(100, 101, 99, 100, 102)
	assert.False(t, tight.Noisy, "%v", tight.NoisyWhy)
	wide := cell(10, 100, 300, 50, 200)
	assert.True(t, wide.Noisy)
	require.Len(t, wide.NoisyWhy, 1)
	assert.Contains(t, wide.NoisyWhy[0], "its median is known to ±")
	assert.False(t, cell(10, 300).Noisy, "two runs judge no spread")

	ref = Reference{Before: []RunResult{{OpsPerSec: 100}}, After: []RunResult{{OpsPerSec: 150}}}
	ref.Summarize()
	drifted := cell(100, 101, 99)
	assert.Equal(t, []string{"its reference drifted 50 %"}, drifted.NoisyWhy)
}

// --shard auto: a Slurm array task, 0- or 1-based, and a Kubernetes
// Indexed Job's pod each name their shard; anything else is refused.
func TestShardFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, c := range []struct {
		env  func(string) string
		want Shard
	}{
		{env("SLURM_ARRAY_TASK_ID", "0", "SLURM_ARRAY_TASK_MIN", "0", "SLURM_ARRAY_TASK_MAX", "3", "SLURM_ARRAY_TASK_COUNT", "4"), Shard{1, 4}},
		{env("SLURM_ARRAY_TASK_ID", "4", "SLURM_ARRAY_TASK_MIN", "1", "SLURM_ARRAY_TASK_MAX", "4", "SLURM_ARRAY_TASK_COUNT", "4", "SLURM_ARRAY_TASK_STEP", "1"), Shard{4, 4}},
		{env("JOB_COMPLETION_INDEX", "2", "JOB_COMPLETIONS", "3"), Shard{3, 3}},
	} {
		s, err := ShardFromEnv(c.env)
		require.NoError(t, err)
		assert.Equal(t, c.want, s)
	}
	for want, e := range map[string]func(string) string{
		"neither a Slurm job array":       env(),
		"step 2":                          env("SLURM_ARRAY_TASK_ID", "2", "SLURM_ARRAY_TASK_MIN", "0", "SLURM_ARRAY_TASK_MAX", "6", "SLURM_ARRAY_TASK_COUNT", "4", "SLURM_ARRAY_TASK_STEP", "2"),
		`SLURM_ARRAY_TASK_MIN="" is not`:  env("SLURM_ARRAY_TASK_ID", "2"),
		"passes its spec.completions":     env("JOB_COMPLETION_INDEX", "0"),
		"shard 5/4 from the environment":  env("JOB_COMPLETION_INDEX", "4", "JOB_COMPLETIONS", "4"),
		`JOB_COMPLETION_INDEX="x" is not`: env("JOB_COMPLETION_INDEX", "x", "JOB_COMPLETIONS", "4"),
	} {
		_, err := ShardFromEnv(e)
		require.Error(t, err, want)
		assert.Contains(t, err.Error(), want)
	}
}

// A journal line a kill cut short is dropped when the journal is opened
// again, so the next entry starts a line of its own.
func TestJournalTornLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, JournalFile)
	require.NoError(t, os.WriteFile(path, []byte(`{"id":"a"}`+"\n"+`{"id":"b","ru`), 0o644))
	j, err := OpenJournal(dir)
	require.NoError(t, err)
	require.NoError(t, j.Record(Entry{ID: "c"}, func() *Results { return &Results{} }))
	require.NoError(t, j.Close())
	done, err := ReadJournal(dir)
	require.NoError(t, err)
	assert.Len(t, done, 2)
	assert.Contains(t, done, "a")
	assert.Contains(t, done, "c")
}
