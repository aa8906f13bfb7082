package vmm

import (
	"fmt"
	"os"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/trace"
	"github.com/lhpvm/lhpvm/sched"
)

// Trace tracks: process 1 holds one track per pCPU (thread i+1 for pCPU
// index i); process 2+i is VM i, one track per vCPU (thread id+1) with its
// state, and the VM's counter tracks.
const (
	pidPCPUs = 1
	pidVM0   = 2
)

// recorder turns the scheduler's records into trace events and timeline
// slices. It runs under the scheduler's lock, so its state needs no lock
// of its own.
type recorder struct {
	m     *Machine
	w     *trace.Writer // nil: no trace
	tl    *Timeline     // nil: no timeline
	flows uint64
	// flowTo holds, per vCPU index, the kick arrow waiting for that
	// vCPU's next dispatch.
	flowTo []uint64
	// acq is each vCPU's acquisitions when it last left its pCPU: a vCPU
	// acquires nothing while it does not run, so the count at the end of a
	// slice minus this is what the slice acquired.
	acq []uint64
	// lockTracks: the (VM, lock) tracks named so far in the trace.
	lockTracks map[[2]int]bool
	// clocked: the trace's clock base is written (at the first record,
	// when the scheduler's time 0 is known).
	clocked bool
}

// The trace clocks (MachineConfig.TraceClock), by the names the CLI takes.
const (
	TraceClockRun       = "run"
	TraceClockMonotonic = "monotonic"
)

// TraceClocks lists them, the default first.
func TraceClocks() []string { return []string{TraceClockRun, TraceClockMonotonic} }

// clockBase writes the trace's clock base, once, when the scheduler's time
// 0 is set: CLOCK_MONOTONIC at time 0 and the TSC rate, so that the trace
// can be lined up with the host's (trace-cmd record -C mono, perf record
// -k CLOCK_MONOTONIC); under TraceClockMonotonic every timestamp is that
// clock's.
func (r *recorder) clockBase() {
	if r.clocked || r.w == nil {
		return
	}
	r.clocked = true
	zero := r.m.state.Zero
	if zero.IsZero() {
		return // a manual clock (tests): no host time
	}
	mono := time.Duration(host.MonotonicNs()) - time.Since(zero)
	clock := TraceClockRun
	if r.m.cfg.TraceClock == TraceClockMonotonic {
		r.w.Offset(mono)
		clock = TraceClockMonotonic
	}
	var khz float64
	if len(r.m.vms) > 0 {
		khz = float64(r.m.vms[0].tscKHz)
	}
	r.w.Meta(trace.S("clock", clock), trace.N("clock_monotonic_at_zero_ns", float64(mono.Nanoseconds())),
		trace.N("tsc_khz", khz), trace.N("lhpvm_pid", float64(os.Getpid())))
}

// nameVCPUTracks names every vCPU's track after its host threads (known
// once the vCPUs have started): "vm0/cpu1 · tid 4321" on kvm, where the
// guest runs in the vCPU's thread, "vm0/cpu1 · tid 4321, guest pid 4400"
// on ptrace, where it runs in the stub process; those ids are the ones a
// host sched_switch trace shows.
func (r *recorder) nameVCPUTracks() {
	if r.w == nil {
		return
	}
	for i, vm := range r.m.vms {
		for id, v := range vm.vcpus {
			name := fmt.Sprintf("%s/cpu%d", vm.cfg.Name, id)
			switch thread, guest := v.HostTIDs(); {
			case thread == 0:
			case guest == 0 || guest == thread:
				name += fmt.Sprintf(" · tid %d", thread)
			default:
				name += fmt.Sprintf(" · tid %d, guest pid %d", thread, guest)
			}
			r.w.ThreadName(pidVM0+i, id+1, name)
		}
	}
}

