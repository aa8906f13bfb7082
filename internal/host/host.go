// Package host is the thin layer over the host OS that is not KVM: thread ids,
// signals to a thread, CPU affinity, and process introspection for leak tests.
// Together with internal/kvm it is the only code importing x/sys/unix.
package host

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// KickSignal is how every backend stops a running guest. SIGURG is one the
// Go runtime already handles quietly (it uses it for async preemption):
// sent to a vCPU thread it only makes KVM_RUN return EINTR, where a signal
// with a terminating default action and no handler would kill the process;
// sent to a ptrace stub it stops the stub for its tracer (ptrace reports
// even ignored signals), and no guest can cause a SIGURG itself, so seeing
// one needs no PTRACE_GETSIGINFO.
const KickSignal = unix.SIGURG

// DiesWithParent makes a child started by cmd get SIGKILL when the thread
// that started it exits (PR_SET_PDEATHSIG): a tool's child never outlives
// it.
func DiesWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

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
func Threads() (int, error) { return statusField("Threads:") }

// RSSKiB is this process's resident set size in KiB (VmRSS).
func RSSKiB() (int, error) { return statusField("VmRSS:") }

// statusField reads a number from a line of /proc/self/status ("VmRSS:
// 1234 kB" reads 1234).
func statusField(key string) (int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no %s line in /proc/self/status", key)
}

// Children lists the live and zombie child processes of this process (of
// every thread: a ptrace stub is the child of the thread that started it).
func Children() ([]int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err != nil {
			continue // the thread is gone
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// ProcState is the state letter of process pid in /proc (R, S, T, t, Z,
// ...), or "" when there is no such process.
func ProcState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) S ...: comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// ProcName is the command name of process pid, or "".
func ProcName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// BecomeSubreaper makes this process the reaper of its orphaned
// descendants (PR_SET_CHILD_SUBREAPER), so a test can see how the
// processes a killed child left behind ended.
func BecomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

// Reap waits for child pid to end and says how: "exited N", "killed by
// SIGKILL".
func Reap(pid int) (string, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("wait4 %d: %w", pid, err)
		}
		switch {
		case ws.Exited():
			return fmt.Sprintf("exited %d", ws.ExitStatus()), nil
		case ws.Signaled():
			return "killed by " + unix.SignalName(ws.Signal()), nil
		}
	}
}

// MemAvailable is the host memory available for new work (MemAvailable in
// /proc/meminfo), in bytes.
func MemAvailable() (uint64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no MemAvailable line in /proc/meminfo")
}

// MonotonicNs is CLOCK_MONOTONIC now, in ns: the clock trace-cmd record -C
// mono and perf record -k CLOCK_MONOTONIC stamp their events with.
func MonotonicNs() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
