package ptrace

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"golang.org/x/sys/unix"
)

// ramStart is the lowest guest address a stub maps: page 0 stays unmapped,
// so a null pointer faults.
const ramStart = 0x1000

// VCPU is one vCPU whose guest runs natively in a stub process, traced by the
// OS thread that called Attach. It implements hv.VCPU: every call but
// RequestExit comes from that thread, as ptrace requires.
type VCPU struct {
	id    int
	mem   *host.Memory
	entry hv.Entry

	pid int // the stub, while it lives (tracer thread only)
	// sigPid is the stub RequestExit may signal: set once the stub is
	// ready, cleared before it is reaped, so a kick can never reach a
	// process that reused the pid.
	sigMu   sync.Mutex
	sigPid  int
	pending atomic.Bool // an exit was requested and not yet seen by Run

	regs     unix.PtraceRegs // the stopped stub's registers, once read
	haveRegs bool
	dirty    bool   // regs were changed: PTRACE_SETREGS before resuming
	last     access // the doorbell access of the last exit, if any
	cr2      uint64 // the last page-fault address
	dec      decoder
}

// newVCPU makes vCPU id of a VM over mem, to start at entry.User.
func newVCPU(id int, mem *host.Memory, entry hv.Entry) *VCPU {
	return &VCPU{id: id, mem: mem, entry: entry}
}

// Attach starts the stub from the calling thread, which the caller has
// locked, and makes that thread its tracer: ForkExec with PTRACE_TRACEME,
// PTRACE_O_EXITKILL and PDEATHSIG (no stub outlives lhpvm, even on kill -9),
// its own process group (a terminal's Ctrl-C is not the guest's). It returns
// once the stub, its own set-up done and every syscall trapped, waits at its
// int3 with the guest's entry registers loaded.
func (v *VCPU) Attach() (err error) {
	if v.pid != 0 {
		return fmt.Errorf("vCPU %d: already attached", v.id)
	}
	path, err := stubPath()
	if err != nil {
		return err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("vCPU %d: pipe for the stub's errors: %w", v.id, err)
	}
	defer unix.Close(p[0])
	attr := &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{uintptr(v.mem.FD()), uintptr(p[1])},
		Sys:   &syscall.SysProcAttr{Ptrace: true, Pdeathsig: syscall.SIGKILL, Setpgid: true},
	}
	pid, err := syscall.ForkExec(path, []string{"lhpvm-stub", fmt.Sprintf("%x", v.mem.Size())}, attr)
	unix.Close(p[1])
	if err != nil {
		hint := ""
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			hint = " (is ptrace allowed here? a container needs CAP_SYS_PTRACE or a seccomp profile that allows ptrace)"
		}
		return fmt.Errorf("vCPU %d: starting the stub process (fork, PTRACE_TRACEME, exec): %w%s", v.id, err, hint)
	}
	v.pid = pid
	defer func() {
		if err != nil {
			v.Close()
		}
	}()
	// The stub stops first at its exec (SIGTRAP, PTRACE_TRACEME), then at
	// the int3 that ends its set-up. Anything else before that is a signal
	// from outside (swallowed) or its death (its error line explains).
	for step := 0; ; {
		ws, err := v.wait()
		if err != nil {
			return err
		}
		if !ws.Stopped() {
			return fmt.Errorf("vCPU %d: the stub %s during its set-up%s", v.id, describeExit(ws), stubError(p[0], ws))
		}
		if ws.StopSignal() == unix.SIGTRAP {
			if step == 0 {
				if err := setOptions(pid, unix.PTRACE_O_EXITKILL); err != nil {
					return fmt.Errorf("vCPU %d: %w", v.id, err)
				}
			}
			if step++; step == 2 {
				break
			}
		}
		if err := cont(pid); err != nil {
			return fmt.Errorf("vCPU %d: %w", v.id, err)
		}
	}
	if err := getRegs(pid, &v.regs); err != nil {
		return fmt.Errorf("vCPU %d: %w", v.id, err)
	}
	u := v.entry.User
	r := &v.regs
	cs, ss := r.Cs, r.Ss // the host's user selectors
	*r = unix.PtraceRegs{Rip: u.RIP, Rsp: u.RSP, Eflags: u.RFLAGS, Rdi: v.entry.RDI, Rsi: v.entry.RSI,
		Rdx: v.entry.RDX, Cs: cs, Ss: ss, Orig_rax: ^uint64(0)}
	v.haveRegs, v.dirty = true, true
	v.sigMu.Lock()
	v.sigPid = pid
	v.sigMu.Unlock()
	return nil
}

