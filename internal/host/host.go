// Package host is the thin layer over the host OS that is not KVM: thread ids,
// signals to a thread, CPU affinity, and process introspection for leak tests.
// Together with internal/kvm it is the only code importing x/sys/unix.
package host

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// KickSignal is the signal that interrupts a thread's KVM_RUN. SIGURG is one
// the Go runtime already handles quietly (it uses it for async preemption), so
// delivering it has no effect besides making the ioctl return EINTR; a signal
// with a terminating default action and no handler would kill the process.
const KickSignal = unix.SIGURG

// Gettid returns the calling OS thread's id. Only meaningful under
// runtime.LockOSThread.
func Gettid() int { return unix.Gettid() }

// Kick sends KickSignal to thread tid of this process.
func Kick(tid int) error {
	if err := unix.Tgkill(os.Getpid(), tid, KickSignal); err != nil {
		return fmt.Errorf("tgkill %d: %w", tid, err)
	}
	return nil
}

// PinThread restricts the calling OS thread to one host CPU.
func PinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("sched_setaffinity cpu %d: %w", cpu, err)
	}
	return nil
}

// AllowedCPUs lists the host CPUs this process may run on.
func AllowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}

// Yield gives up the calling thread's CPU (sched_yield).
func Yield() { _, _, _ = unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }

// OpenFDs counts this process's open file descriptors.
func OpenFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// Threads counts this process's OS threads.
func Threads() (int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no Threads line in /proc/self/status")
}
