// Package kvm is the only place that talks to /dev/kvm: typed handles for the
// three kinds of file descriptor (System, VM, VCPU), guest memory, and the
// KVM_RUN path. Struct mirrors and most ioctl wrappers come from gokvm's kvm
// package; KVM_RUN is issued here so that an interrupted run (EINTR from a
// signal or immediate_exit) is reported as ExitInterrupted instead of being
// swallowed, which is what lets the VMM tell a stop from a real exit.
//
// Every error names the ioctl that failed and wraps the errno, so
// errors.Is(err, unix.EINTR) works. A missing /dev/kvm is ErrNoKVM.
package kvm
