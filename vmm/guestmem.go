package vmm

// What the VMM reads and writes in a running guest's memory: its vCPU
// pages, its lock slots and what they say about the locks (the scheduler's
// hints), and its stop flag. Plain shared-memory accesses: no exit.

import (
	"bytes"
	"encoding/binary"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/sched"
)

// readPage decodes vCPU id's shared page.
func (vm *VM) readPage(id int) hypercall.VCPUPage {
	var p hypercall.VCPUPage
	off := vm.layout.Page(id)
	_ = binary.Read(bytes.NewReader(vm.mem.Bytes()[off:off+hypercall.PageSize]), binary.LittleEndian, &p)
	return p
}

// LockSlot decodes lock slot i.
func (vm *VM) LockSlot(i int) hypercall.LockSlot {
	var s hypercall.LockSlot
	off := vm.layout.LockSlot(i)
	_ = binary.Read(bytes.NewReader(vm.mem.Bytes()[off:off+hypercall.LockSlotSize]), binary.LittleEndian, &s)
	return s
}

// hints reads what vCPU id's guest publishes about its locks. Whether it
// holds a lock is what the lock's slot says it is granted to (LockSlot.
// Granted), the same word the lock damage times read, so an LHP count and
// a measured interval of a lock with a vCPU that does not run always
// agree: the lock is the vCPU's from its acquisition until just before its
// release, or from a FIFO release handing it over (a ticket waiter whose
// turn has come has the lock, it just has not seen it yet). The vCPU's own
// lock state only says it waits, and for which ticket: the waiter right
// behind the holder is next in line, and preempting it stalls everyone
// behind it (lock waiter preemption).
func (vm *VM) hints(id int) sched.Hints {
	page := vm.layout.Page(id)
	state := vm.mem.Load32(page + hypercall.OffLockState)
	lockID := vm.mem.Load32(page + hypercall.OffLockID)
	h := sched.Hints{
		InCS:    vm.mem.Load32(page+hypercall.OffInCS) != 0,
		Waiting: state == hypercall.LockStateWaiting || state == hypercall.LockStateSlow,
		LockID:  lockID,
		Ticket:  vm.mem.Load32(page + hypercall.OffTicket),
	}
	if state != hypercall.LockStateNone && int(lockID) < vm.cfg.Locks {
		g := vm.mem.Load64(vm.layout.LockSlot(int(lockID)) + hypercall.OffGranted)
		if int(uint32(g))-1 == id {
			h.Holding, h.Handed, h.Waiting = true, g&hypercall.GrantHanded != 0, false
		}
	}
	if h.Waiting {
		if pos, ok := vm.ticketPosition(lockID, h.Ticket); ok {
			h.NextInLine = pos == 1
		}
	}
	return h
}

// ticketPosition is how far ticket is from being served on lock id (0: it is
// served now), for the ticket-family locks. Their slot layout is the
// guest's (guest/lock.h): the ticket now served is the low 32 bits of Word.
func (vm *VM) ticketPosition(lockID, ticket uint32) (uint32, bool) {
	switch vm.cfg.LockKind {
	case hypercall.LockTicket, hypercall.LockPVTicket, hypercall.LockPTicket:
	default:
		return 0, false
	}
	if int(lockID) >= vm.cfg.Locks {
		return 0, false
	}
	head := uint32(vm.mem.Load64(vm.layout.LockSlot(int(lockID))))
	return ticket - head, true // wraps like the tickets do
}

// RequestStop asks the guest to finish its current operation and EXIT.
func (vm *VM) RequestStop() { vm.mem.Store32(hypercall.BootInfoGPA+hypercall.OffStop, 1) }
