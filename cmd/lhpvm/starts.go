package main

import (
	"fmt"

	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/sweep"
	"github.com/spf13/cobra"
)

func newStartsCmd() *cobra.Command {
	var minRuns int
	var plot string
	cmd := &cobra.Command{
		Use:   "starts DIR",
		Short: "Show how each run's start decided it, from an experiment's --out",
		Long: `Read an experiment's results.json and print, for every cell with at least
--min-runs good runs, its steady-state throughput against its whole-run
throughput (the start transient included), and for each start condition the
lab draws per run (which vCPUs share a pCPU's queue, which vCPU runs first,
how far apart the pCPUs' slices end) how much of the spread between runs it
explains: η², the share of the variance of log throughput between the runs
grouped by it. docs/measurements.md was made with it.`,
		Example: `  lhpvm experiment --locks ticket,pticket --policies rr --sizes 4 --repeat 50 --out study
  lhpvm starts study`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if minRuns < 2 {
				return errkind.Usagef("--min-runs %d: at least 2", minRuns)
			}
			res, err := sweep.ReadResults(args[0])
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), sweep.StartReport(res, minRuns))
			if plot != "" {
				if err := sweep.StartPlot(res, minRuns, plot); err != nil {
					return errkind.IO(plot, fmt.Errorf("--plot %s: %w", plot, err))
				}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&minRuns, "min-runs", 10, "leave out cells with fewer good runs")
	cmd.Flags().StringVar(&plot, "plot", "", "also draw every run's whole-run and steady-state throughput, per cell, into this file (.svg or .png)")
	return cmd
}
