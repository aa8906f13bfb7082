package sched

import (
	"sort"
	"sync"
	"time"
)

// Published is what the scheduler writes into a vCPU's shared page.
type Published struct {
	Preempted      bool
	YieldRequested bool
	StealNs        uint64
}

// Target carries out the scheduler's decisions on real vCPUs.
type Target interface {
	// Dispatch lets v run on host CPU cpu.
	Dispatch(v *VCPU, cpu int)
	// Preempt takes v off its CPU and parks it. self: the call comes from
	// v's own thread (a blocking hypercall), so no kick is needed.
	Preempt(v *VCPU, self bool)
	// Publish writes host->guest flags into v's shared page.
	Publish(v *VCPU, p Published)
	// Hints reads what v's guest published.
	Hints(v *VCPU) Hints
	// Probe asks running v for its RIP; the answer comes back through
	// Scheduler.Probed.
	Probe(v *VCPU)
}

// Clock is monotonic time since the scheduler was made.
type Clock interface{ Now() time.Duration }

type realClock struct{ t0 time.Time }

func (c realClock) Now() time.Duration { return time.Since(c.t0) }

// BlockResult is what Block did, in WAIT's terms.
type BlockResult uint8

const (
	Blocking     BlockResult = iota // v is now blocked: park it
	KickWasThere                    // a KICK was pending: consumed, not blocked
	ValueChanged                    // the condition no longer holds: not blocked
)

// RefusedError is a policy refusing a machine it cannot schedule (Admit):
// not a failure of a run, a configuration that does not exist (gang and a
// VM wider than the pCPUs).
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// Scheduler is the mechanism: it serialises events and applies the policy's
// plans. All methods are safe from any goroutine.
type Scheduler struct {
	mu     sync.Mutex
	st     *State
	pol    Policy
	tgt    Target
	clock  Clock
	next   time.Duration // the policy's next deadline
	poke   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	plan   Plan
	inPlan []int // per vCPU index: pCPU it should run on, or -1
}

// NewScheduler makes a scheduler over st. clock may be nil (real time).
func NewScheduler(st *State, pol Policy, tgt Target, clock Clock) (*Scheduler, error) {
	st.Hints = tgt.Hints
	if err := pol.Admit(st); err != nil {
		return nil, &RefusedError{Err: err}
	}
	if clock == nil {
		clock = realClock{time.Now()}
	}
	s := &Scheduler{st: st, pol: pol, tgt: tgt, clock: clock,
		poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		inPlan: make([]int, len(st.VCPUs))}
	return s, nil
}

// State is the scheduler's state; read it only after Stop.
func (s *Scheduler) State() *State { return s.st }

// Start makes every vCPU runnable, applies the first plan and starts the
// deadline loop (unless manual, for tests that call Tick themselves).
func (s *Scheduler) Start(manual bool) {
	s.mu.Lock()
	if _, ok := s.clock.(realClock); ok {
		s.clock = realClock{time.Now()} // time 0 is the start of scheduling
	}
	s.st.Now = s.clock.Now()
	for _, p := range s.st.PCPUs {
		p.since = s.st.Now
	}
	for _, v := range s.st.VCPUs {
		v.since = s.st.Now
		s.pol.Event(s.st, Event{Kind: EvRunnable, V: v})
	}
	s.reschedule()
	s.mu.Unlock()
	if manual {
		close(s.done)
		return
	}
	go s.loop()
}

// Stop ends the deadline loop and closes the accounting at the current time.
func (s *Scheduler) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	s.st.Now = s.clock.Now()
	for _, v := range s.st.VCPUs {
		if v.Status == Running {
			s.st.ran(v, EndRunOver, s.st.HintsOf(v))
			v.ranSince = s.st.Now
		}
		s.st.setStatus(v, v.Status)
	}
	for _, p := range s.st.PCPUs {
		s.st.chargePCPU(p)
	}
	s.mu.Unlock()
}

