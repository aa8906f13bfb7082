package sweep

import (
	"math"
	"strconv"

	"github.com/lhpvm/lhpvm/internal/stats"
	"github.com/lhpvm/lhpvm/vmm"
)

// metric is one of a run's measures beside its throughput, by its name in
// results.json and the CSVs: how to read it from a run (ok false: not
// measured under the run's policy, null in JSON, empty in CSV) and how a
// cell stores its median. Integer measures are counts: their median is
// rounded to the nearest count.
type metric struct {
	name    string
	integer bool
	get     func(*Measured) (float64, bool)
	set     func(*Measured, float64)
}

// optional is a count a policy may not measure (nil: not measured).
func optional[T uint64 | int64](name string, p func(*Measured) **T) metric {
	return metric{name: name, integer: true,
		get: func(m *Measured) (float64, bool) {
			if *p(m) == nil {
				return 0, false
			}
			return float64(**p(m)), true
		},
		set: func(m *Measured, v float64) { x := T(math.Round(v)); *p(m) = &x }}
}

// measures lists every measure, once: the scalars of Measured, then the
// lock events (vmm.LockEvents, in their table's order).
func measures() []metric {
	f64 := func(name string, p func(*Measured) *float64) metric {
		return metric{name: name,
			get: func(m *Measured) (float64, bool) { return *p(m), true },
			set: func(m *Measured, v float64) { *p(m) = v }}
	}
	cnt := func(name string, p func(*Measured) *uint64) metric {
		return metric{name: name, integer: true,
			get: func(m *Measured) (float64, bool) { return float64(*p(m)), true },
			set: func(m *Measured, v float64) { *p(m) = uint64(math.Round(v)) }}
	}
	ms := []metric{
		f64("spin_fraction", func(m *Measured) *float64 { return &m.SpinFraction }),
		optional("lhp_events", func(m *Measured) **uint64 { return &m.LHPEvents }),
		optional("lwp_events", func(m *Measured) **uint64 { return &m.LWPEvents }),
		f64("acquire_p99_ns", func(m *Measured) *float64 { return &m.AcquireP99Ns }),
		optional("held_preempted_ns", func(m *Measured) **int64 { return &m.HeldPreemptedNs }),
		optional("granted_preempted_ns", func(m *Measured) **int64 { return &m.GrantedPreemptedNs }),
		f64("fairness_jain", func(m *Measured) *float64 { return &m.FairnessJain }),
		// Unbounded (a vCPU took no lock, stored as 0) is +Inf here, so
		// that it sorts above every bounded ratio.
		{name: "acq_max_over_min",
			get: func(m *Measured) (float64, bool) {
				if m.AcqMaxOverMin == 0 && m.Acquisitions > 0 {
					return math.Inf(1), true
				}
				return m.AcqMaxOverMin, true
			},
			set: func(m *Measured, v float64) {
				if math.IsInf(v, 1) {
					v = 0
				}
				m.AcqMaxOverMin = v
			}},
		cnt("acquisitions", func(m *Measured) *uint64 { return &m.Acquisitions }),
		cnt("slow_paths", func(m *Measured) *uint64 { return &m.SlowPaths }),
	}
	for _, e := range (&vmm.LockEvents{}).Named() {
		name := e.Name
		ms = append(ms, metric{name: name, integer: e.Count,
			get: func(m *Measured) (float64, bool) {
				for _, x := range m.LockEvents.Named() {
					if x.Name == name {
						return x.Value, true
					}
				}
				return 0, false
			},
			set: func(m *Measured, v float64) { m.LockEvents.SetNamed(name, v) }})
	}
	return ms
}

// summarizeMeasures is a cell's summary of its runs' measures, each the
// same way: the median over the runs, with its 95 % bootstrap interval
// (stats.MedianInterval), by measure name (null: unbounded). A measure
// that some run did not measure is left out (null). Each VM's throughput
// is the median of that VM's over the runs.
func summarizeMeasures(runs []Measured) (Measured, map[string]*[2]float64) {
	var out Measured
	ci := map[string]*[2]float64{}
	if len(runs) == 0 {
		return out, ci
	}
	for _, ms := range measures() {
		xs := make([]float64, 0, len(runs))
		for i := range runs {
			if x, ok := ms.get(&runs[i]); ok {
				xs = append(xs, x)
			}
		}
		if len(xs) < len(runs) {
			continue
		}
		med, lo, hi, _ := stats.MedianInterval(xs)
		ms.set(&out, med)
		if !math.IsInf(lo, 0) && !math.IsInf(hi, 0) && !math.IsNaN(lo) && !math.IsNaN(hi) {
			ci[ms.name] = &[2]float64{lo, hi}
		} else {
			ci[ms.name] = nil
		}
	}
	for v := range runs[0].VMAcqPerS {
		var xs []float64
		for _, r := range runs {
			if v < len(r.VMAcqPerS) {
				xs = append(xs, r.VMAcqPerS[v])
			}
		}
		out.VMAcqPerS = append(out.VMAcqPerS, stats.Median(xs))
	}
	return out, ci
}

// csvValue is a measure's CSV text: a count in full, a float in 6 digits,
// empty when not measured.
func (ms metric) csvValue(m *Measured) string {
	x, ok := ms.get(m)
	switch {
	case !ok || math.IsInf(x, 0):
		return ""
	case ms.integer:
		return strconv.FormatFloat(math.Round(x), 'f', 0, 64)
	default:
		return csvG(x)
	}
}
