package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vcpu"
)

func (vm *VM) args(id int) (a [6]uint64) {
	p := vm.layout.Page(id) + hypercall.OffArgs
	mem := vm.mem.Bytes()
	for i := range a {
		a[i] = binary.LittleEndian.Uint64(mem[p+uint64(i)*8:])
	}
	return a
}

func (vm *VM) setRet(id int, ret int64) {
	vm.mem.Store64(vm.layout.Page(id)+hypercall.OffRet, uint64(ret))
}

// inRAM reports whether [gpa, gpa+n) lies in guest RAM, without overflow.
func (vm *VM) inRAM(gpa, n uint64) bool {
	size := vm.cfg.MemBytes
	return gpa <= size && n <= size-gpa
}

// HandleExit serves one exit of vCPU v (it runs on v's thread).
func (vm *VM) HandleExit(v *vcpu.VCPU, ev hv.Event) vcpu.Action {
	id := v.ID
	if vm.m == nil {
		return vcpu.Action{Finish: true, Err: fmt.Errorf("vCPU %d: %v exit, but %s is not in a Machine", id, ev.Kind, vm.cfg.Name)}
	}
	switch ev.Kind {
	case hv.EventHypercall:
		return vm.hypercall(v, ev.Nr)
	case hv.EventBadDoorbell:
		vm.calls[id].badCalls.Add(1)
		if ev.Write {
			vm.setRet(id, hypercall.ErrInval)
		} else {
			v.Backend().CompleteRead(^uint64(0))
		}
		return vcpu.Continue
	case hv.EventFault:
		return vm.fail(vm.faultError(id, ev.Fault))
	case hv.EventSyscall:
		f := ev.Fault
		return vm.fail(fmt.Errorf("%w: vCPU %d attempted %s syscall %d (%s) at RIP %#x%s RSP %#x; blocked",
			ErrGuestFault, id, ev.Arch, ev.Nr, hv.SyscallName(ev.Arch, ev.Nr), f.RIP, vm.symbolize(f.RIP), f.RSP))
	case hv.EventShutdown:
		return vm.fail(vm.shutdownError(v))
	case hv.EventHalted:
		return vm.fail(fmt.Errorf("%w: vCPU %d halted without EXIT%s", ErrGuestFault, id, vm.regsNow(v)))
	case hv.EventMMIO:
		return vm.fail(fmt.Errorf("%w: vCPU %d: %d-byte MMIO %s at %#x, outside RAM and the doorbell%s",
			ErrGuestFault, id, ev.Len, rw(ev.Write), ev.Addr, vm.regsNow(v)))
	case hv.EventPortIO:
		return vm.fail(fmt.Errorf("%w: vCPU %d: port I/O %s port %#x is not emulated%s",
			ErrGuestFault, id, rw(ev.Write), ev.Addr, vm.regsNow(v)))
	case hv.EventFailed:
		return vm.fail(fmt.Errorf("%w: vCPU %d: %s%s", ErrUnsupported, id, ev.Reason, vm.regsNow(v)))
	default:
		return vm.fail(fmt.Errorf("vCPU %d: %v exit%s", id, ev.Kind, vm.regsNow(v)))
	}
}

func rw(write bool) string {
	if write {
		return "write"
	}
	return "read"
}

// regsNow describes where v is, for a diagnostic (on v's own thread).
func (vm *VM) regsNow(v *vcpu.VCPU) string {
	r, err := v.Backend().Regs()
	if err != nil {
		return ""
	}
	s := fmt.Sprintf(" at RIP %#x%s RSP %#x", r.RIP, vm.symbolize(r.RIP), r.RSP)
	if sr, err := v.Backend().SpecialRegs(); err == nil {
		s += fmt.Sprintf(" CS %#x CR2 %#x", sr.CS, sr.CR2)
	}
	return s
}

// shutdownError reports a triple fault (on v's own thread). Where the
// guest was is in its registers on Intel hosts; on AMD hosts KVM has
// re-initialised the vCPU before userspace sees the exit (arch/x86/kvm/svm/
// svm.c, shutdown_interception: the VMCB is undefined after a shutdown
// intercept), so its registers show the reset vector, which must not be
// reported as the place of the fault.
func (vm *VM) shutdownError(v *vcpu.VCPU) error {
	r, rerr := v.Backend().Regs()
	sr, serr := v.Backend().SpecialRegs()
	return shutdownError(v.ID, r, sr, errors.Join(rerr, serr), vm.symbolize)
}

func shutdownError(id int, r hv.Regs, sr hv.SpecialRegs, regsErr error, symbolize func(uint64) string) error {
	const what = "triple fault (KVM_EXIT_SHUTDOWN)"
	switch {
	case regsErr != nil:
		return fmt.Errorf("%w: vCPU %d: %s; its registers cannot be read: %v", ErrGuestFault, id, what, regsErr)
	case sr.WasReset():
		return fmt.Errorf("%w: vCPU %d: %s; KVM reset the vCPU at the shutdown (as it does on AMD hosts), "+
			"so where the guest faulted is lost (its registers now hold the reset vector, RIP %#x CS %#x)",
			ErrGuestFault, id, what, r.RIP, sr.CS)
	}
	return fmt.Errorf("%w: vCPU %d: %s at RIP %#x%s RSP %#x CS %#x CR2 %#x",
		ErrGuestFault, id, what, r.RIP, symbolize(r.RIP), r.RSP, sr.CS, sr.CR2)
}

