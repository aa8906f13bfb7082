package sched

import (
	"fmt"
	"time"
)

// Status is a vCPU's scheduling status.
type Status uint8

const (
	Runnable Status = iota // wants a pCPU
	Running                // dispatched on a pCPU
	Blocked                // in WAIT: needs a KICK
	Done                   // exited
)

func (s Status) String() string {
	return [...]string{"runnable", "running", "blocked", "done"}[s]
}

// Hints is what the guest publishes in its shared page, read by the
// scheduler at decision points (for accounting, and by hint-using policies).
type Hints struct {
	InCS       bool // inside a critical section (delay hint)
	Holding    bool // holds a lock
	Handed     bool // Holding: a FIFO release handed it the lock, not yet taken
	Waiting    bool // waits for a lock
	NextInLine bool // waits for a ticket lock and is next in line
	LockID     uint32
	Ticket     uint32 // its ticket, for the ticket locks
}

// String says what the hints say, for a trace and a message.
func (h Hints) String() string {
	switch {
	case h.Holding && h.Handed:
		return fmt.Sprintf("handed lock %d", h.LockID)
	case h.Holding:
		return fmt.Sprintf("holding lock %d", h.LockID)
	case h.NextInLine:
		return fmt.Sprintf("next for lock %d (ticket %d)", h.LockID, h.Ticket)
	case h.Waiting:
		return fmt.Sprintf("waiting for lock %d", h.LockID)
	case h.InCS:
		return "in a critical section"
	}
	return "none"
}

// AddrRange is a half-open range of guest code addresses.
type AddrRange struct{ Start, End uint64 }

// Contains reports whether addr lies in r.
func (r AddrRange) Contains(addr uint64) bool { return addr >= r.Start && addr < r.End }

// CodeMap is what the guest image says about its code, for policies that
// look at RIPs instead of guest hints (monitor): where the lock wait loops
// and the critical sections are. Empty ranges: the image does not say.
type CodeMap struct {
	Spin AddrRange
	CS   AddrRange
}

// VCPU is the scheduler's view of one vCPU.
type VCPU struct {
	Index int // in State.VCPUs
	VM    int // index of its VM
	ID    int // vCPU id inside its VM
	Name  string

	Status Status
	PCPU   int // pCPU index it runs on while Running, else -1
	Home   int // pCPU index of its queue (policy-owned placement)

	SliceEnd         time.Duration // end of the current slice, while Running
	KickPending      bool          // a KICK arrived while not blocked
	kickedAt         time.Duration // when the KICK that woke it arrived (-1: none)
	since            time.Duration // when Status last changed
	published        Published     // last flags written to the guest
	preemptedWaiting bool          // preempted while its guest waited for a lock
	yieldReq         bool          // in the current Plan's YieldRequest (scratch)
	// For the Recorder: when v got its pCPU and its hints then, and why the
	// policy is taking it off (EndReason).
	ranSince   time.Duration
	startHints Hints
	endWhy     EndReason
	// stop is the preemption decided but not yet seen done: the vCPU
	// runs until its thread has left the guest (Scheduler.Stopped), and
	// only then is what it was doing known.
	stop *pendingStop
	// stoppedHints are its guest's hints when it last really stopped
	// (a confirmed preemption, or WAIT), checked against its hints at
	// its next dispatch; valid while stoppedKnown.
	stoppedHints Hints
	stoppedKnown bool

	// Policy-private scratch.
	Prio     int
	Progress time.Duration // run time plus (relaxed co-scheduling) idle time

	Acct VCPUAcct
}

// pendingStop is a preemption the scheduler decided at At, taking v off
// pCPU PCPU (where it had run since Start) for Why.
type pendingStop struct {
	At, Start  time.Duration
	PCPU       int
	Why        EndReason
	StartHints Hints
}

// StopPending reports whether v was preempted and has not yet been seen
// leaving the guest: it may still be running (and changing its lock
// state) though its status is Runnable.
func (v *VCPU) StopPending() bool { return v.stop != nil }

// VCPUAcct is one vCPU's accounting.
type VCPUAcct struct {
	Run, Steal, Blocked time.Duration
	Dispatches          uint64
	Preemptions         uint64
	LHP                 uint64 // preempted while holding a lock
	LWP                 uint64 // preempted while next in line for a lock
	// WaiterPreempt counts preemptions while waiting for a lock at any
	// position: under a FIFO lock every queued waiter will be handed the
	// lock in turn, preempted or not (the convoy LWP alone does not show).
	WaiterPreempt uint64
	// StealWaiting is the part of Steal that began with a preemption while
	// the guest was waiting for a lock: time inside the guest's measured
	// spin window that the vCPU did not run.
	StealWaiting time.Duration
}

// PCPU is one physical CPU the scheduler owns.
type PCPU struct {
	Index int
	CPU   int // host CPU id
	// Running lists what runs here (at most one, except under policy host).
	Running []*VCPU
	since   time.Duration
	Busy    time.Duration
	Idle    time.Duration
}

