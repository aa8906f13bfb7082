package kvm

import (
	"errors"

	"golang.org/x/sys/unix"
)

// retry makes an ioctl until it does not fail with EINTR. A Go program's
// threads take signals at any time (the runtime's SIGURG preemption, our own
// kicks), and an ioctl that finds one pending may give up with EINTR before
// doing anything: KVM_CREATE_VM does (mmu_notifier_register). Every ioctl
// here but KVM_RUN goes through retry; KVM_RUN's EINTR is an exit of its own
// (RunExit).
func retry[T any](f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if !errors.Is(err, unix.EINTR) {
			return v, err
		}
	}
}

// retryErr is retry for an ioctl that returns only an error.
func retryErr(f func() error) error {
	_, err := retry(func() (struct{}, error) { return struct{}{}, f() })
	return err
}
