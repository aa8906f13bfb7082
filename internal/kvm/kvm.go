package kvm

import (
	"errors"
	"fmt"
	"os"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"golang.org/x/sys/unix"
)

// Sentinels callers branch on.
var (
	// ErrNoKVM: /dev/kvm is missing or cannot be opened read-write.
	ErrNoKVM = errors.New("/dev/kvm is not available")
	// ErrNotSupported: the kernel lacks something lhpvm needs.
	ErrNotSupported = errors.New("not supported by this KVM")
)

// Struct mirrors of the kernel's kvm_regs, kvm_sregs, kvm_segment, kvm_dtable.
type (
	Regs       = gokvm.Regs
	Sregs      = gokvm.Sregs
	Segment    = gokvm.Segment
	Descriptor = gokvm.Descriptor
)

// DevicePath is the KVM device node.
const DevicePath = "/dev/kvm"

const kvmAPIVersion = 12

// System is an open /dev/kvm: the kvm backend (hv.Hypervisor).
type System struct {
	fd      int
	runSize int
	max     int // vCPUs per VM (0: unknown)
}

var _ hv.Hypervisor = (*System)(nil)

// Name is "kvm".
func (s *System) Name() string { return "kvm" }

// UserOnly is false: KVM boots the image at its ELF entry, in ring 0.
func (s *System) UserOnly() bool { return false }

// MaxVCPUs is the most vCPUs one VM may have (KVM_CAP_MAX_VCPUS, or
// KVM_CAP_NR_VCPUS on old kernels; 0: unknown).
func (s *System) MaxVCPUs() int { return s.max }

// Open opens /dev/kvm and checks the API version (KVM_GET_API_VERSION) and
// the size of the vCPU run area (KVM_GET_VCPU_MMAP_SIZE); then it creates
// (and closes) a VM, because a /dev/kvm that opens but cannot make a VM (a
// nested host that refuses) is no KVM.
func Open() (*System, error) {
	fd, err := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrNoKVM, DevicePath, err)
	}
	s := &System{fd: fd}
	v, err := retry(func() (uintptr, error) { return gokvm.GetAPIVersion(uintptr(fd)) })
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	if v != kvmAPIVersion {
		s.Close()
		return nil, fmt.Errorf("%w: KVM API version %d, want %d", ErrNotSupported, v, kvmAPIVersion)
	}
	size, err := retry(func() (uintptr, error) { return gokvm.GetVCPUMMmapSize(uintptr(fd)) })
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	s.runSize = int(size)
	s.max, _ = s.maxVCPUs()
	mem, err := host.NewMemory(2 << 20)
	if err != nil {
		s.Close()
		return nil, err
	}
	defer mem.Close()
	vm, err := s.CreateVM(mem)
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, vm.Close()
}

// Available reports whether /dev/kvm can be opened, and why not.
func Available() error {
	s, err := Open()
	if err != nil {
		return err
	}
	return s.Close()
}

// Close closes /dev/kvm.
func (s *System) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// CheckExtension returns the value of a capability (KVM_CHECK_EXTENSION).
func (s *System) CheckExtension(c gokvm.Capability) (int, error) {
	v, err := retry(func() (uintptr, error) { return gokvm.CheckExtension(uintptr(s.fd), c) })
	if err != nil {
		return 0, fmt.Errorf("KVM_CHECK_EXTENSION %v: %w", c, err)
	}
	return int(v), nil
}

// maxVCPUs asks KVM_CAP_MAX_VCPUS, or KVM_CAP_NR_VCPUS on old kernels.
func (s *System) maxVCPUs() (int, error) {
	n, err := s.CheckExtension(gokvm.CapMAXVCPUS)
	if err == nil && n == 0 {
		n, err = s.CheckExtension(gokvm.CapNRVCPUS)
	}
	return n, err
}

// SupportedCPUID returns what KVM can expose to a guest (KVM_GET_SUPPORTED_CPUID).
func (s *System) SupportedCPUID() (*gokvm.CPUID, error) {
	c := &gokvm.CPUID{Nent: 256, Entries: make([]gokvm.CPUIDEntry2, 256)}
	if err := retryErr(func() error { return gokvm.GetSupportedCPUID(uintptr(s.fd), c) }); err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	c.Entries = c.Entries[:c.Nent]
	return c, nil
}