func (s *Scheduler) loop() {
	defer close(s.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		next := s.next
		s.mu.Unlock()
		if next > 0 {
			t.Reset(max(next-s.clock.Now(), 0))
		} else {
			t.Reset(time.Hour)
		}
		select {
		case <-s.stop:
			return
		case <-s.poke:
		case <-t.C:
			s.Tick()
		}
	}
}

// Tick re-plans at the current time (slice ends).
func (s *Scheduler) Tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reschedule()
}

// Block is WAIT: under the scheduler lock it consumes a pending KICK, or
// checks cond (the guest word still has the expected value) and blocks v.
// On Blocking the caller returns to v's loop, which parks.
func (s *Scheduler) Block(v *VCPU, cond func() bool) BlockResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.KickPending {
		v.KickPending = false
		return KickWasThere
	}
	if !cond() {
		return ValueChanged
	}
	s.st.Now = s.clock.Now()
	s.st.ran(v, EndWait, s.st.HintsOf(v))
	s.takeOff(v, true)
	v.preemptedWaiting = false // the guest counts blocked time itself (wait cycles)
	s.st.setStatus(v, Blocked)
	s.pol.Event(s.st, Event{Kind: EvBlocked, V: v})
	s.reschedule()
	return Blocking
}

// Wake is KICK from vCPU from (nil: not a vCPU): a blocked vCPU becomes
// runnable; any other keeps the kick pending for its next WAIT.
func (s *Scheduler) Wake(v, from *VCPU) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.Status != Blocked {
		v.KickPending = true
		return
	}
	s.st.Now = s.clock.Now()
	v.kickedAt = s.st.Now
	if s.st.Rec != nil && from != nil {
		s.st.Rec.Record(Record{Kind: RecKick, At: s.st.Now, V: from, Other: v, PCPU: from.PCPU})
	}
	s.st.setStatus(v, Runnable)
	s.pol.Event(s.st, Event{Kind: EvRunnable, V: v, From: from})
	s.reschedule()
}

// Yield is YIELD; target is a vCPU index in the same VM's terms already
// resolved to a State index, or -1.
func (s *Scheduler) Yield(v *VCPU, target int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Now = s.clock.Now()
	v.endWhy = EndYield
	s.pol.Event(s.st, Event{Kind: EvYield, V: v, Target: target})
	s.reschedule()
}

// Probed delivers the RIP a probe read.
func (s *Scheduler) Probed(v *VCPU, rip uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.Status != Running {
		return
	}
	s.st.Now = s.clock.Now()
	s.pol.Event(s.st, Event{Kind: EvProbed, V: v, RIP: rip})
	s.reschedule()
}

// Exit is EXIT (or any end of the vCPU's loop).
func (s *Scheduler) Exit(v *VCPU) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.Status == Done {
		return
	}
	s.st.Now = s.clock.Now()
	s.st.ran(v, EndExit, s.st.HintsOf(v))
	s.takeOff(v, false)
	s.st.setStatus(v, Done)
	s.pol.Event(s.st, Event{Kind: EvExit, V: v})
	s.reschedule()
}

// takeOff removes v from its pCPU's running list (no Target call).
func (s *Scheduler) takeOff(v *VCPU, self bool) {
	if v.PCPU < 0 {
		return
	}
	p := s.st.PCPUs[v.PCPU]
	s.st.chargePCPU(p)
	for i, r := range p.Running {
		if r == v {
			p.Running = append(p.Running[:i], p.Running[i+1:]...)
			break
		}
	}
	v.PCPU = -1
	if self {
		s.tgt.Preempt(v, true)
	}
}

