// Package sched is the host scheduler: it decides which vCPU runs on which
// physical CPU and when it is preempted, so that lock holder preemption
// appears on demand and each known answer to it can be switched on.
//
// The split keeps decisions apart from the threads that carry them out:
//
//   - State holds the pCPUs, the vCPUs (status, placement, slices) and the
//     accounting. It knows nothing of KVM.
//   - A Policy (one file each) sees events and the State and returns a Plan:
//     which vCPU runs on which pCPU now, and when to ask again. It keeps
//     its own queues, and some policies write State besides: the run
//     queues (queues.go) place vCPUs and set their slice ends, monitor
//     marks a vCPU it probed. What a policy does not do is touch a thread
//     or read a clock: everything it decides comes from the events and the
//     State, so policies are unit-tested with a fake clock and no vCPU
//     threads.
//   - Scheduler is the thin mechanism: it serialises events from vCPU threads
//     (WAIT, KICK, YIELD, EXIT hypercalls) and slice deadlines, asks the
//     policy, and applies the difference through a Target (vmm implements it
//     over real vCPU threads: dispatch = pin + unpark, preempt = kick + park).
//
// vcpu and sched never import each other; vmm connects them.
package sched
