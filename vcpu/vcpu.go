package vcpu

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
)

// State is where a vCPU is in its life; see the package doc for the drawing.
type State int32

const (
	Created State = iota
	Running
	Parked
	Stopped
)

func (s State) String() string {
	switch s {
	case Created:
		return "created"
	case Running:
		return "running"
	case Parked:
		return "parked"
	case Stopped:
		return "stopped"
	}
	return fmt.Sprintf("state %d", int32(s))
}

// Action is a Handler's answer to an event.
type Action struct {
	Finish bool  // leave the loop: this vCPU is done
	Err    error // why, when it is a failure
}

// Continue re-enters the guest.
var Continue = Action{}

// Handler serves the events of a vCPU's exits. It runs on the vCPU's thread.
// It may block (a WAIT hypercall); it must then return when Stopping is closed.
type Handler interface {
	HandleExit(v *VCPU, ev hv.Event) Action
}

// ErrStopped is the Err of a vCPU that was stopped from outside.
var ErrStopped = errors.New("stopped")

// ErrStopTimeout: a vCPU did not leave its loop in time after Stop.
var ErrStopTimeout = errors.New("vCPU did not stop in time")

// Stats are a vCPU's counters; safe to read while it runs.
type Stats struct {
	Exits      atomic.Uint64 // returns from the guest, interruptions included
	Interrupts atomic.Uint64 // of which interrupted (kicks, runtime signals)
	Hypercalls atomic.Uint64
	Parks      atomic.Uint64
	LastKickNs atomic.Int64 // when the last Kick was sent (monotonic ns)
	KickToStop atomic.Int64 // ns from the last Kick to the loop seeing the interruption
}

// VCPU is one vCPU and the goroutine that runs it.
type VCPU struct {
	ID   int
	PCPU int // host CPU the thread is pinned to; -1: not pinned

	b hv.VCPU
	h Handler

	state    atomic.Int32
	want     atomic.Int32 // host CPU to run on from the next dispatch; -1: not pinned
	seatReq  atomic.Pointer[Seat]
	seat     *Seat // the seat held (vCPU thread only)
	stopReq  atomic.Bool
	parkReq  atomic.Bool
	probeReq atomic.Bool
	// OnProbe receives the RIP read for a RequestProbe, on the vCPU's thread.
	OnProbe func(rip uint64)
	// OnPark is called on the vCPU's thread when it has left the guest to
	// park (a RequestPark or ParkSelf seen), before it sleeps: the guest
	// is stopped, so what it published is final until it runs again. It
	// is called with no vCPU lock held (it may take the scheduler's).
	OnPark func()

	tid      atomic.Int32 // the host thread running the vCPU, once started
	guestTID atomic.Int32 // the host thread the guest runs in, once attached

	mu       sync.Mutex
	cond     *sync.Cond
	stopping chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	err      error
	regs     *hv.Regs // registers when the loop ended, for diagnostics

	Stats Stats
}

// New wraps a created backend vCPU. It does not start it.
func New(id, pcpu int, b hv.VCPU, h Handler) *VCPU {
	v := &VCPU{ID: id, PCPU: pcpu, b: b, h: h, stopping: make(chan struct{}), done: make(chan struct{})}
	v.cond = sync.NewCond(&v.mu)
	v.want.Store(int32(pcpu))
	return v
}

// Backend is the backend vCPU. Its Regs, SpecialRegs and CompleteRead may
// be called from a Handler (on the vCPU's thread).
func (v *VCPU) Backend() hv.VCPU { return v.b }

// State is the current state.
func (v *VCPU) State() State { return State(v.state.Load()) }

// Stopping is closed when Stop has been called; blocking handlers select on it.
func (v *VCPU) Stopping() <-chan struct{} { return v.stopping }

// Done is closed when the loop has ended.
func (v *VCPU) Done() <-chan struct{} { return v.done }

// Err is why the loop ended (nil for a clean finish). Valid after Done.
func (v *VCPU) Err() error { return v.err }