// State is everything a policy decides from.
type State struct {
	Now time.Duration
	// Zero is the wall-clock instant of Now == 0 under the real clock (the
	// start of scheduling), set before the first event; zero under a
	// manual clock.
	Zero  time.Time
	Slice time.Duration
	PCPUs []*PCPU
	VCPUs []*VCPU
	VMs   [][]*VCPU // vCPUs by VM
	Code  []CodeMap // by VM
	// VMNames name the VMs in messages (e.g. a policy's refusal); "VM i"
	// where the caller gives none.
	VMNames []string

	Acct Acct

	// Rec, if set, is told every dispatch, preemption, status change and
	// mark (a trace, a timeline).
	Rec Recorder
	// start is the run's seeded start (SetStart), or nil.
	start *Start

	// Hints reads what a vCPU's guest publishes (set by NewScheduler from
	// the Target). Policies that honour guest hints (pv, delay) read it;
	// the monitor policy must not.
	Hints func(*VCPU) Hints
}

// HintsOf is v's guest hints, or none without a reader.
func (s *State) HintsOf(v *VCPU) Hints {
	if s.Hints == nil {
		return Hints{}
	}
	return s.Hints(v)
}

// Acct is the scheduler-wide accounting.
type Acct struct {
	Switches       uint64 // dispatches
	CoStops        uint64 // relaxed: vCPUs co-stopped for skew
	CoStarts       uint64 // relaxed: co-stopped vCPUs started beside a running sibling
	DelayGrants    uint64
	DelayOverruns  uint64
	DirectedYields uint64
	KickBoosts     uint64 // KICKs that handed the kicker's slice to the kicked vCPU (pv, BoostKicked)
	Probes         uint64 // RIP probes of running vCPUs (monitor)
	Deferrals      uint64 // preemptions deferred for an unsafe RIP (monitor)
	SpinPreempts   uint64 // spinners preempted in favour of others (monitor)
	MaxSkew        time.Duration
	WakeLatencies  []time.Duration // KICK -> running
	// StopLatencies: preemption decided -> the vCPU seen out of the guest.
	StopLatencies []time.Duration
	// Impossible lists lock-state changes across an interval a vCPU did
	// not run that only the vCPU itself could have made (holding -> none,
	// none -> holding, ...): each means the accounting read the guest at
	// the wrong moment. A run with any is a failed run.
	Impossible []string
}

// NewState lays out pcpus and VMs (vCPU counts); vCPU i of the whole
// machine gets home pCPU i mod len(pcpus).
func NewState(pcpus []int, vmVCPUs []int, slice time.Duration) (*State, error) {
	if len(pcpus) == 0 {
		return nil, fmt.Errorf("no pCPUs")
	}
	s := &State{Slice: slice}
	for i, c := range pcpus {
		s.PCPUs = append(s.PCPUs, &PCPU{Index: i, CPU: c})
	}
	for vm, n := range vmVCPUs {
		var vs []*VCPU
		for id := 0; id < n; id++ {
			v := &VCPU{Index: len(s.VCPUs), VM: vm, ID: id, Name: fmt.Sprintf("vm%d/cpu%d", vm, id),
				PCPU: -1, kickedAt: -1}
			v.Home = v.Index % len(pcpus)
			s.VCPUs = append(s.VCPUs, v)
			vs = append(vs, v)
		}
		s.VMs = append(s.VMs, vs)
	}
	s.Code = make([]CodeMap, len(vmVCPUs))
	return s, nil
}

// setStatus moves v to st at s.Now, charging the time since the last change.
func (s *State) setStatus(v *VCPU, st Status) {
	d := s.Now - v.since
	if s.Rec != nil && (d > 0 || st != v.Status) {
		s.Rec.Record(Record{Kind: RecStatus, Start: v.since, At: s.Now, V: v, PCPU: v.PCPU, From: v.Status, To: st})
	}
	switch v.Status {
	case Running:
		v.Acct.Run += d
		v.Progress += d
	case Runnable:
		v.Acct.Steal += d
		if v.preemptedWaiting {
			v.Acct.StealWaiting += d
		}
	case Blocked:
		v.Acct.Blocked += d
	}
	v.Status, v.since = st, s.Now
}

// chargePCPU charges a pCPU's busy or idle time up to now.
func (s *State) chargePCPU(p *PCPU) {
	d := s.Now - p.since
	if len(p.Running) > 0 {
		p.Busy += d
	} else {
		p.Idle += d
	}
	p.since = s.Now
}

// Runnable lists the vCPUs that want a pCPU (Runnable or Running).
func (s *State) Runnable() []*VCPU {
	var out []*VCPU
	for _, v := range s.VCPUs {
		if v.Status == Runnable || v.Status == Running {
			out = append(out, v)
		}
	}
	return out
}

// VMName is the name of VM i for a message.
func (s *State) VMName(i int) string {
	if i < len(s.VMNames) && s.VMNames[i] != "" {
		return s.VMNames[i]
	}
	return fmt.Sprintf("VM %d", i)
}
