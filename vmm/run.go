package vmm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/sched"
)

// VMResult is what a run of one VM measured and checked.
type VMResult struct {
	Name            string   `json:"name"`
	VCPUs           int      `json:"vcpus"`
	Workload        string   `json:"workload"`
	Image           string   `json:"image"`
	OK              bool     `json:"ok"`
	Error           string   `json:"error"`
	ExitCode        uint64   `json:"exit_code"`
	Ops             uint64   `json:"ops"`
	OpsPerSec       float64  `json:"ops_per_s"`
	GuestSeconds    float64  `json:"guest_s"`
	TSCkHz          uint64   `json:"tsc_khz"` // the guest's TSC: KVM's, or the host's calibrated (ptrace)
	CounterExpected *uint64  `json:"counter_expected"`
	CounterActual   *uint64  `json:"counter_actual"`
	NsPerHypercall  *float64 `json:"ns_per_hypercall"`
	BadHypercalls   uint64   `json:"bad_hypercalls"`
	Result          uint64   `json:"result"`
	*LockStats               // the lock workload's accounting
	// Locks: each lock's damage times (lock workload, our policies; null
	// otherwise).
	Locks []LockDamage `json:"locks"`
	VCPU  []VCPUResult `json:"vcpu"`

	Err error `json:"-"`
}

// VCPUResult is one vCPU's part of a VMResult.
type VCPUResult struct {
	ID                int    `json:"id"`
	PCPU              int    `json:"pcpu"`
	State             string `json:"state"`
	ExitCode          uint64 `json:"exit_code"`
	Ops               uint64 `json:"ops"`
	Exits             uint64 `json:"exits"`
	Hypercalls        uint64 `json:"hypercalls"`
	BadHypercalls     uint64 `json:"bad_hypercalls"`
	KicksReceived     uint64 `json:"kicks_received"`
	CheckFailures     uint64 `json:"check_failures"`
	GuestCycles       uint64 `json:"guest_cycles"`
	RunNs             int64  `json:"run_ns"`     // dispatched on a pCPU (scheduler's view)
	StealNs           int64  `json:"steal_ns"`   // runnable, waiting for a pCPU
	BlockedNs         int64  `json:"blocked_ns"` // in WAIT
	Dispatches        uint64 `json:"dispatches"`
	Preemptions       uint64 `json:"preemptions"`
	LHPEvents         uint64 `json:"lhp_events"`         // preempted holding a lock
	LWPEvents         uint64 `json:"lwp_events"`         // preempted next in line for a lock
	WaiterPreemptions uint64 `json:"waiter_preemptions"` // preempted waiting for a lock, any position
	*LockStats               // the lock workload's accounting
}

// waiters describes the vCPUs blocked in WAIT.
func (vm *VM) waiters(blocked func(id int) bool) string {
	var b strings.Builder
	for id := range vm.hs {
		if gpa := vm.hs[id].waitAddr.Load(); gpa != 0 && blocked(id) {
			fmt.Fprintf(&b, " vCPU %d in WAIT(%#x, expected %d; now %d);", id, gpa,
				vm.hs[id].waitVal.Load(), vm.mem.Load32(gpa))
		}
	}
	return strings.TrimSuffix(b.String(), ";")
}

// where describes, after a stop, where each unfinished vCPU was.
func (vm *VM) where() string {
	var b strings.Builder
	for id, v := range vm.vcpus {
		if vm.hs[id].exited {
			continue
		}
		fmt.Fprintf(&b, " vCPU %d", id)
		if r := v.FinalRegs(); r != nil {
			fmt.Fprintf(&b, " at RIP %#x%s", r.RIP, vm.symbolize(r.RIP))
		}
		b.WriteString(";")
	}
	return strings.TrimSuffix(b.String(), ";")
}

// symbolize names the function containing addr, as " (name+0xoff)".
func (vm *VM) symbolize(addr uint64) string {
	var best elf.Symbol
	for _, s := range vm.img.Symbols {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value <= addr && addr < s.Value+max(s.Size, 1) {
			best = s
		}
	}
	if best.Name == "" {
		return ""
	}
	return fmt.Sprintf(" (%s+%#x)", best.Name, addr-best.Value)
}

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

// result collects and checks the VM's results after a run.
func (vm *VM) result(m *Machine) *VMResult {
	r := vm.collect(m)
	if r.Err == nil && vm.cfg.Workload.Check != nil {
		r.Err = vm.cfg.Workload.Check(r)
	}
	if r.Err != nil {
		r.Error = r.Err.Error()
	}
	r.OK = r.Err == nil
	return r
}

