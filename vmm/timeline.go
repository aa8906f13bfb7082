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
}

// HolderOff is a time a lock spent with a vCPU that did not run: held by
// it (preempted inside its critical section), or handed to it by a FIFO
// release while it was off its pCPU (Handed). It is measured by the lock
// damage times (the guest's published grant, from the moment the vCPU was
// seen out of the guest until it runs again): its running siblings waiting
// for that lock spin through it, the waste slide 8 shows.
type HolderOff struct {
	VM, VCPU int
	Lock     uint32
	From, To time.Duration
	Handed   bool
}

// TimelineSlice is one stay of a vCPU on a pCPU, clipped to the window.
type TimelineSlice struct {
	PCPU, VM, VCPU int
	Start, End     time.Duration
	Why            sched.EndReason
	// Acquired is how many locks it took in the stay; WaitingFor the lock
	// it was waiting for as it left (-1: none).
	Acquired   uint64
	WaitingFor int
}

// TimelineMark is an LHP or LWP preemption.
type TimelineMark struct {
	PCPU int
	At   time.Duration
	Kind sched.MarkKind // sched.MarkLHP or sched.MarkLWP
}

func (t *Timeline) init(m *Machine) {
	t.Policy = m.cfg.Policy
	t.PCPUs, t.VMs = nil, nil
	for _, p := range m.state.PCPUs {
		t.PCPUs = append(t.PCPUs, p.CPU)
	}
	for _, vm := range m.vms {
		t.VMs = append(t.VMs, vm.cfg.Name)
	}
}

func (t *Timeline) record(r sched.Record, acquired uint64) {
	switch r.Kind {
	case sched.RecRan:
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
		if (r.Mark == sched.MarkLHP || r.Mark == sched.MarkLWP) && r.PCPU >= 0 && r.At >= t.From && r.At < t.To && len(t.Marks) < maxTimelineSlices {
			t.Marks = append(t.Marks, TimelineMark{PCPU: r.PCPU, At: r.At, Kind: r.Mark})
		}
	}
}

// holderOff records one measured interval of lock damage.
func (t *Timeline) holderOff(vm, lock int, iv lockDamage, end time.Duration) {
	if end > t.From && iv.since < t.To && len(t.holdersOff) < maxTimelineSlices {
		t.holdersOff = append(t.holdersOff, HolderOff{VM: vm, VCPU: iv.vcpu, Lock: uint32(lock),
			From: max(iv.since, t.From), To: min(end, t.To), Handed: iv.handed})
	}
}

// HoldersOff are the measured times locks spent with vCPUs that did not
// run, within the window.
func (t *Timeline) HoldersOff() []HolderOff { return t.holdersOff }
