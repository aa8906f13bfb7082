package sched

import (
	"fmt"
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

// Admit asks pol whether it can schedule the machine st describes (also as
// a dry run, before any VM is built); a refusal is a *RefusedError.
func Admit(pol Policy, st *State) error {
	if err := pol.Admit(st); err != nil {
		return &RefusedError{Err: err}
	}
	return nil
}

// NewScheduler makes a scheduler over st. clock may be nil (real time).
func NewScheduler(st *State, pol Policy, tgt Target, clock Clock) (*Scheduler, error) {
	st.Hints = tgt.Hints
	if err := Admit(pol, st); err != nil {
		return nil, err
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
		zero := time.Now() // time 0 is the start of scheduling
		s.clock, s.st.Zero = realClock{zero}, zero
	}
	s.st.Now = s.clock.Now()
	for _, p := range s.st.PCPUs {
		p.since = s.st.Now
	}
	for _, v := range s.st.VCPUs {
		v.since = s.st.Now
	}
	for _, v := range s.st.startOrder() {
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
		s.settle(v, false) // a preemption never seen done: the run ended first
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
	s.settle(v, true) // it is in its own hypercall: out of the guest
	h := s.st.HintsOf(v)
	s.st.ran(v, EndWait, h)
	v.stoppedHints, v.stoppedKnown = h, true
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
	s.settle(v, true) // it is in its own hypercall: out of the guest
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
	s.settle(v, true) // its loop has ended: out of the guest
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
		// Preempted, and dispatched again before it was seen out of
		// the guest: it never stopped.
		s.settle(v, false)
		p := st.PCPUs[a.PCPU]
		st.chargePCPU(p)
		p.Running = append(p.Running, v)
		v.PCPU = a.PCPU
		h := st.HintsOf(v) // it is parked: only others can change what it says
		if v.stoppedKnown {
			s.checkOffCPU(v, v.stoppedHints, h)
			v.stoppedKnown = false
		}
		st.setStatus(v, Running)
		v.ranSince = st.Now
		v.startHints = h
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
			st.Mark(MarkProbe, v)
			s.tgt.Probe(v)
		}
	}
	s.next = s.plan.Next
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// preempt takes running v off its pCPU and asks its thread to leave the
// guest. What v was doing (LHP, LWP, a waiter preempted) is not known yet:
// v runs on until its thread sees the request, tens of microseconds, and
// may take or release a lock meanwhile. It is classified when v is seen
// out of the guest (Stopped, or any call from its own thread: settle).
func (s *Scheduler) preempt(v *VCPU) {
	st := s.st
	v.Acct.Preemptions++
	why := v.endWhy
	if why == "" {
		why = EndSlice
	}
	v.endWhy = ""
	v.stop = &pendingStop{At: st.Now, Start: v.ranSince, PCPU: v.PCPU, Why: why, StartHints: v.startHints}
	s.takeOff(v, false)
	st.setStatus(v, Runnable)
	s.tgt.Preempt(v, false)
	s.publish(v, true)
	s.pol.Event(st, Event{Kind: EvPreempted, V: v})
}

// Stopped tells the scheduler that preempted v's thread has left the guest
// and is about to park (the vcpu package's OnPark): v's lock state is now
// what it will be until it runs again, so the preemption is classified
// from it. Safe from any goroutine; a vCPU with no preemption pending (it
// parks for a WAIT) is left alone.
func (s *Scheduler) Stopped(v *VCPU) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.stop == nil {
		return
	}
	s.st.Now = s.clock.Now()
	s.settle(v, true)
}

