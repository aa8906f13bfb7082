package vmm

// What a run measured, and its checks: a Machine's Result, each VM's and
// each vCPU's, collected from the scheduler's accounting and the guest's
// pages once every vCPU has stopped.

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/sched"
)

// VMResult is what a run of one VM measured and checked.
type VMResult struct {
	Name         string  `json:"name"`
	VCPUs        int     `json:"vcpus"`
	Workload     string  `json:"workload"`
	Image        string  `json:"image"`
	OK           bool    `json:"ok"`
	Error        string  `json:"error"`
	ExitCode     uint64  `json:"exit_code"`
	Ops          uint64  `json:"ops"`
	OpsPerSec    float64 `json:"ops_per_s"` // over the whole run, start transient included
	GuestSeconds float64 `json:"guest_s"`
	// SteadyOpsPerSec is the throughput after the warm-up (WarmupS,
	// Warmup's rule), until the duration ran out: the steady state, without
	// the start transient. Null for a run of a number of iterations.
	SteadyOpsPerSec *float64 `json:"steady_ops_per_s"`
	WarmupS         float64  `json:"warmup_s,omitempty"`
	// OpsSeries is the VM's completed operations over the run (at most
	// MaxSeriesSamples samples), for telling the transient from the
	// steady state.
	OpsSeries       []OpsSample `json:"ops_series,omitempty"`
	TSCkHz          uint64      `json:"tsc_khz"` // the guest's TSC: KVM's, or the host's calibrated (ptrace)
	CounterExpected *uint64     `json:"counter_expected"`
	CounterActual   *uint64     `json:"counter_actual"`
	NsPerHypercall  *float64    `json:"ns_per_hypercall"`
	BadHypercalls   uint64      `json:"bad_hypercalls"`
	Result          uint64      `json:"result"`
	*LockStats                  // the lock workload's accounting
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

	// linux: Linux scheduled the vCPU (host policy), so lhpvm saw none of
	// its preemptions.
	linux bool
}

// PreemptionsSeen reports whether lhpvm's own policy scheduled the vCPU,
// so that Preemptions, LHPEvents, LWPEvents and WaiterPreemptions count
// what happened; under host (Linux schedules) they are not measured.
func (v VCPUResult) PreemptionsSeen() bool { return !v.linux }

