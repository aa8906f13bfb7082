package runconfig

import (
	"fmt"

	"github.com/lhpvm/lhpvm/internal/scenario"
)

// where names the source of each value in messages: the flag, or the
// scenario file, line and key it came from.
type where struct {
	changed func(string) bool
	sc      *scenario.Scenario // with file != "": read from a file
	file    string
	fileVMs int // the VMs the file has (a --corunner VM follows them)
}

// machine names a machine-level value: the flag when given (it overrides
// the scenario) or when there is no scenario, else the scenario's key.
func (w where) machine(flag, key string) string {
	if w.file == "" || w.changed(flag) || !w.sc.Has(key) {
		return "--" + flag
	}
	return w.file + ": " + w.sc.At(key)
}

// vm names a value of VM i: the flag of a flag-built run (or of the
// corunner), else the scenario's key, "(default)" when the file leaves it
// out.
func (w where) vm(i int, flag, key string) string {
	if w.file == "" || i >= w.fileVMs {
		return "--" + flag
	}
	k := fmt.Sprintf("vms[%d].%s", i, key)
	if !w.sc.Has(k) {
		return fmt.Sprintf("%s: vm %s: %s (default)", w.file, w.sc.VMs[i].Name, key)
	}
	return w.file + ": " + w.sc.At(k)
}