func (vm *VM) collect(m *Machine) *VMResult {
	r := &VMResult{Name: vm.cfg.Name, VCPUs: len(vm.vcpus), Workload: vm.cfg.Workload.Name, Image: vm.cfg.ImageName,
		TSCkHz: vm.tscKHz}
	var minStart, maxEnd, hcCycles uint64
	var failures []string
	isLock := vm.cfg.Workload.ID == hypercall.WorkloadLock
	var runTotal, spinTotal uint64
	if isLock {
		r.LockStats = &LockStats{Lock: lockName(vm.cfg.LockKind)}
	}
	for id, v := range vm.vcpus {
		h := &vm.hs[id]
		p := vm.readPage(id)
		vr := VCPUResult{
			ID: id, PCPU: v.PCPU, State: v.State().String(), ExitCode: h.exitCode,
			Ops: p.Ops, Exits: v.Stats.Exits.Load(), Hypercalls: v.Stats.Hypercalls.Load(),
			BadHypercalls: h.badCalls.Load(), KicksReceived: h.kicksRecv.Load(),
			CheckFailures: p.CheckFailures,
		}
		if sv := vm.sv[id]; sv != nil {
			a := sv.Acct
			vr.RunNs, vr.StealNs, vr.BlockedNs = a.Run.Nanoseconds(), a.Steal.Nanoseconds(), a.Blocked.Nanoseconds()
			vr.Dispatches, vr.Preemptions, vr.LHPEvents, vr.LWPEvents = a.Dispatches, a.Preemptions, a.LHP, a.LWP
			vr.WaiterPreemptions = a.WaiterPreempt
		}
		if p.EndTSC > p.StartTSC {
			vr.GuestCycles = p.EndTSC - p.StartTSC
			if minStart == 0 || p.StartTSC < minStart {
				minStart = p.StartTSC
			}
			maxEnd = max(maxEnd, p.EndTSC)
		}
		if isLock {
			vr.LockStats = &LockStats{}
			vr.LockStats.add(&p)
			r.LockStats.add(&p)
			if m.pol.Exclusive() {
				// Our scheduler knows when the vCPU really ran: spin is
				// measured against host run time, not guest wall time, and
				// the guest's spin window loses the time it did not run:
				// blocked in WAIT (the guest's wait cycles) and preempted
				// while waiting (the scheduler's steal-while-waiting).
				a := vm.sv[id].Acct
				run := uint64(a.Run.Nanoseconds()) * vm.tscKHz / 1e6
				idle := p.WaitCycles + uint64(a.StealWaiting.Nanoseconds())*vm.tscKHz/1e6
				vr.LockStats.SpinCycles = p.SpinCycles - min(idle, p.SpinCycles)
				vr.LockStats.cycles = run
				runTotal += run
				spinTotal += vr.LockStats.SpinCycles
			}
			vr.LockStats.finish(vm.tscKHz)
		}
		if p.CheckFailures > 0 {
			first := ""
			switch {
			case p.CheckFailLock > 0 && p.CheckFailOwner == 0:
				first = fmt.Sprintf(" (first: lock %d had no owner as it left the critical section: another vCPU released it meanwhile)", p.CheckFailLock-1)
			case p.CheckFailLock > 0:
				first = fmt.Sprintf(" (first: lock %d had vCPU %d as its owner inside this vCPU's critical section)", p.CheckFailLock-1, p.CheckFailOwner-1)
			}
			failures = append(failures, fmt.Sprintf("vCPU %d: %d self-check failures%s", id, p.CheckFailures, first))
		}
		if h.exitCode != 0 && r.ExitCode == 0 {
			r.ExitCode = h.exitCode
		}
		r.Ops += p.Ops
		r.BadHypercalls += vr.BadHypercalls
		r.Result += p.Result
		hcCycles += p.HypercallCycles
		r.VCPU = append(r.VCPU, vr)
	}
	if isLock {
		if m.pol.Exclusive() {
			r.LockStats.cycles, r.LockStats.SpinCycles = runTotal, spinTotal
		}
		r.LockStats.finish(vm.tscKHz)
	}
	if d := m.damage[vm.index]; d != nil && isLock {
		ns := func(t time.Duration) *int64 { n := t.Nanoseconds(); return &n }
		var held, granted time.Duration
		for i, l := range d.locks {
			r.Locks = append(r.Locks, LockDamage{Lock: i, HeldPreemptedNs: l.held.Nanoseconds(),
				GrantedPreemptedNs: l.granted.Nanoseconds()})
			held += l.held
			granted += l.granted
		}
		r.LockStats.HeldPreemptedNs, r.LockStats.GrantedPreemptedNs = ns(held), ns(granted)
		for id := range r.VCPU {
			r.VCPU[id].LockStats.HeldPreemptedNs = ns(d.held[id])
			r.VCPU[id].LockStats.GrantedPreemptedNs = ns(d.granted[id])
		}
	}
	if len(failures) > 0 {
		what := ""
		if isLock {
			what = "lock " + r.LockStats.Lock + ": "
		}
		r.Err = fmt.Errorf("%w: %s%s", ErrCheckFailed, what, strings.Join(failures, "; ")) // one line
	}
	if maxEnd > minStart && vm.tscKHz > 0 {
		r.GuestSeconds = float64(maxEnd-minStart) / float64(vm.tscKHz) / 1e3
		r.OpsPerSec = float64(r.Ops) / r.GuestSeconds
	}
	switch vm.cfg.Workload.ID {
	case hypercall.WorkloadCounter, hypercall.WorkloadLock:
		var c uint64
		for i := 0; i < vm.cfg.Locks; i++ {
			c += vm.LockSlot(i).Counter
		}
		r.CounterActual = &c
	case hypercall.WorkloadNull:
		if r.Ops > 0 && vm.tscKHz > 0 {
			ns := float64(hcCycles) / float64(r.Ops) / float64(vm.tscKHz) * 1e6
			r.NsPerHypercall = &ns
		}
	}
	return r
}

// RequestStop asks the guest to finish its current operation and EXIT.
func (vm *VM) RequestStop() { vm.mem.Store32(hypercall.BootInfoGPA+hypercall.OffStop, 1) }
