package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// commit is set by the Makefile (-ldflags -X main.commit=...), since a
// GOFLAGS=-buildvcs=false environment keeps go build from embedding it.
var commit string

// buildInfo is what the binary knows of where it came from: the commit
// the Makefile stamped, or the VCS revision go build embedded.
func buildInfo() (rev string, modified bool) {
	if commit != "" {
		return commit, false
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", false
	}
	rev = "unknown"
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return rev, modified
}

// version is one line: "lhpvm commit abc123def456 (modified), go1.26.8".
func version() string {
	rev, modified := buildInfo()
	if len(rev) == 40 { // a full hash from the build info
		rev = rev[:12]
	}
	m := ""
	if modified {
		m = " (modified)"
	}
	return fmt.Sprintf("lhpvm commit %s%s, %s", rev, m, runtime.Version())
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the commit lhpvm was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version())
			return err
		},
	}
}