// reschedule asks the policy and applies the difference. Called with mu held.
func (s *Scheduler) reschedule() {
	st := s.st
	st.Now = s.clock.Now()
	s.plan = s.pol.Decide(st)
	for i := range s.inPlan {
		s.inPlan[i] = -1
	}
	for _, a := range s.plan.Run {
		s.inPlan[a.V.Index] = a.PCPU
	}
	// Preempt what runs but is not planned (or planned elsewhere). A
	// reason given for a vCPU that stays is void.
	for _, v := range st.VCPUs {
		if v.Status == Running && s.inPlan[v.Index] != v.PCPU {
			s.preempt(v)
		}
		v.endWhy = ""
	}
	// Dispatch what is planned but not running there.
	for _, a := range s.plan.Run {
		v := a.V
		v.SliceEnd = a.SliceEnd
		if v.Status == Running || (v.Status != Runnable) {
			continue
		}
		p := st.PCPUs[a.PCPU]
		st.chargePCPU(p)
		p.Running = append(p.Running, v)
		v.PCPU = a.PCPU
		st.setStatus(v, Running)
		v.ranSince = st.Now
		if st.Rec != nil {
			v.startHints = st.HintsOf(v)
		}
		v.preemptedWaiting = false
		v.Acct.Dispatches++
		st.Acct.Switches++
		if v.kickedAt >= 0 {
			st.Acct.WakeLatencies = append(st.Acct.WakeLatencies, st.Now-v.kickedAt)
			v.kickedAt = -1
		}
		s.publish(v, false)
		s.pol.Event(st, Event{Kind: EvDispatched, V: v})
		s.tgt.Dispatch(v, p.CPU)
	}
	for _, v := range s.plan.YieldRequest {
		v.yieldReq = true
	}
	for _, v := range st.VCPUs {
		if v.Status == Runnable && !v.published.Preempted {
			s.publish(v, true)
		} else if v.Status == Running && v.published.YieldRequested != v.yieldReq {
			pub := v.published
			pub.YieldRequested = v.yieldReq
			v.published = pub
			s.tgt.Publish(v, pub)
		}
		v.yieldReq = false
	}
	for _, v := range s.plan.Probe {
		if v.Status == Running {
			st.Acct.Probes++
			st.Mark("probe", v)
			s.tgt.Probe(v)
		}
	}
	s.next = s.plan.Next
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

func (s *Scheduler) preempt(v *VCPU) {
	st := s.st
	h := s.tgt.Hints(v)
	if h.Holding {
		v.Acct.LHP++
		st.mark("LHP", v, h)
	}
	if h.NextInLine {
		v.Acct.LWP++
		st.mark("LWP", v, h)
	}
	if h.Waiting {
		v.Acct.WaiterPreempt++
		st.mark("waiter-preempt", v, h)
	}
	v.Acct.Preemptions++
	v.preemptedWaiting = h.Waiting
	why := v.endWhy
	if why == "" {
		why = EndSlice
	}
	v.endWhy = ""
	st.ran(v, why, h)
	s.takeOff(v, false)
	st.setStatus(v, Runnable)
	s.tgt.Preempt(v, false)
	s.publish(v, true)
	s.pol.Event(st, Event{Kind: EvPreempted, V: v})
}

func (s *Scheduler) publish(v *VCPU, preempted bool) {
	p := Published{Preempted: preempted, StealNs: uint64(v.Acct.Steal)}
	if p != v.published {
		v.published = p
		s.tgt.Publish(v, p)
	}
}

// WakePercentiles returns the p50 and p99 of KICK-to-running latency.
func (a *Acct) WakePercentiles() (p50, p99 time.Duration) {
	if len(a.WakeLatencies) == 0 {
		return 0, 0
	}
	l := append([]time.Duration(nil), a.WakeLatencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[len(l)/2], l[min(len(l)-1, len(l)*99/100)]
}

// Snapshot runs f on the state under the scheduler lock (for watchdogs).
func (s *Scheduler) Snapshot(f func(*State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.st)
}

// Sample is Snapshot with State.Now brought to the current time, for a
// periodic observer of a running scheduler (after Start). f must not
// change the state.
func (s *Scheduler) Sample(f func(*State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Now = s.clock.Now()
	f(s.st)
}
