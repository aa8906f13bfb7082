package sweep

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/internal/stats"
)

// The presets' reports: markdown tables of the claim's comparison, our
// medians with their ranges beside the published figure.

// PresetReport is preset p's report from its parts' results: what
// measured it, then the preset's tables. A part without results is
// reported as missing.
func PresetReport(p *Preset, r map[string]*Results) string {
	var b strings.Builder
	var any *Results
	for _, part := range p.Parts {
		if res := r[part.Name]; res != nil && any == nil {
			any = res
		}
	}
	if any == nil {
		return "No results.\n"
	}
	m := any.Meta
	mx := any.Matrix
	rounds := fmt.Sprintf("medians of %d runs", mx.Repeat)
	if mx.Precision > 0 {
		rounds = fmt.Sprintf("medians of at least %d runs, repeated until each comparison's interval was within ±%.0f %% (at most %s a part)", mx.Repeat, 100*mx.Precision, mx.Budget)
	}
	fmt.Fprintf(&b, "Measured by `lhpvm experiment --preset %s` (%s) on the %s backend, %d pCPUs (%s), kernel %s, %s; runs of %s, steady-state throughput (after a warm-up of two rotations of every run queue), %s, 95 %% confidence intervals in brackets (percentile bootstrap over independent, seeded runs, interleaved); every verdict is computed from its interval: holds (the interval lies on the claimed side of 1), reversed, or inconclusive (it contains 1).",
		p.Name, m.Version, m.BackendName(), len(m.PCPUs), m.CPUModel, m.Kernel, m.Start.UTC().Format(time.DateOnly), mx.Duration, rounds)
	if m.PauseNs > 0 {
		fmt.Fprintf(&b, " A PAUSE, the body of every spin loop, takes %.1f ns on this CPU: 1 << 14 spins are at least %.0f µs, 1 << 15 at least %.0f µs.",
			m.PauseNs, m.PauseNs*(1<<14)/1e3, m.PauseNs*(1<<15)/1e3)
	}
	b.WriteString("\n\n")
	for _, part := range p.Parts {
		if res := r[part.Name]; res != nil {
			ref := res.References[0]
			fmt.Fprintf(&b, "- %s: reference (ticket, 2 vCPUs, rr) %.3g acq/s [%.3g–%.3g]%s\n", part.Name, ref.OpsPerSec, ref.Min, ref.Max, noisy(ref))
			if f := res.Failed(); len(f) > 0 {
				fmt.Fprintf(&b, "  - FAILED cells: %s\n", strings.Join(f, "; "))
			}
		} else {
			fmt.Fprintf(&b, "- %s: not measured\n", part.Name)
		}
	}
	b.WriteString("\n")
	b.WriteString(p.Report(r))
	return b.String()
}

func noisy(ref Reference) string {
	if ref.Drift > NoisyDrift {
		return fmt.Sprintf(", drifted %.0f %% across the part (noisy)", 100*ref.Drift)
	}
	return ""
}

// table is a markdown table.
type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cols ...string) { t.rows = append(t.rows, cols) }

