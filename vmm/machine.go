package vmm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/trace"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vcpu"
)

// MachineConfig is how a set of VMs is run: on which host CPUs, under which
// scheduling policy, for how long.
type MachineConfig struct {
	Backend  string // the backend asked for (auto, kvm, ptrace): for the caller that opens it
	PCPUs    []int  // host CPUs the vCPUs run on
	Policy   string // sched.New spec: "host", "rr", "gang+pv", ...
	Options  sched.Options
	Duration time.Duration // 0: until every vCPU EXITs (iterations)
	Timeout  time.Duration // watchdog; 0: DefaultTimeout
	// Trace, if set, receives the run as a Perfetto trace (the caller
	// closes it after Run); Timeline, if set, collects its window.
	Trace    *trace.Writer
	Timeline *Timeline
	// TraceClock is the trace's clock: TraceClockRun (""), time from the
	// start of scheduling, or TraceClockMonotonic, the host's
	// CLOCK_MONOTONIC, in which trace-cmd and perf can stamp theirs.
	TraceClock string
	// Seed draws the run's start (sched.Start: which pCPU queue each vCPU
	// starts on, the order they become runnable, each pCPU's slice
	// phase); nil draws a fresh seed. The result reports both.
	Seed *uint64
}

// Machine runs VMs under one host scheduler.
type Machine struct {
	cfg       MachineConfig
	vms       []*VM
	pol       sched.Policy
	state     *sched.State
	scheduler *sched.Scheduler
	wakes     atomic.Uint64 // KICKs that woke a blocked vCPU

	seats []*vcpu.Seat // per pCPU, under policies that run one vCPU per pCPU

	damage []*damage // per VM: lock damage times (nil: not a lock VM, or the host policy)

	startup time.Duration // from Run until every vCPU was attached to its backend

	progress *progress // a run of fixed duration: its operations over time (nil otherwise)

	failMu  sync.Mutex
	failErr error         // the first fatal error
	failed  chan struct{} // closed with the first fatal error
}

// NewMachine puts vms under one scheduler. It fails when the policy refuses
// the machine (e.g. gang with a VM wider than the pCPUs).
func NewMachine(cfg MachineConfig, vms ...*VM) (*Machine, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Policy == "" {
		cfg.Policy = "host"
	}
	if cfg.Options.Slice == 0 {
		cfg.Options.Slice = sched.DefaultSlice
	}
	if cfg.Options.Skew == 0 {
		cfg.Options.Skew = sched.DefaultSkew
	}
	if cfg.Options.DelayMax == 0 {
		cfg.Options.DelayMax = sched.DefaultDelayMax
	}
	if len(vms) == 0 {
		return nil, errors.New("no VMs")
	}
	pol, err := sched.New(cfg.Policy, cfg.Options)
	if err != nil {
		return nil, err
	}
	counts := make([]int, len(vms))
	for i, vm := range vms {
		if vm.m != nil {
			return nil, fmt.Errorf("VM %s already belongs to a machine", vm.cfg.Name)
		}
		counts[i] = len(vm.vcpus)
	}
	st, err := sched.NewState(cfg.PCPUs, counts, cfg.Options.Slice)
	if err != nil {
		return nil, err
	}
	seed := sched.NewSeed()
	if cfg.Seed != nil {
		seed = *cfg.Seed
	}
	if err := st.SetStart(sched.DrawStart(seed, len(st.VCPUs), len(st.PCPUs))); err != nil {
		return nil, err
	}
	for i, vm := range vms {
		st.VMNames = append(st.VMNames, vm.cfg.Name)
		for _, sv := range st.VMs[i] {
			sv.Name = fmt.Sprintf("%s/cpu%d", vm.cfg.Name, sv.ID)
		}
	}
	m := &Machine{cfg: cfg, vms: vms, pol: pol, state: st, failed: make(chan struct{}), damage: make([]*damage, len(vms))}
	lockVMs := false
	for i, vm := range vms {
		// Only our policies know who runs.
		if vm.cfg.Workload.ID == hypercall.WorkloadLock && sched.Decides(pol) {
			m.damage[i] = newDamage(vm, st.VMs[i])
			lockVMs = true
		}
	}
	if cfg.Trace != nil || cfg.Timeline != nil || lockVMs {
		st.Rec = newRecorder(m, cfg.Trace, cfg.Timeline)
	}
	if sched.Decides(pol) {
		for range st.PCPUs {
			m.seats = append(m.seats, vcpu.NewSeat())
		}
	}
	if m.scheduler, err = sched.NewScheduler(st, pol, target{m}, nil); err != nil {
		return nil, err
	}
	for i, vm := range vms {
		vm.m, vm.index, vm.schedVCPUs = m, i, st.VMs[i]
		st.Code[i] = vm.img.codeMap()
		for id, v := range vm.vcpus {
			sv := st.VMs[i][id]
			v.OnProbe = func(rip uint64) { m.scheduler.Probed(sv, rip) }
			v.OnPark = func() { m.scheduler.Stopped(sv) }
		}
	}
	return m, nil
}

