// Command lhpvm runs lock benchmarks in tiny guests, on KVM or on its ptrace
// backend, to measure lock-holder preemption and the scheduling policies
// that fight it.
//
// Exit status: 0 the run succeeded and checked itself; 1 the run failed (a
// guest fault, a failed self-check, a timeout, a backend the host lacks or
// a backend error); 2 a usage error.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// runFailed marks an error as a failed run (exit 1) rather than bad usage.
type runFailed struct{ err error }

func (e runFailed) Error() string { return e.err.Error() }
func (e runFailed) Unwrap() error { return e.err }

func main() {
	root := &cobra.Command{
		Use:   "lhpvm",
		Short: "A mini hypervisor for measuring lock holder preemption",
		Long: `lhpvm boots a tiny x86-64 guest, on /dev/kvm where the host has it and
otherwise on its ptrace backend (the guest's ring-3 code natively in
sandboxed stub processes), runs lock benchmarks in it on overcommitted
virtual CPUs, and checks every run: exact counters, no lost wakeups, a
clean exit. 'lhpvm backends' says what this host has.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(newRunCmd(), newWorkloadsCmd(), newExperimentCmd(), newBackendsCmd(), newVersionCmd(), newMergeCmd())
	err := root.Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "lhpvm:", err)
	var rf runFailed
	if errors.As(err, &rf) {
		os.Exit(1)
	}
	os.Exit(2)
}
