package vmm

import (
	"fmt"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/sched"
)

// damage measures what lock-holder and lock-waiter preemption cost, as
// time, per lock of a lock VM: how long the lock is held by a vCPU that does
// not run (held_preempted), and how long a FIFO lock sits handed to a waiter
// that does not run, until that waiter takes it (granted_preempted). It
// reads only what every lock kind publishes in its slot (LockSlot.Granted)
// and the scheduler's view of who runs, so it is the same measurement for
// every lock.
//
// It is evaluated at every status change of the VM's vCPUs and whenever a
// preempted vCPU is seen out of the guest (exact: a preempted vCPU runs on
// until then, so an interval begins there and ends at a dispatch), and
// every damageTick (a hand-over to a vCPU that is already off its pCPU is a
// guest store the host sees no event for: it is noticed within a tick). The
// guest publishes the grant a few instructions after it takes or hands
// over the lock; a preemption in between is not counted. Only our own
// policies know who runs: under host (Linux's scheduler) there is no
// measurement.
//
// All methods run under the scheduler's lock (from the recorder or
// Scheduler.Sample/Snapshot).
type damage struct {
	vm    *VM
	sv    []*sched.VCPU
	locks []lockDamage
	// By vCPU id: the time locks spent with it while it did not run.
	held, granted []time.Duration
	// span is called for every closed interval (a trace slice); may be nil.
	span func(lock int, iv lockDamage, end time.Duration)
}

// damageTick is how often the grants are re-read between status changes.
const damageTick = time.Millisecond

// lockDamage is one lock: the interval in progress, and the totals.
type lockDamage struct {
	vcpu   int  // the vCPU (id) the lock is with while it does not run; -1: none
	handed bool // handed over by a FIFO release, not yet taken
	since  time.Duration

	held, granted time.Duration
}

func newDamage(vm *VM, sv []*sched.VCPU) *damage {
	d := &damage{vm: vm, sv: sv, locks: make([]lockDamage, vm.cfg.Locks),
		held: make([]time.Duration, len(sv)), granted: make([]time.Duration, len(sv))}
	for i := range d.locks {
		d.locks[i].vcpu = -1
	}
	return d
}

// observe re-reads the grants at now. If changing is not nil, that vCPU's
// status is becoming to (the scheduler has not stored it yet).
func (d *damage) observe(now time.Duration, changing *sched.VCPU, to sched.Status) {
	// A vCPU preempted but not yet seen out of the guest still runs (its
	// RecStopped comes when it is).
	running := func(id int) bool {
		if v := d.sv[id]; v == changing {
			return to == sched.Running || v.StopPending()
		} else {
			return v.Status == sched.Running || v.StopPending()
		}
	}
	for i := range d.locks {
		g := d.vm.mem.Load64(d.vm.layout.LockSlot(i) + hypercall.OffGranted)
		id, handed := int(uint32(g))-1, g&hypercall.GrantHanded != 0
		if id < 0 || id >= len(d.sv) || running(id) { // a hostile guest's value is "none"
			id, handed = -1, false
		}
		l := &d.locks[i]
		if l.vcpu == id && l.handed == handed {
			continue
		}
		d.close(i, now)
		l.vcpu, l.handed, l.since = id, handed, now
	}
}

// close ends lock i's interval in progress at now.
func (d *damage) close(i int, now time.Duration) {
	l := &d.locks[i]
	if l.vcpu < 0 || now <= l.since {
		return
	}
	t := now - l.since
	if l.handed {
		l.granted += t
		d.granted[l.vcpu] += t
	} else {
		l.held += t
		d.held[l.vcpu] += t
	}
	if d.span != nil {
		d.span(i, *l, now)
	}
}

// finish closes every interval at the end of the run.
func (d *damage) finish(now time.Duration) {
	for i := range d.locks {
		d.close(i, now)
		d.locks[i].vcpu = -1
	}
}

// what describes an interval for a trace slice.
func (l lockDamage) what(vm *VM) string {
	if l.handed {
		return fmt.Sprintf("handed to %s/cpu%d, which does not run", vm.cfg.Name, l.vcpu)
	}
	return fmt.Sprintf("held by %s/cpu%d, which does not run", vm.cfg.Name, l.vcpu)
}

// LockDamage is one lock's damage times, in a VMResult.
type LockDamage struct {
	Lock               int   `json:"lock"`
	HeldPreemptedNs    int64 `json:"held_preempted_ns"`
	GrantedPreemptedNs int64 `json:"granted_preempted_ns"`
}
