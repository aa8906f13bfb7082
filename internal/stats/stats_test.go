package stats

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMedian(t *testing.T) {
	assert.Equal(t, 0.0, Median(nil))
	assert.Equal(t, 2.0, Median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, Median([]float64{4, 1, 3, 2}))
	assert.Equal(t, 3.0, Median([]float64{5, 3, 1}))
	assert.Equal(t, 667921.5, Median([]float64{810648, 525195}))
}

// A known answer: identical samples give the exact ratio with a degenerate
// interval, and the interval of disjoint samples lies between their ranges.
func TestRatioOfMediansKnown(t *testing.T) {
	iv, ok := RatioOfMedians([]float64{2, 2, 2}, []float64{1, 1, 1, 1})
	require.True(t, ok)
	assert.Equal(t, Interval{Ratio: 2, Lo: 2, Hi: 2, NA: 3, NB: 4}, iv)

	a := []float64{10, 11, 12, 13, 14}
	b := []float64{4, 5, 6}
	iv, ok = RatioOfMedians(a, b)
	require.True(t, ok)
	assert.InDelta(t, 12.0/5, iv.Ratio, 1e-12)
	assert.GreaterOrEqual(t, iv.Lo, 10.0/6)
	assert.LessOrEqual(t, iv.Hi, 14.0/4)
	assert.Less(t, iv.Lo, iv.Ratio)
	assert.Greater(t, iv.Hi, iv.Ratio)

	again, _ := RatioOfMedians(a, b)
	assert.Equal(t, iv, again, "the same runs give the same interval")

	// Denominators that are often 0: the interval is unbounded above, never NaN.
	iv, ok = RatioOfMedians([]float64{5, 6, 7}, []float64{0, 0, 1, 2})
	require.True(t, ok)
	assert.False(t, math.IsNaN(iv.Lo) || math.IsNaN(iv.Hi), "%+v", iv)
	assert.False(t, iv.Bounded())
	assert.True(t, math.IsInf(iv.Hi, 1))

	_, ok = RatioOfMedians(nil, b)
	assert.False(t, ok)
	_, ok = RatioOfMedians(a, []float64{0, 0, 0})
	assert.False(t, ok)
}

// Coverage: over many draws from two log-normal populations whose medians
// are in a known ratio, about 95 % of the intervals contain it. The
// bootstrap of a median is known to cover a little less than nominal at
// small n, so the band is 88-99 % at n = 20 per side over 400 draws (the
// binomial's standard error alone is 1.1 points).
func TestRatioOfMediansCoverage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const draws, n = 400, 20
	trueRatio := math.Exp(0.7 - 0.2)
	covered := 0
	for range draws {
		a, b := make([]float64, n), make([]float64, n)
		for i := range a {
			a[i] = math.Exp(0.7 + 0.4*r.NormFloat64())
			b[i] = math.Exp(0.2 + 0.4*r.NormFloat64())
		}
		iv, ok := RatioOfMedians(a, b)
		require.True(t, ok)
		if iv.Contains(trueRatio) {
			covered++
		}
	}
	frac := float64(covered) / draws
	t.Logf("coverage %.3f over %d draws of n=%d per side", frac, draws, n)
	assert.GreaterOrEqual(t, frac, 0.88)
	assert.LessOrEqual(t, frac, 0.99)
}

func TestJudge(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		above  bool
		want   Verdict
	}{
		{1.1, 2, true, Holds},
		{1.1, 2, false, Reversed},
		{0.5, 0.9, true, Reversed},
		{0.5, 0.9, false, Holds},
		{0.9, 1.1, true, Inconclusive},
		{0.9, 1.1, false, Inconclusive},
		{1, 1.5, true, Inconclusive},
	} {
		assert.Equal(t, c.want, Judge(Interval{Lo: c.lo, Hi: c.hi, Ratio: (c.lo + c.hi) / 2}, c.above), "%+v", c)
	}
	assert.InDelta(t, 0.25, Interval{Ratio: 2, Lo: 1.5, Hi: 2.5}.HalfWidth(), 1e-12)
}

// The geometric mean of ratios: of one pair it is RatioOfMedians, of
// constant samples it is exact, and its interval covers the true geometric
// mean about 95 % of the time (a little more at these odd n: the bootstrap
// distribution of a median is discrete, and its percentile ends are wide).
func TestGeomeanOfRatios(t *testing.T) {
	a, b := []float64{10, 11, 12, 13, 14}, []float64{4, 5, 6}
	one, ok := GeomeanOfRatios([]Pair{{A: a, B: b}})
	require.True(t, ok)
	iv, _ := RatioOfMedians(a, b)
	assert.Equal(t, iv, one)

	g, ok := GeomeanOfRatios([]Pair{{A: []float64{2, 2}, B: []float64{1}}, {A: []float64{8, 8, 8}, B: []float64{1, 1}}})
	require.True(t, ok)
	assert.InDelta(t, 4.0, g.Ratio, 1e-12)
	assert.InDelta(t, 4.0, g.Lo, 1e-12)
	assert.InDelta(t, 4.0, g.Hi, 1e-12)
	assert.Equal(t, 5, g.NA)
	assert.Equal(t, 3, g.NB)

	for _, bad := range [][]Pair{nil, {{A: a, B: nil}}, {{A: a, B: b}, {A: a, B: []float64{0, 0}}}} {
		_, ok := GeomeanOfRatios(bad)
		assert.False(t, ok, "%v", bad)
	}

	r := rand.New(rand.NewPCG(3, 4))
	const draws, n = 300, 21
	mus := [][2]float64{{0.7, 0.2}, {1.5, 0.3}, {0.1, 0.4}}
	truth := 0.0
	for _, m := range mus {
		truth += m[0] - m[1]
	}
	truth = math.Exp(truth / float64(len(mus)))
	covered := 0
	for range draws {
		var ps []Pair
		for _, m := range mus {
			p := Pair{A: make([]float64, n), B: make([]float64, n)}
			for i := range n {
				p.A[i] = math.Exp(m[0] + 0.4*r.NormFloat64())
				p.B[i] = math.Exp(m[1] + 0.4*r.NormFloat64())
			}
			ps = append(ps, p)
		}
		iv, ok := GeomeanOfRatios(ps)
		require.True(t, ok)
		if iv.Contains(truth) {
			covered++
		}
	}
	frac := float64(covered) / draws
	t.Logf("coverage %.3f over %d draws of 3 pairs, n=%d per side", frac, draws, n)
	assert.GreaterOrEqual(t, frac, 0.87)
	assert.LessOrEqual(t, frac, 0.99)
}

// The median's interval: a point for constant runs, and about 95 %
// coverage of a log-normal population's median.
func TestMedianInterval(t *testing.T) {
	m, lo, hi, ok := MedianInterval([]float64{3, 3, 3})
	require.True(t, ok)
	assert.Equal(t, [3]float64{3, 3, 3}, [3]float64{m, lo, hi})
	_, _, _, ok = MedianInterval(nil)
	assert.False(t, ok)

	r := rand.New(rand.NewPCG(5, 6))
	const draws, n = 400, 21
	covered := 0
	for range draws {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = math.Exp(1 + 0.5*r.NormFloat64())
		}
		m, lo, hi, _ := MedianInterval(xs)
		require.True(t, lo <= m && m <= hi)
		if lo <= math.E && math.E <= hi {
			covered++
		}
	}
	frac := float64(covered) / draws
	t.Logf("coverage %.3f over %d draws of n=%d", frac, draws, n)
	assert.GreaterOrEqual(t, frac, 0.88)
	assert.LessOrEqual(t, frac, 0.99)
}
