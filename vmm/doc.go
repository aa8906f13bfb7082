// Package vmm is lhpvm's virtual machine monitor: it builds VMs on an
// execution backend (hv.Hypervisor: kvm or ptrace, never named here), runs
// them together under one host scheduler, serves their hypercalls, and
// turns what happened into checked results.
//
// # VM and Machine
//
// A VM (New) is one guest: its RAM (a memfd shared with the backend), the
// loaded image, the boot state every vCPU starts from (page tables, GDT and
// TSS built by the VMM; the image's ELF entry on kvm, its ring-3 entry note
// on ptrace), its backend vCPUs, and the hypercall service for them
// (hypercalls.go). A VM does not run by itself.
//
// A Machine (NewMachine) runs VMs: it lays out the scheduler's state (sched)
// over the pCPUs, admits the policy, gives every vCPU a run loop (vcpu) whose
// exits the VM serves, and is the scheduler's Target (machine.go: dispatch,
// preempt, publish, probe). Machine.Run starts every vCPU parked, lets the
// scheduler dispatch them, watches for the end (every vCPU exited, the
// duration, a failure, a lost wakeup, the watchdog), stops every vCPU, and
// collects and checks the results (result.go: exact counters, the lock
// self-checks, the scheduler's accounting). RunMachine is the whole of it:
// build the VMs, run the machine, close.
//
// Lifecycle: New → NewMachine(vms) → Run (once) → Close every VM. Nothing
// touches a VM after Run returns: every vCPU and every watcher has ended.
//
// # Files
//
//	vm.go          Config, New, Close: one guest
//	layout.go, pagetables.go, cpu.go, elf.go, workload.go
//	               guest memory layout, page tables, GDT/TSS, the image, workloads
//	hypercalls.go  the hypercall service and fault reports (a vCPU's exits)
//	guestmem.go    what the VMM reads and writes in a running guest's memory
//	machine.go     Machine: scheduling VMs together, the run, the watchdog
//	target.go      the Machine as the scheduler's Target
//	runmachine.go  RunMachine: build, run, close
//	result.go      Result: what a run measured, and its checks
//	diagnose.go    where a failed guest was, for the message
//	locks.go       the lock kinds and pvqspin's knobs
//	lockstats.go   the lock statistics and lock events read from the guest
//	damage.go      time a lock spent with a vCPU that did not run
//	trace.go, timeline.go
//	               the scheduler's records as a Perfetto trace and a picture
//
// # Lock order
//
// One lock nests over others: sched.Scheduler.mu. The scheduler calls the
// Machine's Target methods with it held, and they reach the vCPUs
// (Dispatch, RequestPark), taking, one at a time and never two together,
// a vCPU's own lock (vcpu.VCPU.mu: park, unpark, stop), a seat's lock
// (vcpu.Seat.mu) and the backend's kick lock (kvm VCPU.mu, ptrace
// VCPU.sigMu). Each of those is a leaf: released before the next is
// taken (DispatchSeat wakes the seat it leaves, then unparks the vCPU).
//
//	sched.Scheduler.mu → { vcpu.VCPU.mu | vcpu.Seat.mu | the backend's kick lock }
//
// So a vCPU's thread must never call into the scheduler while holding one
// of the leaves: OnPark and OnProbe run with none held, and a blocking
// hypercall (WAIT) takes the scheduler's lock from the handler, which holds
// nothing. The Machine's failMu and a console's mu are leaves too. The
// recorder (trace.go) and the lock damage (damage.go) run under the
// scheduler's lock and take no lock of their own.
package vmm
