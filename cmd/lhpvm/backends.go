package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/lhpvm/lhpvm/internal/backend"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/spf13/cobra"
)

func newBackendsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backends",
		Short: "List the execution backends and whether this host can run each",
		Long: `List lhpvm's execution backends, in the order --backend auto tries them,
with whether this host can run each and why not. Each is tried for real:
kvm opens /dev/kvm and creates a VM; ptrace starts a sandboxed stub process.
Then it lists the generated files this build embeds (the guest image and
the ptrace stub), with the hash of the sources each was built from.
Exit status 1 if none is available.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st := backend.Probe()
			out := cmd.OutOrStdout()
			if asJSON {
				type row struct {
					Name      string `json:"name"`
					Available bool   `json:"available"`
					Reason    string `json:"reason"`
					Doc       string `json:"doc"`
					Module    string `json:"module,omitempty"`
				}
				var rows []row
				for _, s := range st {
					rows = append(rows, row{s.Name, s.Available, s.Reason, s.Doc, s.Module})
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rows); err != nil {
					return err
				}
			} else {
				w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				for _, s := range st {
					if s.Available && s.Module != "" {
						fmt.Fprintf(w, "%s\tavailable\t%s (%s)\n", s.Name, s.Doc, s.Module)
					} else if s.Available {
						fmt.Fprintf(w, "%s\tavailable\t%s\n", s.Name, s.Doc)
					} else {
						fmt.Fprintf(w, "%s\tnot available\t%s\n", s.Name, s.Reason)
					}
				}
				w.Flush()
				fmt.Fprintln(out, "this build carries:")
				for _, a := range backend.Carried() {
					if a.Err != nil {
						fmt.Fprintf(out, "  %s: MISSING (%v)\n", a.Name, a.Err)
					} else {
						fmt.Fprintf(out, "  %s: %s, built from sources %.12s\n", a.Name, a.Path, a.Hash)
					}
				}
			}
			for _, s := range st {
				if s.Available {
					return nil
				}
			}
			return errkind.Run(errors.New("no backend is available on this host"))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}
