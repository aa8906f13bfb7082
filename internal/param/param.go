// Package param is the table of lhpvm's numeric knobs: for each, its flag
// (run and experiment), its scenario key, its unit, its default and range,
// what it applies to, and a line of doc. The CLI registers its flags from
// it, runconfig checks a value from a flag and from a scenario file by the
// same entry, the sweeps name their flags by it, and the scenario's key
// lists come from it; a time-valued knob says so (Unit), which is what
// scaling a run's times (time dilation) reads.
//
// The domain packages keep their constants (sched.DefaultSlice,
// vmm.DefaultSpinThreshold, hypercall.MaxLocks, …): the table names them,
// once, beside everything else that describes the knob.
package param

import (
	"fmt"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/spf13/pflag"
)

// Unit is what a knob counts.
type Unit string

const (
	Cycles Unit = "TSC cycles"
	Time   Unit = "time"
	Spins  Unit = "spins (PAUSEs)"
	Count  Unit = "count"
	Shift  Unit = "power of two"
)

// Scope says where a knob's scenario key is: in each VM (vms[i].KEY) or
// for the machine (a key such as sched.slice).
type Scope int

const (
	VM Scope = iota
	Machine
)

// Param is one knob. Integer knobs use Default, Min and Max; time-valued
// ones (Unit Time) DefaultD, MinD and MaxD. Max 0: no upper bound.
type Param struct {
	Flag  string
	Key   string
	Scope Scope
	Unit  Unit
	// AppliesTo says, for the doc, what reads it ("lock workload",
	// "pvqspin", "the relaxed policy").
	AppliesTo string
	Doc       string

	Default, Min, Max    uint64
	DefaultD, MinD, MaxD time.Duration
	// Note is added to the help after the range (what 0 or a default
	// means).
	Note string
}

// The knobs.
var (
	CSCycles = &Param{Flag: "cs-cycles", Key: "cs_cycles", Unit: Cycles, AppliesTo: "lock workload",
		Doc: "critical-section length", Default: 1000, Max: vmm.MaxWorkCycles}
	ThinkCycles = &Param{Flag: "think-cycles", Key: "think_cycles", Unit: Cycles, AppliesTo: "lock workload",
		Doc: "work outside the lock per iteration", Default: 2000, Max: vmm.MaxWorkCycles}
	Locks = &Param{Flag: "locks", Key: "locks", Unit: Count, AppliesTo: "lock workload",
		Doc: "number of locks; vCPU i uses lock i mod N", Default: 1, Min: 1, Max: hypercall.MaxLocks}
	SpinThreshold = &Param{Flag: "spin-threshold", Key: "spin_threshold", Unit: Spins, AppliesTo: "pvticket, pvqspin and spinyield",
		Doc: "spins before the slow path", Default: vmm.DefaultSpinThreshold, Min: 1}
	SpinThresholdHead = &Param{Flag: "spin-threshold-head", Key: "spin_threshold_head", Unit: Spins, AppliesTo: "pvqspin",
		Doc: "spins of the queue head before it WAITs", Min: 1, Note: "default: the spin threshold"}
	PTicketShift = &Param{Flag: "pticket-timeout-shift", Key: "pticket_timeout_shift", Unit: Shift, AppliesTo: "pticket",
		Doc: "a waiter times out after (its place in line) << this many spins", Default: hypercall.DefaultPTicketShift,
		Min: 1, Max: hypercall.MaxPTicketShift, Note: "Ouyang & Lange: 14"}

	Slice = &Param{Flag: "slice", Key: "sched.slice", Scope: Machine, Unit: Time, AppliesTo: "our scheduler's policies",
		Doc: "time slice", DefaultD: sched.DefaultSlice, MinD: sched.MinSlice, MaxD: sched.MaxSlice}
	Skew = &Param{Flag: "skew", Key: "sched.skew", Scope: Machine, Unit: Time, AppliesTo: "the relaxed policy",
		Doc: "co-stop the vCPUs ahead when skew passes this", DefaultD: sched.DefaultSkew, MinD: time.Microsecond, MaxD: time.Second}
	DelayMax = &Param{Flag: "delay-max", Key: "sched.delay_max", Scope: Machine, Unit: Time, AppliesTo: "a policy with delay",
		Doc: "longest extension of a slice for a vCPU in a critical section", DefaultD: sched.DefaultDelayMax, MinD: time.Microsecond,
		Note: "at most the slice"}
)

