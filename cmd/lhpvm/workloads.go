package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/lhpvm/lhpvm/vmm"
	"github.com/spf13/cobra"
)

func newWorkloadsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "workloads",
		Short: "List the built-in guest's workloads",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "WORKLOAD\tKIND\tWHAT")
			for _, wl := range vmm.Workloads() {
				kind := "benchmark"
				if wl.Test {
					kind = "test"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", wl.Name, kind, wl.Doc)
			}
			return w.Flush()
		},
	}
}
