package sched

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// EventKind is a change the policy is told about.
type EventKind uint8

const (
	EvRunnable   EventKind = iota // became runnable: started, or woken by a KICK
	EvBlocked                     // entered WAIT
	EvYield                       // YIELD; Target is the vCPU index it names, or -1
	EvExit                        // finished
	EvPreempted                   // the mechanism took it off its pCPU (per the last Plan)
	EvDispatched                  // the mechanism put it on a pCPU (per the last Plan)
	EvProbed                      // a probe asked for in Plan.Probe came back; RIP is set
)

// Event is one change, for Policy.Event.
type Event struct {
	Kind   EventKind
	V      *VCPU
	Target int
	RIP    uint64 // EvProbed
	From   *VCPU  // EvRunnable after a KICK: the kicker, if a vCPU
}

// Assignment puts a vCPU on a pCPU (indexes into State.PCPUs).
type Assignment struct {
	V    *VCPU
	PCPU int
	// SliceEnd is when the policy wants to reconsider this vCPU (0: never).
	SliceEnd time.Duration
}

// Plan is a policy's decision: what runs now. vCPUs not in it are not
// running (runnable ones wait, and count as preempted).
type Plan struct {
	Run []Assignment
	// Next asks to be called again at this time even without events (0: not).
	Next time.Duration
	// YieldRequest lists running vCPUs asked to YIELD at their next release
	// (the delay policy).
	YieldRequest []*VCPU
	// Probe lists running vCPUs whose RIP the policy wants (monitor); each
	// answer arrives later as an EvProbed event. A probe costs the vCPU one
	// exit (tens of microseconds on nested KVM).
	Probe []*VCPU
}

// Policy decides which vCPU runs where. One file per policy; a policy never
// refers to another (combinations wrap one in another, see Compose).
type Policy interface {
	Name() string
	// Admit checks that the machine fits the policy before anything runs.
	Admit(s *State) error
	// Event updates the policy's own queues.
	Event(s *State, ev Event)
	// Decide returns the plan for s.Now.
	Decide(s *State) Plan
	// Exclusive reports whether a pCPU runs at most one vCPU at a time.
	Exclusive() bool
}

// Options are the policy parameters from the command line or a scenario.
type Options struct {
	Slice    time.Duration // time slice
	Skew     time.Duration // relaxed: co-stop threshold
	DelayMax time.Duration // delay: longest extension of a slice
	// BoostKicked (pv): a KICK hands the rest of the kicker's slice to the
	// kicked vCPU.
	BoostKicked bool
}

// Defaults for Options.
const (
	DefaultSlice    = 30 * time.Millisecond
	DefaultSkew     = 3 * time.Millisecond
	DefaultDelayMax = 50 * time.Microsecond
	MinSlice        = 100 * time.Microsecond
	MaxSlice        = time.Second
)

type factory struct {
	doc string
	new func(o Options) Policy
	// wrap makes a modifier (pv, delay) around a base policy.
	wrap func(base Policy, o Options) Policy
}

var registry = map[string]factory{}

// register adds a base policy (called from each policy file's init).
func register(name, doc string, f func(o Options) Policy) {
	registry[name] = factory{doc: doc, new: f}
}

// registerModifier adds a policy that can stand alone (over rr) or wrap a
// base policy: "pv" is "rr+pv", "gang+pv" is pv over gang.
func registerModifier(name, doc string, wrap func(base Policy, o Options) Policy) {
	registry[name] = factory{doc: doc, wrap: wrap}
}

// New builds a policy from a spec such as "rr", "gang+pv" or "balance+pv+delay".
func New(spec string, o Options) (Policy, error) {
	parts := strings.Split(spec, "+")
	var p Policy
	seen := map[string]bool{}
	for i, name := range parts {
		f, ok := registry[name]
		if !ok {
			return nil, fmt.Errorf("unknown scheduling policy %q (have: %s)", name, strings.Join(Names(), ", "))
		}
		if seen[name] {
			return nil, fmt.Errorf("policy %q: %s appears twice", spec, name)
		}
		seen[name] = true
		switch {
		case f.new != nil && i == 0:
			p = f.new(o)
		case f.new != nil:
			return nil, fmt.Errorf("policy %q: %q is a base policy and must come first", spec, name)
		case i == 0:
			p = f.wrap(registry["rr"].new(o), o)
		default:
			p = f.wrap(p, o)
		}
		if i > 0 && parts[0] == "host" {
			return nil, fmt.Errorf("policy %q: host does not gate vCPUs, so %q cannot act on it", spec, name)
		}
	}
	return p, nil
}

// Names lists the registered policies, base ones first.
func Names() []string {
	var base, mods []string
	for n, f := range registry {
		if f.new != nil {
			base = append(base, n)
		} else {
			mods = append(mods, n)
		}
	}
	sort.Strings(base)
	sort.Strings(mods)
	return append(base, mods...)
}

// Doc describes a policy.
func Doc(name string) string { return registry[name].doc }

// IsModifier reports whether name combines with base policies (pv, delay).
func IsModifier(name string) bool { return registry[name].wrap != nil }

// Decides reports whether lhpvm's scheduler decides which vCPU runs on
// which pCPU under p, and so sees every dispatch and preemption: LHP, LWP,
// steal and the lock damage are measured, and a pCPU's track is a
// sequence of vCPUs. Every policy but host, under which Linux decides and
// none of that is seen. (That such a policy also runs one vCPU per pCPU at
// a time, Exclusive, is what makes it so.)
func Decides(p Policy) bool { return p.Exclusive() }

// HasModifier reports whether policy spec has modifier mod: "rr+pv" and
// "pv" have pv, "rr" has not.
func HasModifier(spec, mod string) bool { return slices.Contains(strings.Split(spec, "+"), mod) }

// Queuer is what a base policy offers to the modifiers (pv, delay) so they
// can act on its queues without knowing them. Every base policy except host
// implements it.
type Queuer interface {
	// Boost moves runnable v to the front of its queue and ends the slice of
	// what runs on that pCPU at the latest at until (the next Decide then
	// dispatches v): "KICK wakes and runs the target soon".
	Boost(s *State, v *VCPU, until time.Duration)
	// HandOff gives the rest of running from's slice to runnable to, on
	// from's pCPU; from goes back to its queue. False if not allowed (to is
	// not runnable, or the policy cannot place it there).
	HandOff(s *State, from, to *VCPU) bool
	// Extend moves running v's slice end to until.
	Extend(s *State, v *VCPU, until time.Duration)
	// Expire ends running v's slice now (it yielded).
	Expire(s *State, v *VCPU)
}