// CreateVM creates a VM (KVM_CREATE_VM) with mem as its RAM at GPA 0
// (KVM_SET_USER_MEMORY_REGION, slot 0). The VM's vCPUs see the CPUID KVM
// supports (KVM_GET_SUPPORTED_CPUID), each with its own APIC id.
func (s *System) CreateVM(mem *host.Memory) (_ hv.VM, err error) {
	cpuid, err := s.SupportedCPUID()
	if err != nil {
		return nil, err
	}
	fd, err := retry(func() (uintptr, error) { return gokvm.CreateVM(uintptr(s.fd)) })
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	vm := &VM{fd: int(fd), runSize: s.runSize, cpuid: cpuid}
	if err := vm.SetMemory(0, 0, mem); err != nil {
		vm.Close()
		return nil, err
	}
	return vm, nil
}

// VM is a KVM virtual machine file descriptor.
type VM struct {
	fd      int
	runSize int
	cpuid   *gokvm.CPUID
	first   *VCPU // vCPU 0, which answers KVM_GET_TSC_KHZ
}

// Close closes the VM fd. Close every VCPU first.
func (vm *VM) Close() error {
	if vm.fd < 0 {
		return nil
	}
	err := unix.Close(vm.fd)
	vm.fd = -1
	return err
}

// SetMemory maps mem at guest physical address gpa in the given slot
// (KVM_SET_USER_MEMORY_REGION).
func (vm *VM) SetMemory(slot uint32, gpa uint64, mem *host.Memory) error {
	r := gokvm.UserspaceMemoryRegion{
		Slot:          slot,
		GuestPhysAddr: gpa,
		MemorySize:    mem.Size(),
		UserspaceAddr: uint64(mem.Addr()),
	}
	if err := retryErr(func() error { return gokvm.SetUserMemoryRegion(uintptr(vm.fd), &r) }); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d: %w", slot, err)
	}
	return nil
}

// CreateVCPU creates vCPU id (KVM_CREATE_VCPU), maps its run area, and sets
// it up to start at e.Kernel in 64-bit ring 0 (KVM_SET_CPUID2,
// KVM_SET_SREGS, KVM_SET_REGS). KVM always starts lhpvm guests in ring 0:
// e.User is for backends that cannot.
func (vm *VM) CreateVCPU(id int, e hv.Entry) (_ hv.VCPU, err error) {
	fd, err := retry(func() (uintptr, error) { return gokvm.CreateVCPU(uintptr(vm.fd), id) })
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	run, err := unix.Mmap(int(fd), 0, vm.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("mmap vCPU %d run area: %w", id, os.NewSyscallError("mmap", err))
	}
	v := newVCPU(int(fd), id, run)
	defer func() {
		if err != nil {
			v.Close()
		}
	}()
	if err := v.SetCPUID(withAPICID(vm.cpuid, e.Kernel.APICID)); err != nil {
		return nil, err
	}
	base, err := v.GetSregs()
	if err != nil {
		return nil, err
	}
	if err := v.SetSregs(longModeSregs(base, e.Kernel)); err != nil {
		return nil, err
	}
	if err := v.SetRegs(&Regs{RIP: e.Kernel.RIP, RSP: e.Kernel.RSP, RDI: e.RDI, RSI: e.RSI, RDX: e.RDX, RFLAGS: 0x2}); err != nil {
		return nil, err
	}
	if vm.first == nil {
		vm.first = v
	}
	return v, nil
}

// TSCkHz is the guest TSC frequency (KVM_GET_TSC_KHZ on the first vCPU).
func (vm *VM) TSCkHz() (uint64, error) {
	if vm.first == nil {
		return 0, errors.New("KVM_GET_TSC_KHZ: the VM has no vCPU yet")
	}
	return vm.first.TSCkHz()
}

// Module names the host's KVM vendor module, read from /sys/module:
// kvm_intel (VMX), kvm_amd (SVM), kvm_pvm (PVM: a paravirtual KVM that runs
// inside a KVM guest, with guest ring 0 emulated; its differences from
// textbook KVM are in docs/kvm.md), or "" when none is loaded.
func Module() string {
	for _, m := range []string{"kvm_intel", "kvm_amd", "kvm_pvm"} {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			return m
		}
	}
	return ""
}
