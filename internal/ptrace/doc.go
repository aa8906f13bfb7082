// Package ptrace is lhpvm's backend for hosts without /dev/kvm: it runs the
// same guest image's ring-3 code natively in one stub process per vCPU, as
// gVisor's ptrace platform runs its sandbox, and turns what the guest does
// into the same hv.Events KVM's exits become.
//
//   - Guest RAM is one memfd (host.Memory), mapped by the VMM and by every
//     stub at GPA == VA from 0x1000; the doorbell page is never mapped in a
//     stub, so a hypercall is a SIGSEGV at 0xd0000000 that the tracer decodes
//     like KVM decodes MMIO (decode.go: x86asm reads the store; RIP advances
//     by its length).
//   - The stub (stub/stub.c: freestanding C, linked at 1 TiB, embedded and
//     started from a memfd) maps RAM, closes every fd, sets no_new_privs and
//     PDEATHSIG, and installs a seccomp filter that traps every system call
//     before it stops for its tracer. A guest syscall is a SIGSYS: reported,
//     never performed.
//   - Each stub is traced by its vCPU's locked OS thread, pinned with it to
//     the same host CPU (a stop and resume across CPUs costs several times
//     as much). RequestExit is a pending flag and a signal to the stub
//     (the same idea as KVM's immediate_exit, and gVisor's interrupt
//     forwarder); every ptrace request comes from the tracer thread.
//   - Faults are the host's signals mapped back to vectors: SIGSEGV
//     SI_KERNEL is #GP, MAPERR/ACCERR #PF (CR2 = si_addr), SIGILL #UD,
//     SIGFPE #DE, SIGTRAP #BP/#DB, SIGBUS #AC/#SS.
//
// With internal/kvm and internal/host it is the only code with syscalls and
// unsafe (ptrace_unsafe.go).
package ptrace
