package vcpu

import (
	"sync"

	"github.com/lhpvm/lhpvm/internal/host"
)

// Seat is one physical CPU's right to run a vCPU. Under a policy that runs
// one vCPU per pCPU, a dispatched vCPU takes the seat before entering the
// guest and gives it back when it parks. The scheduler preempts the old vCPU
// and dispatches the new one at the same moment; without the seat both
// threads would share the CPU until the old one's kick lands, and Linux may
// run the newcomer first, leaving the old one unable to park until its next
// turn: milliseconds per switch instead of tens of microseconds. Waiting for
// the seat blocks (it does not spin), so the old thread gets the CPU it
// needs to leave.
type Seat struct {
	mu     sync.Mutex
	cond   sync.Cond
	holder *VCPU
	// sleepers counts the vCPUs asleep waiting for it (in take's cond
	// wait): what a test waits for to know a vCPU is waiting, not running.
	sleepers int
}

// waiting is how many vCPUs are asleep waiting for the seat.
func (s *Seat) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sleepers
}

// NewSeat makes a free seat.
func NewSeat() *Seat {
	s := &Seat{}
	s.cond.L = &s.mu
	return s
}

// seatYields bounds how many times take gives its CPU to the previous
// occupant (pinned to the same CPU, about to park) before sleeping.
const seatYields = 64

// take waits until the seat is free (or v's stop is requested) and takes it.
// It first yields the CPU a few times: the previous occupant shares it and
// needs only a few microseconds to park, and a sleep here would cost the
// incoming thread a second wake-up through the Go scheduler.
func (s *Seat) take(v *VCPU) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < seatYields && s.holder != nil && s.holder != v; i++ {
		if v.stopReq.Load() || v.parkReq.Load() || v.seatReq.Load() != s {
			return false
		}
		s.mu.Unlock()
		host.Yield()
		s.mu.Lock()
	}
	for s.holder != nil && s.holder != v {
		if v.stopReq.Load() || v.parkReq.Load() || v.seatReq.Load() != s {
			return false
		}
		s.sleepers++
		s.cond.Wait()
		s.sleepers--
	}
	s.holder = v
	return true
}

// release gives the seat up if v holds it.
func (s *Seat) release(v *VCPU) {
	s.mu.Lock()
	if s.holder == v {
		s.holder = nil
		s.cond.Broadcast()
	}
	s.mu.Unlock()
}

// wake lets waiters re-check their requests (a stop or a new park request).
func (s *Seat) wake() {
	s.mu.Lock()
	s.cond.Broadcast()
	s.mu.Unlock()
}
