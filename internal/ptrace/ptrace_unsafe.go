package ptrace

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ptrace requests of the serving loop go through RawSyscall: they never
// block (the tracee is stopped), and skipping the runtime's syscall
// bookkeeping is measurable at ~25 µs a round trip. wait4 blocks, so it goes
// through unix.Wait4 (Syscall6): a RawSyscall there would keep the runtime
// from preempting the thread, and a GC would wait for the guest (docs/ptrace.md).

func ptraceRaw(req int, pid int, addr, data uintptr) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, uintptr(req), uintptr(pid), addr, data, 0, 0)
	return e
}

func getRegs(pid int, r *unix.PtraceRegs) error {
	if e := ptraceRaw(unix.PTRACE_GETREGS, pid, 0, uintptr(unsafe.Pointer(r))); e != 0 {
		return fmt.Errorf("PTRACE_GETREGS stub %d: %w", pid, e)
	}
	return nil
}

func setRegs(pid int, r *unix.PtraceRegs) error {
	if e := ptraceRaw(unix.PTRACE_SETREGS, pid, 0, uintptr(unsafe.Pointer(r))); e != 0 {
		return fmt.Errorf("PTRACE_SETREGS stub %d: %w", pid, e)
	}
	return nil
}

// cont resumes the stub without delivering any signal: every signal the
// guest causes or receives is the tracer's to handle.
func cont(pid int) error {
	if e := ptraceRaw(unix.PTRACE_CONT, pid, 0, 0); e != 0 {
		return fmt.Errorf("PTRACE_CONT stub %d: %w", pid, e)
	}
	return nil
}

func setOptions(pid int, opts uintptr) error {
	if e := ptraceRaw(unix.PTRACE_SETOPTIONS, pid, 0, opts); e != 0 {
		return fmt.Errorf("PTRACE_SETOPTIONS stub %d: %w", pid, e)
	}
	return nil
}

// rawSiginfo is the kernel's siginfo_t on x86-64 (128 bytes): the common
// header, then the union at offset 16. Of the union lhpvm reads si_addr
// (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) and, for SIGSYS, _call_addr
// (at the same offset), _syscall and _arch.
type rawSiginfo struct {
	Signo   int32
	Errno   int32
	Code    int32
	_       int32
	Addr    uint64
	Syscall int32
	Arch    uint32
	_       [96]byte
}

func getSiginfo(pid int, si *rawSiginfo) error {
	if e := ptraceRaw(unix.PTRACE_GETSIGINFO, pid, 0, uintptr(unsafe.Pointer(si))); e != 0 {
		return fmt.Errorf("PTRACE_GETSIGINFO stub %d: %w", pid, e)
	}
	return nil
}

// kernelSigaction is struct sigaction as rt_sigaction takes it on x86-64.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// quietSIGCHLD adds SA_NOCLDSTOP to the Go runtime's own SIGCHLD handler
// (read, modify, write back). Every ptrace stop otherwise sends the tracing
// process a SIGCHLD whose handler costs ~5 µs, 20 % of a hypercall round
// trip (docs/ptrace.md). The runtime still sees children exit, so os/exec
// keeps working (signal.Ignore(SIGCHLD) would break it).
func quietSIGCHLD() error {
	var sa kernelSigaction
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGCHLD), 0,
		uintptr(unsafe.Pointer(&sa)), 8, 0, 0); e != 0 {
		return fmt.Errorf("rt_sigaction(SIGCHLD) read: %w", e)
	}
	sa.flags |= saNoCldStop
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGCHLD),
		uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0); e != 0 {
		return fmt.Errorf("rt_sigaction(SIGCHLD) write: %w", e)
	}
	return nil
}

// saNoCldStop is SA_NOCLDSTOP (x/sys/unix does not name it).
const saNoCldStop = 0x1
