package tests

import (
	"flag"
	"fmt"
	"math/rand"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/internal/backendtest"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	soakRuns = flag.Int("soak.runs", 8, "TestSoak: random runs on each backend (make soak: 500 each)")
	soakSeed = flag.Int64("soak.seed", 0, "TestSoak: the random seed (0: from the clock; the seed is logged)")
)

// resources is what a long-lived VMM must not leak.
type resources struct{ fds, threads, children, rssKiB int }

func (r resources) String() string {
	return fmt.Sprintf("%d fds, %d threads, %d child processes, RSS %d KiB", r.fds, r.threads, r.children, r.rssKiB)
}

func measure(t *testing.T) resources {
	runtime.GC()
	debug.FreeOSMemory()
	var r resources
	var err error
	r.fds, err = host.OpenFDs()
	require.NoError(t, err)
	r.threads, err = host.Threads()
	require.NoError(t, err)
	kids, err := host.Children()
	require.NoError(t, err)
	r.children = len(kids)
	r.rssKiB, err = host.RSSKiB()
	require.NoError(t, err)
	return r
}

// TestSoak: random runs — lock, policy (and combination), vCPU count,
// slice and length drawn at random — one after another in one process,
// every one self-checked (exact counters, owner checks, no lost wakeup, a
// clean end), and nothing left behind: the process has as many fds and
// child processes at the end as at the start, no more threads than the Go
// runtime's idle ones, and its RSS has not grown. make test runs a few;
// make soak runs 500 per backend with a CPU hog on.
func TestSoak(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		if len(pcpus(t)) < 2 {
			t.Skip("needs 2 host CPUs")
		}
		seed := *soakSeed
		if seed == 0 {
			seed = time.Now().UnixNano()
		}
		t.Logf("seed %d (-soak.seed), %d runs", seed, *soakRuns)
		rng := rand.New(rand.NewSource(seed))
		policies, locks := policySpecs(), vmm.LockNames(false)
		before := measure(t)
		t.Logf("start: %v", before)
		for i := 0; i < *soakRuns; i++ {
			policy, lock, n := policies[rng.Intn(len(policies))], locks[rng.Intn(len(locks))], 1+rng.Intn(8)
			mc := lockMachine(t, policy, time.Duration(20+rng.Intn(130))*time.Millisecond)
			mc.Options.Slice = time.Duration(1+rng.Intn(10)) * time.Millisecond
			what := fmt.Sprintf("run %d: %s, %s, %d vCPUs, %v slices, %v", i, lock, policy, n, mc.Options.Slice, mc.Duration)
			res := runM(t, h, mc, sized(t, policy, lock, n)...)
			require.True(t, res.OK, "%s: %s", what, res.Error)
			for _, vm := range res.VMs {
				require.NotNil(t, vm.LockStats, what)
				require.Equal(t, vm.LockStats.Acquisitions, *vm.CounterActual, "%s: %s's counter", what, vm.Name)
				for _, v := range vm.VCPU {
					require.Zero(t, v.CheckFailures, "%s: %s vCPU %d owner checks", what, vm.Name, v.ID)
				}
			}
			if (i+1)%100 == 0 {
				t.Logf("%d runs: %v", i+1, measure(t))
			}
		}
		var after resources
		// vCPU threads exit locked, so the runtime destroys them, a
		// little later; allow for the runtime's own idle threads.
		assert.Eventually(t, func() bool {
			after = measure(t)
			return after.threads <= before.threads+2
		}, 5*time.Second, 50*time.Millisecond, "threads: %d before", before.threads)
		t.Logf("end: %v", after)
		assert.Equal(t, before.fds, after.fds, "open fds")
		assert.Equal(t, before.children, after.children, "child processes (stubs, zombies)")
		assert.Less(t, after.rssKiB, before.rssKiB+64<<10, "RSS grew by more than 64 MiB")
	})
}
