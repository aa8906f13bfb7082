package host

import (
	"fmt"
	"sync"
	"time"
)

// rdtsc reads the time-stamp counter (tsc_amd64.s).
func rdtsc() uint64

// ReadTSC reads the time-stamp counter as a guest running natively here does.
func ReadTSC() uint64 { return rdtsc() }

var tsc struct {
	once sync.Once
	khz  uint64
	err  error
}

// TSCkHz is the host TSC frequency, calibrated once per process against
// CLOCK_MONOTONIC (Linux does not export its own value). Guests running
// natively on the host (the ptrace backend) see this TSC.
func TSCkHz() (uint64, error) {
	tsc.once.Do(func() {
		for i := 0; i < 5; i++ { // a busy moment fails one attempt, not the run
			if tsc.khz, tsc.err = calibrateTSC(20*time.Millisecond, 5); tsc.err == nil {
				return
			}
		}
	})
	return tsc.khz, tsc.err
}

// calibrateTSC measures the TSC against the monotonic clock over window,
// keeping the tightest of tries brackets at each end: our CPUs are vCPUs of
// a busy outer host, and a preemption between the two clock reads would
// otherwise move the result by its length. With brackets of a microsecond
// or two over 20 ms the error is under 0.01 %.
func calibrateTSC(window time.Duration, tries int) (uint64, error) {
	// sample reads the monotonic clock and the TSC as close together as
	// the host allows: the TSC read bracketed by two clock reads, the
	// narrowest bracket of several attempts.
	sample := func() (time.Time, uint64, time.Duration) {
		best := time.Duration(1<<63 - 1)
		var at time.Time
		var c uint64
		for i := 0; i < tries; i++ {
			t0 := time.Now()
			x := rdtsc()
			t1 := time.Now()
			if d := t1.Sub(t0); d < best {
				best, at, c = d, t0.Add(d/2), x
			}
		}
		return at, c, best
	}
	t0, c0, w0 := sample()
	time.Sleep(window)
	t1, c1, w1 := sample()
	ns := t1.Sub(t0).Nanoseconds()
	if ns <= 0 || c1 <= c0 {
		return 0, fmt.Errorf("TSC calibration: the TSC did not advance (%d -> %d over %d ns)", c0, c1, ns)
	}
	if w0+w1 > window/100 {
		return 0, fmt.Errorf("TSC calibration: clock reads took %v and %v: the host is too busy to calibrate", w0, w1)
	}
	return uint64(float64(c1-c0) / float64(ns) * 1e6), nil
}