// FinalRegs are the registers read on the vCPU thread as the loop ended, or
// nil if they could not be read. Valid after Done.
func (v *VCPU) FinalRegs() *hv.Regs { return v.regs }

// Start runs the loop on a new goroutine locked to its own OS thread.
// started receives nil once the thread is pinned, attached to the backend
// and about to enter the guest, or the error that kept it from getting there.
func (v *VCPU) Start() <-chan error {
	started := make(chan error, 1)
	go v.loop(started)
	return started
}

// Kick interrupts the guest so the loop looks at its requests. Safe from any
// goroutine; a kick before the next Run makes that run return at once.
func (v *VCPU) Kick() {
	v.Stats.LastKickNs.Store(time.Now().UnixNano())
	v.b.RequestExit()
}

// RequestProbe asks the vCPU to leave the guest briefly, read its RIP
// (reported through OnProbe) and go on running: the monitor policy's view
// of what a running vCPU is doing, without any help from the guest.
func (v *VCPU) RequestProbe() {
	v.probeReq.Store(true)
	v.Kick()
}

// RequestPark asks the vCPU to leave the guest and park until Unpark.
func (v *VCPU) RequestPark() {
	v.parkReq.Store(true)
	if s := v.seatReq.Load(); s != nil {
		s.wake() // it may be waiting for its seat: park instead
	}
	v.Kick()
}

// ParkSelf asks the vCPU to park at the top of its loop, without a kick: for
// a handler on the vCPU's own thread (a blocking hypercall), or before Start
// (the vCPU then parks before it first enters the guest).
func (v *VCPU) ParkSelf() { v.parkReq.Store(true) }

// Dispatch lets the vCPU run on host CPU cpu (-1: anywhere): it re-pins its
// thread if needed and leaves the parked state.
func (v *VCPU) Dispatch(cpu int) {
	v.DispatchSeat(cpu, nil)
}

// DispatchSeat is Dispatch for a policy that runs one vCPU per pCPU: the
// vCPU enters the guest only once it holds seat, the pCPU's.
func (v *VCPU) DispatchSeat(cpu int, seat *Seat) {
	v.want.Store(int32(cpu))
	if old := v.seatReq.Swap(seat); old != nil && old != seat {
		old.wake() // it may be waiting there: let it move
	}
	v.Unpark()
}

// Unpark lets a parked (or about to park) vCPU run again.
func (v *VCPU) Unpark() {
	v.mu.Lock()
	v.parkReq.Store(false)
	v.cond.Broadcast()
	v.mu.Unlock()
}

// Stop asks the loop to end and wakes it wherever it is: in the guest, parked,
// or blocked in a handler.
func (v *VCPU) Stop() {
	v.mu.Lock()
	v.stopReq.Store(true)
	v.stopOnce.Do(func() { close(v.stopping) })
	v.cond.Broadcast()
	v.mu.Unlock()
	if s := v.seatReq.Load(); s != nil {
		s.wake()
	}
	v.Kick()
}

// Wait waits up to timeout for the loop to end.
func (v *VCPU) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-v.done:
		return nil
	case <-t.C:
		return fmt.Errorf("vCPU %d (%s): %w after %v", v.ID, v.State(), ErrStopTimeout, timeout)
	}
}

// HostTIDs are the host thread that runs the vCPU, and the one the guest
// runs in: the same thread on kvm, the stub process on ptrace
// (hv.GuestThread). 0 until the vCPU has started.
func (v *VCPU) HostTIDs() (thread, guest int) {
	return int(v.tid.Load()), int(v.guestTID.Load())
}

