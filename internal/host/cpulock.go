package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// CPU locks: one lhpvm process measures on a host CPU at a time. Each CPU
// has a lock file, lhpvm-cpuN.lock, in CPULockDir; a process holds an
// exclusive flock(2) on the files of the CPUs it measures on, for as long
// as it measures, and writes its pid and command line into them so that a
// second process can say whom it waits for. flock is released by the
// kernel when the process dies however it dies, so a killed run leaves no
// stale lock.

// CPULockDir is where the lock files are: /run/lock (a tmpfs every
// systemd and Debian host has, writable by root), else the temporary
// directory. LHPVM_LOCK_DIR overrides both.
func CPULockDir() string {
	if d := os.Getenv("LHPVM_LOCK_DIR"); d != "" {
		return d
	}
	if unix.Access("/run/lock", unix.W_OK) == nil {
		return "/run/lock"
	}
	return os.TempDir()
}

// CPULock is the locks a process holds on host CPUs.
type CPULock struct{ files []*os.File }

// ErrCPULockStopped: stop closed while waiting for a CPU's lock.
var ErrCPULockStopped = errors.New("stopped while waiting for a host CPU")

// LockCPUs takes the lock of every CPU of cpus, in increasing order (two
// processes wanting overlapping sets cannot each hold what the other
// waits for). For a CPU another process holds, waiting is called once
// with the CPU and what its holder wrote (pid and command line), and the
// lock is retried until it is free or stop is closed.
func LockCPUs(cpus []int, waiting func(cpu int, holder string), stop <-chan struct{}) (*CPULock, error) {
	sorted := append([]int(nil), cpus...)
	sort.Ints(sorted)
	dir := CPULockDir()
	_ = os.MkdirAll(dir, 0o755) // $LHPVM_LOCK_DIR may be new; an error shows at the open
	l := &CPULock{}
	me := fmt.Sprintf("pid %d (%s)\n", os.Getpid(), strings.Join(os.Args, " "))
	for i, cpu := range sorted {
		if i > 0 && cpu == sorted[i-1] {
			continue
		}
		path := filepath.Join(dir, fmt.Sprintf("lhpvm-cpu%d.lock", cpu))
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			l.Release()
			return nil, fmt.Errorf("the lock file of host CPU %d: %w", cpu, err)
		}
		told := false
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil || !errors.Is(err, unix.EWOULDBLOCK) {
				break
			}
			if !told && waiting != nil {
				b := make([]byte, 512)
				n, _ := f.ReadAt(b, 0)
				waiting(cpu, strings.TrimSpace(string(b[:n])))
				told = true
			}
			select {
			case <-stop:
				f.Close()
				l.Release()
				return nil, ErrCPULockStopped
			case <-time.After(50 * time.Millisecond):
			}
		}
		if err != nil {
			f.Close()
			l.Release()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		// Say who holds it (best effort: the lock itself is the flock).
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(me), 0)
		}
		l.files = append(l.files, f)
	}
	return l, nil
}

// Release gives the CPUs back (closing a file drops its flock).
func (l *CPULock) Release() {
	if l == nil {
		return
	}
	for _, f := range l.files {
		_ = f.Truncate(0)
		f.Close()
	}
	l.files = nil
}