// settle ends v's pending preemption, if any. seen: v is out of the guest
// now, so its hints are final: it is classified (LHP, LWP, waiter
// preempted) from them, its stay is recorded, and they are kept for the
// off-CPU check at its next dispatch. Not seen (dispatched again first,
// or the run ended): it never stopped, so nothing is classified.
func (s *Scheduler) settle(v *VCPU, seen bool) {
	p := v.stop
	if p == nil {
		return
	}
	v.stop = nil
	st := s.st
	var h Hints
	if seen {
		h = st.HintsOf(v)
		st.Acct.StopLatencies = append(st.Acct.StopLatencies, st.Now-p.At)
		if h.Holding {
			v.Acct.LHP++
			st.markAt(MarkLHP, v, p.PCPU, p.At, h)
		}
		if h.NextInLine {
			v.Acct.LWP++
			st.markAt(MarkLWP, v, p.PCPU, p.At, h)
		}
		if h.Waiting {
			v.Acct.WaiterPreempt++
			st.markAt(MarkWaiterPreempt, v, p.PCPU, p.At, h)
		}
		v.preemptedWaiting = h.Waiting
		v.stoppedHints, v.stoppedKnown = h, true
	}
	switch {
	case st.Rec == nil:
	case seen:
		st.ranStop(v, p, h, st.Now)
		st.Rec.Record(Record{Kind: RecStopped, At: st.Now, V: v, PCPU: -1})
	default:
		st.ranStop(v, p, st.HintsOf(v), 0)
	}
}

// checkOffCPU checks what v's guest says at its dispatch (now) against
// what it said when it last stopped (was): in between v did not run, so
// only another vCPU can have changed it — a FIFO release handing it the
// lock it waited for (waiting -> holding), its queue moving up (waiting ->
// waiting, next in line or not), or a lock handed to it taken by a waiter
// that stopped waiting its turn (pticket, pvqspin's stealing: handed ->
// waiting). Anything else (holding -> none, none -> holding, ...) means
// lhpvm read the guest at the wrong moment; it is recorded, and fails the
// run.
func (s *Scheduler) checkOffCPU(v *VCPU, was, now Hints) {
	if OffCPUChangePossible(was, now) {
		return
	}
	if len(s.st.Acct.Impossible) < 10 {
		s.st.Acct.Impossible = append(s.st.Acct.Impossible, fmt.Sprintf("%s: %s when it stopped, %s at its dispatch at %v",
			v.Name, was, now, s.st.Now))
	}
}

// OffCPUChangePossible reports whether a vCPU's guest can say now at a
// dispatch after saying was when it stopped, without having run.
func OffCPUChangePossible(was, now Hints) bool {
	switch {
	case was == now:
		return true
	case was.InCS != now.InCS:
		return false // only its own code enters or leaves a critical section
	case (was.Waiting || was.NextInLine) && now.Holding && now.LockID == was.LockID:
		return true // a FIFO release handed it the lock
	case (was.Waiting || was.NextInLine) && (now.Waiting || now.NextInLine) && now.LockID == was.LockID:
		return true // the queue moved up
	case was.Holding && was.Handed && (now.Waiting || now.NextInLine) && now.LockID == was.LockID:
		return true // handed to it, and stolen before it could take it
	case was.Holding && was.Handed && now.Holding && now.LockID == was.LockID:
		return true // still (or again) handed to it
	}
	return false
}

func (s *Scheduler) publish(v *VCPU, preempted bool) {
	p := Published{Preempted: preempted, StealNs: uint64(v.Acct.Steal)}
	if p != v.published {
		v.published = p
		s.tgt.Publish(v, p)
	}
}

// WakePercentiles returns the p50 and p99 of KICK-to-running latency.
func (a *Acct) WakePercentiles() (p50, p99 time.Duration) { return percentiles(a.WakeLatencies) }

// StopPercentiles returns the p50 and p99 of preemption-to-stopped latency:
// how long a preempted vCPU ran on before it was seen out of the guest.
func (a *Acct) StopPercentiles() (p50, p99 time.Duration) { return percentiles(a.StopLatencies) }

func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	l := append([]time.Duration(nil), ds...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[len(l)/2], l[min(len(l)-1, len(l)*99/100)]
}

// Now is the scheduler's time: since Start, on its clock.
func (s *Scheduler) Now() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clock.Now()
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
