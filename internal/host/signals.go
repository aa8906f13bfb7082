package host

import (
	"os"
	"syscall"
)

// StopSignals are the signals that ask lhpvm to stop: Ctrl-C, and what a
// job scheduler (Slurm, Kubernetes, systemd) sends before it kills.
var StopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}
