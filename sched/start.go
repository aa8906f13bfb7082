package sched

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Start is how a run begins, drawn from a seed. Which vCPUs share a pCPU's
// queue at first, the order they become runnable in and where in its slice
// each pCPU starts decide much of a short overcommitted run (a fair lock's
// queue order is fixed by who runs first); left fixed, they bias every run
// the same way (Mytkowicz et al., ASPLOS 2009). Drawing them from a
// recorded seed makes runs independent samples that can each be replayed
// (Curtsinger & Berger, Stabilizer, ASPLOS 2013).
type Start struct {
	Seed uint64 `json:"seed"`
	// Home is, per vCPU (machine index), the pCPU index whose queue it
	// starts on: a random permutation dealt round-robin, so every pCPU
	// gets the same number of vCPUs give or take one.
	Home []int `json:"home"`
	// Order lists the vCPUs (machine indices) in the order they become
	// runnable at the start.
	Order []int `json:"order"`
	// Phase is, per pCPU, the fraction of a slice cut from its first
	// slice, so that the pCPUs' slices end at seeded offsets (policies with
	// aligned slices ignore it).
	Phase []float64 `json:"phase"`
}

// DrawStart draws the start of a machine of vcpus vCPUs on pcpus pCPUs
// from seed: the same seed gives the same start.
func DrawStart(seed uint64, vcpus, pcpus int) Start {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	st := Start{Seed: seed, Home: make([]int, vcpus), Order: r.Perm(vcpus), Phase: make([]float64, pcpus)}
	for k, v := range r.Perm(vcpus) {
		st.Home[v] = k % max(pcpus, 1)
	}
	for i := range st.Phase {
		st.Phase[i] = r.Float64()
	}
	return st
}

// NewSeed is a fresh seed for a run that was not given one.
func NewSeed() uint64 { return rand.Uint64() }

// SetStart applies a drawn start to a machine's state (before its
// scheduler starts). Without one, a state starts as NewState lays it out:
// vCPU i on pCPU i mod n, in index order, pCPU i's first slice cut by i/n.
func (s *State) SetStart(st Start) error {
	if len(st.Home) != len(s.VCPUs) || len(st.Order) != len(s.VCPUs) || len(st.Phase) != len(s.PCPUs) {
		return fmt.Errorf("a start for %d vCPUs on %d pCPUs does not fit %d vCPUs on %d pCPUs",
			len(st.Home), len(st.Phase), len(s.VCPUs), len(s.PCPUs))
	}
	for i, v := range s.VCPUs {
		if h := st.Home[i]; h < 0 || h >= len(s.PCPUs) {
			return fmt.Errorf("start: vCPU %d on pCPU %d of %d", i, h, len(s.PCPUs))
		} else {
			v.Home = h
		}
	}
	s.start = &st
	return nil
}

// StartOf is the start the state was given, or nil.
func (s *State) StartOf() *Start { return s.start }

// startOrder lists the vCPUs in the order they become runnable.
func (s *State) startOrder() []*VCPU {
	if s.start == nil {
		return s.VCPUs
	}
	out := make([]*VCPU, 0, len(s.VCPUs))
	for _, i := range s.start.Order {
		out = append(out, s.VCPUs[i])
	}
	return out
}

// phase is the fraction of a slice cut from pCPU i's first slice: the
// drawn one, or i/n.
func (s *State) phase(i int) float64 {
	if s.start != nil {
		return s.start.Phase[i]
	}
	return float64(i) / float64(len(s.PCPUs))
}

// cut is the part of a slice of length l that phase f cuts.
func cut(l time.Duration, f float64) time.Duration { return time.Duration(float64(l) * f) }
