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
// The guest runs through an hv.VCPU (internal/kvm or internal/ptrace; this
// package names neither), whose Run returns each exit already decoded into
// an hv.Event by a pure, table-tested function of the backend. The loop
// handles interruptions itself and gives every other event to a Handler (the
// VMM), which answers Continue or Finish. A Kick stops a running guest within
// tens of microseconds through hv.VCPU.RequestExit (KVM: immediate_exit and a
// signal to the thread; ptrace: a pending flag and a signal to the stub); the
// interrupted run comes back as EventInterrupted and the loop looks at what
// was requested.
package vcpu