func (t *table) String() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.head, " | ") + " |\n|")
	for i := range t.head {
		if i < 2 {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// find returns the cell, or nil.
func find(res *Results, vcpus int, lock, variant, policy string) *Cell {
	if res == nil {
		return nil
	}
	for i := range res.Cells {
		c := &res.Cells[i]
		if c.VCPUs == vcpus && (lock == "" || c.Lock == lock) && c.Variant == variant && c.Policy == policy {
			return c
		}
	}
	return nil
}

func usable(c *Cell) bool { return c != nil && c.OK && c.OpsPerSec > 0 }

// rel is a cell's throughput against the reference: the ratio of medians
// [its 95 % interval], and n.
func rel(res *Results, c *Cell) string {
	if c == nil || res == nil {
		return "-"
	}
	if !c.OK {
		if c.Refused {
			return "refused"
		}
		return "FAILED"
	}
	return c.VsRefText()
}

// ratio is a's throughput over b's: the ratio of their medians with its
// 95 % bootstrap interval over their runs (package stats).
func ratio(a, b *Cell) (stats.Interval, bool) {
	if !usable(a) || !usable(b) {
		return stats.Interval{}, false
	}
	return stats.RatioOfMedians(opsPerSec(okRuns(a)), opsPerSec(okRuns(b)))
}

func okRuns(c *Cell) []RunResult {
	var ok []RunResult
	for _, r := range c.Runs {
		if r.OK {
			ok = append(ok, r)
		}
	}
	return ok
}

func ratioText(a, b *Cell) string {
	iv, ok := ratio(a, b)
	if !ok {
		return "-"
	}
	return intervalText(iv)
}

// verdict is what the interval of a ÷ b says of the claim that a beats b
// (above) or loses to it: holds, reversed or inconclusive, computed, never
// written by hand; with whether a published ratio lies inside it.
func verdict(a, b *Cell, above bool, published float64) string {
	iv, ok := ratio(a, b)
	if !ok {
		return "-"
	}
	return judged(iv, above, published)
}

func times(x float64) string {
	switch {
	case math.IsInf(x, 1):
		return "∞"
	case x >= 10:
		return fmt.Sprintf("%.0f×", x)
	case x >= 0.1:
		return fmt.Sprintf("%.2f×", x)
	default:
		return fmt.Sprintf("%.3f×", x)
	}
}

// change is a ratio as a change in percent: 1.166 is "+16.6 %".
func change(a, b *Cell) string {
	iv, ok := ratio(a, b)
	if !ok {
		return "-"
	}
	pc := func(x float64) string { return fmt.Sprintf("%+.0f %%", 100*(x-1)) }
	if iv.Lo == iv.Hi {
		return pc(iv.Ratio)
	}
	return fmt.Sprintf("%s [%s … %s]", pc(iv.Ratio), pc(iv.Lo), pc(iv.Hi))
}

// geomean is the geometric mean of several a ÷ b, over their runs, with
// its interval (stats.GeomeanOfRatios); ok is false when a pair is not
// usable.
func geomean(pairs [][2]*Cell) (stats.Interval, bool) {
	var ps []stats.Pair
	for _, p := range pairs {
		if !usable(p[0]) || !usable(p[1]) {
			return stats.Interval{}, false
		}
		ps = append(ps, stats.Pair{A: opsPerSec(okRuns(p[0])), B: opsPerSec(okRuns(p[1]))})
	}
	return stats.GeomeanOfRatios(ps)
}

// intervalText is "1.42× [1.10×–1.80×]", or the ratio alone when the
// interval is a point.
func intervalText(iv stats.Interval) string {
	if iv.Lo != iv.Hi {
		return fmt.Sprintf("%s [%s–%s]", times(iv.Ratio), times(iv.Lo), times(iv.Hi))
	}
	return times(iv.Ratio)
}

// judged is an interval's verdict on the claim that it lies above (or
// below) 1, and whether a published ratio lies inside it.
func judged(iv stats.Interval, above bool, published float64) string {
	v := string(stats.Judge(iv, above))
	if published > 0 {
		if iv.Contains(published) {
			v += fmt.Sprintf(" (published %s inside)", times(published))
		} else {
			v += fmt.Sprintf(" (published %s outside)", times(published))
		}
	}
	return v
}

// overcommit names a size: "2×" for 4 vCPUs on 2 pCPUs.
func overcommit(res *Results, vcpus int) string {
	n := len(res.Meta.PCPUs)
	if n == 0 {
		return fmt.Sprint(vcpus)
	}
	x := float64(vcpus) / float64(n)
	if x == math.Trunc(x) {
		return fmt.Sprintf("%d (%.0f×)", vcpus, x)
	}
	return fmt.Sprintf("%d (%.1f×)", vcpus, x)
}

// damage is the median run's lock damage, in ms per second of run: the
// time a lock was held by a vCPU off its pCPU (holder preemption) / handed
// to a waiter off its pCPU (waiter preemption). "-" under the host policy.
func damage(res *Results, c *Cell) string {
	if res == nil {
		return "-"
	}
	d, err := time.ParseDuration(res.Matrix.Duration)
	if !usable(c) || c.HeldPreemptedNs == nil || c.GrantedPreemptedNs == nil || err != nil || d <= 0 {
		return "-"
	}
	per := func(ns int64) float64 { return float64(ns) / 1e6 / d.Seconds() }
	return fmt.Sprintf("%.0f / %.0f", per(*c.HeldPreemptedNs), per(*c.GrantedPreemptedNs))
}

func perThousand(c *Cell) string {
	if !usable(c) || c.Acquisitions == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", 1000*float64(c.SlowPaths)/float64(c.Acquisitions))
}

// contentionParts are the contention parts (saturated, moderate, light)
// that have results.
func contentionParts(r map[string]*Results) []string {
	var n []string
	for _, c := range contentions {
		if r[c.name] != nil {
			n = append(n, c.name)
		}
	}
	return n
}

func reportPTicket(r map[string]*Results) string {
	var b strings.Builder
	b.WriteString("Throughput against the reference; pticket ÷ ticket on the same host; pticket's timeouts (its waiters leaving the queue order) per 1000 acquisitions; and the damage, ms per second of run that the lock spent held by a vCPU off its pCPU (lock holder preemption) / handed to a waiter off its pCPU (lock waiter preemption), for ticket and pticket.\n\n")
	summary := &table{head: []string{"contention", "host", "pticket ÷ ticket, geometric mean over the overcommitted sizes", "verdict: pticket beats ticket on average (published)"}}
	for _, name := range contentionParts(r) {
		res := r[name]
		t := &table{head: []string{"vCPUs", "host", "ticket", "pticket", "pvticket", "pticket ÷ ticket", "verdict: pticket beats ticket", "pticket timeouts ‰", "ticket held / handed off-CPU ms/s", "pticket held / handed off-CPU ms/s"}}
		for _, pol := range res.Matrix.Policies {
			var over [][2]*Cell
			for _, n := range res.Matrix.Sizes {
				tk, pt, pv := find(res, n, "ticket", "", pol), find(res, n, "pticket", "", pol), find(res, n, "pvticket", "", pol)
				v := "-"
				if n > len(res.Meta.PCPUs) {
					v = verdict(pt, tk, true, 0)
				}
				t.add(overcommit(res, n), pol, rel(res, tk), rel(res, pt), rel(res, pv), ratioText(pt, tk), v, perThousand(pt), damage(res, tk), damage(res, pt))
				if n > len(res.Meta.PCPUs) {
					over = append(over, [2]*Cell{pt, tk})
				}
			}
			pub := 5.32 // on a non-paravirtual VMM
			if strings.Contains(pol, "pv") {
				pub = 7.91 // on a paravirtual one
			}
			g, v := "-", "-"
			if iv, ok := geomean(over); ok {
				g, v = intervalText(iv), judged(iv, true, pub)
			}
			summary.add(name, pol, g, v)
		}
		fmt.Fprintf(&b, "**%s contention** (think %d cycles):\n\n%s\n", name, res.Matrix.Think, t)
	}
	fmt.Fprintf(&b, "**Summary**:\n\n%s\n", summary)
	if res := r["timeout-shift"]; res != nil {
		// Against ticket from the moderate part: the same settings, measured
		// minutes apart.
		mod := r["moderate"]
		t := &table{head: []string{"timeout unit", "host"}}
		for _, n := range res.Matrix.Sizes {
			o := overcommit(res, n)
			t.head = append(t.head, o+": vs ref", o+": ÷ ticket", o+": timeouts ‰")
		}
		for _, pol := range res.Matrix.Policies {
			for _, v := range res.Matrix.Variants {
				row := []string{v, pol}
				for _, n := range res.Matrix.Sizes {
					c := find(res, n, "", v, pol)
					row = append(row, rel(res, c), ratioText(c, find(mod, n, "ticket", "", pol)), perThousand(c))
				}
				t.add(row...)
			}
		}
		fmt.Fprintf(&b, "**Timeout unit** (moderate contention; ÷ ticket: against the moderate part's ticket cell):\n\n%s", t)
	}
	return b.String()
}

func reportPVTicket(r map[string]*Results) string {
	var b strings.Builder
	b.WriteString("Throughput against the reference; pvticket ÷ ticket on the paravirtual host (pv), the comparison Linux made (pv spinlocks on and off, same KVM host), with the host's default wake-up of a kicked vCPU (within 500 µs) and with the kicked vCPU boosted onto the kicker's pCPU at once (+boost); pvticket's slow paths (spinning past the threshold, then WAIT) per 1000 acquisitions; the damage, ms per second of run that the lock spent held by a vCPU off its pCPU / handed to a waiter off its pCPU.\n\n")
	pub := func(res *Results, n int) string {
		if n <= len(res.Meta.PCPUs) {
			return "+0.8 % (1×)"
		}
		return "+16.6 %, +14.0 %, +5.0 % (higher overcommit)"
	}
	for _, name := range contentionParts(r) {
		res := r[name]
		boost := r[name+"-boost"]
		t := &table{head: []string{"vCPUs", "ticket, rr", "ticket, pv", "pvticket, pv", "pvticket ÷ ticket (pv)", "ticket, pv+boost", "pvticket, pv+boost", "pvticket ÷ ticket (pv+boost)", "verdict: pvticket beats ticket (pv / pv+boost)", "published", "pvticket slow paths ‰ (pv / +boost)", "ticket held / handed off-CPU ms/s (pv)", "pvticket (pv)", "pvticket (pv+boost)"}}
		for _, n := range res.Matrix.Sizes {
			tr, tp, pp := find(res, n, "ticket", "", "rr"), find(res, n, "ticket", "", "pv"), find(res, n, "pvticket", "", "pv")
			tb, pb := find(boost, n, "ticket", "", "pv"), find(boost, n, "pvticket", "", "pv")
			t.add(overcommit(res, n), rel(res, tr), rel(res, tp), rel(res, pp), change(pp, tp), rel(boost, tb), rel(boost, pb), change(pb, tb),
				verdict(pp, tp, true, 0)+" / "+verdict(pb, tb, true, 0), pub(res, n), perThousand(pp)+" / "+perThousand(pb), damage(res, tp), damage(res, pp), damage(boost, pb))
		}
		fmt.Fprintf(&b, "**%s contention** (think %d cycles):\n\n%s\n", name, res.Matrix.Think, t)
	}
	return b.String()
}

func reportPVQSteal(r map[string]*Results) string {
	var b strings.Builder
	if res := r["stealing"]; res != nil {
		b.WriteString("**Stealing** (moderate contention, pv host): throughput against the reference; one steal attempt ÷ none. Published: a kernel build 44–54 % shorter at 1.5× (1.79–2.17× the throughput), under 7 % apart at 1×.\n\n")
		t := &table{head: []string{"vCPUs", "hybrid (full)", "steal once", "no steal", "steal once ÷ no steal", "verdict: stealing helps", "hybrid ÷ no steal", "stolen ‰ (hybrid)"}}
		for _, n := range res.Matrix.Sizes {
			full, once, none := find(res, n, "", "full", "pv"), find(res, n, "", "steal-once", "pv"), find(res, n, "", "no-steal", "pv")
			v := "-"
			if n > len(res.Meta.PCPUs) {
				v = verdict(once, none, true, 0)
			}
			t.add(overcommit(res, n), rel(res, full), rel(res, once), rel(res, none), ratioText(once, none), v, ratioText(full, none), stolen(full))
		}
		fmt.Fprintf(&b, "%s\n", t)
	}
	if res := r["fairness"]; res != nil {
		fmt.Fprintf(&b, "**Fairness** (think %d cycles, pv host): per VM, the spread of acquisitions over its vCPUs - max/min and Jain's index (1: even; 1/n: one vCPU took all). Published at 2×: hybrid per-thread operations min/avg/max 397,500 / 428,177 / 499,299 (max/min 1.26), unfair lock 17,933 / 150,679 / 708,001 (max/min 39.5); share taken unfairly 3 %% at 0.83× to 84 %% at 2×.\n\n", res.Matrix.Think)
		t := &table{head: []string{"vCPUs", "pvqspin", "pvqspin max/min", "pvqspin Jain", "pvqspin stolen ‰", "virt", "virt max/min", "virt Jain"}}
		for _, n := range res.Matrix.Sizes {
			q, v := find(res, n, "pvqspin", "", "pv"), find(res, n, "virt", "", "pv")
			t.add(overcommit(res, n), rel(res, q), maxMin(q), jain(q), stolen(q), rel(res, v), maxMin(v), jain(v))
		}
		fmt.Fprintf(&b, "%s", t)
	}
	return b.String()
}

func stolen(c *Cell) string {
	if !usable(c) || c.Acquisitions == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", 1000*float64(c.LockEvents.PVLockStealing)/float64(c.Acquisitions))
}

// maxMin and jain are the median run's, with the range over the runs.
func maxMin(c *Cell) string {
	if !usable(c) {
		return "-"
	}
	return spread(c, func(m Measured) float64 { return m.AcqMaxOverMin }, "%.3g")
}

func jain(c *Cell) string {
	if !usable(c) {
		return "-"
	}
	return spread(c, func(m Measured) float64 { return m.FairnessJain }, "%.2f")
}

func spread(c *Cell, f func(Measured) float64, format string) string {
	var xs []float64
	for _, r := range c.Runs {
		if r.OK {
			xs = append(xs, f(r.Measured))
		}
	}
	if len(xs) < 2 {
		return fmt.Sprintf(format, f(c.Measured))
	}
	sort.Float64s(xs)
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", f(c.Measured), xs[0], xs[len(xs)-1])
}

func reportBoost(r map[string]*Results) string {
	var b strings.Builder
	b.WriteString("pvqspin on a pv host with and without boosting the kicked vCPU (--boost-kicked), VMs of 2 vCPUs on the 2 pCPUs (each VM as wide as the host, as KVM's 80-vCPU VMs on 80 threads); throughput of all VMs against the reference.\n\n")
	pub := map[int]string{1: "+6 %", 2: "+70 %", 3: "+74 %"}
	for _, name := range contentionParts(r) {
		res := r[name]
		t := &table{head: []string{"VMs", "vCPUs", "boost", "no boost", "boost ÷ no boost", "verdict: boosting helps", "published (ebizzy)"}}
		for _, n := range res.Matrix.Sizes {
			vms := (n + res.Matrix.VMVCPUs - 1) / max(res.Matrix.VMVCPUs, 1)
			full, nb := find(res, n, "", "full", "pv"), find(res, n, "", "no-boost", "pv")
			v := "-"
			if vms > 1 {
				v = verdict(full, nb, true, 0)
			}
			t.add(fmt.Sprint(vms), overcommit(res, n), rel(res, full), rel(res, nb), change(full, nb), v, pub[vms])
		}
		fmt.Fprintf(&b, "**%s contention** (think %d cycles):\n\n%s\n", name, res.Matrix.Think, t)
	}
	return b.String()
}

// worstVMs is the slowest VM's throughput in each good run of c.
func worstVMs(c *Cell) []float64 {
	if !usable(c) {
		return nil
	}
	var xs []float64
	for _, r := range c.Runs {
		if r.OK && len(r.VMAcqPerS) > 0 {
			w := r.VMAcqPerS[0]
			for _, x := range r.VMAcqPerS {
				w = math.Min(w, x)
			}
			xs = append(xs, w)
		}
	}
	return xs
}

func reportCosched(r map[string]*Results) string {
	var b strings.Builder
	b.WriteString("VMs of 2 vCPUs with a ticket lock each on the 2 pCPUs. Per VM against its own solo run (the same VM alone on the pCPUs under the same policy): the slowest VM's throughput ÷ solo, and the fair share 1/VMs it would have if sharing cost nothing. rr's pCPUs switch half a slice apart, as a real host's would; rr-aligned switches them together (co-scheduling by accident). Sum: all VMs' throughput against the reference.\n\n")
	for _, name := range contentionParts(r) {
		res := r[name]
		t := &table{head: []string{"VMs", "policy", "sum vs ref", "slowest VM ÷ solo", "fair share", "÷ rr's", "verdict: beats rr's slowest VM", "fairness (Jain)"}}
		for _, n := range res.Matrix.Sizes {
			vms := (n + res.Matrix.VMVCPUs - 1) / max(res.Matrix.VMVCPUs, 1)
			if vms < 2 {
				continue
			}
			rrW := worstVMs(find(res, n, "ticket", "", "rr"))
			for _, pol := range res.Matrix.Policies {
				c := find(res, n, "ticket", "", pol)
				solo := find(res, res.Matrix.VMVCPUs, "ticket", "", pol)
				w := worstVMs(c)
				vsSolo, vsRR, v := "-", "-", "-"
				if usable(solo) {
					if iv, ok := stats.RatioOfMedians(w, opsPerSec(okRuns(solo))); ok {
						vsSolo = fmt.Sprintf("%.2f [%.2f–%.2f]", iv.Ratio, iv.Lo, iv.Hi)
					}
				}
				if iv, ok := stats.RatioOfMedians(w, rrW); ok && pol != "rr" {
					vsRR = fmt.Sprintf("%s [%s–%s]", times(iv.Ratio), times(iv.Lo), times(iv.Hi))
					v = string(stats.Judge(iv, true))
				}
				t.add(fmt.Sprint(vms), pol, rel(res, c), vsSolo, fmt.Sprintf("%.2f", 1/float64(vms)), vsRR, v, jain(c))
			}
		}
		fmt.Fprintf(&b, "**%s contention** (think %d cycles):\n\n%s\n", name, res.Matrix.Think, t)
	}
	return b.String()
}

// A document keeps a preset's report between its markers:
//
//	<!-- preset vee13-pticket -->
//	...
//	<!-- end preset vee13-pticket -->
func markers(name string) (begin, end string) {
	return "<!-- preset " + name + " -->\n", "<!-- end preset " + name + " -->"
}

// CheckDoc reports whether doc has preset name's markers, once each, in
// order.
func CheckDoc(doc []byte, name string) error {
	_, err := ReplaceDoc(doc, name, "")
	return err
}

// ReplaceDoc replaces what doc has between preset name's markers with
// report.
func ReplaceDoc(doc []byte, name, report string) ([]byte, error) {
	begin, end := markers(name)
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	switch {
	case i < 0 || j < 0:
		return nil, fmt.Errorf("no %q ... %q markers", strings.TrimSpace(begin), end)
	case strings.Count(s, begin) > 1 || strings.Count(s, end) > 1:
		return nil, fmt.Errorf("the markers of preset %s appear more than once", name)
	case j < i:
		return nil, fmt.Errorf("the end marker of preset %s comes before its start", name)
	}
	if report != "" && !strings.HasSuffix(report, "\n") {
		report += "\n"
	}
	return []byte(s[:i+len(begin)] + report + s[j:]), nil
}
