package kvm

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"golang.org/x/sys/unix"
)

// ExitReason is kvm_run.exit_reason, plus ExitInterrupted for a KVM_RUN that
// returned EINTR (a signal, or immediate_exit): then exit_reason is stale and
// is not reported.
type ExitReason uint32

// KVM exit reasons lhpvm handles or names (include/uapi/linux/kvm.h).
const (
	ExitUnknown       ExitReason = 0
	ExitException     ExitReason = 1
	ExitIO            ExitReason = 2
	ExitHypercall     ExitReason = 3
	ExitDebug         ExitReason = 4
	ExitHLT           ExitReason = 5
	ExitMMIO          ExitReason = 6
	ExitShutdown      ExitReason = 8
	ExitFailEntry     ExitReason = 9
	ExitIntr          ExitReason = 10
	ExitInternalError ExitReason = 17
	ExitSystemEvent   ExitReason = 24
	// ExitInterrupted is not a KVM reason: KVM_RUN returned EINTR or EAGAIN.
	ExitInterrupted ExitReason = 0xffffffff
)

var exitNames = map[ExitReason]string{
	ExitUnknown: "UNKNOWN", ExitException: "EXCEPTION", ExitIO: "IO", ExitHypercall: "HYPERCALL",
	ExitDebug: "DEBUG", ExitHLT: "HLT", ExitMMIO: "MMIO", ExitShutdown: "SHUTDOWN",
	ExitFailEntry: "FAIL_ENTRY", ExitIntr: "INTR", ExitInternalError: "INTERNAL_ERROR",
	ExitSystemEvent: "SYSTEM_EVENT", ExitInterrupted: "interrupted",
}

func (r ExitReason) String() string {
	if s, ok := exitNames[r]; ok {
		return s
	}
	return fmt.Sprintf("exit reason %d", uint32(r))
}

// Exit is a copy of the parts of the run area that describe one exit. It is a
// plain value: decoding it is the caller's business and testable without KVM.
type Exit struct {
	Reason ExitReason
	// MMIO (ExitMMIO).
	MMIOAddr    uint64
	MMIOData    [8]byte
	MMIOLen     uint32
	MMIOIsWrite bool
	// Port I/O (ExitIO).
	IODirection uint8 // 0 in, 1 out
	IOSize      uint8
	IOPort      uint16
	IOCount     uint32
	// FAIL_ENTRY hardware reason, INTERNAL_ERROR suberror, SYSTEM_EVENT type.
	Detail uint64
}

// kvm_run: the fixed header, then the exit union at offset 32.
type runHeader struct {
	requestInterruptWindow uint8
	immediateExit          uint8
	_                      [6]uint8
	exitReason             uint32
	readyForInjection      uint8
	ifFlag                 uint8
	flags                  uint16
	cr8                    uint64
	apicBase               uint64
}

type runMMIO struct {
	physAddr uint64
	data     [8]byte
	len      uint32
	isWrite  uint8
}

type runIO struct {
	direction  uint8
	size       uint8
	port       uint16
	count      uint32
	dataOffset uint64
}

const runUnionOff = 32

// VCPU is a vCPU file descriptor and its mapped run area. It implements
// hv.VCPU: Attach binds it to the calling (locked) OS thread, which then
// makes every call but RequestExit.
type VCPU struct {
	fd  int
	id  int
	run []byte
	hdr *runHeader
	tid atomic.Int32 // the attached thread, for RequestExit's signal; 0: none
	// mu keeps Close from unmapping the run area under a RequestExit.
	mu sync.Mutex
}

var kvmRun = gokvm.IIO(0x80)

func newVCPU(fd, id int, run []byte) *VCPU {
	return &VCPU{fd: fd, id: id, run: run, hdr: (*runHeader)(unsafe.Pointer(&run[0]))}
}

// ID is the vCPU id given to KVM_CREATE_VCPU.
func (v *VCPU) ID() int { return v.id }

// Attach binds the vCPU to the calling OS thread (locked by the caller):
// RequestExit signals that thread to interrupt a KVM_RUN under way.
func (v *VCPU) Attach() error {
	v.tid.Store(int32(host.Gettid()))
	return nil
}

// Run enters the guest until the next exit and decodes it (Decode). An
// interrupted KVM_RUN (EINTR or EAGAIN: a RequestExit, or a Go runtime
// signal) clears immediate_exit and comes back as hv.EventInterrupted; any
// other errno is an error naming KVM_RUN.
func (v *VCPU) Run() (hv.Event, error) {
	e, err := v.RunExit()
	if err != nil {
		return hv.Event{}, err
	}
	if e.Reason == ExitInterrupted {
		v.ClearExitRequest()
	}
	return Decode(e), nil
}

// RunExit enters the guest (KVM_RUN) until the next exit and returns it raw.
// An EINTR or EAGAIN is returned as Exit{Reason: ExitInterrupted} with a nil
// error; any other errno is an error naming KVM_RUN.
func (v *VCPU) RunExit() (Exit, error) {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(v.fd), kvmRun, 0)
	if errno != 0 {
		if errno == unix.EINTR || errno == unix.EAGAIN {
			return Exit{Reason: ExitInterrupted}, nil
		}
		return Exit{}, fmt.Errorf("KVM_RUN vCPU %d: %w", v.id, errno)
	}
	e := Exit{Reason: ExitReason(v.hdr.exitReason)}
	u := unsafe.Pointer(&v.run[runUnionOff])
	switch e.Reason {
	case ExitMMIO:
		m := (*runMMIO)(u)
		e.MMIOAddr, e.MMIOData, e.MMIOLen, e.MMIOIsWrite = m.physAddr, m.data, m.len, m.isWrite != 0
	case ExitIO:
		io := (*runIO)(u)
		e.IODirection, e.IOSize, e.IOPort, e.IOCount = io.direction, io.size, io.port, io.count
	case ExitFailEntry, ExitSystemEvent:
		e.Detail = *(*uint64)(u)
	case ExitInternalError:
		e.Detail = uint64(*(*uint32)(u))
	}
	return e, nil
}

