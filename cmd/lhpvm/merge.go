package main

import (
	"errors"

	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/sweep"
	"github.com/spf13/cobra"
)

func newMergeCmd() *cobra.Command {
	var out string
	var asJSON, force bool
	cmd := &cobra.Command{
		Use:   "merge --out DIR SHARD_DIR...",
		Short: "Merge the --out directories of an experiment's shards into one",
		Long: `Merge the results of 'lhpvm experiment --shard I/N --out SHARD_DIR' runs into the
files one unsharded run writes (results.json, runs.csv, cells.csv, the plots), and
print the table. The shards must be all of 1..N, each once, of the same
matrix, finished, and measured by the same commit and backend on the same
CPU model and pCPUs; every summary is recomputed from the runs. Each cell
keeps the reference of the shard that measured it (ratios only hold within
one machine), and a comparison of two cells measured on different hosts is
not made. --out must be new or empty (or --force), and none of the shards.`,
		Example: `  lhpvm merge --out all shard1 shard2 shard3 shard4`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, dirs []string) error {
			if out == "" {
				return errkind.Usage(errors.New("--out is required: where the merged results go"))
			}
			if err := sweep.CheckMergeOut(out, dirs); err != nil {
				return err
			}
			res, err := sweep.Merge(dirs)
			if err != nil {
				return err
			}
			if err := sweep.PrepareOut(out, force); err != nil {
				return err
			}
			return report(cmd.OutOrStdout(), res, out, asJSON)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the merged results.json, runs.csv, cells.csv and plots into this directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the merged results as JSON")
	cmd.Flags().BoolVar(&force, "force", false, "replace the files of an earlier experiment or merge in --out")
	return cmd
}
