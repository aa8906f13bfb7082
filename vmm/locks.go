package vmm

import (
	"fmt"
	"strings"

	"github.com/lhpvm/lhpvm/hypercall"
)

// LockKind is a spinlock of the guest's lock library.
type LockKind struct {
	Name string
	ID   uint32
	Doc  string
	PV   bool // has a WAIT/KICK slow path
	// Threshold: spins a threshold (--spin-threshold) before its slow path.
	Threshold bool
	Test      bool // for tests only
}

var lockKinds = []LockKind{
	{Name: "tas", ID: hypercall.LockTAS, Doc: "test-and-set (xchg) with pause"},
	{Name: "ttas", ID: hypercall.LockTTAS, Doc: "test-and-test-and-set with bounded exponential backoff"},
	{Name: "ticket", ID: hypercall.LockTicket, Doc: "FIFO ticket lock"},
	{Name: "mcs", ID: hypercall.LockMCS, Doc: "MCS queue lock"},
	{Name: "pvticket", ID: hypercall.LockPVTicket, Doc: "ticket lock, WAIT after a spin threshold, KICK by the releaser", PV: true, Threshold: true},
	{Name: "qspinlock", ID: hypercall.LockQSpin, Doc: "Linux's native queued spinlock: locked byte, pending bit, MCS queue"},
	{Name: "pvqspin", ID: hypercall.LockPVQSpin, Doc: "Linux's pv-qspinlock: lock stealing, WAIT in the queue and at its head, unlock KICK (--pv-* knobs)", PV: true, Threshold: true},
	{Name: "virt", ID: hypercall.LockVirt, Doc: "Linux's virt_spin_lock: test-and-set on the qspinlock word (a KVM guest without PV_UNHALT)"},
	{Name: "spinyield", ID: hypercall.LockSpinYield, Doc: "spin a threshold, then YIELD to the holder", Threshold: true},
	{Name: "pticket", ID: hypercall.LockPTicket, Doc: "preemptable ticket lock (Ouyang & Lange 2013)"},
	{Name: "broken", ID: hypercall.LockBroken, Doc: "no mutual exclusion: the self-check must catch it", Test: true},
}

// LookupLock finds a lock kind by name.
func LookupLock(name string) (LockKind, error) {
	for _, k := range lockKinds {
		if k.Name == name {
			return k, nil
		}
	}
	return LockKind{}, fmt.Errorf("unknown lock %q (have: %s)", name, strings.Join(LockNames(false), ", "))
}

// LockNames lists the lock kinds, test-only ones if asked.
func LockNames(withTest bool) []string {
	var names []string
	for _, k := range lockKinds {
		if withTest || !k.Test {
			names = append(names, k.Name)
		}
	}
	return names
}

// ThresholdLocks names the locks that spin a threshold, for messages.
func ThresholdLocks() string { return lockNamesWhere(func(k LockKind) bool { return k.Threshold }) }

// PVLocks names the locks with a WAIT/KICK slow path, for messages.
func PVLocks() string { return lockNamesWhere(func(k LockKind) bool { return k.PV }) }

func lockNamesWhere(f func(LockKind) bool) string {
	var n []string
	for _, k := range lockKinds {
		if f(k) {
			n = append(n, k.Name)
		}
	}
	return strings.Join(n, ", ")
}

// LockKinds lists all lock kinds.
func LockKinds() []LockKind { return append([]LockKind(nil), lockKinds...) }

func lockName(id uint32) string {
	for _, k := range lockKinds {
		if k.ID == id {
			return k.Name
		}
	}
	return fmt.Sprintf("lock kind %d", id)
}

// DefaultSpinThreshold is the pv slow-path threshold, in spins (Linux's
// SPIN_THRESHOLD).
const DefaultSpinThreshold = 1 << 15

// MaxWorkCycles bounds a lock VM's critical section and its work outside
// the lock, in TSC cycles: 2^32, about 1.4 s at 3 GHz, longer than the
// longest slice (sched.MaxSlice), so every regime a slice can make is in
// range, while a 2^64 - 1 that would spin past any watchdog is refused.
const MaxWorkCycles = 1 << 32

// PVKnobs are pvqspin's mechanisms, each switchable for the ablation
// (hypercall.PV* values; the zero value is Linux's pv-qspinlock), and its
// queue head's spin threshold (0: the spin threshold).
type PVKnobs struct {
	Steal, Pending, PrevCheck, Kick uint32
	SpinThresholdHead               uint64
}

// PVKnob is one of pvqspin's mechanisms as the command line (--pv-steal)
// and scenarios (pv_steal) name it.
type PVKnob struct {
	Flag, Key string
	// Values by knob value: Values[hypercall.PVStealOff] is "off";
	// Values[0] is the default.
	Values []string
	Doc    string
	field  func(*PVKnobs) *uint32
}

var pvKnobs = []PVKnob{
	{Flag: "pv-steal", Key: "pv_steal", Values: []string{"hybrid", "off", "once"},
		Doc:   "pvqspin: lock stealing - hybrid (while the lock is free and pending clear, Linux's), off (strict queue order), once (one attempt, Linux 4.5-4.14)",
		field: func(p *PVKnobs) *uint32 { return &p.Steal }},
	{Flag: "pv-pending", Key: "pv_pending", Values: []string{"on", "off"},
		Doc:   "pvqspin: the queue head sets the pending bit while it spins, which stops stealers",
		field: func(p *PVKnobs) *uint32 { return &p.Pending }},
	{Flag: "pv-prev-check", Key: "pv_prev_check", Values: []string{"node", "off", "preempted"},
		Doc:   "pvqspin: every 256 spins a queued waiter checks its predecessor - node (its node state, Linux's), off, preempted (the host's preempted flag of its vCPU) - and WAITs early if it does not run",
		field: func(p *PVKnobs) *uint32 { return &p.PrevCheck }},
	{Flag: "pv-kick", Key: "pv_kick", Values: []string{"deferred", "immediate"},
		Doc:   "pvqspin: a halted new queue head is kicked by the holder's unlock (deferred, Linux's pv_kick_node) or at once (immediate)",
		field: func(p *PVKnobs) *uint32 { return &p.Kick }},
}

// PVKnobList lists pvqspin's switchable mechanisms.
func PVKnobList() []PVKnob { return append([]PVKnob(nil), pvKnobs...) }

// Parse reads a value of the knob.
func (k PVKnob) Parse(s string) (uint32, error) {
	for i, v := range k.Values {
		if v == s {
			return uint32(i), nil
		}
	}
	return 0, fmt.Errorf("%q: must be %s", s, strings.Join(k.Values, ", "))
}

// Get is the knob's value in p.
func (k PVKnob) Get(p PVKnobs) uint32 { return *k.field(&p) }

// Set sets the knob in p.
func (k PVKnob) Set(p *PVKnobs, v uint32) { *k.field(p) = v }

// Name is the name of the knob's value in p.
func (k PVKnob) Name(p PVKnobs) string {
	if v := k.Get(p); int(v) < len(k.Values) {
		return k.Values[v]
	}
	return fmt.Sprintf("%d", k.Get(p))
}

// IsDefault reports whether p is Linux's pv-qspinlock.
func (p PVKnobs) IsDefault() bool { return p == PVKnobs{} }
