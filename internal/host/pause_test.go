package host

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestPauseNs: the loop runs and its cost is a positive, finite figure
// (how large depends on the CPU: no bound on it is asserted).
func TestPauseNs(t *testing.T) {
	ns := PauseNs()
	assert.Greater(t, ns, 0.0)
	assert.Less(t, ns, 1e6, "one PAUSE under a millisecond")
}