func (v *VCPU) loop(started chan<- error) {
	// The thread stays locked until the goroutine exits, so the runtime
	// destroys it instead of reusing a thread with our affinity (or, on
	// ptrace, one that traces a process).
	runtime.LockOSThread()
	v.tid.Store(int32(host.Gettid()))
	attached := false
	defer func() {
		v.leaveSeat()
		if attached {
			if r, err := v.b.Regs(); err == nil {
				v.regs = &r
			}
		}
		if err := v.b.Close(); err != nil && v.err == nil {
			v.err = fmt.Errorf("vCPU %d: %w", v.ID, err)
		}
		v.state.Store(int32(Stopped))
		close(v.done)
	}()
	if v.PCPU >= 0 {
		if err := host.PinThread(v.PCPU); err != nil {
			v.err = fmt.Errorf("vCPU %d: %w", v.ID, err)
			started <- v.err
			return
		}
	}
	if err := v.b.Attach(); err != nil {
		v.err = fmt.Errorf("vCPU %d: %w", v.ID, err)
		started <- v.err
		return
	}
	attached = true
	v.guestTID.Store(v.tid.Load())
	if g, ok := v.b.(hv.GuestThread); ok {
		v.guestTID.Store(int32(g.GuestTID()))
	}
	if v.PCPU >= 0 {
		if err := v.b.Pin(v.PCPU); err != nil {
			v.err = fmt.Errorf("vCPU %d: %w", v.ID, err)
			started <- v.err
			return
		}
	}
	v.state.Store(int32(Running))
	started <- nil
	v.err = v.runLoop()
}

func (v *VCPU) runLoop() error {
	for {
		if v.stopReq.Load() {
			return ErrStopped
		}
		if v.parkReq.Load() {
			v.park()
			continue
		}
		if int(v.want.Load()) != v.PCPU {
			if err := v.repin(); err != nil {
				return err
			}
		}
		if want := v.seatReq.Load(); want != v.seat {
			v.leaveSeat()
			if want != nil && !want.take(v) {
				continue // asked to park or stop while waiting
			}
			v.seat = want
		}
		ev, err := v.b.Run()
		if err != nil {
			return err // the backend's errors name the vCPU
		}
		v.Stats.Exits.Add(1)
		if ev.Kind == hv.EventInterrupted {
			v.Stats.Interrupts.Add(1)
			if t := v.Stats.LastKickNs.Load(); t != 0 {
				v.Stats.KickToStop.Store(time.Now().UnixNano() - t)
			}
			if v.probeReq.Swap(false) && v.OnProbe != nil {
				if r, err := v.b.Regs(); err == nil {
					v.OnProbe(r.RIP)
				}
			}
			continue
		}
		if ev.Kind == hv.EventHypercall {
			v.Stats.Hypercalls.Add(1)
		}
		if a := v.h.HandleExit(v, ev); a.Finish {
			return a.Err
		}
	}
}

// repin moves the thread to the CPU the last Dispatch asked for.
func (v *VCPU) repin() error {
	want := int(v.want.Load())
	if want == v.PCPU || want < 0 {
		return nil
	}
	if err := host.PinThread(want); err != nil {
		return fmt.Errorf("vCPU %d: %w", v.ID, err)
	}
	if err := v.b.Pin(want); err != nil {
		return fmt.Errorf("vCPU %d: %w", v.ID, err)
	}
	v.PCPU = want
	return nil
}

// leaveSeat gives up the pCPU seat held, if any.
func (v *VCPU) leaveSeat() {
	if v.seat != nil {
		v.seat.release(v)
		v.seat = nil
	}
}

func (v *VCPU) park() {
	// Before the seat goes: the vCPU that takes it runs on this host CPU
	// and would keep this thread from telling the scheduler for a while.
	if v.OnPark != nil && v.parkReq.Load() && !v.stopReq.Load() {
		v.OnPark()
	}
	v.leaveSeat()
	v.mu.Lock()
	if v.parkReq.Load() && !v.stopReq.Load() {
		v.Stats.Parks.Add(1)
		v.state.Store(int32(Parked))
		for v.parkReq.Load() && !v.stopReq.Load() {
			v.cond.Wait()
		}
		v.state.Store(int32(Running))
	}
	v.mu.Unlock()
}