// CompleteRead stores the value the MMIO read of the last exit returns to
// the guest (the low Len bytes count); it takes effect at the next Run.
func (v *VCPU) CompleteRead(data uint64) {
	var d [8]byte
	for i := range d {
		d[i] = byte(data >> (8 * i))
	}
	(*runMMIO)(unsafe.Pointer(&v.run[runUnionOff])).data = d
}

// RequestExit stops the guest soon, from any goroutine: it sets
// kvm_run.immediate_exit, so a KVM_RUN that starts after this returns EINTR
// at once, then signals the attached thread (host.KickSignal) to interrupt
// a KVM_RUN already under way.
func (v *VCPU) RequestExit() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.run == nil {
		return // closed: the guest never runs again
	}
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&v.run[0])), 1<<8)
	if tid := v.tid.Load(); tid != 0 {
		_ = host.Kick(int(tid)) // the thread may just have exited: harmless
	}
}

// Pin is a no-op: the guest runs on the attached thread, which the caller
// has pinned already.
func (v *VCPU) Pin(cpu int) error { return nil }

// Regs reads the general-purpose registers (KVM_GET_REGS).
func (v *VCPU) Regs() (hv.Regs, error) {
	r, err := v.GetRegs()
	if err != nil {
		return hv.Regs{}, err
	}
	return hv.Regs{RAX: r.RAX, RBX: r.RBX, RCX: r.RCX, RDX: r.RDX, RSI: r.RSI, RDI: r.RDI, RSP: r.RSP, RBP: r.RBP,
		R8: r.R8, R9: r.R9, R10: r.R10, R11: r.R11, R12: r.R12, R13: r.R13, R14: r.R14, R15: r.R15,
		RIP: r.RIP, RFLAGS: r.RFLAGS}, nil
}

// SpecialRegs reads CS, SS, CR2 and CR0 (KVM_GET_SREGS).
func (v *VCPU) SpecialRegs() (hv.SpecialRegs, error) {
	s, err := v.GetSregs()
	if err != nil {
		return hv.SpecialRegs{}, err
	}
	return hv.SpecialRegs{CS: uint64(s.CS.Selector), SS: uint64(s.SS.Selector), CR2: s.CR2, CR0: s.CR0}, nil
}

// ClearExitRequest clears immediate_exit; call it on the vCPU thread after an
// interrupted Run, before looking at why it was interrupted.
func (v *VCPU) ClearExitRequest() {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&v.run[0])), 0)
}

// GetRegs reads the general-purpose registers (KVM_GET_REGS).
func (v *VCPU) GetRegs() (*Regs, error) {
	r, err := retry(func() (*Regs, error) { return gokvm.GetRegs(uintptr(v.fd)) })
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_REGS vCPU %d: %w", v.id, err)
	}
	return r, nil
}

// SetRegs writes the general-purpose registers (KVM_SET_REGS).
func (v *VCPU) SetRegs(r *Regs) error {
	if err := retryErr(func() error { return gokvm.SetRegs(uintptr(v.fd), r) }); err != nil {
		return fmt.Errorf("KVM_SET_REGS vCPU %d: %w", v.id, err)
	}
	return nil
}

// GetSregs reads the special registers (KVM_GET_SREGS).
func (v *VCPU) GetSregs() (*Sregs, error) {
	s, err := retry(func() (*Sregs, error) { return gokvm.GetSregs(uintptr(v.fd)) })
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_SREGS vCPU %d: %w", v.id, err)
	}
	return s, nil
}

// SetSregs writes the special registers (KVM_SET_SREGS).
func (v *VCPU) SetSregs(s *Sregs) error {
	if err := retryErr(func() error { return gokvm.SetSregs(uintptr(v.fd), s) }); err != nil {
		return fmt.Errorf("KVM_SET_SREGS vCPU %d: %w", v.id, err)
	}
	return nil
}

// SetCPUID sets the CPUID the guest sees (KVM_SET_CPUID2).
func (v *VCPU) SetCPUID(c *gokvm.CPUID) error {
	if err := retryErr(func() error { return gokvm.SetCPUID2(uintptr(v.fd), c) }); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2 vCPU %d: %w", v.id, err)
	}
	return nil
}

// TSCkHz is the guest TSC frequency (KVM_GET_TSC_KHZ).
func (v *VCPU) TSCkHz() (uint64, error) {
	f, err := retry(func() (uint64, error) { return gokvm.GetTSCKHz(uintptr(v.fd)) })
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_TSC_KHZ vCPU %d: %w", v.id, err)
	}
	return f, nil
}

// Close unmaps the run area and closes the vCPU fd. Call it when no thread
// is in Run any more; it is idempotent.
func (v *VCPU) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tid.Store(0)
	if v.fd < 0 {
		return nil
	}
	err := unix.Munmap(v.run)
	v.hdr, v.run = nil, nil
	err = errors.Join(err, unix.Close(v.fd))
	v.fd = -1
	return err
}