// wait waits for the next stop or the end of the stub.
func (v *VCPU) wait() (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(v.pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, fmt.Errorf("vCPU %d: wait4 stub %d: %w", v.id, v.pid, err)
		}
		if ws.Exited() || ws.Signaled() {
			v.forget() // reaped
		}
		return ws, nil
	}
}

// Run resumes the guest and returns its next exit. A stop for a signal from
// outside the guest (a RequestExit's, or anyone's kill) is swallowed; it ends
// Run with EventInterrupted only if an exit was requested.
func (v *VCPU) Run() (hv.Event, error) {
	if v.pending.Swap(false) {
		return hv.Event{Kind: hv.EventInterrupted}, nil
	}
	if v.pid == 0 {
		return hv.Event{}, fmt.Errorf("vCPU %d: the stub is not running", v.id)
	}
	for {
		if v.dirty {
			if err := setRegs(v.pid, &v.regs); err != nil {
				return hv.Event{}, fmt.Errorf("vCPU %d: %w", v.id, err)
			}
			v.dirty = false
		}
		v.haveRegs, v.last = false, access{}
		if err := cont(v.pid); err != nil {
			return hv.Event{}, fmt.Errorf("vCPU %d: %w", v.id, err)
		}
		pid := v.pid
		ws, err := v.wait()
		if err != nil {
			return hv.Event{}, err
		}
		if !ws.Stopped() {
			return hv.Event{}, fmt.Errorf("vCPU %d: the stub process %d %s", v.id, pid, describeExit(ws))
		}
		sig := ws.StopSignal()
		var si rawSiginfo
		if synchronous(sig) {
			if err := getSiginfo(v.pid, &si); err != nil {
				return hv.Event{}, fmt.Errorf("vCPU %d: %w", v.id, err)
			}
		}
		info := sigInfo{Signo: si.Signo, Code: si.Code, Addr: si.Addr, Syscall: si.Syscall, Arch: si.Arch}
		if !synchronous(sig) || info.external() {
			if v.pending.Swap(false) {
				return hv.Event{Kind: hv.EventInterrupted}, nil
			}
			continue
		}
		if err := getRegs(v.pid, &v.regs); err != nil {
			return hv.Event{}, fmt.Errorf("vCPU %d: %w", v.id, err)
		}
		v.haveRegs = true
		ev, a := v.dec.stop(info, &v.regs, v.codeAt(v.regs.Rip))
		if a.insnLen > 0 {
			v.regs.Rip += uint64(a.insnLen)
			v.dirty, v.last = true, a
		}
		if ev.Kind == hv.EventFault && ev.Fault.Vector == hv.VectorPF {
			v.cr2 = ev.Fault.CR2
		}
		return ev, nil
	}
}

// synchronous reports whether sig is one the guest can cause by executing
// an instruction; only those carry a siginfo worth reading.
func synchronous(sig unix.Signal) bool {
	switch sig {
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP, unix.SIGSYS:
		return true
	}
	return false
}

// codeAt is guest RAM from rip on (up to one instruction's worth), or nil
// when rip is outside guest RAM.
func (v *VCPU) codeAt(rip uint64) []byte {
	mem := v.mem.Bytes()
	if rip < ramStart || rip >= uint64(len(mem)) {
		return nil
	}
	return mem[rip:min(rip+maxInsnLen, uint64(len(mem)))]
}

// RequestExit makes a Run under way return soon with EventInterrupted and a
// later one return at once, from any goroutine: the pending flag is checked
// before resuming, and the first request since the last Run signals the
// stub, whose stop wakes the tracer. A signal that arrives while the tracer
// is already serving an exit stays queued and costs one spurious stop.
// GuestTID is the stub process the guest runs in (hv.GuestThread).
func (v *VCPU) GuestTID() int {
	v.sigMu.Lock()
	defer v.sigMu.Unlock()
	return v.sigPid
}

func (v *VCPU) RequestExit() {
	if v.pending.Swap(true) {
		return // a signal is already on its way
	}
	v.sigMu.Lock()
	if v.sigPid != 0 {
		_ = unix.Tgkill(v.sigPid, v.sigPid, host.KickSignal)
	}
	v.sigMu.Unlock()
}

