package vcpu

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeVCPU is a scripted backend: Run returns the events sent on its
// channel, or EventInterrupted once RequestExit was called (as KVM's
// immediate_exit does, whether the request came before or during Run). It
// records what the loop asked of it.
type fakeVCPU struct {
	events    chan hv.Event
	exit      chan struct{} // closed and renewed by RequestExit
	mu        sync.Mutex
	pending   bool
	attachErr error
	pinErr    error
	pins      []int
	runs      atomic.Int64
	closed    atomic.Bool
	rip       uint64
}

func newFake() *fakeVCPU {
	return &fakeVCPU{events: make(chan hv.Event, 16), exit: make(chan struct{}), rip: 0x1234}
}

func (f *fakeVCPU) Attach() error { return f.attachErr }

func (f *fakeVCPU) Run() (hv.Event, error) {
	f.runs.Add(1)
	f.mu.Lock()
	if f.pending {
		f.pending = false
		f.mu.Unlock()
		return hv.Event{Kind: hv.EventInterrupted}, nil
	}
	exit := f.exit
	f.mu.Unlock()
	select {
	case ev := <-f.events:
		return ev, nil
	case <-exit:
		f.mu.Lock()
		f.pending = false
		f.mu.Unlock()
		return hv.Event{Kind: hv.EventInterrupted}, nil
	}
}

func (f *fakeVCPU) RequestExit() {
	f.mu.Lock()
	f.pending = true
	close(f.exit)
	f.exit = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeVCPU) CompleteRead(uint64) {}
func (f *fakeVCPU) Pin(cpu int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pins = append(f.pins, cpu)
	return f.pinErr
}
func (f *fakeVCPU) Regs() (hv.Regs, error)               { return hv.Regs{RIP: f.rip}, nil }
func (f *fakeVCPU) SpecialRegs() (hv.SpecialRegs, error) { return hv.SpecialRegs{}, nil }
func (f *fakeVCPU) Close() error                         { f.closed.Store(true); return nil }

var _ hv.VCPU = (*fakeVCPU)(nil)

// handler finishes on an EXIT-like hypercall (Nr 1) and counts the rest.
type handler struct{ seen atomic.Int64 }

func (h *handler) HandleExit(v *VCPU, ev hv.Event) Action {
	h.seen.Add(1)
	if ev.Kind == hv.EventHypercall && ev.Nr == 1 {
		return Action{Finish: true}
	}
	if ev.Kind == hv.EventFault {
		return Action{Finish: true, Err: errors.New("guest fault")}
	}
	return Continue
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	require.Eventually(t, f, 5*time.Second, 100*time.Microsecond, what)
}

// cpu is a host CPU this test may pin to.
func cpu(t *testing.T) int {
	cpus, err := host.AllowedCPUs()
	require.NoError(t, err)
	return cpus[len(cpus)-1]
}

func TestRunsAndFinishes(t *testing.T) {
	f, h := newFake(), &handler{}
	v := New(0, -1, f, h)
	require.NoError(t, <-v.Start())
	f.events <- hv.Event{Kind: hv.EventHypercall, Nr: 2}
	f.events <- hv.Event{Kind: hv.EventHypercall, Nr: 1}
	require.NoError(t, v.Wait(5*time.Second))
	assert.NoError(t, v.Err())
	assert.Equal(t, Stopped, v.State())
	assert.EqualValues(t, 2, h.seen.Load())
	assert.EqualValues(t, 2, v.Stats.Hypercalls.Load())
	assert.True(t, f.closed.Load(), "the backend is closed on the vCPU's thread")
	require.NotNil(t, v.FinalRegs())
	assert.EqualValues(t, 0x1234, v.FinalRegs().RIP)
}

// TestParkBeforeStart: a vCPU parked before Start never enters the guest
// until it is dispatched.
func TestParkBeforeStart(t *testing.T) {
	f, h := newFake(), &handler{}
	v := New(0, -1, f, h)
	v.ParkSelf()
	require.NoError(t, <-v.Start())
	eventually(t, "parked", func() bool { return v.State() == Parked })
	assert.Zero(t, f.runs.Load(), "no Run before the dispatch")
	var parks atomic.Int64
	v.OnPark = func() { parks.Add(1) }
	v.Dispatch(-1)
	eventually(t, "running", func() bool { return f.runs.Load() > 0 })
	v.Stop()
	require.NoError(t, v.Wait(5*time.Second))
	assert.ErrorIs(t, v.Err(), ErrStopped)
	assert.Zero(t, parks.Load(), "OnPark is for parks that follow a run")
}

// TestParkAndOnPark: RequestPark stops a running guest, OnPark is called
// once the vCPU has left it, and Unpark lets it run again.
func TestParkAndOnPark(t *testing.T) {
	f, h := newFake(), &handler{}
	v := New(0, -1, f, h)
	var parks atomic.Int64
	v.OnPark = func() {
		assert.NotEqual(t, Parked, v.State(), "OnPark comes before the vCPU sleeps")
		parks.Add(1)
	}
	require.NoError(t, <-v.Start())
	eventually(t, "in the guest", func() bool { return f.runs.Load() > 0 })
	v.RequestPark()
	eventually(t, "parked", func() bool { return v.State() == Parked })
	assert.EqualValues(t, 1, parks.Load())
	assert.EqualValues(t, 1, v.Stats.Parks.Load())
	v.Unpark()
	f.events <- hv.Event{Kind: hv.EventHypercall, Nr: 1}
	require.NoError(t, v.Wait(5*time.Second), "running again")
	assert.NoError(t, v.Err())
}

