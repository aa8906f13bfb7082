package host

import "time"

// pauseLoop executes PAUSE n times (pause_amd64.s).
func pauseLoop(n uint64)

// PauseNs measures what one PAUSE costs on this CPU, in ns: the best of
// three loops of 1 << 18 (some 10 ms on a CPU whose PAUSE takes 40 ns).
// Spin thresholds count spins, each a PAUSE and a load: the same count is
// a different time on another CPU (Intel raised PAUSE from ~10 cycles to
// ~140 with Skylake; AMD's vary by generation), so results that depend on a
// threshold carry this figure.
func PauseNs() float64 {
	const n = 1 << 18
	best := time.Duration(0)
	for i := 0; i < 3; i++ {
		t := time.Now()
		pauseLoop(n)
		if d := time.Since(t); best == 0 || d < best {
			best = d
		}
	}
	return float64(best.Nanoseconds()) / n
}