func newRecorder(m *Machine, w *trace.Writer, tl *Timeline) *recorder {
	n := len(m.state.VCPUs)
	r := &recorder{m: m, w: w, tl: tl, flowTo: make([]uint64, n), acq: make([]uint64, n), lockTracks: map[[2]int]bool{}}
	if tl != nil {
		tl.init(m)
	}
	for i, d := range m.damage {
		if d != nil && (w != nil || tl != nil) {
			d.span = func(lock int, iv lockDamage, end time.Duration) {
				if w != nil {
					r.damageSpan(i, lock, iv, end)
				}
				if tl != nil {
					tl.holderOff(i, lock, iv, end)
				}
			}
		}
	}
	if w == nil {
		return r
	}
	w.ProcessName(pidPCPUs, "pCPUs")
	w.SortIndex(pidPCPUs, 0, 0)
	for _, p := range m.state.PCPUs {
		w.ThreadName(pidPCPUs, p.Index+1, fmt.Sprintf("pCPU %d (host CPU %d)", p.Index, p.CPU))
		w.SortIndex(pidPCPUs, p.Index+1, p.Index)
	}
	for i, vm := range m.vms {
		w.ProcessName(pidVM0+i, vm.cfg.Name)
		w.SortIndex(pidVM0+i, 0, i+1)
	}
	w.Meta(trace.S("policy", m.cfg.Policy), trace.N("slice_us", float64(m.cfg.Options.Slice.Microseconds())))
	return r
}

var statusNames = map[sched.Status]string{
	sched.Running: "running", sched.Runnable: "runnable (steal)", sched.Blocked: "blocked in WAIT",
}

// The viewers colour a slice by a hash of its name unless it names one of
// their reserved colours (cname): vm0/cpu0 and vm0/cpu3 came out alike.
// Each vCPU gets its own, by its index in the machine, from those that
// catapult's viewer draws distinct (Perfetto colours by name).
var vcpuColors = []string{"rail_response", "rail_load", "thread_state_iowait", "detailed_memory_dump",
	"background_memory_dump", "rail_animation", "olive", "light_memory_dump", "thread_state_uninterruptible",
	"cq_build_passed", "thread_state_unknown", "startup"}

func vcpuColor(i int) string { return vcpuColors[i%len(vcpuColors)] }

// markColor colours the scheduler's marks by kind.
var markColor = map[sched.MarkKind]string{
	sched.MarkLHP: "terrible", sched.MarkLWP: "bad", sched.MarkWaiterPreempt: "yellow", sched.MarkDelayGrant: "good",
	sched.MarkCoStop: "grey", sched.MarkCoStart: "generic_work", sched.MarkProbe: "white", sched.MarkSpinPreempt: "black",
}

// Lock tracks follow the vCPU tracks of a VM's process (thread ids from
// here, one per lock).
const tidLock0 = 1000

// damageSpan draws one interval of lock damage on the lock's track.
func (r *recorder) damageSpan(vmIndex, lock int, iv lockDamage, end time.Duration) {
	vm := r.m.vms[vmIndex]
	pid, tid := pidVM0+vmIndex, tidLock0+lock
	if !r.lockTracks[[2]int{vmIndex, lock}] {
		r.lockTracks[[2]int{vmIndex, lock}] = true
		r.w.ThreadName(pid, tid, fmt.Sprintf("lock %d off-CPU", lock))
		r.w.SortIndex(pid, tid, tid)
	}
	name := "held_preempted"
	if iv.handed {
		name = "granted_preempted"
	}
	r.w.Complete(name, "lock", pid, tid, iv.since, end-iv.since,
		trace.S("what", iv.what(vm)), trace.N("vcpu", float64(iv.vcpu)))
}