// MarshalJSON writes the vCPU's results, with the counts its policy did
// not measure (PreemptionsSeen) null: a 0 would claim none happened.
func (v VCPUResult) MarshalJSON() ([]byte, error) {
	type plain VCPUResult
	if !v.linux {
		return json.Marshal(plain(v))
	}
	return json.Marshal(struct {
		plain
		Preemptions       *uint64 `json:"preemptions"`
		LHPEvents         *uint64 `json:"lhp_events"`
		LWPEvents         *uint64 `json:"lwp_events"`
		WaiterPreemptions *uint64 `json:"waiter_preemptions"`
	}{plain: plain(v)})
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
		h := &vm.calls[id]
		p := vm.readPage(id)
		vr := VCPUResult{
			ID: id, PCPU: v.PCPU, State: v.State().String(), ExitCode: h.exitCode,
			Ops: p.Ops, Exits: v.Stats.Exits.Load(), Hypercalls: v.Stats.Hypercalls.Load(),
			BadHypercalls: h.badCalls.Load(), KicksReceived: h.kicksRecv.Load(),
			CheckFailures: p.CheckFailures, linux: !sched.Decides(m.pol),
		}
		if sv := vm.schedVCPUs[id]; sv != nil {
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
			if sched.Decides(m.pol) {
				// Our scheduler knows when the vCPU really ran: spin is
				// measured against host run time, not guest wall time. The
				// guest already took out of each spin window the steal the
				// host published in its page (the time it was preempted
				// while waiting); what remains to leave out is the time it
				// was blocked in WAIT (its wait cycles, steal excluded).
				a := vm.schedVCPUs[id].Acct
				run := uint64(a.Run.Nanoseconds()) * vm.tscKHz / 1e6
				vr.LockStats.SpinCycles = p.SpinCycles - min(p.WaitCycles, p.SpinCycles)
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
		if sched.Decides(m.pol) {
			r.LockStats.cycles, r.LockStats.SpinCycles = runTotal, spinTotal
		}
		r.LockStats.finish(vm.tscKHz)
		acq := make([]uint64, len(r.VCPU))
		for i, vr := range r.VCPU {
			acq[i] = vr.LockStats.Acquisitions
		}
		f := FairnessOf(acq)
		r.LockStats.Fairness = &f
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

// Result is the outcome of a Machine run; --json prints it.
type Result struct {
	OK       bool    `json:"ok"`
	Error    string  `json:"error"`
	ElapsedS float64 `json:"elapsed_s"`
	// StartupS is how long the vCPUs took to start (attach to the backend:
	// on ptrace, start their stub processes), within ElapsedS.
	StartupS float64 `json:"startup_s"`
	// Backend is the execution backend the run used, BackendReason why
	// (set by whoever opened it).
	Backend       string     `json:"backend"`
	BackendReason string     `json:"backend_reason"`
	Trace         *TraceInfo `json:"trace,omitempty"`
	// Seed and Start: the run's start conditions and the seed they were
	// drawn from (MachineConfig.Seed; run --seed replays them).
	Seed  uint64       `json:"seed"`
	Start *sched.Start `json:"start"`
	Sched SchedResult  `json:"sched"`
	VMs   []*VMResult  `json:"vms"`

	Err error `json:"-"`
	// CloseErr: closing the VMs after the run failed (RunMachine); the
	// run's own outcome is Err.
	CloseErr error `json:"-"`
}

// TraceInfo says where a run's trace went and how much of it.
type TraceInfo struct {
	Path    string `json:"path"`
	Events  int    `json:"events"`
	Dropped int    `json:"dropped"` // cut by the limit
}

// SchedResult is the scheduler's accounting.
type SchedResult struct {
	Policy    string  `json:"policy"`
	PCPUs     []int   `json:"pcpus"`
	SliceUs   float64 `json:"slice_us"`
	Switches  uint64  `json:"switches"`
	LHPEvents uint64  `json:"lhp_events"`
	LWPEvents uint64  `json:"lwp_events"`
	// WaiterPreemptions: preempted while waiting for a lock at any queue
	// position (LWP counts only the next in line).
	WaiterPreemptions uint64    `json:"waiter_preemptions"`
	IdleFraction      float64   `json:"idle_fraction"`
	CoStops           uint64    `json:"costops"`
	CoStarts          uint64    `json:"costarts"`
	MaxSkewUs         float64   `json:"max_skew_us"`
	DelayGrants       uint64    `json:"delay_grants"`
	DelayOverruns     uint64    `json:"delay_overruns"`
	DirectedYields    uint64    `json:"directed_yields"`
	KickBoosts        uint64    `json:"kick_boosts"`
	Probes            uint64    `json:"probes"`
	Deferrals         uint64    `json:"deferrals"`
	SpinPreempts      uint64    `json:"spin_preempts"`
	WakeUs            Latencies `json:"wake_us"`
	// StopUs: from a preemption's decision to the vCPU seen out of the
	// guest, where what it was doing (LHP, LWP) is read.
	StopUs Latencies `json:"stop_us"`
	// RunPerDispatchUs is the mean time a vCPU ran each time it was
	// dispatched: under a round-robin policy, about the slice.
	RunPerDispatchUs float64 `json:"run_per_dispatch_us,omitempty"`
	// ScheduleDrift, when not empty, says how the schedule that ran was
	// not the one asked for (ScheduleDriftRule); the run's numbers then
	// describe another schedule than its parameters name.
	ScheduleDrift string `json:"schedule_drift,omitempty"`
}

// MarshalJSON writes the accounting, with the counts only lhpvm's own
// policies measure (LHP, LWP, waiter preemptions) null under host (SliceUs
// 0), where Linux's preemptions are not seen: a 0 there would claim none
// happened.
func (r SchedResult) MarshalJSON() ([]byte, error) {
	type plain SchedResult
	if r.SliceUs > 0 {
		return json.Marshal(plain(r))
	}
	return json.Marshal(struct {
		plain
		LHPEvents         *uint64 `json:"lhp_events"`
		LWPEvents         *uint64 `json:"lwp_events"`
		WaiterPreemptions *uint64 `json:"waiter_preemptions"`
	}{plain: plain(r)})
}

// ScheduleDriftRule: a run's schedule drifted when a preemption took longer
// than a whole slice to take effect (stop latency p99 above the slice):
// the slices it cut were then at least twice as long as asked, which a
// loaded host does to us (a stop that has to wait for the host to run the
// vCPU's thread). Twice, because a slice's length is what LHP's damage
// scales with: below 2x the policy's shape holds, above it another
// schedule is being measured. (The mean run per dispatch is reported
// beside it but decides nothing: a vCPU that nothing needs to preempt,
// 2 on 2 say, rightly runs the whole run in one dispatch.)
const ScheduleDriftRule = "stop latency p99 above the slice"

// scheduleDrift applies ScheduleDriftRule.
func scheduleDrift(r SchedResult) string {
	if r.SliceUs <= 0 || r.StopUs.P99 <= r.SliceUs {
		return ""
	}
	return fmt.Sprintf("stop latency p99 %.2f ms against a %.2f ms slice", r.StopUs.P99/1e3, r.SliceUs/1e3)
}

// Latencies are p50 and p99 in microseconds.
type Latencies struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

func (m *Machine) schedResult() SchedResult {
	st := m.state
	r := SchedResult{
		Policy: m.cfg.Policy, PCPUs: m.cfg.PCPUs, SliceUs: float64(m.cfg.Options.Slice.Microseconds()),
		Switches: st.Acct.Switches, CoStops: st.Acct.CoStops, CoStarts: st.Acct.CoStarts, MaxSkewUs: float64(st.Acct.MaxSkew.Microseconds()),
		DelayGrants: st.Acct.DelayGrants, DelayOverruns: st.Acct.DelayOverruns, DirectedYields: st.Acct.DirectedYields,
		KickBoosts: st.Acct.KickBoosts, Probes: st.Acct.Probes, Deferrals: st.Acct.Deferrals, SpinPreempts: st.Acct.SpinPreempts,
	}
	if !sched.Decides(m.pol) {
		r.SliceUs = 0 // Linux decides
	}
	var run time.Duration
	var dispatches uint64
	for _, v := range st.VCPUs {
		r.LHPEvents += v.Acct.LHP
		r.LWPEvents += v.Acct.LWP
		r.WaiterPreemptions += v.Acct.WaiterPreempt
		run += v.Acct.Run
		dispatches += v.Acct.Dispatches
	}
	var busy, idle time.Duration
	for _, p := range st.PCPUs {
		busy += p.Busy
		idle += p.Idle
	}
	if busy+idle > 0 {
		r.IdleFraction = float64(idle) / float64(busy+idle)
	}
	p50, p99 := st.Acct.WakePercentiles()
	r.WakeUs = Latencies{P50: float64(p50.Nanoseconds()) / 1e3, P99: float64(p99.Nanoseconds()) / 1e3}
	p50, p99 = st.Acct.StopPercentiles()
	r.StopUs = Latencies{P50: float64(p50.Nanoseconds()) / 1e3, P99: float64(p99.Nanoseconds()) / 1e3}
	if sched.Decides(m.pol) && dispatches > 0 {
		r.RunPerDispatchUs = float64(run.Nanoseconds()) / float64(dispatches) / 1e3
	}
	r.ScheduleDrift = scheduleDrift(r)
	return r
}
