package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/lhpvm/lhpvm/guest/prebuilt"
	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/kvm"
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
)

// Config describes one VM.
type Config struct {
	Name       string
	VCPUs      int
	MemBytes   uint64 // 0: 64 MiB
	Image      []byte // nil: the built-in guest
	ImageName  string
	Workload   Workload
	Iterations uint64 // per vCPU; 0 with Duration
	// UntilOthers: the VM is a co-runner (hog) with no bound of its own; it
	// is asked to stop when every other VM of the machine has finished.
	UntilOthers bool
	Console     io.Writer // guest PRINT output; nil: discarded

	// Lock lab parameters, passed through BootInfo.
	LockKind      uint32
	Locks         int
	CSCycles      uint64
	ThinkCycles   uint64
	SpinThreshold uint64
	Flags         uint32
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

	kvm   *kvm.VM
	mem   *kvm.Memory
	kcpus []*kvm.VCPU
	vcpus []*vcpu.VCPU
	hs    []vcpuHost
	con   *console

	firstHC atomic.Int64 // when the first hypercall arrived (UnixNano)

	// Set when a Machine takes the VM.
	m     *Machine
	index int           // in the machine
	sv    []*sched.VCPU // the scheduler's view of each vCPU
}

// vcpuHost is the VMM's state for one vCPU.
type vcpuHost struct {
	exited    bool
	exitCode  uint64
	badCalls  atomic.Uint64
	kicksRecv atomic.Uint64
	waitAddr  atomic.Uint64 // GPA of the WAIT in progress, for diagnostics
	waitVal   atomic.Uint32
}

// New builds a VM: guest memory, the image, boot state and vCPUs. Close it.
func New(sys *kvm.System, cfg Config) (_ *VM, err error) {
	if cfg.MemBytes == 0 {
		cfg.MemBytes = defaultMem
	}
	if cfg.Name == "" {
		cfg.Name = "vm0"
	}
	if cfg.Image == nil {
		cfg.Image, cfg.ImageName = prebuilt.Image, "built-in"
	}
	if cfg.Locks == 0 {
		cfg.Locks = 1
	}
	if cfg.Locks < 0 || cfg.Locks > hypercall.MaxLocks {
		return nil, fmt.Errorf("lock count %d: must be between 1 and %d", cfg.Locks, hypercall.MaxLocks)
	}
	layout, err := NewLayout(cfg.MemBytes, cfg.VCPUs)
	if err != nil {
		return nil, err
	}
	if max, err := sys.MaxVCPUs(); err == nil && max > 0 && cfg.VCPUs > max {
		return nil, fmt.Errorf("vCPU count %d: this KVM allows at most %d per VM", cfg.VCPUs, max)
	}
	img, err := ParseELF(cfg.Image, layout.Image)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", cfg.ImageName, err)
	}
	vm := &VM{cfg: cfg, layout: layout, img: img}
	defer func() {
		if err != nil {
			vm.Close()
		}
	}()
	if vm.mem, err = kvm.NewMemory(int(cfg.MemBytes)); err != nil {
		return nil, err
	}
	if vm.kvm, err = sys.CreateVM(); err != nil {
		return nil, err
	}
	if err = vm.kvm.SetMemory(0, 0, vm.mem); err != nil {
		return nil, err
	}
	mem := vm.mem.Bytes()
	img.Load(mem)
	cr3, err := buildPageTables(mem, cfg.MemBytes)
	if err != nil {
		return nil, err
	}
	cpuid, err := sys.SupportedCPUID()
	if err != nil {
		return nil, err
	}
	vm.con = newConsole(cfg.Console, cfg.Name, cfg.VCPUs)
	vm.hs = make([]vcpuHost, cfg.VCPUs)
	for id := 0; id < cfg.VCPUs; id++ {
		k, err := vm.kvm.CreateVCPU(id)
		if err != nil {
			return nil, err
		}
		vm.kcpus = append(vm.kcpus, k)
		if err := k.SetCPUID(withAPICID(cpuid, id)); err != nil {
			return nil, err
		}
		base, err := k.GetSregs()
		if err != nil {
			return nil, err
		}
		buildCPUTables(mem, layout, id)
		if err := k.SetSregs(cpuSregs(base, layout, id, cr3)); err != nil {
			return nil, err
		}
		if err := k.SetRegs(cpuRegs(layout, id, img.Entry)); err != nil {
			return nil, err
		}
		if id == 0 {
			if vm.tscKHz, err = k.TSCkHz(); err != nil {
				return nil, err
			}
		}
		vm.vcpus = append(vm.vcpus, vcpu.New(id, -1, k, vm))
	}
	vm.writeBootInfo(mem)
	return vm, nil
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
func (vm *VM) Memory() *kvm.Memory { return vm.mem }

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
				// The thread may still be in KVM_RUN: leaking the fds is
				// better than unmapping memory under it.
				return err
			}
		}
	}
	for _, k := range vm.kcpus {
		errs = append(errs, k.Close())
	}
	vm.kcpus, vm.vcpus = nil, nil
	if vm.kvm != nil {
		errs = append(errs, vm.kvm.Close())
		vm.kvm = nil
	}
	if vm.mem != nil {
		errs = append(errs, vm.mem.Close())
		vm.mem = nil
	}
	return errors.Join(errs...)
}
