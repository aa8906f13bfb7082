package sweep

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/lhpvm/lhpvm/internal/figures"
	"github.com/lhpvm/lhpvm/internal/stats"
)

// What decides a run: each run of a cell records the start it was drawn
// (sched.Start), so the runs can be grouped by what their starts had in
// common and the groups' throughputs compared. A start condition that
// explains most of the spread (η², the share of the variance of log
// throughput between its groups) is one that fixed runs would all have
// shared; drawing it per run is what makes them independent samples.

// StartFactor is one way of grouping runs by their start.
type StartFactor struct {
	Name string
	Doc  string
	// Of names a run's group, or "" when the factor does not apply.
	Of func(r RunResult) string
}

// StartFactors are the start conditions the lab draws per run.
var StartFactors = []StartFactor{
	{Name: "queues", Doc: "which vCPUs start on the same pCPU's queue",
		Of: func(r RunResult) string {
			if r.Start == nil {
				return ""
			}
			by := map[int][]string{}
			for v, h := range r.Start.Home {
				by[h] = append(by[h], fmt.Sprint(v))
			}
			var qs []string
			for _, q := range by {
				qs = append(qs, "{"+strings.Join(q, ",")+"}")
			}
			sort.Strings(qs)
			return strings.Join(qs, "")
		}},
	{Name: "first", Doc: "the vCPU that became runnable first",
		Of: func(r RunResult) string {
			if r.Start == nil || len(r.Start.Order) == 0 {
				return ""
			}
			return fmt.Sprintf("vCPU %d", r.Start.Order[0])
		}},
	{Name: "phase gap", Doc: "how far apart the first two pCPUs' slices end, in slices (0 to 1/2)",
		Of: func(r RunResult) string {
			if r.Start == nil || len(r.Start.Phase) < 2 {
				return ""
			}
			d := math.Abs(r.Start.Phase[0] - r.Start.Phase[1])
			d = math.Min(d, 1-d)                     // slices are periodic: a gap of 0.9 is one of 0.1
			lo := math.Min(math.Floor(d*8)/8, 0.375) // eighths of a slice, 0 to 1/2
			return fmt.Sprintf("%.3f-%.3f", lo, lo+0.125)
		}},
}

// StartReport is, for every cell with at least minRuns good runs, the
// steady state against the whole run, and how much of the spread of the
// whole-run throughput each start factor explains (markdown).
func StartReport(res *Results, minRuns int) string {
	var b strings.Builder
	for _, c := range res.Cells {
		runs := okRuns(&c)
		if len(runs) < minRuns {
			continue
		}
		whole, steady := make([]float64, 0, len(runs)), make([]float64, 0, len(runs))
		for _, r := range runs {
			whole = append(whole, r.WholeOpsPerSec)
			steady = append(steady, r.OpsPerSec)
		}
		sort.Float64s(whole)
		sort.Float64s(steady)
		fmt.Fprintf(&b, "**%v**, %d runs of %s:\n\n", c.CellKey, len(runs), res.Matrix.Duration)
		t := &table{head: []string{"throughput", "median acq/s", "p10–p90", "max ÷ min"}}
		row := func(name string, xs []float64) {
			mm := "∞"
			if xs[0] > 0 {
				mm = fmt.Sprintf("%.3g", xs[len(xs)-1]/xs[0])
			}
			t.add(name, fmt.Sprintf("%.3g", stats.Median(xs)), fmt.Sprintf("%.3g–%.3g", pct(xs, 0.1), pct(xs, 0.9)), mm)
		}
		row("whole run (start transient included)", whole)
		row("steady state (after the warm-up)", steady)
		fmt.Fprintf(&b, "%s\n", t)
		ft := &table{head: []string{"start factor", "groups", "η² of log whole-run acq/s", "η² of log steady acq/s", "group medians, whole run (n)"}}
		for _, f := range StartFactors {
			groups := map[string][]RunResult{}
			for _, r := range runs {
				if g := f.Of(r); g != "" {
					groups[g] = append(groups[g], r)
				}
			}
			if len(groups) < 2 {
				continue
			}
			var names []string
			for g := range groups {
				names = append(names, g)
			}
			sort.Strings(names)
			var meds []string
			for _, g := range names {
				var xs []float64
				for _, r := range groups[g] {
					xs = append(xs, r.WholeOpsPerSec)
				}
				meds = append(meds, fmt.Sprintf("%s %.3g (%d)", g, stats.Median(xs), len(xs)))
			}
			ft.add(f.Name+": "+f.Doc, fmt.Sprint(len(groups)),
				eta2(groups, func(r RunResult) float64 { return r.WholeOpsPerSec }),
				eta2(groups, func(r RunResult) float64 { return r.OpsPerSec }),
				strings.Join(meds, "; "))
		}
		fmt.Fprintf(&b, "%s\n", ft)
	}
	if b.Len() == 0 {
		return fmt.Sprintf("No cell has %d good runs.\n", minRuns)
	}
	return b.String()
}

// pct is the p-quantile of sorted xs (nearest rank).
func pct(xs []float64, p float64) float64 {
	return xs[min(len(xs)-1, int(math.Round(p*float64(len(xs)-1))))]
}

// eta2 is the share of the variance of log f(run) that lies between the
// groups (one-way analysis of variance); runs with f ≤ 0 are left out.
func eta2(groups map[string][]RunResult, f func(RunResult) float64) string {
	var all []float64
	type g struct{ xs []float64 }
	var gs []g
	for _, rs := range groups {
		var xs []float64
		for _, r := range rs {
			if v := f(r); v > 0 {
				xs = append(xs, math.Log(v))
			}
		}
		gs = append(gs, g{xs})
		all = append(all, xs...)
	}
	if len(all) < 3 {
		return "-"
	}
	mean := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	m := mean(all)
	var total, between float64
	for _, x := range all {
		total += (x - m) * (x - m)
	}
	for _, g := range gs {
		if len(g.xs) > 0 {
			d := mean(g.xs) - m
			between += float64(len(g.xs)) * d * d
		}
	}
	if total == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", between/total)
}

// StartPlot draws, for every cell with at least minRuns good runs, each
// run's whole-run and steady-state throughput side by side (a strip each,
// log scale): the start transient's lottery against the steady state.
func StartPlot(res *Results, minRuns int, path string) error {
	s := figures.Strip{Title: fmt.Sprintf("every run, whole run and steady state (%s, runs of %s)", res.Meta.BackendName(), res.Matrix.Duration),
		XLabel: "cell", YLabel: "acquisitions/s"}
	for _, c := range res.Cells {
		runs := okRuns(&c)
		if len(runs) < minRuns {
			continue
		}
		var whole, steady []float64
		for _, r := range runs {
			whole, steady = append(whole, r.WholeOpsPerSec), append(steady, r.OpsPerSec)
		}
		name := CellName(c.CellKey)
		s.Groups = append(s.Groups, name+", whole run", name+", steady")
		s.Values = append(s.Values, whole, steady)
	}
	if len(s.Groups) == 0 {
		return fmt.Errorf("no cell has %d good runs", minRuns)
	}
	return figures.StripChart(s, path)
}
