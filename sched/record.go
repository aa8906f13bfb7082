package sched

import "time"

// Recorder is told what the scheduler does, as it does it, for a trace or
// a timeline. Record is called with the scheduler's lock held and at the
// scheduler's clock: it must be quick, must not block and must not call
// back into the scheduler. A nil Recorder costs one branch per event.
type Recorder interface {
	Record(r Record)
}

// RecordKind is what a Record describes.
type RecordKind uint8

const (
	// RecRan: V held pCPU PCPU from Start to At and left it for Why; Hints
	// are its guest's hints when it left (for a preemption: when it was
	// seen out of the guest, StoppedAt), StartHints at Start.
	RecRan RecordKind = iota
	// RecStatus: V was From (running, runnable, blocked) from Start to At,
	// and is To from At on (To == From: the accounting closed at the end).
	RecStatus
	// RecMark: an instant on V's pCPU (PCPU, -1 if it has none) of kind
	// Mark (MarkKind; for LHP, LWP and waiter-preempt Hints say which lock).
	RecMark
	// RecKick: V kicked Other (a KICK that woke it from WAIT).
	RecKick
	// RecStopped: preempted V was seen out of the guest at At: from now
	// on it does not run (lock damage starts counting).
	RecStopped
)

// Record is one scheduler event.
type Record struct {
	Kind       RecordKind
	Start, At  time.Duration
	V          *VCPU
	Other      *VCPU
	PCPU       int       // index into State.PCPUs
	Why        EndReason // RecRan: why V left its pCPU
	Mark       MarkKind  // RecMark: what happened
	From, To   Status
	Hints      Hints
	StartHints Hints
	// StoppedAt (RecRan of a preemption): when the vCPU was seen out of
	// the guest, where Hints were read; 0 if it never really stopped
	// (dispatched again first).
	StoppedAt time.Duration
}

// MarkKind names an instant the scheduler marks (RecMark).
type MarkKind string

const (
	MarkLHP           MarkKind = "LHP"            // a vCPU preempted holding a lock
	MarkLWP           MarkKind = "LWP"            // preempted next in line for a FIFO lock
	MarkWaiterPreempt MarkKind = "waiter-preempt" // preempted waiting for a lock, anywhere in line
	MarkDelayGrant    MarkKind = "delay-grant"    // delay: a slice extended for a critical section
	MarkCoStop        MarkKind = "co-stop"        // relaxed: a vCPU ahead stopped for its siblings
	MarkCoStart       MarkKind = "co-start"       // relaxed: siblings started together
	MarkProbe         MarkKind = "probe"          // monitor: a vCPU's RIP read
	MarkSpinPreempt   MarkKind = "spin-preempt"   // monitor: a spinning vCPU preempted
)

// EndReason is why a vCPU left its pCPU (RecRan.Why).
type EndReason string

const (
	EndSlice EndReason = "slice end"
	EndWait            = "WAIT"
	EndYield           = "YIELD"
	// EndKickBoost: it KICKed a vCPU and handed it its slice (pv, BoostKicked).
	EndKickBoost = "kick boost"
	EndCoStop    = "co-stop"
	// EndCoStart: a co-started vCPU of another VM took its pCPU (relaxed).
	EndCoStart = "co-start"
	EndDelay   = "delay grant ended"
	EndSpin    = "spin-preempt"
	EndExit    = "finished"
	EndRunOver = "end of run"
)

// Tracing reports whether a Recorder listens: a policy builds a record's
// details only then.
func (s *State) Tracing() bool { return s.Rec != nil }

// Mark records an instant named what on v's pCPU.
func (s *State) Mark(what MarkKind, v *VCPU) {
	if s.Rec == nil {
		return
	}
	s.Rec.Record(Record{Kind: RecMark, At: s.Now, V: v, PCPU: v.PCPU, Mark: what, Hints: s.HintsOf(v)})
}

// markAt is Mark with hints already read, at a given time and pCPU.
func (s *State) markAt(what MarkKind, v *VCPU, pcpu int, at time.Duration, h Hints) {
	if s.Rec == nil {
		return
	}
	s.Rec.Record(Record{Kind: RecMark, At: at, V: v, PCPU: pcpu, Mark: what, Hints: h})
}

// EndReason tells the mechanism why the policy is about to take running v
// off its pCPU (the trace says so); without it a preemption is a slice end.
func (s *State) EndReason(v *VCPU, why EndReason) { v.endWhy = why }

// ran records the end of v's stay on its pCPU.
func (s *State) ran(v *VCPU, why EndReason, h Hints) {
	if s.Rec == nil || v.PCPU < 0 {
		return
	}
	s.Rec.Record(Record{Kind: RecRan, Start: v.ranSince, At: s.Now, V: v, PCPU: v.PCPU, Why: why,
		Hints: h, StartHints: v.startHints})
}

// ranStop records the stay a preemption ended, once settled: it ended at
// p.At (when the scheduler took the pCPU), and h is what the guest said
// when the vCPU was seen out of the guest at stoppedAt (0: never).
func (s *State) ranStop(v *VCPU, p *pendingStop, h Hints, stoppedAt time.Duration) {
	if s.Rec == nil || p.PCPU < 0 {
		return
	}
	s.Rec.Record(Record{Kind: RecRan, Start: p.Start, At: p.At, V: v, PCPU: p.PCPU, Why: p.Why,
		Hints: h, StartHints: p.StartHints, StoppedAt: stoppedAt})
}
