package figures

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// TestFiguresFit: each figure, with long names in it, is drawn with every
// text inside its canvas (render checks that, with the font's metrics) and
// a background over the whole canvas, in SVG (fonts embedded) and PNG.
func TestFiguresFit(t *testing.T) {
	dir := t.TempDir()
	tl := &vmm.Timeline{From: 0, To: 600 * time.Millisecond, PCPUs: []int{0, 1}, VMs: []string{"application-vm", "noisy"}, Policy: "rr",
		Slices: []vmm.TimelineSlice{
			{PCPU: 0, VM: 0, VCPU: 0, Start: 0, End: 30 * time.Millisecond, WaitingFor: 0},
			{PCPU: 1, VM: 0, VCPU: 1, Start: 0, End: 600 * time.Millisecond, WaitingFor: -1},
			{PCPU: 0, VM: 1, VCPU: 0, Start: 30 * time.Millisecond, End: 600 * time.Millisecond, WaitingFor: -1},
		},
		Marks: []vmm.TimelineMark{{PCPU: 0, At: 30 * time.Millisecond, Kind: "LHP"}}}
	for _, ext := range []string{"svg", "png"} {
		require.NoError(t, Timeline(tl, "scenario slide8-lhp-two-vms: rr, 30ms slices, on ptrace, 0s-600ms", filepath.Join(dir, "t."+ext)))
		require.NoError(t, BarChart(Bars{Title: "4 vCPUs on 2 pCPUs: throughput against the reference (ptrace)",
			XLabel: "lock", YLabel: "acquisitions/s, relative to 2 on 2 (ticket, rr)",
			Groups: []string{"ticket", "pvqspin"}, Series: []string{"rr", "balance+pv+delay"},
			Values: [][]float64{{0.1, 1.7}, {math.NaN(), 0.9}}, RefLine: 1}, filepath.Join(dir, "b."+ext)))
		require.NoError(t, Heatmap(Heat{Title: "throughput against the reference, every cell (kvm (kvm_intel))", XLabel: "policy, vCPUs",
			YLabel: "lock", ScaleLabel: "throughput vs the reference", Rows: []string{"ticket", "spinyield"},
			Cols: []string{"rr, 2 vCPUs", "balance+pv+delay, 8 vCPUs"}, Values: [][]float64{{0.5, math.NaN()}, {1.5, 2.5}},
			Min: 0, Max: 2}, filepath.Join(dir, "h."+ext)))
	}
	svg, err := os.ReadFile(filepath.Join(dir, "t.svg"))
	require.NoError(t, err)
	assert.True(t, strings.Contains(string(svg), "@font-face"), "fonts embedded")
	// The first shape drawn is the white background over the canvas.
	first := strings.Index(string(svg), "<path")
	require.Positive(t, first)
	assert.True(t, strings.Contains(string(svg)[first:first+200], "fill:#FFFFFF"), "a white background first")
}

// TestRenderRefusesClippedText: a text past the canvas's edge is an error
// naming it, rotated texts included.
func TestRenderRefusesClippedText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.svg")
	err := render(path, vg.Points(100), vg.Points(50), func(c draw.Canvas) {
		sty := draw.TextStyle{Font: newPlot("").Title.TextStyle.Font, Handler: newPlot("").Title.TextStyle.Handler}
		c.FillText(sty, vg.Point{X: 10, Y: 20}, "a label far too long for this canvas")
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"a label far too long for this canvas"`)
	err = render(path, vg.Points(100), vg.Points(50), func(c draw.Canvas) {
		sty := draw.TextStyle{Font: newPlot("").Title.TextStyle.Font, Handler: newPlot("").Title.TextStyle.Handler, Rotation: math.Pi / 2}
		c.FillText(sty, vg.Point{X: 20, Y: 10}, "rotated and too long")
	})
	require.Error(t, err, "a rotated text runs off the top")
	assert.True(t, strings.Contains(err.Error(), "rotated"))
	require.NoError(t, render(path, vg.Points(100), vg.Points(50), func(c draw.Canvas) {
		sty := draw.TextStyle{Font: newPlot("").Title.TextStyle.Font, Handler: newPlot("").Title.TextStyle.Handler}
		c.FillText(sty, vg.Point{X: 5, Y: 20}, "fits")
	}))
}

// TestStripChart: a strip of runs, log-scaled when they span decades, and
// linear otherwise; every label inside the canvas (render checks).
func TestStripChart(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, StripChart(Strip{Title: "runs", XLabel: "cell", YLabel: "acq/s", Groups: []string{"a", "b"},
		Values: [][]float64{{1e4, 3e4, 5e4}, {60, 65, 66}}}, filepath.Join(dir, "log.svg")))
	require.NoError(t, StripChart(Strip{Title: "runs", XLabel: "cell", YLabel: "acq/s", Groups: []string{"a"},
		Values: [][]float64{{0, 1, 2}}}, filepath.Join(dir, "linear.svg")))
}
