package host

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A second holder of an overlapping set of CPUs is told who holds the
// first one it wants, waits, can be stopped while waiting, and gets the
// CPUs once they are released.
func TestLockCPUs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LHPVM_LOCK_DIR", dir)
	first, err := LockCPUs([]int{1, 0}, nil, nil)
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(dir, "lhpvm-cpu0.lock"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "pid ")

	stop := make(chan struct{})
	var told []int
	var holder string
	_, err = LockCPUs([]int{2, 1}, func(cpu int, h string) {
		told, holder = append(told, cpu), h
		close(stop)
	}, stop)
	assert.ErrorIs(t, err, ErrCPULockStopped)
	assert.Equal(t, []int{1}, told, "CPU 2 was free; CPU 1 is held")
	assert.Contains(t, holder, "pid ")

	// CPU 2 was given back when the second gave up: a third takes it.
	third, err := LockCPUs([]int{2}, func(int, string) { t.Error("CPU 2 should be free") }, nil)
	require.NoError(t, err)
	third.Release()

	done := make(chan error)
	go func() {
		l, err := LockCPUs([]int{0, 1}, nil, nil)
		l.Release()
		done <- err
	}()
	first.Release()
	require.NoError(t, <-done)
}
