package vmm

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/guest/prebuilt"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noVMs is a backend on which no VM can be created: what RunMachine does
// before a run starts needs no more.
type noVMs struct {
	max      int
	userOnly bool
}

func (noVMs) Name() string                         { return "novms" }
func (b noVMs) MaxVCPUs() int                      { return b.max }
func (b noVMs) UserOnly() bool                     { return b.userOnly }
func (noVMs) CreateVM(*host.Memory) (hv.VM, error) { return nil, errors.New("no VMs here") }
func (noVMs) Close() error                         { return nil }

func TestRunMachineThatNeverStarts(t *testing.T) {
	hello, err := LookupWorkload("hello")
	require.NoError(t, err)
	mc := MachineConfig{Policy: "rr", PCPUs: []int{0, 1}}

	// A VM that cannot be built: named by its place, no VMs in the result.
	res := RunMachine(context.Background(), noVMs{}, mc, Config{VCPUs: 2, Workload: hello})
	assert.False(t, res.OK)
	assert.Equal(t, "vm0: no VMs here", res.Error)
	assert.EqualError(t, res.Err, res.Error)
	assert.NotNil(t, res.VMs)
	assert.Empty(t, res.VMs)
	assert.Equal(t, "novms", res.Backend)
	assert.Equal(t, "rr", res.Sched.Policy)
	assert.Equal(t, []int{0, 1}, res.Sched.PCPUs)
	assert.NoError(t, res.CloseErr)

	// The backend's vCPU limit, checked before anything is built.
	res = RunMachine(context.Background(), noVMs{max: 4}, mc, Config{Name: "app", VCPUs: 8, Workload: hello})
	var tm *TooManyVCPUsError
	require.ErrorAs(t, res.Err, &tm)
	assert.Equal(t, "app: vCPU count 8: the novms backend allows at most 4 per VM", res.Error)
}

func TestCheckBackend(t *testing.T) {
	assert.NoError(t, CheckBackend(noVMs{}, 1024, nil), "no limit")
	assert.NoError(t, CheckBackend(noVMs{max: 4}, 4, nil))
	err := CheckBackend(noVMs{max: 4}, 5, nil)
	var tm *TooManyVCPUsError
	require.ErrorAs(t, err, &tm)
	assert.Equal(t, TooManyVCPUsError{VCPUs: 5, Max: 4, Backend: "novms"}, *tm)

	l, err := NewLayout(64<<20, 2)
	require.NoError(t, err)
	img, err := ParseELF(prebuilt.Image, l.Image)
	require.NoError(t, err)
	assert.NoError(t, CheckBackend(noVMs{userOnly: true}, 2, img), "the built-in guest declares its ring-3 entry")
	img.UserEntry = 0
	assert.ErrorIs(t, CheckBackend(noVMs{userOnly: true}, 2, img), ErrNoUserEntry)
	assert.NoError(t, CheckBackend(noVMs{}, 2, img), "a backend with ring 0 starts it at its ELF entry")
}

// TestNoBuiltInImage: a binary built without make has no built-in guest;
// a VM that asks for it gets ErrNotBuilt, not a crash.
func TestNoBuiltInImage(t *testing.T) {
	saved := prebuilt.Image
	prebuilt.Image = nil
	defer func() { prebuilt.Image = saved }()
	hello, err := LookupWorkload("hello")
	require.NoError(t, err)
	_, err = New(noVMs{max: 8}, Config{VCPUs: 1, Workload: hello})
	assert.ErrorIs(t, err, prebuilt.ErrNotBuilt)
}

// TestWarmup: two rotations of every run queue, at most half the run.
func TestWarmup(t *testing.T) {
	assert.Equal(t, 120*time.Millisecond, Warmup(30*time.Millisecond, 4, 2, 3*time.Second))
	assert.Equal(t, 90*time.Millisecond, Warmup(15*time.Millisecond, 5, 2, 3*time.Second))
	assert.Equal(t, 2*sched.DefaultSlice, Warmup(0, 2, 2, time.Hour), "the default slice")
	assert.Equal(t, 50*time.Millisecond, Warmup(30*time.Millisecond, 8, 2, 100*time.Millisecond), "at most half the run")
}

// TestScheduleDrift: a stop slower than the slice marks the run; a long
// run per dispatch alone does not (nothing may have needed preempting),
// and a policy without slices never is.
func TestScheduleDrift(t *testing.T) {
	assert.Empty(t, scheduleDrift(SchedResult{SliceUs: 30000, StopUs: Latencies{P99: 9000}, RunPerDispatchUs: 31000}))
	assert.Contains(t, scheduleDrift(SchedResult{SliceUs: 30000, StopUs: Latencies{P99: 74000}}), "stop latency p99 74.00 ms against a 30.00 ms slice")
	assert.Empty(t, scheduleDrift(SchedResult{SliceUs: 30000, RunPerDispatchUs: 1e6}), "2 on 2: nothing to preempt, one dispatch per run")
	assert.Empty(t, scheduleDrift(SchedResult{StopUs: Latencies{P99: 74000}}), "host: Linux decides")
}
