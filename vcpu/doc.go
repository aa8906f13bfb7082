// Package vcpu runs one vCPU on one locked, pinned OS thread.
//
// The loop is a small state machine:
//
//	           Start                 park requested
//	Created ──────────► Running ◄──────────────────► Parked
//	                      │            Unpark           │
//	                      │ Stop, EXIT, fault, error    │ Stop
//	                      ▼                             ▼
//	                   Stopped ◄────────────────────────┘
//
// Each KVM exit is decoded by Decode, a pure function, into an Event; the
// loop handles interruptions itself and gives every other event to a Handler
// (the VMM), which answers Continue or Finish. A Kick stops a running KVM_RUN
// within tens of microseconds: it sets immediate_exit, then signals the thread
// (see internal/host.KickSignal); the interrupted run comes back as
// EventInterrupted and the loop looks at what was requested.
package vcpu
