package main

import (
	"errors"
	"fmt"

	"github.com/lhpvm/lhpvm/internal/atomicfile"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/trace"
	"github.com/spf13/cobra"
)

// traceJoinLimit bounds what trace-join reads of each file.
const traceJoinLimit = 512 << 20

func newTraceJoinCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "trace-join --out FILE LHPVM_TRACE HOST_TRACE",
		Short: "Put a host sched_switch trace beside a run's trace, on one timeline",
		Long: `Join a trace of 'lhpvm run --trace LHPVM_TRACE --trace-clock monotonic' with a host
trace of the same run in ftrace's text (the tracefs trace file, or 'trace-cmd report'
of 'trace-cmd record -C mono -e sched:sched_switch'), recorded in CLOCK_MONOTONIC:
FILE is the lhpvm trace with the host's events as its systemTraceEvents, which
Perfetto (ui.perfetto.dev) and catapult's viewer import as a system trace, the
host CPUs' sched_switch under the vCPU tracks. The vCPU tracks are named after
their host threads (tid; on ptrace the guest's stub pid), as sched_switch names
them. docs/traces.md shows it step by step.`,
		Example: `  lhpvm trace-join --out both.json lhpvm.json host.txt`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errkind.Usage(errors.New("--out is required: where the joined trace goes"))
			}
			lt, err := host.ReadFileLimited(args[0], traceJoinLimit)
			if err != nil {
				return errkind.IO(args[0], err)
			}
			ht, err := host.ReadFileLimited(args[1], traceJoinLimit)
			if err != nil {
				return errkind.IO(args[1], err)
			}
			b, err := trace.JoinHost(lt, ht)
			if err != nil {
				return errkind.Usage(fmt.Errorf("%s + %s: %w", args[0], args[1], err))
			}
			if err := atomicfile.WriteBytes(out, b); err != nil {
				return errkind.IO(out, fmt.Errorf("--out: %w", err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s with the host trace %s on one timeline\n", out, args[0], args[1])
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "the joined trace")
	return cmd
}
