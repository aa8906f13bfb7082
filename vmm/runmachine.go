package vmm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lhpvm/lhpvm/internal/hv"
)

// RunMachine builds a VM of each config on backend h, runs them under one
// scheduler as mc says, closes them, and returns the result: what the CLI's
// run and experiment and the end-to-end tests all do, written once.
//
// An error before the run (a VM that cannot be built, a machine its policy
// refuses) comes back as a failed Result with no VMs: a run that never
// started. Cancelling ctx ends a run under way like a failure, with
// context.Cause(ctx) as its error and the vCPUs stopped cleanly (the CLI's
// Ctrl-C). A config without a name is named vmI, by its place.
//
// The Result names h as its backend; BackendReason is the caller's, who
// chose h. Errors closing the VMs after the run are in Result.CloseErr.
func RunMachine(ctx context.Context, h hv.Hypervisor, mc MachineConfig, cfgs ...Config) (res *Result) {
	start := time.Now()
	var vms []*VM
	defer func() {
		var errs []error
		for _, vm := range vms {
			if err := vm.Close(); err != nil {
				errs = append(errs, fmt.Errorf("closing %s: %w", vm.Name(), err))
			}
		}
		res.CloseErr = errors.Join(errs...)
	}()
	for i, cfg := range cfgs {
		if cfg.Name == "" {
			cfg.Name = fmt.Sprintf("vm%d", i)
		}
		vm, err := New(h, cfg)
		if err != nil {
			return notStarted(h, mc, start, fmt.Errorf("%s: %w", cfg.Name, err))
		}
		vms = append(vms, vm)
	}
	m, err := NewMachine(mc, vms...)
	if err != nil {
		return notStarted(h, mc, start, err)
	}
	stop := context.AfterFunc(ctx, func() { m.Abort(context.Cause(ctx)) })
	defer stop()
	res = m.Run()
	res.Backend = h.Name()
	return res
}

// notStarted is the Result of a run that failed before it started.
func notStarted(h hv.Hypervisor, mc MachineConfig, start time.Time, err error) *Result {
	return &Result{Err: err, Error: err.Error(), ElapsedS: time.Since(start).Seconds(), VMs: []*VMResult{},
		Backend: h.Name(), Sched: SchedResult{Policy: mc.Policy, PCPUs: mc.PCPUs}}
}