// TestParkRacesDispatch: park requests and dispatches from other
// goroutines, interleaved as the scheduler may issue them, never wedge the
// loop: it always ends up running after the last dispatch.
func TestParkRacesDispatch(t *testing.T) {
	f, h := newFake(), &handler{}
	v := New(0, -1, f, h)
	require.NoError(t, <-v.Start())
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				v.RequestPark()
				v.Dispatch(-1)
			}
		}()
	}
	wg.Wait()
	v.Dispatch(-1)
	// It runs: it takes the guest's EXIT and ends.
	f.events <- hv.Event{Kind: hv.EventHypercall, Nr: 1}
	require.NoError(t, v.Wait(5*time.Second), "running after the last dispatch")
	assert.NoError(t, v.Err())
}

// TestStopWhileWaitingForSeat: a vCPU dispatched to a seat another vCPU
// holds waits for it; Stop ends it there, and the seat passes on when its
// holder parks.
func TestStopWhileWaitingForSeat(t *testing.T) {
	seat := NewSeat()
	fa, fb, h := newFake(), newFake(), &handler{}
	a, b := New(0, -1, fa, h), New(1, -1, fb, h)
	a.ParkSelf()
	b.ParkSelf()
	require.NoError(t, <-a.Start())
	require.NoError(t, <-b.Start())
	a.DispatchSeat(-1, seat)
	eventually(t, "a runs", func() bool { return fa.runs.Load() > 0 })
	b.DispatchSeat(-1, seat)
	eventually(t, "b waits for the seat", func() bool { return seat.waiting() == 1 })
	assert.Zero(t, fb.runs.Load(), "b waits for the seat a holds")
	b.Stop()
	require.NoError(t, b.Wait(5*time.Second), "stopped while waiting for its seat")
	assert.ErrorIs(t, b.Err(), ErrStopped)
	assert.Zero(t, fb.runs.Load())

	// The seat passes on: c waits, a parks, c runs.
	fc := newFake()
	c := New(2, -1, fc, h)
	c.ParkSelf()
	require.NoError(t, <-c.Start())
	c.DispatchSeat(-1, seat)
	eventually(t, "c waits for the seat", func() bool { return seat.waiting() == 1 })
	assert.Zero(t, fc.runs.Load())
	a.RequestPark()
	eventually(t, "c runs once a parks", func() bool { return fc.runs.Load() > 0 })
	a.Stop()
	c.Stop()
	require.NoError(t, a.Wait(5*time.Second))
	require.NoError(t, c.Wait(5*time.Second))
}

// TestRepin: a dispatch to another host CPU moves the thread and the
// backend there before the guest runs again.
func TestRepin(t *testing.T) {
	f, h := newFake(), &handler{}
	c := cpu(t)
	v := New(0, -1, f, h)
	require.NoError(t, <-v.Start())
	v.RequestPark()
	eventually(t, "parked", func() bool { return v.State() == Parked })
	v.Dispatch(c)
	f.events <- hv.Event{Kind: hv.EventHypercall, Nr: 2}
	eventually(t, "running again", func() bool { return v.Stats.Hypercalls.Load() == 1 })
	assert.Equal(t, c, v.PCPU)
	f.mu.Lock()
	assert.Equal(t, []int{c}, f.pins)
	f.mu.Unlock()
	v.Stop()
	require.NoError(t, v.Wait(5*time.Second))
}

// TestProbe: a probe interrupts the guest, reads its RIP for OnProbe, and
// the guest runs on.
func TestProbe(t *testing.T) {
	f, h := newFake(), &handler{}
	v := New(0, -1, f, h)
	got := make(chan uint64, 1)
	v.OnProbe = func(rip uint64) { got <- rip }
	require.NoError(t, <-v.Start())
	eventually(t, "in the guest", func() bool { return f.runs.Load() > 0 })
	v.RequestProbe()
	select {
	case rip := <-got:
		assert.EqualValues(t, 0x1234, rip)
	case <-time.After(5 * time.Second):
		t.Fatal("no probe answer")
	}
	eventually(t, "runs on", func() bool { return f.runs.Load() >= 2 })
	assert.Equal(t, Running, v.State())
	v.Stop()
	require.NoError(t, v.Wait(5*time.Second))
}

// TestStartErrors: an attach or pin failure is reported by Start, ends
// the loop, and closes the backend.
func TestStartErrors(t *testing.T) {
	f := newFake()
	f.attachErr = errors.New("no stub")
	v := New(3, -1, f, &handler{})
	err := <-v.Start()
	require.ErrorContains(t, err, "vCPU 3: no stub")
	require.NoError(t, v.Wait(5*time.Second))
	assert.True(t, f.closed.Load())

	f = newFake()
	f.pinErr = errors.New("bad cpu")
	v = New(4, cpu(t), f, &handler{})
	err = <-v.Start()
	require.ErrorContains(t, err, "vCPU 4: bad cpu")
	require.NoError(t, v.Wait(5*time.Second))
	assert.Zero(t, f.runs.Load())
}

// TestHandlerError: a Handler's failure ends the loop with its error.
func TestHandlerError(t *testing.T) {
	f := newFake()
	v := New(0, -1, f, &handler{})
	require.NoError(t, <-v.Start())
	f.events <- hv.Event{Kind: hv.EventFault}
	require.NoError(t, v.Wait(5*time.Second))
	assert.EqualError(t, v.Err(), "guest fault")
}
