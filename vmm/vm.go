package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lhpvm/lhpvm/guest/prebuilt"
	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vcpu"
)

// Sentinels for why a run failed.
var (
	ErrGuestFault  = errors.New("guest fault")
	ErrTimeout     = errors.New("watchdog timeout")
	ErrLostWakeup  = errors.New("lost wakeup")
	ErrCheckFailed = errors.New("self-check failed")
	ErrGuestExit   = errors.New("guest exited with an error")
	// ErrUnsupported: the guest did something its backend cannot carry
	// out (hv.EventFailed): on ptrace, an access to the doorbell by an
	// instruction other than MOV; on KVM, an instruction its emulator
	// fails on (KVM_EXIT_INTERNAL_ERROR), a failed VM entry, an exit
	// lhpvm does not know.
	ErrUnsupported = errors.New("unsupported by the backend")
	// ErrNoUserEntry: the backend runs only ring-3 code and the image
	// declares no ring-3 entry (boot protocol v2).
	ErrNoUserEntry = errors.New("the image declares no ring-3 entry")
)

// Config describes one VM.
type Config struct {
	Name      string
	VCPUs     int
	MemBytes  uint64 // 0: 64 MiB
	Image     []byte // nil: the built-in guest
	ImageName string
	// Parsed is Image already parsed (ParseELF) by a caller that checked
	// it before building anything, so that New does not parse it again;
	// nil, or parsed for another layout: New parses Image.
	Parsed     *Image
	Workload   Workload
	Iterations uint64 // per vCPU; 0 with Duration
	// UntilOthers: the VM is a co-runner (hog) with no bound of its own; it
	// is asked to stop when every other VM of the machine has finished.
	UntilOthers bool
	Console     io.Writer // guest PRINT output; nil: discarded
	// Code is the machine code workload code calls on every vCPU (at most
	// hypercall.MaxCodeLen bytes; empty: the page is all int3). Other
	// workloads take none.
	Code []byte

	// Lock lab parameters, passed through BootInfo.
	LockKind      uint32
	Locks         int
	CSCycles      uint64
	ThinkCycles   uint64
	SpinThreshold uint64
	Flags         uint32
	PV            PVKnobs // pvqspin's mechanisms
	// PTicketShift: a pticket waiter's timeout is its distance from the
	// head << PTicketShift spins (0: hypercall.DefaultPTicketShift).
	PTicketShift uint32
}

// DefaultTimeout is the watchdog when Config.Timeout is 0.
const DefaultTimeout = 60 * time.Second

// stopGrace is how long a vCPU has to leave its loop after Stop.
const stopGrace = 5 * time.Second

// VM is a built, not yet run, virtual machine.
type VM struct {
	cfg    Config
	layout Layout
	img    *Image
	tscKHz uint64
	// codeGPA is workload code's code page (0: another workload).
	codeGPA uint64

	backend hv.Hypervisor
	bvm     hv.VM
	mem     *host.Memory
	bcpus   []hv.VCPU
	vcpus   []*vcpu.VCPU
	calls   []vcpuCalls // each vCPU's hypercall state
	con     *console

	firstHC atomic.Int64 // when the first hypercall arrived (UnixNano)

	// Set when a Machine takes the VM.
	m          *Machine
	index      int           // in the machine
	schedVCPUs []*sched.VCPU // the scheduler's view of each vCPU
}

// vcpuCalls is the VMM's state for one vCPU.
type vcpuCalls struct {
	exited    bool
	exitCode  uint64
	badCalls  atomic.Uint64
	kicksRecv atomic.Uint64
	waitAddr  atomic.Uint64 // GPA of the WAIT in progress, for diagnostics
	waitVal   atomic.Uint32
}

