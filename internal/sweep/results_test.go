package sweep

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestMedian: a reference of 810,648 and 525,195 acq/s is 667,921.5, the
// mean of the two, not the lower run (gonum's Quantile(0.5) gives that).
func TestMedian(t *testing.T) {
	ref := Reference{Before: []RunResult{{OpsPerSec: 810648}}, After: []RunResult{{OpsPerSec: 525195}}}
	ref.Summarize()
	assert.Equal(t, 667921.5, ref.OpsPerSec)
	assert.InDelta(t, (810648-525195)/810648.0, ref.Drift, 1e-12)

	c := Cell{Runs: []RunResult{
		{OK: true, OpsPerSec: 100, Measured: Measured{LHPEvents: 1}},
		{OK: true, OpsPerSec: 400, Measured: Measured{LHPEvents: 4}},
		{OK: true, OpsPerSec: 200, Measured: Measured{LHPEvents: 2}},
		{OK: true, OpsPerSec: 300, Measured: Measured{LHPEvents: 3}},
	}}
	c.Summarize(&ref)
	assert.Equal(t, 250.0, c.OpsPerSec)
	assert.EqualValues(t, 2, c.LHPEvents, "the measures of the lower middle run")
	assert.Equal(t, 100.0, c.MinOpsPerSec)
	assert.Equal(t, 400.0, c.MaxOpsPerSec)
}

// A kvm run names its vendor module: nested paravirtual KVM (kvm_pvm) and
// hardware SVM (kvm_amd) are different machines to measure on.
func TestBackendName(t *testing.T) {
	assert.Equal(t, "ptrace", Meta{Backend: "ptrace"}.BackendName())
	assert.Equal(t, "kvm (kvm_pvm)", Meta{Backend: "kvm", BackendModule: "kvm_pvm"}.BackendName())
}