// wake is KICK from vCPU from: make sv runnable (or leave the kick pending).
func (m *Machine) wake(sv, from *sched.VCPU) {
	m.wakes.Add(1)
	m.scheduler.Wake(sv, from)
}

// Scheduler is the machine's scheduler (for benchmarks and tools).
func (m *Machine) Scheduler() *sched.Scheduler { return m.scheduler }

// SchedVCPUs are the scheduler's views of vm's vCPUs.
func (m *Machine) SchedVCPUs(vm int) []*sched.VCPU { return m.state.VMs[vm] }

// Policy is the scheduling policy.
func (m *Machine) Policy() sched.Policy { return m.pol }

// fail records the machine's first fatal error and ends the calling vCPU.
func (m *Machine) fail(err error) vcpu.Action {
	m.Abort(err)
	return vcpu.Action{Finish: true, Err: err}
}

// Abort ends a run from outside (e.g. Ctrl-C) with err. The first error of
// a run is the one reported.
func (m *Machine) Abort(err error) {
	m.failMu.Lock()
	defer m.failMu.Unlock()
	if m.failErr == nil {
		m.failErr = err
		close(m.failed)
	}
}

func (m *Machine) firstFailure() error {
	m.failMu.Lock()
	defer m.failMu.Unlock()
	return m.failErr
}

// Watchdog tick, and how many ticks in a row every live vCPU of a VM must
// sit in WAIT, with no KICK waking anyone, before it is a lost wakeup.
const (
	watchdogTick  = 50 * time.Millisecond
	deadlockTicks = 3
)

// Run starts every vCPU (parked until the scheduler dispatches it), waits
// until all have exited or the watchdog, a fault or a lost wakeup ends the
// run, then checks and collects the results. A Machine runs once.
func (m *Machine) Run() *Result {
	start := time.Now()
	err := m.run(start)
	m.scheduler.Stop()
	if rec, ok := m.state.Rec.(*recorder); ok {
		rec.nameVCPUTracks()
	}
	m.scheduler.Snapshot(func(st *sched.State) {
		for _, d := range m.damage {
			if d != nil {
				d.finish(st.Now)
			}
		}
	})
	res := &Result{ElapsedS: time.Since(start).Seconds(), StartupS: m.startup.Seconds(), Sched: m.schedResult(),
		Start: m.state.StartOf()}
	if res.Start != nil {
		res.Seed = res.Start.Seed
	}
	if imp := m.state.Acct.Impossible; len(imp) > 0 && err == nil {
		err = fmt.Errorf("%w: lock accounting: a vCPU's lock state changed while it did not run, "+
			"as only the vCPU itself could change it: %s", ErrCheckFailed, strings.Join(imp, "; "))
	}
	for i, vm := range m.vms {
		r := vm.result(m)
		m.progress.fill(i, r)
		res.VMs = append(res.VMs, r)
		if err == nil && r.Err != nil {
			err = r.Err
		}
	}
	if err != nil {
		res.Err, res.Error = err, err.Error()
	}
	res.OK = err == nil
	return res
}

