package sweep

import (
	"testing"

	"github.com/lhpvm/lhpvm/sched"
	"github.com/stretchr/testify/assert"
)

// TestStartReport: a factor that decides the runs explains all their
// variance (η² 1.00), one that does not explains none; the steady state
// is reported beside the whole run.
func TestStartReport(t *testing.T) {
	var runs []RunResult
	for i := 0; i < 20; i++ {
		st := sched.DrawStart(uint64(i), 4, 2)
		// Whole-run throughput set by the queues alone: 4e4 when vCPUs 0
		// and 1 share a queue, 2e4 otherwise; the steady state is flat.
		whole := 2e4
		if st.Home[0] == st.Home[1] {
			whole = 4e4
		}
		runs = append(runs, RunResult{OK: true, OpsPerSec: 16, WholeOpsPerSec: whole, Throughput: "steady", Start: &st})
	}
	res := &Results{Matrix: Matrix{Duration: "1s"}, Cells: []Cell{{CellKey: CellKey{VCPUs: 4, Lock: "ticket", Policy: "rr"}, Runs: runs}}}
	out := StartReport(res, 10)
	assert.Contains(t, out, "| whole run (start transient included) |")
	assert.Contains(t, out, "| steady state (after the warm-up) | 16 |")
	assert.Regexp(t, `\| queues: [^|]+ \| 3 \| 1\.00 \| - \|`, out, "the queues decide the whole run; the flat steady state has no variance")
	assert.Regexp(t, `\| first: [^|]+ \| 4 \| 0\.[0-4]\d \|`, out)
	assert.Contains(t, StartReport(res, 21), "No cell has 21 good runs")
}
