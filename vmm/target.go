package vmm

// The Machine as the scheduler's Target: its decisions carried out on the
// real vCPUs, and the guest's hints read for it.

import (
	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vcpu"
)

// target carries out scheduling decisions on the real vCPUs.
type target struct{ m *Machine }

func (t target) vcpu(sv *sched.VCPU) (*VM, *vcpu.VCPU) {
	vm := t.m.vms[sv.VM]
	return vm, vm.vcpus[sv.ID]
}

func (t target) Dispatch(sv *sched.VCPU, cpu int) {
	_, v := t.vcpu(sv)
	if t.m.seats == nil {
		v.Dispatch(cpu) // host: many vCPU threads per pCPU
		return
	}
	v.DispatchSeat(cpu, t.m.seats[sv.PCPU])
}

func (t target) Preempt(sv *sched.VCPU, self bool) {
	_, v := t.vcpu(sv)
	if self {
		v.ParkSelf()
	} else {
		v.RequestPark()
	}
}

func (t target) Publish(sv *sched.VCPU, p sched.Published) {
	vm, _ := t.vcpu(sv)
	page := vm.layout.Page(sv.ID)
	vm.mem.Store32(page+hypercall.OffPreempted, b2u(p.Preempted))
	vm.mem.Store32(page+hypercall.OffYieldRequested, b2u(p.YieldRequested))
	vm.mem.Store64(page+hypercall.OffStealNs, p.StealNs)
}

func (t target) Hints(sv *sched.VCPU) sched.Hints {
	vm, _ := t.vcpu(sv)
	return vm.hints(sv.ID)
}

func (t target) Probe(sv *sched.VCPU) {
	_, v := t.vcpu(sv)
	v.RequestProbe()
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