func (m *Machine) run(start time.Time) error {
	var alive atomic.Int32
	allDone := make(chan struct{})
	// VMs bounded by neither iterations nor a duration (a co-runner) run as
	// long as the bounded ones: stopped when the last of those finishes.
	vmAlive := make([]atomic.Int32, len(m.vms))
	var boundedAlive atomic.Int32
	for i, vm := range m.vms {
		alive.Add(int32(len(vm.vcpus)))
		vmAlive[i].Store(int32(len(vm.vcpus)))
		if !vm.cfg.UntilOthers {
			boundedAlive.Add(1)
		}
	}
	vmDone := func(i int) {
		if m.vms[i].cfg.UntilOthers || boundedAlive.Add(-1) > 0 {
			return
		}
		for _, vm := range m.vms {
			if vm.cfg.UntilOthers {
				vm.RequestStop()
			}
		}
	}
	// Start every vCPU at once: each attaches to its backend (a ptrace stub
	// takes milliseconds to start) and parks until the scheduler
	// dispatches it.
	var starts []<-chan error
	for _, vm := range m.vms {
		for _, v := range vm.vcpus {
			v.ParkSelf()
			starts = append(starts, v.Start())
		}
	}
	var startErr error
	for _, c := range starts {
		if err := <-c; err != nil && startErr == nil {
			startErr = err
		}
	}
	m.startup = time.Since(start)
	// Whatever ends the run, every vCPU is stopped and every watcher below
	// has finished before run returns: nothing touches a VM after that.
	var watchers sync.WaitGroup
	defer func() {
		m.stopAll()
		watchers.Wait()
	}()
	if startErr != nil {
		return startErr
	}
	for i, vm := range m.vms {
		for id, v := range vm.vcpus {
			watchers.Add(1)
			go func(i int, v *vcpu.VCPU, sv *sched.VCPU) {
				defer watchers.Done()
				<-v.Done()
				if err := v.Err(); err != nil && !errors.Is(err, vcpu.ErrStopped) {
					m.Abort(err)
				}
				m.scheduler.Exit(sv)
				if vmAlive[i].Add(-1) == 0 {
					vmDone(i)
				}
				if alive.Add(-1) == 0 {
					close(allDone)
				}
			}(i, v, vm.schedVCPUs[id])
		}
	}
	m.scheduler.Start(false)
	if slices.ContainsFunc(m.damage, func(d *damage) bool { return d != nil }) {
		stop := make(chan struct{})
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			m.sampleDamage(stop)
		}()
		defer close(stop) // before the deferred watchers.Wait above
	}
	var durationC, warmC <-chan time.Time
	var sampleC <-chan time.Time
	if m.cfg.Duration > 0 {
		t := time.NewTimer(m.cfg.Duration)
		defer t.Stop()
		durationC = t.C
		m.progress = newProgress(m)
		w := time.NewTimer(m.progress.warmup)
		defer w.Stop()
		warmC = w.C
		s := time.NewTicker(m.progress.period)
		defer s.Stop()
		sampleC = s.C
		m.progress.sample()
	}
	watchdog := time.NewTimer(m.cfg.Timeout)
	defer watchdog.Stop()
	tick := time.NewTicker(watchdogTick)
	defer tick.Stop()

	stuck := make([]int, len(m.vms))
	lastWakes := m.wakes.Load()
	for {
		select {
		case <-allDone:
			return m.firstFailure()
		case <-m.failed:
			return m.firstFailure()
		case <-durationC:
			durationC, sampleC = nil, nil
			if warmC != nil { // both came due while the loop was busy: the warm-up's first
				select {
				case <-warmC:
					warmC = nil
					m.progress.atWarm, m.progress.haveW = m.progress.snapshot(), true
				default:
				}
			}
			m.progress.atEnd, m.progress.haveEnd = m.progress.snapshot(), true
			m.progress.sample()
			for _, vm := range m.vms {
				vm.RequestStop()
			}
		case <-warmC:
			warmC = nil
			m.progress.atWarm, m.progress.haveW = m.progress.snapshot(), true
		case <-sampleC:
			m.progress.sample()
		case <-watchdog.C:
			m.stopAll() // where() reads the registers each vCPU left
			var where strings.Builder
			for _, vm := range m.vms {
				if w := vm.where(); w != "" {
					fmt.Fprintf(&where, " %s:%s;", vm.cfg.Name, w)
				}
			}
			return fmt.Errorf("%w: the run did not finish within %v:%s", ErrTimeout, m.cfg.Timeout,
				strings.TrimSuffix(where.String(), ";"))
		case <-tick.C:
			wakes := m.wakes.Load()
			if err := m.checkDeadlock(stuck, wakes != lastWakes); err != nil {
				return err
			}
			lastWakes = wakes
		}
	}
}

// sampleDamage re-reads the lock grants every damageTick until stop.
func (m *Machine) sampleDamage(stop <-chan struct{}) {
	t := time.NewTicker(damageTick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			m.scheduler.Sample(func(st *sched.State) {
				for _, d := range m.damage {
					if d != nil {
						d.observe(st.Now, nil, 0)
					}
				}
			})
		}
	}
}

// checkDeadlock reports a VM whose live vCPUs have all been blocked in WAIT
// for deadlockTicks ticks with no wakeup anywhere in between.
func (m *Machine) checkDeadlock(stuck []int, woke bool) error {
	var err error
	m.scheduler.Snapshot(func(st *sched.State) {
		for i, vcpus := range st.VMs {
			live, blocked := 0, 0
			for _, v := range vcpus {
				if v.Status != sched.Done {
					live++
				}
				if v.Status == sched.Blocked {
					blocked++
				}
			}
			if live > 0 && blocked == live && !woke {
				stuck[i]++
			} else {
				stuck[i] = 0
			}
			if stuck[i] >= deadlockTicks && err == nil {
				vm := m.vms[i]
				err = fmt.Errorf("%w: every live vCPU of %s is blocked in WAIT and none is left to KICK it:%s",
					ErrLostWakeup, vm.cfg.Name, vm.waiters(func(id int) bool { return vcpus[id].Status == sched.Blocked }))
			}
		}
	})
	return err
}

// stopAll stops every vCPU and waits for each, with a grace period.
func (m *Machine) stopAll() {
	for _, vm := range m.vms {
		for _, v := range vm.vcpus {
			v.Stop()
		}
	}
	for _, vm := range m.vms {
		for _, v := range vm.vcpus {
			_ = v.Wait(stopGrace)
		}
	}
}
