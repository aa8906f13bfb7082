package vmm

import (
	"testing"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHistPercentile(t *testing.T) {
	var h [hypercall.HistogramBucket]uint64
	assert.Zero(t, histPercentile(h[:], 0.5), "empty")
	h[10] = 100 // all in [1024, 2048)
	assert.InDelta(t, 1536, histPercentile(h[:], 0.5), 1)
	assert.InDelta(t, 2037.76, histPercentile(h[:], 0.99), 0.01)
	h[20] = 1 // one outlier in [2^20, 2^21)
	assert.Less(t, histPercentile(h[:], 0.5), 2048.0)
	assert.GreaterOrEqual(t, histPercentile(h[:], 1.0), float64(1<<20))
	h = [hypercall.HistogramBucket]uint64{}
	h[0] = 4
	assert.InDelta(t, 1, histPercentile(h[:], 0.5), 1e-9, "bucket 0 is [0, 2)")
}

func TestLockStats(t *testing.T) {
	var s LockStats
	p := hypercall.VCPUPage{Acquisitions: 10, SpinCycles: 250, StartTSC: 1000, EndTSC: 2000, AcquireMaxCycles: 2600}
	p.AcquireHist[3] = 10
	s.add(&p)
	s.add(&p)
	s.finish(2_600_000) // KVM_GET_TSC_KHZ of a 2.6 GHz TSC: 2.6 cycles per ns
	assert.EqualValues(t, 20, s.Acquisitions)
	assert.InDelta(t, 0.25, s.SpinFraction, 1e-9)
	assert.InDelta(t, 1000, s.AcquireNs.Max, 1e-9)
	assert.InDelta(t, 12.0/2.6, s.AcquireNs.P50, 1e-9)
}

func TestLookupLock(t *testing.T) {
	for _, n := range LockNames(true) {
		k, err := LookupLock(n)
		require.NoError(t, err)
		assert.Equal(t, n, lockName(k.ID))
	}
	_, err := LookupLock("nope")
	assert.ErrorContains(t, err, "unknown lock")
	assert.NotContains(t, LockNames(false), "broken")
}

func TestCheckLock(t *testing.T) {
	actual := uint64(99)
	r := &VMResult{Ops: 100, CounterActual: &actual, LockStats: &LockStats{Lock: "ticket", Acquisitions: 100}}
	err := checkLock(r)
	assert.ErrorIs(t, err, ErrCheckFailed)
	assert.ErrorContains(t, err, "lock ticket")
	actual = 100
	assert.NoError(t, checkLock(r))
	assert.EqualValues(t, 100, *r.CounterExpected)
}

func TestLockStatsPercentilesBoundedByMax(t *testing.T) {
	var s LockStats
	p := hypercall.VCPUPage{Acquisitions: 100, AcquireMaxCycles: 1100}
	p.AcquireHist[10] = 100 // [1024, 2048): the interpolated p99 is ~2037
	s.add(&p)
	s.finish(1_000_000) // 1 cycle per ns
	assert.InDelta(t, 1100, s.AcquireNs.Max, 1e-9)
	assert.LessOrEqual(t, s.AcquireNs.P99, s.AcquireNs.Max)
	assert.LessOrEqual(t, s.AcquireNs.P50, s.AcquireNs.Max)
}

func TestFairnessOf(t *testing.T) {
	even := FairnessOf([]uint64{100, 100, 100, 100})
	assert.Equal(t, Fairness{MinAcq: 100, AvgAcq: 100, MaxAcq: 100, MaxOverMin: 1, Jain: 1}, even)
	one := FairnessOf([]uint64{400, 0, 0, 0})
	assert.Zero(t, one.MaxOverMin, "a starved vCPU: no ratio")
	assert.InDelta(t, 0.25, one.Jain, 1e-12, "1/n when one takes all")
	// Linux 4.15's unfair lock at 72 vCPUs on 36: min 17,933, max 708,001.
	uneven := FairnessOf([]uint64{17933, 150679, 708001})
	assert.InDelta(t, 39.48, uneven.MaxOverMin, 0.01)
	assert.Less(t, uneven.Jain, 0.6)
	assert.Equal(t, Fairness{}, FairnessOf(nil))
}