// CompleteRead sets what the doorbell load of the last exit returns: its
// destination register gets data with the CPU's merge rules.
func (v *VCPU) CompleteRead(data uint64) {
	if v.last.insnLen == 0 || v.last.write {
		return
	}
	completeLoad(v.last, &v.regs, data)
	v.dirty = true
}

// Pin moves the stub to host CPU cpu, beside its tracer (a ptrace stop and
// resume across CPUs costs several times as much).
func (v *VCPU) Pin(cpu int) error {
	if v.pid == 0 {
		return nil
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(v.pid, &set); err != nil {
		return fmt.Errorf("vCPU %d: sched_setaffinity stub %d cpu %d: %w", v.id, v.pid, cpu, err)
	}
	return nil
}

// readRegs makes sure v.regs holds the stopped stub's registers.
func (v *VCPU) readRegs() error {
	if v.haveRegs {
		return nil
	}
	if v.pid == 0 {
		return fmt.Errorf("vCPU %d: the stub is not running", v.id)
	}
	if err := getRegs(v.pid, &v.regs); err != nil {
		return fmt.Errorf("vCPU %d: %w", v.id, err)
	}
	v.haveRegs = true
	return nil
}

// Regs reads the guest's general-purpose registers (PTRACE_GETREGS, once
// per stop).
func (v *VCPU) Regs() (hv.Regs, error) {
	if err := v.readRegs(); err != nil {
		return hv.Regs{}, err
	}
	r := &v.regs
	return hv.Regs{RAX: r.Rax, RBX: r.Rbx, RCX: r.Rcx, RDX: r.Rdx, RSI: r.Rsi, RDI: r.Rdi, RSP: r.Rsp, RBP: r.Rbp,
		R8: r.R8, R9: r.R9, R10: r.R10, R11: r.R11, R12: r.R12, R13: r.R13, R14: r.R14, R15: r.R15,
		RIP: r.Rip, RFLAGS: r.Eflags}, nil
}

// SpecialRegs are the guest's CS and SS (the host's user selectors), the
// address of its last page fault, and the CR0 of the long mode the stub
// always runs in.
func (v *VCPU) SpecialRegs() (hv.SpecialRegs, error) {
	if err := v.readRegs(); err != nil {
		return hv.SpecialRegs{}, err
	}
	return hv.SpecialRegs{CS: v.regs.Cs, SS: v.regs.Ss, CR2: v.cr2, CR0: longModeCR0}, nil
}

// longModeCR0 is what CR0 holds under any 64-bit Linux process: PG, WP, NE,
// ET, MP, PE.
const longModeCR0 = 0x80050033

// forget drops the stub's pid once it is reaped (or about to be).
func (v *VCPU) forget() {
	v.sigMu.Lock()
	v.sigPid = 0
	v.sigMu.Unlock()
	v.pid = 0
	v.haveRegs = false
}

// Close kills the stub and reaps it. Call it on the tracer thread (the vCPU
// loop does); it is idempotent.
func (v *VCPU) Close() error {
	pid := v.pid
	if pid == 0 {
		return nil
	}
	v.forget()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
		return fmt.Errorf("vCPU %d: kill stub %d: %w", v.id, pid, err)
	}
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		switch {
		case err == unix.EINTR:
			continue
		case errors.Is(err, unix.ECHILD):
			return nil
		case err != nil:
			return fmt.Errorf("vCPU %d: reaping stub %d: %w", v.id, pid, err)
		case ws.Exited() || ws.Signaled():
			return nil
		}
		// A stop reported before the kill landed: wait on.
	}
}

// describeExit says how a stub ended.
func describeExit(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		if c := ws.ExitStatus(); c >= 100 {
			return fmt.Sprintf("exited with status %d (seccomp filter refused: errno %d)", c, c-100)
		}
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("was killed by signal %d (%v)", ws.Signal(), ws.Signal())
	}
	return fmt.Sprintf("changed state (wait status %#x)", uint32(ws))
}

// stubError is the stub's own error line, if it wrote one before exiting.
func stubError(fd int, ws unix.WaitStatus) string {
	if !ws.Exited() && !ws.Signaled() {
		return "" // alive: reading would block
	}
	var buf [512]byte
	n, _ := unix.Read(fd, buf[:])
	if n <= 0 {
		return ""
	}
	line := strings.TrimSpace(string(bytes.TrimRight(buf[:n], "\x00")))
	return ": " + line
}
