package vmm

import (
	"time"

	"github.com/lhpvm/lhpvm/sched"
)

// maxTimelineSlices bounds what a timeline keeps, whatever its window.
const maxTimelineSlices = 200_000

// Timeline collects, for a picture, who held each pCPU over a window of a
// run: the slides' timelines drawn from a real run (internal/figures draws
// it). Set the window, give it to MachineConfig.Timeline, read it after Run.
type Timeline struct {
	From, To time.Duration // the window, on the scheduler's clock

	// Filled by the run.
	PCPUs  []int    // host CPU of each pCPU row
	VMs    []string // VM names, for the legend
	Policy string
	Slices []TimelineSlice
	Marks  []TimelineMark
	Cut    bool // maxTimelineSlices reached

	holdersOff []HolderOff
	open       map[int]HolderOff // by vCPU index: preempted holding, not yet back
}

// HolderOff is a time its lock's holder spent preempted (from the LHP
// preemption until it ran again): its running siblings waiting for that
// lock spin through it, the waste slide 8 shows.
type HolderOff struct {
	VM, VCPU int
	Lock     uint32
	From, To time.Duration
}

// TimelineSlice is one stay of a vCPU on a pCPU, clipped to the window.
type TimelineSlice struct {
	PCPU, VM, VCPU int
	Start, End     time.Duration
	Why            string
	// Acquired is how many locks it took in the stay; WaitingFor the lock
	// it was waiting for as it left (-1: none).
	Acquired   uint64
	WaitingFor int
}

// TimelineMark is an LHP or LWP preemption.
type TimelineMark struct {
	PCPU int
	At   time.Duration
	Kind string // "LHP", "LWP"
}

func (t *Timeline) init(m *Machine) {
	t.Policy = m.cfg.Policy
	t.PCPUs, t.VMs = nil, nil
	for _, p := range m.st.PCPUs {
		t.PCPUs = append(t.PCPUs, p.CPU)
	}
	for _, vm := range m.vms {
		t.VMs = append(t.VMs, vm.cfg.Name)
	}
}

func (t *Timeline) record(r sched.Record, acquired uint64) {
	switch r.Kind {
	case sched.RecRan:
		// The holder is back (the slice its LHP preemption ended is
		// recorded right after the mark, and does not count).
		if h, ok := t.open[r.V.Index]; ok && r.Start >= h.From {
			h.To = r.Start
			delete(t.open, r.V.Index)
			if h.To > t.From && h.From < t.To {
				t.holdersOff = append(t.holdersOff, h)
			}
		}
		if r.At <= t.From || r.Start >= t.To || r.PCPU < 0 {
			return
		}
		if len(t.Slices) >= maxTimelineSlices {
			t.Cut = true
			return
		}
		waiting := -1
		if r.Hints.Waiting {
			waiting = int(r.Hints.LockID)
		}
		t.Slices = append(t.Slices, TimelineSlice{PCPU: r.PCPU, VM: r.V.VM, VCPU: r.V.ID,
			Start: max(r.Start, t.From), End: min(r.At, t.To), Why: r.Why, Acquired: acquired, WaitingFor: waiting})
	case sched.RecMark:
		if r.Why == "LHP" && r.PCPU >= 0 && r.Hints.Holding {
			if t.open == nil {
				t.open = map[int]HolderOff{}
			}
			t.open[r.V.Index] = HolderOff{VM: r.V.VM, VCPU: r.V.ID, Lock: r.Hints.LockID, From: r.At}
		}
		if (r.Why == "LHP" || r.Why == "LWP") && r.PCPU >= 0 && r.At >= t.From && r.At < t.To && len(t.Marks) < maxTimelineSlices {
			t.Marks = append(t.Marks, TimelineMark{PCPU: r.PCPU, At: r.At, Kind: r.Why})
		}
	}
}

// HoldersOff are the times lock holders spent preempted within the window
// (one still off when the run ended is off until the window's end).
func (t *Timeline) HoldersOff() []HolderOff {
	out := append([]HolderOff(nil), t.holdersOff...)
	for _, h := range t.open {
		if h.From < t.To {
			h.To = t.To
			out = append(out, h)
		}
	}
	return out
}
