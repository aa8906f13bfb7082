// Package stats puts a confidence interval on the ratios the lab reports
// and turns an interval into a verdict. A ratio of throughputs here is the
// ratio of two medians over independent runs (each run's start drawn from
// its own seed: sched.Start), and its 95 % interval is a percentile
// bootstrap over those runs: resample each side's runs with replacement,
// take the ratio of the resampled medians, and read the 2.5th and 97.5th
// percentiles of B such ratios (Kalibera & Jones, "Rigorous benchmarking in
// reasonable time", ISMM 2013: repeat at the level where the variance
// lives, and put the interval on the ratio itself; criterion.rs reports
// its changes the same way). The resampling is seeded from the data, so
// the same runs always give the same interval.
package stats

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
)

// Resamples is B, the bootstrap's number of resamples.
const Resamples = 2000

// Level is the confidence level of every interval.
const Level = 0.95

// Method names the interval's construction, for the results' metadata.
const Method = "percentile bootstrap of the ratio of medians, 2000 resamples of each side's runs, 95 %"

// Interval is a ratio with its confidence interval.
type Interval struct {
	Ratio float64 // the ratio of the medians
	Lo    float64
	Hi    float64
	NA    int // runs behind the numerator
	NB    int // runs behind the denominator
}

// Bounded reports whether both ends are finite: an upper end is +Inf when
// enough resamples of the denominator had a median of 0.
func (iv Interval) Bounded() bool { return !math.IsInf(iv.Lo, 0) && !math.IsInf(iv.Hi, 0) }

// HalfWidth is the interval's relative half-width: (Hi-Lo)/2 over Ratio.
func (iv Interval) HalfWidth() float64 {
	if iv.Ratio <= 0 {
		return math.Inf(1)
	}
	return (iv.Hi - iv.Lo) / 2 / iv.Ratio
}

// Contains reports whether x lies in the interval.
func (iv Interval) Contains(x float64) bool { return iv.Lo <= x && x <= iv.Hi }

// Median is the median of xs: the middle value, or the mean of the two
// middle values for an even count (0 for none). gonum's stat.Quantile
// returns the lower middle value for an even count, with either of its
// cumulant kinds, which would read every even-count ratio a little off.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return sortedMedian(s)
}

func sortedMedian(s []float64) float64 {
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// RatioOfMedians is median(a) / median(b) with its bootstrap interval.
// ok is false when either side has no runs or b's median is not positive.
func RatioOfMedians(a, b []float64) (Interval, bool) {
	return GeomeanOfRatios([]Pair{{A: a, B: b}})
}

// Pair is one ratio's two sides, A ÷ B, each a set of independent runs.
type Pair struct{ A, B []float64 }

// GeomeanOfRatios is the geometric mean of several ratios of medians, the
// way papers average a speed-up over sizes ("5.32× on average"), with its
// bootstrap interval: every resample redraws every side's runs and takes
// the geometric mean of the resampled ratios, so the interval carries the
// noise of each ratio in the mean. Of one pair it is RatioOfMedians. ok is
// false when there are no pairs, a side has no runs, or a denominator's
// median is not positive. NA and NB count the runs over all pairs.
func GeomeanOfRatios(ps []Pair) (Interval, bool) {
	if len(ps) == 0 {
		return Interval{}, false
	}
	sides := make([][]float64, 0, 2*len(ps))
	var iv Interval
	logSum := 0.0
	for _, p := range ps {
		if len(p.A) == 0 || len(p.B) == 0 {
			return Interval{}, false
		}
		mb := Median(p.B)
		if mb <= 0 {
			return Interval{}, false
		}
		logSum += math.Log(Median(p.A) / mb)
		iv.NA += len(p.A)
		iv.NB += len(p.B)
		sides = append(sides, p.A, p.B)
	}
	iv.Ratio = math.Exp(logSum / float64(len(ps)))
	iv.Lo, iv.Hi = bootstrap(sides, func(meds []float64) float64 {
		logSum := 0.0
		for i := 0; i < len(meds); i += 2 {
			if meds[i+1] <= 0 {
				return math.Inf(1)
			}
			logSum += math.Log(meds[i] / meds[i+1])
		}
		return math.Exp(logSum / float64(len(ps)))
	})
	return iv, true
}

// MedianInterval is the median of xs with its 95 % percentile-bootstrap
// interval (the same resampling as the ratios'); ok is false for no xs.
func MedianInterval(xs []float64) (med, lo, hi float64, ok bool) {
	if len(xs) == 0 {
		return 0, 0, 0, false
	}
	lo, hi = bootstrap([][]float64{xs}, func(meds []float64) float64 { return meds[0] })
	return Median(xs), lo, hi, true
}

// bootstrap is the percentile interval of stat over Resamples resamples:
// each resample redraws every side's runs with replacement, and stat gets
// the resampled sides' medians, in order. The resampling is seeded from
// the data.
func bootstrap(sides [][]float64, stat func(meds []float64) float64) (lo, hi float64) {
	r := rand.New(rand.NewPCG(dataSeed(sides...)))
	re := make([][]float64, len(sides))
	for i, s := range sides {
		re[i] = make([]float64, len(s))
	}
	meds := make([]float64, len(sides))
	draws := make([]float64, 0, Resamples)
	for range Resamples {
		for i, s := range sides {
			for j := range re[i] {
				re[i][j] = s[r.IntN(len(s))]
			}
			sort.Float64s(re[i])
			meds[i] = sortedMedian(re[i])
		}
		draws = append(draws, stat(meds))
	}
	sort.Float64s(draws)
	alpha := (1 - Level) / 2
	return quantile(draws, alpha), quantile(draws, 1-alpha)
}

// quantile of sorted xs, interpolating between order statistics.
func quantile(s []float64, p float64) float64 {
	x := p * float64(len(s)-1)
	i := int(math.Floor(x))
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	f := x - float64(i)
	if f == 0 || math.IsInf(s[i], 0) {
		return s[i]
	}
	if math.IsInf(s[i+1], 0) { // toward a resample whose denominator was 0: unbounded
		return s[i+1]
	}
	return s[i] + f*(s[i+1]-s[i])
}

// dataSeed is the bootstrap's seed, from the data: the same runs give the
// same interval wherever they are summarised (a report, a merge).
func dataSeed(sides ...[]float64) (uint64, uint64) {
	h := fnv.New128a()
	var buf [8]byte
	for _, xs := range sides {
		for _, x := range xs {
			binary.LittleEndian.PutUint64(buf[:], math.Float64bits(x))
			h.Write(buf[:])
		}
		h.Write([]byte{0xff})
	}
	sum := h.Sum(nil)
	return binary.LittleEndian.Uint64(sum[:8]), binary.LittleEndian.Uint64(sum[8:])
}

// Verdict is what an interval says of a claim that a ratio lies on one side
// of 1.
type Verdict string

const (
	Holds        Verdict = "holds"        // the interval lies on the claimed side of 1
	Reversed     Verdict = "reversed"     // it lies on the other side
	Inconclusive Verdict = "inconclusive" // it contains 1
)

// Judge is the verdict of iv on the claim that the ratio is above 1 (above
// true) or below 1 (above false).
func Judge(iv Interval, above bool) Verdict {
	switch {
	case iv.Lo > 1:
		if above {
			return Holds
		}
		return Reversed
	case iv.Hi < 1:
		if above {
			return Reversed
		}
		return Holds
	default:
		return Inconclusive
	}
}
