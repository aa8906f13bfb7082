package sweep

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"github.com/lhpvm/lhpvm/internal/figures"
)

// plotResults draws an experiment's SVG plots into dir: per size the
// throughput against the reference and the spin fraction by lock (or, for
// an ablation, by variant) and policy, and a heatmap of the whole matrix.
func plotResults(res *Results, dir string) error {
	m := res.Matrix
	// The groups of bars: locks, or an ablation's variants of its lock.
	groups, groupName := m.Locks, "lock"
	key := func(n int, g, pol string) CellKey { return CellKey{VCPUs: n, Lock: g, Policy: pol} }
	if m.Ablation != "" && len(m.Locks) == 1 {
		groups, groupName = m.Variants, m.Locks[0]+" variant"
		key = func(n int, g, pol string) CellKey {
			return CellKey{VCPUs: n, Lock: m.Locks[0], Variant: g, Policy: pol}
		}
	}
	cell := map[CellKey]Cell{}
	for _, c := range res.Cells {
		cell[c.CellKey] = c
	}
	value := func(k CellKey, f func(Cell) float64) float64 {
		c, ok := cell[k]
		if !ok || !c.OK {
			return math.NaN()
		}
		return f(c)
	}
	for _, n := range m.Sizes {
		if !slices.ContainsFunc(res.Cells, func(c Cell) bool { return c.VCPUs == n }) {
			continue // a shard that has no cell of this size: no plots of it
		}
		rel := figures.Bars{Title: fmt.Sprintf("%d vCPUs on %d pCPUs: throughput against the reference (%s)", n, len(res.Meta.PCPUs), res.Meta.BackendName()),
			XLabel: groupName, YLabel: "acquisitions/s, relative to 2 on 2 (ticket, rr)", Groups: groups, Series: m.Policies, RefLine: 1}
		spin := figures.Bars{Title: fmt.Sprintf("%d vCPUs on %d pCPUs: spin fraction (%s)", n, len(res.Meta.PCPUs), res.Meta.BackendName()),
			XLabel: groupName, YLabel: "fraction of run time spent spinning", Groups: groups, Series: m.Policies}
		fair := figures.Bars{Title: fmt.Sprintf("%d vCPUs on %d pCPUs: fairness across each VM's vCPUs (%s)", n, len(res.Meta.PCPUs), res.Meta.BackendName()),
			XLabel: groupName, YLabel: "Jain's index of acquisitions per vCPU (1: even)", Groups: groups, Series: m.Policies, RefLine: 1}
		rel.YLabel = "steady acq/s vs 2 on 2 (ticket, rr), 95 % CI"
		for _, pol := range m.Policies {
			var r, s, fr, lo, hi []float64
			for _, g := range groups {
				k := key(n, g, pol)
				r = append(r, value(k, func(c Cell) float64 { return c.Relative }))
				ci := func(i int) func(Cell) float64 {
					return func(c Cell) float64 {
						if c.VsRefCI95 == nil {
							return math.NaN()
						}
						return c.VsRefCI95[i]
					}
				}
				lo, hi = append(lo, value(k, ci(0))), append(hi, value(k, ci(1)))
				s = append(s, value(k, func(c Cell) float64 { return c.SpinFraction }))
				fr = append(fr, value(k, func(c Cell) float64 { return c.FairnessJain }))
			}
			rel.Values, spin.Values, fair.Values = append(rel.Values, r), append(spin.Values, s), append(fair.Values, fr)
			rel.Lo, rel.Hi = append(rel.Lo, lo), append(rel.Hi, hi)
		}
		runs := figures.Strip{Title: fmt.Sprintf("%d vCPUs on %d pCPUs: every run (%s)", n, len(res.Meta.PCPUs), res.Meta.BackendName()),
			XLabel: "cell", YLabel: "steady-state acquisitions/s"}
		for _, g := range groups {
			for _, pol := range m.Policies {
				c, ok := cell[key(n, g, pol)]
				if !ok {
					continue
				}
				runs.Groups = append(runs.Groups, g+", "+pol)
				runs.Values = append(runs.Values, opsPerSec(okRuns(&c)))
			}
		}
		if err := figures.StripChart(runs, filepath.Join(dir, fmt.Sprintf("runs-%dvcpus.svg", n))); err != nil {
			return err
		}
		if err := figures.BarChart(rel, filepath.Join(dir, fmt.Sprintf("throughput-%dvcpus.svg", n))); err != nil {
			return err
		}
		if err := figures.BarChart(spin, filepath.Join(dir, fmt.Sprintf("spin-%dvcpus.svg", n))); err != nil {
			return err
		}
		if err := figures.BarChart(fair, filepath.Join(dir, fmt.Sprintf("fairness-%dvcpus.svg", n))); err != nil {
			return err
		}
	}
	h := figures.Heat{Title: fmt.Sprintf("throughput against the reference, every cell (%s)", res.Meta.BackendName()),
		XLabel: "policy, vCPUs on the pCPUs", YLabel: groupName, ScaleLabel: "throughput vs the reference",
		Rows: groups, Min: 0, Max: 2}
	for _, n := range m.Sizes {
		for _, pol := range m.Policies {
			h.Cols = append(h.Cols, fmt.Sprintf("%s, %d vCPUs", pol, n))
		}
	}
	for _, g := range groups {
		var row []float64
		for _, n := range m.Sizes {
			for _, pol := range m.Policies {
				row = append(row, value(key(n, g, pol), func(c Cell) float64 { return c.Relative }))
			}
		}
		h.Values = append(h.Values, row)
	}
	return figures.Heatmap(h, filepath.Join(dir, "heatmap.svg"))
}
