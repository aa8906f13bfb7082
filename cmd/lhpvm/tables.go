package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/lhpvm/lhpvm/internal/sweep"
)

// The experiment's tables, in markdown, as the README quotes them.

// printResults prints the cells as the markdown table the README quotes.
func printResults(out io.Writer, res *sweep.Results) {
	for _, ref := range res.References {
		drift := ""
		if ref.Drift > sweep.NoisyDrift {
			drift = fmt.Sprintf(" It drifted %.0f %% across the matrix: its cells are flagged noisy.", 100*ref.Drift)
		}
		shard := ""
		if len(res.References) > 1 {
			shard = fmt.Sprintf(" (shard %d)", ref.Shard)
		}
		fmt.Fprintf(out, "Reference%s: ticket lock, 2 vCPUs on %d pCPUs, rr: %.3g acquisitions/s (median of %d runs before, during and after the matrix, range %.3g-%.3g).%s\n",
			shard, len(res.Meta.PCPUs), ref.OpsPerSec, len(ref.Before)+len(ref.During)+len(ref.After), ref.Min, ref.Max, drift)
	}
	m := res.Matrix
	boost := ""
	if m.BoostKicked {
		boost = "; pv policies boost the kicked vCPU"
	}
	fmt.Fprintf(out, "Each cell: the median of its n runs (%d rounds) of %s (range of acq/s in brackets), run interleaved, each from its own seed; vs ref: the ratio of medians to the reference with its 95 %% bootstrap interval in brackets, the figure that decides; acq/s is the steady state, after a warm-up of two rotations of every run queue; cs %d cycles, think %d cycles%s; on %s. Fairness: Jain's index of the acquisitions of each VM's vCPUs (1 even, 1/n one took all), the least fair VM's.\n\n",
		m.Repeat, m.Duration, m.CSCycles, m.Think, boost, res.Meta.BackendName())
	if m.Ablation != "" {
		printAblation(out, res)
		return
	}
	if m.Precision > 0 {
		fmt.Fprintf(out, "Precision: each cell repeated past %d rounds until its interval is within ±%.0f %% of its ratio, within a budget of %s; n marked * ran out of budget first.\n\n", m.Repeat, 100*m.Precision, m.Budget)
	}
	fmt.Fprintln(out, "| vCPUs | lock | policy | n | acq/s | vs ref [95 % CI] | spin % | LHP | LWP | fairness | check |")
	fmt.Fprintln(out, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, c := range res.Cells {
		check := verdict(c)
		if !c.OK { // a failed or refused cell measured nothing: no zeros
			fmt.Fprintf(out, "| %d | %s | %s | %d | | %s | | | | | %s |\n", c.VCPUs, c.Lock, c.Policy, c.N, c.VsRefText(), check)
			continue
		}
		acq := fmt.Sprintf("%.3g", c.OpsPerSec)
		if len(c.Runs) > 1 {
			acq += fmt.Sprintf(" [%.3g-%.3g]", c.MinOpsPerSec, c.MaxOpsPerSec)
		}
		n := fmt.Sprint(c.N)
		if c.OutOfBudget {
			n += "*"
		}
		fmt.Fprintf(out, "| %d | %s | %s | %s | %s | %s | %.1f | %s | %s | %.2f | %s |\n", c.VCPUs, c.Lock, c.Policy, n,
			acq, c.VsRefText(), 100*c.SpinFraction, count(c.LHPEvents), count(c.LWPEvents), c.FairnessJain, check)
	}
	printComparisons(out, res)
	if f := res.Failed(); len(f) > 0 {
		fmt.Fprintf(out, "\nFailed cells (%d):\n", len(f))
		for _, c := range f {
			fmt.Fprintf(out, "- %s\n", c)
		}
	}
}

// count is a count that a policy may not measure: n/a for none (LHP and
// LWP under host, where Linux's preemptions are not seen).
func count(p *uint64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprint(*p)
}

// verdict is a cell's verdict for a table.
func verdict(c sweep.Cell) string {
	check := "ok"
	if c.Noisy {
		check = "ok, noisy: " + strings.Join(c.NoisyWhy, ", ")
	}
	if c.Drifted > 0 {
		check += fmt.Sprintf(", schedule drifted in %d of %d runs", c.Drifted, c.N)
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
func printAblation(out io.Writer, res *sweep.Results) {
	a := sweep.Ablations[res.Matrix.Ablation]
	fmt.Fprintf(out, "Ablation %s: %s. Variants:\n", res.Matrix.Ablation, a.Doc)
	for _, name := range res.Matrix.Variants {
		if v, ok := sweep.LookupVariant(res.Matrix.Ablation, name); ok {
			fmt.Fprintf(out, "- %s: %s\n", v.Name, v.Doc)
		}
	}
	fmt.Fprintf(out, "\nDamage: the lock held by a vCPU that did not run / handed to a waiter that did not run, ms per run of %s.\n\n", res.Matrix.Duration)
	fmt.Fprintln(out, "| vCPUs | policy | variant | acq/s | vs ref [95 % CI] | spin % | acquire p99 µs | held-preempted ms | granted-preempted ms | pv_lock_stealing | pv_wait_node | pv_wait_head | pv_wait_early | pv_kick_unlock | pv_latency_wake µs | check |")
	fmt.Fprintln(out, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	ms := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(*p)/1e6)
	}
	// Grouped by size and policy, variants in order.
	cells := append([]sweep.Cell(nil), res.Cells...)
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
		if !c.OK { // a failed or refused cell measured nothing: no zeros
			fmt.Fprintf(out, "| %d | %s | %s | | %s |%s %s |\n", c.VCPUs, c.Policy, c.Variant, c.VsRefText(), strings.Repeat(" |", 12), verdict(c))
			continue
		}
		acq := fmt.Sprintf("%.3g", c.OpsPerSec)
		if len(c.Runs) > 1 {
			acq += fmt.Sprintf(" [%.3g-%.3g]", c.MinOpsPerSec, c.MaxOpsPerSec)
		}
		e := c.LockEvents
		fmt.Fprintf(out, "| %d | %s | %s | %s | %s | %.1f | %.1f | %s | %s | %d | %d | %d | %d | %d | %.0f | %s |\n",
			c.VCPUs, c.Policy, c.Variant, acq, c.VsRefText(), 100*c.SpinFraction, c.AcquireP99Ns/1e3,
			ms(c.HeldPreemptedNs), ms(c.GrantedPreemptedNs), e.PVLockStealing, e.PVWaitNode, e.PVWaitHead,
			e.PVWaitEarly, e.PVKickUnlock, e.PVLatencyWake/1e3, verdict(c))
	}
	printComparisons(out, res)
	if f := res.Failed(); len(f) > 0 {
		fmt.Fprintf(out, "\nFailed cells (%d):\n", len(f))
		for _, c := range f {
			fmt.Fprintf(out, "- %s\n", c)
		}
	}
}

// printComparisons is the table of the matrix's comparisons (--compare, a
// preset's claims), each judged from its interval.
func printComparisons(out io.Writer, res *sweep.Results) {
	if len(res.Comparisons) == 0 {
		return
	}
	fmt.Fprint(out, "\nComparisons: the ratio of the medians, its 95 % bootstrap interval, and the verdict on the claim that A beats B (holds: the interval lies above 1; reversed: below; inconclusive: it contains 1).\n\n")
	fmt.Fprintln(out, "| vCPUs | A | B | A ÷ B [95 % CI] | n (A, B) | verdict |")
	fmt.Fprintln(out, "|---:|---|---|---:|---:|---|")
	for _, c := range res.Comparisons {
		fmt.Fprintf(out, "| %d | %s | %s | %s | %d, %d | %s |\n", c.A.VCPUs, sweep.CellName(c.A), sweep.CellName(c.B), c.Text(), c.Runs[0], c.Runs[1], c.Verdict)
	}
}