// fail records a fatal error of the VM and ends this vCPU.
func (vm *VM) fail(err error) vcpu.Action { return vm.m.fail(err) }

func (vm *VM) hypercall(v *vcpu.VCPU, nr uint64) vcpu.Action {
	id := v.ID
	if vm.firstHC.Load() == 0 {
		vm.firstHC.CompareAndSwap(0, time.Now().UnixNano())
	}
	h := &vm.calls[id]
	a := vm.args(id)
	n := uint64(vm.cfg.VCPUs)
	var ret int64
	switch nr {
	case hypercall.CallNull:
	case hypercall.CallExit:
		h.exited, h.exitCode = true, a[0]
		if a[0] != 0 {
			return vm.fail(fmt.Errorf("%w: vCPU %d exited with code %#x", ErrGuestExit, id, a[0]))
		}
		return vcpu.Action{Finish: true}
	case hypercall.CallPrint:
		gpa, l := a[0], a[1]
		switch {
		case l > hypercall.MaxPrintLen:
			ret = hypercall.ErrInval
		case !vm.inRAM(gpa, l):
			ret = hypercall.ErrFault
		default:
			vm.con.write(id, vm.mem.Bytes()[gpa:gpa+l])
			ret = int64(l)
		}
	case hypercall.CallKick:
		if a[0] >= n {
			ret = hypercall.ErrInval
			break
		}
		vm.calls[a[0]].kicksRecv.Add(1)
		vm.m.wake(vm.schedVCPUs[a[0]], vm.schedVCPUs[id])
	case hypercall.CallWait:
		if a[0]%4 != 0 || !vm.inRAM(a[0], 4) {
			ret = hypercall.ErrFault
			break
		}
		ret = vm.wait(id, a[0], uint32(a[1]))
	case hypercall.CallYield:
		target := -1
		if a[0] != hypercall.YieldAny {
			if a[0] >= n {
				ret = hypercall.ErrInval
				break
			}
			target = vm.schedVCPUs[a[0]].Index
		}
		vm.m.scheduler.Yield(vm.schedVCPUs[id], target)
		if !sched.Decides(vm.m.pol) {
			host.Yield() // Linux schedules the threads: give it the CPU
		}
	case hypercall.CallFault:
		return vm.fail(vm.faultReport(id))
	default:
		ret = hypercall.ErrNoSys
	}
	if ret < 0 {
		h.badCalls.Add(1)
	}
	vm.setRet(id, ret)
	return vcpu.Continue
}

// wait implements WAIT with futex semantics: block only while *gpa ==
// expected and no KICK is pending. The scheduler checks both under its lock,
// and a KICK takes the same lock, so a kick sent between the guest's last
// look at the word and this call is never lost. A blocked vCPU parks when
// this returns and runs again once a KICK made it runnable and the policy
// dispatched it.
func (vm *VM) wait(id int, gpa uint64, expected uint32) int64 {
	h := &vm.calls[id]
	h.waitAddr.Store(gpa)
	h.waitVal.Store(expected)
	switch vm.m.scheduler.Block(vm.schedVCPUs[id], func() bool { return vm.mem.Load32(gpa) == expected }) {
	case sched.KickWasThere:
		return hypercall.WaitKickPending
	case sched.ValueChanged:
		return hypercall.WaitValueChange
	}
	return hypercall.WaitWoken
}

// faultReport is the FAULT hypercall: the guest's ring-0 handler (KVM) left
// the exception in the VCPUPage.
func (vm *VM) faultReport(id int) error {
	p := vm.readPage(id)
	return vm.faultError(id, hv.Fault{Vector: p.FaultVector, ErrorCode: p.FaultError, RIP: p.FaultRIP,
		CS: p.FaultCS, RFLAGS: p.FaultRFLAGS, RSP: p.FaultRSP, CR2: p.FaultCR2})
}

// faultError describes a guest exception the same way whichever backend
// caught it: reported by the guest's own handler, or by the backend.
func (vm *VM) faultError(id int, f hv.Fault) error {
	name := ""
	if n := hv.VectorName(f.Vector); n != "" {
		name = n + " "
	}
	cr2 := ""
	if f.Vector == hv.VectorPF {
		cr2 = fmt.Sprintf(" CR2 %#x", f.CR2)
	}
	detail := ""
	if f.Detail != "" {
		detail = ": " + f.Detail
	}
	return fmt.Errorf("%w: vCPU %d: exception %s(vector %d) error code %#x at RIP %#x%s CS %#x RSP %#x RFLAGS %#x%s%s",
		ErrGuestFault, id, name, f.Vector, f.ErrorCode, f.RIP, vm.symbolize(f.RIP),
		f.CS, f.RSP, f.RFLAGS, cr2, detail)
}