// All lists the knobs.
func All() []*Param {
	return []*Param{CSCycles, ThinkCycles, Locks, SpinThreshold, SpinThresholdHead, PTicketShift, Slice, Skew, DelayMax}
}

// Help is the flag's help line: what it applies to, its doc, its unit and
// range.
func (p *Param) Help() string {
	h := p.AppliesTo + ": " + p.Doc
	if p.Unit == Cycles || p.Unit == Spins {
		h += ", in " + string(p.Unit)
	}
	switch {
	case p.Unit == Time && p.MaxD > 0:
		h += fmt.Sprintf(" (%v to %v)", p.MinD, p.MaxD)
	case p.Unit == Time:
		h += fmt.Sprintf(" (at least %v)", p.MinD)
	case p.Min > 0 && p.Max > 0:
		h += fmt.Sprintf(" (%d to %d)", p.Min, p.Max)
	case p.Max > 0:
		h += fmt.Sprintf(" (at most %d)", p.Max)
	case p.Min > 0:
		h += fmt.Sprintf(" (at least %d)", p.Min)
	}
	if p.Note != "" {
		h += "; " + p.Note
	}
	return h
}

// Uint64 registers the knob as a uint64 flag on fl.
func (p *Param) Uint64(fl *pflag.FlagSet, v *uint64) { fl.Uint64Var(v, p.Flag, p.Default, p.Help()) }

// Uint32 registers the knob as a uint32 flag on fl.
func (p *Param) Uint32(fl *pflag.FlagSet, v *uint32) {
	fl.Uint32Var(v, p.Flag, uint32(p.Default), p.Help())
}

// Int registers the knob as an int flag on fl.
func (p *Param) Int(fl *pflag.FlagSet, v *int) { fl.IntVar(v, p.Flag, int(p.Default), p.Help()) }

// Duration registers the time-valued knob as a duration flag on fl.
func (p *Param) Duration(fl *pflag.FlagSet, v *time.Duration) {
	fl.DurationVar(v, p.Flag, p.DefaultD, p.Help())
}

// Check is the range rule of an integer knob: nil, or why v is out of
// range. name is how the message names the value (the flag, or the
// scenario's file, line and key).
func (p *Param) Check(name string, v uint64) error {
	if v >= p.Min && (p.Max == 0 || v <= p.Max) {
		return nil
	}
	var r string
	switch {
	case p.Min > 0 && p.Max > 0:
		r = fmt.Sprintf("between %d and %d", p.Min, p.Max)
	case p.Max > 0:
		r = fmt.Sprintf("at most %d", p.Max)
	default:
		r = fmt.Sprintf("at least %d", p.Min)
	}
	if p.Default > 0 {
		r += fmt.Sprintf(" (leave it out for %d)", p.Default)
	}
	return fmt.Errorf("%s %d: must be %s", name, v, r)
}

// CheckD is the range rule of a time-valued knob; max, if not 0, is a
// bound that depends on the run (delay-max: the slice), named so.
func (p *Param) CheckD(name string, v time.Duration, max time.Duration, maxName string) error {
	hi, hiText := p.MaxD, p.MaxD.String()
	if max > 0 {
		hi, hiText = max, fmt.Sprintf("%s (%v)", maxName, max)
	}
	switch {
	case hi == 0 && v < p.MinD:
		return fmt.Errorf("%s %v: must be at least %v", name, v, p.MinD)
	case hi > 0 && (v < p.MinD || v > hi):
		return fmt.Errorf("%s %v: must be between %v and %s", name, v, p.MinD, hiText)
	}
	return nil
}

// Keys are the scenario keys of the VM-scoped knobs.
func Keys() []string {
	var k []string
	for _, p := range All() {
		if p.Scope == VM {
			k = append(k, p.Key)
		}
	}
	return k
}