// New builds a VM on backend h: guest memory, the image, boot state and
// vCPUs. Close it.
func New(h hv.Hypervisor, cfg Config) (_ *VM, err error) {
	if cfg.MemBytes == 0 {
		cfg.MemBytes = defaultMem
	}
	if cfg.Name == "" {
		cfg.Name = "vm0"
	}
	if cfg.Image == nil {
		if prebuilt.Image == nil {
			return nil, prebuilt.ErrNotBuilt
		}
		cfg.Image, cfg.ImageName = prebuilt.Image, "built-in"
	}
	if cfg.Locks == 0 {
		cfg.Locks = 1
	}
	if cfg.Locks < 0 || cfg.Locks > hypercall.MaxLocks {
		return nil, fmt.Errorf("lock count %d: must be between 1 and %d", cfg.Locks, hypercall.MaxLocks)
	}
	for _, k := range pvKnobs {
		if v := k.Get(cfg.PV); int(v) >= len(k.Values) {
			return nil, fmt.Errorf("%s %d: must be one of %s (0-%d)", k.Key, v, strings.Join(k.Values, ", "), len(k.Values)-1)
		}
	}
	if err := checkCode(cfg); err != nil {
		return nil, err
	}
	layout, err := NewLayout(cfg.MemBytes, cfg.VCPUs)
	if err != nil {
		return nil, err
	}
	if err := CheckBackend(h, cfg.VCPUs, nil); err != nil {
		return nil, err
	}
	img := cfg.Parsed
	if img == nil || img.window != layout.Image {
		if img, err = ParseELF(cfg.Image, layout.Image); err != nil {
			return nil, fmt.Errorf("image %s: %w", cfg.ImageName, err)
		}
	}
	if err := CheckImage(h, img); err != nil {
		return nil, fmt.Errorf("image %s: %w", cfg.ImageName, err)
	}
	vm := &VM{cfg: cfg, layout: layout, img: img, backend: h}
	if cfg.Workload.ID == hypercall.WorkloadCode {
		if vm.codeGPA, err = codePage(layout, img); err != nil {
			return nil, fmt.Errorf("image %s: %w", cfg.ImageName, err)
		}
	}
	defer func() {
		if err != nil {
			vm.Close()
		}
	}()
	if vm.mem, err = host.NewMemory(int(cfg.MemBytes)); err != nil {
		return nil, err
	}
	mem := vm.mem.Bytes()
	img.Load(mem)
	if vm.codeGPA != 0 {
		loadCode(mem[vm.codeGPA:vm.codeGPA+hypercall.PageSize], cfg.Code)
	}
	cr3, err := buildPageTables(mem, cfg.MemBytes)
	if err != nil {
		return nil, err
	}
	for id := 0; id < cfg.VCPUs; id++ {
		buildCPUTables(mem, layout, id)
	}
	if vm.bvm, err = h.CreateVM(vm.mem); err != nil {
		return nil, err
	}
	vm.con = newConsole(cfg.Console, cfg.Name, cfg.VCPUs)
	vm.calls = make([]vcpuCalls, cfg.VCPUs)
	for id := 0; id < cfg.VCPUs; id++ {
		b, err := vm.bvm.CreateVCPU(id, entry(layout, id, img, cr3))
		if err != nil {
			return nil, err
		}
		vm.bcpus = append(vm.bcpus, b)
		vm.vcpus = append(vm.vcpus, vcpu.New(id, -1, b, vm))
	}
	if vm.tscKHz, err = vm.bvm.TSCkHz(); err != nil {
		return nil, err
	}
	vm.writeBootInfo(mem)
	return vm, nil
}

// checkCode checks Config.Code: at most a page, and for workload code only.
func checkCode(cfg Config) error {
	if len(cfg.Code) > hypercall.MaxCodeLen {
		return fmt.Errorf("code of %d bytes: at most %d", len(cfg.Code), hypercall.MaxCodeLen)
	}
	if len(cfg.Code) > 0 && cfg.Workload.ID != hypercall.WorkloadCode {
		return fmt.Errorf("code (%d bytes) is for workload code only, not %q", len(cfg.Code), cfg.Workload.Name)
	}
	return nil
}

// codePage places workload code's code page: the last page of the image
// window, right below the lock area, far from the built-in guest's image
// (which it must not overlap).
func codePage(l Layout, img *Image) (uint64, error) {
	page := Range{l.Image.End - hypercall.PageSize, l.Image.End}
	for _, s := range img.Segments {
		if seg := (Range{s.Addr, s.Addr + s.MemSz}); seg.overlaps(page) {
			return 0, badImage("segment %v overlaps the code page %v of workload code", seg, page)
		}
	}
	return page.Start, nil
}

// loadCode fills the code page: the code, then int3 to its end, so code
// that runs off its end stops with a #BP.
func loadCode(page, code []byte) {
	n := copy(page, code)
	for i := n; i < len(page); i++ {
		page[i] = 0xcc
	}
}

// TooManyVCPUsError: a VM wider than its backend allows on this host (KVM:
// KVM_CAP_MAX_VCPUS).
type TooManyVCPUsError struct {
	VCPUs, Max int
	Backend    string
}

func (e *TooManyVCPUsError) Error() string {
	return fmt.Sprintf("vCPU count %d: the %s backend allows at most %d per VM", e.VCPUs, e.Backend, e.Max)
}

