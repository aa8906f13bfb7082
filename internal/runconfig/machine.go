package runconfig

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/internal/backend"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
)

// Open opens the backend a run asked for (a run failure, with the reason,
// if this host lacks it) and checks that it can run every VM of cfgs (a
// usage error if not: the VM or its image is the user's to fix).
func Open(name string, cfgs []vmm.Config) (*backend.Choice, error) {
	h, err := backend.Open(name)
	if errors.Is(err, backend.ErrUnknown) {
		return nil, errkind.Usagef("--backend: %w", err)
	}
	if err != nil {
		return nil, errkind.Run(err)
	}
	for _, cfg := range cfgs {
		err := vmm.CheckBackend(h, cfg.VCPUs, cfg.Parsed)
		var tm *vmm.TooManyVCPUsError
		switch {
		case errors.As(err, &tm):
			err = fmt.Errorf("vm %s: %d vCPUs: the %s backend allows at most %d per VM on this host", cfg.Name, tm.VCPUs, tm.Backend, tm.Max)
		case err != nil:
			err = fmt.Errorf("--image %s: %w", cfg.ImageName, err)
		}
		if err != nil {
			h.Close()
			return nil, errkind.Usage(err)
		}
	}
	return h, nil
}

// timeline checks --timeline and its window; nil without --timeline.
func timeline(f Flags, mc vmm.MachineConfig) (*vmm.Timeline, error) {
	if f.Timeline == "" {
		if f.changed("timeline-window") {
			return nil, fmt.Errorf("--timeline-window needs --timeline")
		}
		return nil, nil
	}
	if pol, err := sched.New(mc.Policy, mc.Options); err == nil && !sched.Decides(pol) {
		return nil, fmt.Errorf("--timeline: under --sched %s Linux decides who runs where, so there is no timeline to draw; use one of our policies (rr, gang, ...)", mc.Policy)
	}
	tl := &vmm.Timeline{From: 0, To: 20 * mc.Options.Slice}
	if f.TimelineWindow != "" {
		from, to, err := parseWindow(f.TimelineWindow)
		if err != nil {
			return nil, fmt.Errorf("--timeline-window %q: %w", f.TimelineWindow, err)
		}
		tl.From, tl.To = from, to
	}
	return tl, nil
}

// parseWindow reads "0-200ms", "50ms-1s" or "100-300ms" (the unit of the
// end applies to a bare start).
func parseWindow(s string) (from, to time.Duration, err error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("want START-END, e.g. 0-200ms")
	}
	if to, err = time.ParseDuration(hi); err != nil {
		return 0, 0, fmt.Errorf("%q is not a duration", hi)
	}
	if strings.TrimLeft(lo, "0123456789.") == "" && lo != "" {
		lo += strings.TrimLeft(hi, "0123456789.")
	}
	if from, err = time.ParseDuration(lo); err != nil {
		return 0, 0, fmt.Errorf("%q is not a duration", lo)
	}
	if from < 0 || to <= from {
		return 0, 0, fmt.Errorf("the window must start at 0 or later and end after it starts")
	}
	return from, to, nil
}
