// Command lhpvm runs lock benchmarks in tiny guests, on KVM or on its ptrace
// backend, to measure lock-holder preemption and the scheduling policies
// that fight it.
//
// Exit status: 0 the run succeeded and checked itself; 1 the run failed (a
// guest fault, a failed self-check, a timeout, a backend the host lacks or
// a backend error) or a file could not be read or written (the message
// names it); 2 a usage error. The libraries say which an error is
// (internal/errkind); main alone maps that to the status.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/spf13/cobra"
)

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
		return errkind.Usagef("%w (see '%s --help')", err, c.CommandPath())
	})
	// Errors before a command runs are cobra's: an unknown command, a
	// stray argument.
	started := false
	root.PersistentPreRun = func(*cobra.Command, []string) { started = true }
	root.AddCommand(newRunCmd(), newWorkloadsCmd(), newExperimentCmd(), newBackendsCmd(), newVersionCmd(), newMergeCmd(), newStartsCmd(), newTraceJoinCmd())
	err := root.Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "lhpvm:", err)
	os.Exit(exitCode(err, started))
}

// exitCode maps an error to the exit status: 2 for bad usage, 1 for a
// failed run, an I/O error, or anything else once a command has started.
func exitCode(err error, started bool) int {
	var usage *errkind.UsageError
	var run *errkind.RunError
	var io *errkind.IOError
	var intr *errkind.InterruptedError
	switch {
	case errors.As(err, &intr):
		return 130
	case errors.As(err, &run), errors.As(err, &io):
		return 1
	case errors.As(err, &usage), !started:
		return 2
	}
	return 1
}