// Record implements sched.Recorder.
func (r *recorder) Record(rec sched.Record) {
	r.clockBase()
	v := rec.V
	switch rec.Kind {
	case sched.RecStatus:
		if d := r.m.damage[v.VM]; d != nil {
			d.observe(rec.At, v, rec.To)
		}
	case sched.RecStopped:
		if d := r.m.damage[v.VM]; d != nil {
			d.observe(rec.At, nil, 0)
		}
		return
	}
	if r.tl == nil && r.w == nil {
		return // only the damage times listen
	}
	var acquired uint64
	if rec.Kind == sched.RecRan {
		vm := r.m.vms[v.VM]
		now := vm.mem.Load64(vm.layout.Page(v.ID) + hypercall.OffAcquisitions)
		acquired, r.acq[v.Index] = now-r.acq[v.Index], now
	}
	if r.tl != nil {
		r.tl.record(rec, acquired)
	}
	if r.w == nil {
		return
	}
	switch rec.Kind {
	case sched.RecRan:
		vm := r.m.vms[v.VM]
		pid, tid := pidPCPUs, rec.PCPU+1
		if !sched.Decides(r.m.pol) { // Linux time-slices them: a pCPU track would overlap
			pid, tid = pidVM0+v.VM, v.ID+1
		}
		// A preemption's lock state is read when the vCPU was seen out of
		// the guest, stop_latency_us after the slice's end.
		stop := -1.0
		if rec.StoppedAt > 0 {
			stop = float64((rec.StoppedAt - rec.At).Nanoseconds()) / 1e3
		}
		r.w.CompleteColor(v.Name, "run", vcpuColor(v.Index), pid, tid, rec.Start, rec.At-rec.Start,
			trace.S("vm", vm.cfg.Name), trace.N("vcpu", float64(v.ID)), trace.S("ended", string(rec.Why)),
			trace.S("lock_state_start", rec.StartHints.String()), trace.S("lock_state_end", rec.Hints.String()),
			trace.N("stop_latency_us", stop), trace.N("acquisitions", float64(acquired)))
		if id := r.flowTo[v.Index]; id != 0 {
			r.w.FlowEnd("kick", id, pid, tid, rec.Start)
			r.flowTo[v.Index] = 0
		}
		acq, spin := vm.counters()
		r.w.Counter("acquisitions", pidVM0+v.VM, rec.At, trace.N(vm.cfg.Name, float64(acq)))
		r.w.Counter("spin cycles", pidVM0+v.VM, rec.At, trace.N(vm.cfg.Name, float64(spin)))
	case sched.RecStatus:
		if name, ok := statusNames[rec.From]; ok && rec.At > rec.Start {
			r.w.Complete(name, "state", pidVM0+v.VM, v.ID+1, rec.Start, rec.At-rec.Start)
		}
	case sched.RecMark:
		pid, tid := pidPCPUs, rec.PCPU+1
		if rec.PCPU < 0 || !sched.Decides(r.m.pol) {
			pid, tid = pidVM0+v.VM, v.ID+1
		}
		r.w.Instant(string(rec.Mark), "sched", markColor[rec.Mark], pid, tid, rec.At, trace.S("vcpu", v.Name),
			trace.N("lock", float64(rec.Hints.LockID)), trace.N("ticket", float64(rec.Hints.Ticket)))
	case sched.RecKick:
		pid, tid := pidPCPUs, rec.PCPU+1
		if rec.PCPU < 0 || !sched.Decides(r.m.pol) {
			pid, tid = pidVM0+v.VM, v.ID+1
		}
		r.flows++
		r.w.Instant("kick", "sched", "good", pid, tid, rec.At, trace.S("from", v.Name), trace.S("to", rec.Other.Name))
		r.w.FlowStart("kick", r.flows, pid, tid, rec.At)
		r.flowTo[rec.Other.Index] = r.flows
	}
}

// counters sums the VM's lock counters from the guest's pages (plain
// shared-memory loads: no exit).
func (vm *VM) counters() (acq, spin uint64) {
	for id := range vm.vcpus {
		page := vm.layout.Page(id)
		acq += vm.mem.Load64(page + hypercall.OffAcquisitions)
		spin += vm.mem.Load64(page + hypercall.OffSpinCycles)
	}
	return acq, spin
}