// CheckBackend reports whether backend h can run a VM of vcpus vCPUs
// (else a *TooManyVCPUsError) booting img (CheckImage; nil: not checked).
// New checks this; a caller may check it first, before anything is built.
func CheckBackend(h hv.Hypervisor, vcpus int, img *Image) error {
	if max := h.MaxVCPUs(); max > 0 && vcpus > max {
		return &TooManyVCPUsError{VCPUs: vcpus, Max: max, Backend: h.Name()}
	}
	if img != nil {
		return CheckImage(h, img)
	}
	return nil
}

// CheckImage reports whether backend h can start img: a backend that runs
// only ring-3 code needs the image's ring-3 entry note.
func CheckImage(h hv.Hypervisor, img *Image) error {
	if h.UserOnly() && img.UserEntry == 0 {
		return fmt.Errorf("%w (an LHPVM note of type %d, boot protocol v2): the %s backend runs only ring-3 code",
			ErrNoUserEntry, hypercall.NoteUserEntry, h.Name())
	}
	return nil
}

func (vm *VM) writeBootInfo(mem []byte) {
	c := vm.cfg
	bi := hypercall.BootInfo{
		Magic: hypercall.BootMagic, ABIVersion: hypercall.Version,
		NrVCPUs: uint32(c.VCPUs), Workload: c.Workload.ID,
		Iterations: c.Iterations, TSCkHz: vm.tscKHz, MemBytes: c.MemBytes,
		DoorbellGPA: hypercall.DoorbellGPA, VCPUBlocksGPA: vm.layout.Blocks.Start,
		VCPUBlockSize: hypercall.VCPUBlockSize, LocksGPA: vm.layout.Locks.Start,
		NrLocks: uint32(c.Locks), LockKind: c.LockKind, CSCycles: c.CSCycles,
		ThinkCycles: c.ThinkCycles, SpinThreshold: c.SpinThreshold, Flags: c.Flags,
		PVSteal: c.PV.Steal, PVPending: c.PV.Pending, PVPrevCheck: c.PV.PrevCheck, PVKick: c.PV.Kick,
		SpinThresholdHead: c.PV.SpinThresholdHead, PTicketShift: c.PTicketShift,
	}
	if vm.codeGPA != 0 {
		bi.CodeGPA, bi.CodeLen = vm.codeGPA, uint64(len(c.Code))
	}
	w := sliceWriter{b: mem[hypercall.BootInfoGPA:hypercall.PageTableGPA]}
	_ = binary.Write(&w, binary.LittleEndian, &bi)
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	if len(p) > len(w.b) {
		return 0, io.ErrShortWrite
	}
	n := copy(w.b, p)
	w.b = w.b[n:]
	return n, nil
}

// FirstHypercall is when the guest's first hypercall reached the VMM (zero
// if none has yet).
func (vm *VM) FirstHypercall() time.Time {
	if ns := vm.firstHC.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Name is the VM's name.
func (vm *VM) Name() string { return vm.cfg.Name }

// VCPUs are the VM's vCPUs.
func (vm *VM) VCPUs() []*vcpu.VCPU { return vm.vcpus }

// Memory is guest RAM.
func (vm *VM) Memory() *host.Memory { return vm.mem }

// Backend is the name of the backend the VM runs on.
func (vm *VM) Backend() string { return vm.backend.Name() }

// Layout is the guest memory layout.
func (vm *VM) Layout() Layout { return vm.layout }

// Image is the parsed guest image.
func (vm *VM) Image() *Image { return vm.img }

// TSCkHz is the guest TSC frequency.
func (vm *VM) TSCkHz() uint64 { return vm.tscKHz }

// Close stops anything still running and releases the vCPUs, the VM and its
// memory, in that order.
func (vm *VM) Close() error {
	var errs []error
	for _, v := range vm.vcpus {
		if v.State() != vcpu.Created {
			v.Stop()
			if err := v.Wait(stopGrace); err != nil {
				// The thread may still be in the guest: leaking the
				// vCPU is better than unmapping memory under it.
				return err
			}
		}
	}
	// A vCPU that ran was closed by its loop; Close is idempotent.
	for _, b := range vm.bcpus {
		errs = append(errs, b.Close())
	}
	vm.bcpus, vm.vcpus = nil, nil
	if vm.bvm != nil {
		errs = append(errs, vm.bvm.Close())
		vm.bvm = nil
	}
	if vm.mem != nil {
		errs = append(errs, vm.mem.Close())
		vm.mem = nil
	}
	return errors.Join(errs...)
}
