package sweep

import (
	"strings"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPresetsPlan: every part of every preset is a valid experiment, with
// the knobs it names; and each preset's runs add up to under 4 minutes of
// run time, so that with the runs' start-up it stays under the 5 minutes
// a reproduction may take.
func TestPresetsPlan(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Presets {
		assert.False(t, seen[p.Name], "preset %s twice", p.Name)
		seen[p.Name] = true
		assert.NotEmpty(t, p.Claim)
		assert.NotEmpty(t, p.Source)
		require.NotNil(t, p.Report, p.Name)
		var runTime time.Duration
		parts := map[string]bool{}
		for _, part := range p.Parts {
			assert.False(t, parts[part.Name], "%s: part %s twice", p.Name, part.Name)
			parts[part.Name] = true
			plan, err := Check(part.With(PresetOverrides{Out: "/x"}))
			require.NoError(t, err, "%s/%s", p.Name, part.Name)
			assert.Equal(t, "/x/"+part.Name, plan.Out)
			runTime += time.Duration(plan.Runs()) * plan.duration
		}
		assert.Less(t, runTime, 4*time.Minute, p.Name)
		n, err := p.Runs(PresetOverrides{Duration: time.Millisecond, Repeat: 1})
		require.NoError(t, err)
		m, err := p.Runs(PresetOverrides{})
		require.NoError(t, err)
		assert.Less(t, n, m, "%s: --repeat 1 makes fewer runs", p.Name)
	}
	_, err := LookupPreset("nope")
	assert.ErrorContains(t, err, `--preset "nope": have vee13-pticket, pv-ticket`)
}

// TestPresetWith: the overrides reach every part, and a part's own matrix
// stays.
func TestPresetWith(t *testing.T) {
	p, err := LookupPreset("vee13-pticket")
	require.NoError(t, err)
	o := p.Parts[0].With(PresetOverrides{Backend: "ptrace", PCPUs: "0", Out: "out", Duration: 7 * time.Millisecond, Repeat: 2})
	assert.Equal(t, "ptrace", o.Backend)
	assert.Equal(t, "0", o.PCPUs)
	assert.Equal(t, "out/saturated", o.Out)
	assert.Equal(t, 7*time.Millisecond, o.Duration)
	assert.Equal(t, 2, o.Repeat)
	assert.Equal(t, "ticket,pticket,pvticket", o.Locks)
	assert.EqualValues(t, 0, o.ThinkCycles)
	shift := p.Parts[3].With(PresetOverrides{})
	assert.Equal(t, "pticket", shift.Ablation)
	plan, err := Check(shift)
	require.NoError(t, err)
	assert.Equal(t, []string{"pticket"}, plan.Matrix.Locks)
	assert.Len(t, plan.Matrix.Variants, 5)
	// The variant's shift reaches the VM.
	sc := plan.cell(CellKey{VCPUs: 4, Lock: "pticket", Variant: "shift-8", Policy: "rr"})
	assert.EqualValues(t, 8, sc.VMs[0].PTicketTimeoutShift)
}

// TestPresetReports: each preset run against fake runs gives a report with
// a row per size of its parts, and the published figure beside ours.
func TestPresetReports(t *testing.T) {
	for _, p := range Presets {
		t.Run(p.Name, func(t *testing.T) {
			f := &fakeRuns{}
			results := map[string]*Results{}
			for _, part := range p.Parts {
				plan, err := Check(part.With(PresetOverrides{Duration: time.Millisecond, Repeat: 2}))
				require.NoError(t, err)
				res, err := plan.Run(f.run, nil, Meta{Version: "lhpvm commit x", Backend: "fake"})
				require.NoError(t, err)
				results[part.Name] = res
			}
			rep := PresetReport(&p, results)
			assert.Contains(t, rep, "Measured by `lhpvm experiment --preset "+p.Name+"` (lhpvm commit x) on the fake backend")
			assert.NotContains(t, rep, "FAILED")
			assert.NotContains(t, rep, "not measured")
			assert.Contains(t, rep, "| ", "a table")
			assert.NotContains(t, rep, "NaN")
			assert.NotContains(t, rep, "Inf")

			delete(results, p.Parts[0].Name)
			assert.Contains(t, PresetReport(&p, results), "- "+p.Parts[0].Name+": not measured")
		})
	}
	p, _ := LookupPreset("vee13-pticket")
	f := &fakeRuns{}
	plan, err := Check(p.Parts[1].With(PresetOverrides{Duration: time.Millisecond, Repeat: 1}))
	require.NoError(t, err)
	res, err := plan.Run(f.run, nil, Meta{})
	require.NoError(t, err)
	rep := PresetReport(p, map[string]*Results{"moderate": res})
	// Fake runs give every lock the same throughput: 1×, which decides
	// nothing, and the paper's figure outside it.
	assert.Contains(t, rep, "| moderate | rr | 1.00× | inconclusive (published 5.32× outside) |")
	assert.Contains(t, rep, "| moderate | pv | 1.00× | inconclusive (published 7.91× outside) |")
	assert.Contains(t, rep, "| 4 (2×) | rr | 1.00 | 1.00 | 1.00 | 1.00× |")
}

// TestReplaceDoc: a report goes between its preset's markers, and only
// there; missing, doubled or misordered markers are errors.
func TestReplaceDoc(t *testing.T) {
	doc := "# Doc\n\n<!-- preset a -->\nold\n<!-- end preset a -->\n\n<!-- preset b -->\n<!-- end preset b -->\ntail\n"
	out, err := ReplaceDoc([]byte(doc), "a", "new\ntable")
	require.NoError(t, err)
	assert.Equal(t, "# Doc\n\n<!-- preset a -->\nnew\ntable\n<!-- end preset a -->\n\n<!-- preset b -->\n<!-- end preset b -->\ntail\n", string(out))
	out, err = ReplaceDoc(out, "b", "B\n")
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(string(out), "<!-- preset b -->\nB\n<!-- end preset b -->\ntail\n"), string(out))
	assert.NoError(t, CheckDoc(out, "a"))

	for name, bad := range map[string]string{
		"missing":  "no markers\n",
		"no end":   "<!-- preset a -->\n",
		"twice":    "<!-- preset a -->\n<!-- end preset a -->\n<!-- preset a -->\n<!-- end preset a -->",
		"reversed": "<!-- end preset a -->\n<!-- preset a -->\n",
	} {
		_, err := ReplaceDoc([]byte(bad), "a", "x")
		assert.Error(t, err, name)
	}
}

// TestMeasureCounts: a run's acquisitions and slow paths are its VMs'.
func TestMeasureCounts(t *testing.T) {
	r := measure(&vmm.Result{OK: true, VMs: []*vmm.VMResult{
		{VCPUs: 2, OpsPerSec: 10, LockStats: &vmm.LockStats{Acquisitions: 100, SlowPaths: 3}},
		{VCPUs: 2, OpsPerSec: 5, LockStats: &vmm.LockStats{Acquisitions: 50, SlowPaths: 1}},
	}})
	assert.EqualValues(t, 150, r.Acquisitions)
	assert.EqualValues(t, 4, r.SlowPaths)
	assert.Equal(t, []float64{10, 5}, r.VMAcqPerS)
}
