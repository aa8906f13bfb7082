package vmm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/vcpu"
)

// VMResult is what a run of one VM measured and checked.
type VMResult struct {
	Name            string       `json:"name"`
	VCPUs           int          `json:"vcpus"`
	Workload        string       `json:"workload"`
	Image           string       `json:"image"`
	OK              bool         `json:"ok"`
	Error           string       `json:"error"`
	ExitCode        uint64       `json:"exit_code"`
	Ops             uint64       `json:"ops"`
	OpsPerSec       float64      `json:"ops_per_s"`
	GuestSeconds    float64      `json:"guest_s"`
	CounterExpected *uint64      `json:"counter_expected"`
	CounterActual   *uint64      `json:"counter_actual"`
	NsPerHypercall  *float64     `json:"ns_per_hypercall"`
	BadHypercalls   uint64       `json:"bad_hypercalls"`
	Result          uint64       `json:"result"`
	*LockStats                   // the lock workload's accounting
	VCPU            []VCPUResult `json:"vcpu"`

	Err error `json:"-"`
}

// VCPUResult is one vCPU's part of a VMResult.
type VCPUResult struct {
	ID            int    `json:"id"`
	PCPU          int    `json:"pcpu"`
	State         string `json:"state"`
	ExitCode      uint64 `json:"exit_code"`
	Ops           uint64 `json:"ops"`
	Exits         uint64 `json:"exits"`
	Hypercalls    uint64 `json:"hypercalls"`
	BadHypercalls uint64 `json:"bad_hypercalls"`
	KicksReceived uint64 `json:"kicks_received"`
	CheckFailures uint64 `json:"check_failures"`
	GuestCycles   uint64 `json:"guest_cycles"`
	*LockStats           // the lock workload's accounting
}

// deadlockTicks is how many watchdog ticks in a row every live vCPU must sit
// in WAIT, with no WAIT returning, before the run is declared a lost wakeup.
const (
	watchdogTick  = 50 * time.Millisecond
	deadlockTicks = 3
)

// Run starts every vCPU, waits until all have exited (or the watchdog, a
// fault, or a lost wakeup ends the run), stops them, checks the results and
// returns them. The VM can only be run once.
func (vm *VM) Run() *VMResult {
	err := vm.runVCPUs()
	r := vm.collect()
	if err == nil && r.Err != nil {
		err = r.Err
	}
	if err == nil && vm.cfg.Workload.Check != nil {
		err = vm.cfg.Workload.Check(r)
	}
	if err != nil {
		r.Err, r.Error = err, err.Error()
	}
	r.OK = err == nil
	return r
}

func (vm *VM) runVCPUs() error {
	n := len(vm.vcpus)
	vm.alive.Store(int32(n))
	allDone := make(chan struct{})
	for _, v := range vm.vcpus {
		if err := <-v.Start(); err != nil {
			vm.stopAll()
			return err
		}
		go func(v *vcpu.VCPU) {
			<-v.Done()
			if vm.alive.Add(-1) == 0 {
				close(allDone)
			}
		}(v)
	}
	vm.started = time.Now()
	if vm.cfg.Duration > 0 {
		t := time.AfterFunc(vm.cfg.Duration, vm.RequestStop)
		defer t.Stop()
	}
	watchdog := time.NewTimer(vm.cfg.Timeout)
	defer watchdog.Stop()
	tick := time.NewTicker(watchdogTick)
	defer tick.Stop()

	stuck, lastWakes := 0, vm.wakes.Load()
	for {
		select {
		case <-allDone:
			return vm.firstFailure()
		case err := <-vm.failed:
			vm.failed <- err // keep it for firstFailure
			vm.stopAll()
			return err
		case <-watchdog.C:
			vm.stopAll()
			return fmt.Errorf("%w: %s did not finish within %v:%s", ErrTimeout, vm.cfg.Name, vm.cfg.Timeout, vm.where())
		case <-tick.C:
			alive, waiting, wakes := vm.alive.Load(), vm.waiting.Load(), vm.wakes.Load()
			if alive > 0 && waiting == alive && wakes == lastWakes {
				stuck++
			} else {
				stuck = 0
			}
			lastWakes = wakes
			if stuck >= deadlockTicks {
				msg := vm.waiters()
				vm.stopAll()
				return fmt.Errorf("%w: every live vCPU of %s is blocked in WAIT and none is left to KICK it:%s",
					ErrLostWakeup, vm.cfg.Name, msg)
			}
		}
	}
}

// RequestStop asks the guest to finish its current operation and EXIT.
func (vm *VM) RequestStop() { vm.mem.Store32(hypercall.BootInfoGPA+hypercall.OffStop, 1) }

func (vm *VM) firstFailure() error {
	select {
	case err := <-vm.failed:
		vm.failed <- err
		return err
	default:
		return nil
	}
}

// stopAll stops every vCPU and waits for each, with a grace period.
func (vm *VM) stopAll() {
	for _, v := range vm.vcpus {
		v.Stop()
	}
	for _, v := range vm.vcpus {
		_ = v.Wait(stopGrace)
	}
}

// waiters describes the vCPUs blocked in WAIT.
func (vm *VM) waiters() string {
	var b strings.Builder
	for id := range vm.hs {
		if gpa := vm.hs[id].waitAddr.Load(); gpa != 0 {
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

func (vm *VM) collect() *VMResult {
	r := &VMResult{Name: vm.cfg.Name, VCPUs: len(vm.vcpus), Workload: vm.cfg.Workload.Name, Image: vm.cfg.ImageName}
	var minStart, maxEnd, hcCycles uint64
	var failures []error
	isLock := vm.cfg.Workload.ID == hypercall.WorkloadLock
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
			vr.LockStats.finish(vm.tscKHz)
			r.LockStats.add(&p)
		}
		if p.CheckFailures > 0 {
			first := ""
			if p.CheckFailLock > 0 {
				first = fmt.Sprintf(" (first: lock %d held by vCPU %d when it entered)", p.CheckFailLock-1, int64(p.CheckFailOwner)-1)
			}
			failures = append(failures, fmt.Errorf("vCPU %d: %d self-check failures%s", id, p.CheckFailures, first))
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
		r.LockStats.finish(vm.tscKHz)
	}
	if len(failures) > 0 {
		what := ""
		if isLock {
			what = "lock " + r.LockStats.Lock + ": "
		}
		r.Err = fmt.Errorf("%w: %s%w", ErrCheckFailed, what, errors.Join(failures...))
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

// Abort ends a run from outside (e.g. Ctrl-C) with err.
func (vm *VM) Abort(err error) {
	select {
	case vm.failed <- err:
	default:
	}
}
