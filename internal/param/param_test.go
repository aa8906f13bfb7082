package param

import (
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every knob is whole: a flag, a key, a unit, a doc, and a default in its
// own range; flags and keys are each used once.
func TestTable(t *testing.T) {
	flags, keys := map[string]bool{}, map[string]bool{}
	for _, p := range All() {
		assert.NotEmpty(t, p.Flag)
		assert.NotEmpty(t, p.Key, p.Flag)
		assert.NotEmpty(t, p.Unit, p.Flag)
		assert.NotEmpty(t, p.Doc, p.Flag)
		assert.NotEmpty(t, p.AppliesTo, p.Flag)
		assert.False(t, flags[p.Flag], "flag %s twice", p.Flag)
		assert.False(t, keys[p.Key], "key %s twice", p.Key)
		flags[p.Flag], keys[p.Key] = true, true
		if p.Unit == Time {
			assert.NoError(t, p.CheckD("--"+p.Flag, p.DefaultD, 0, ""), "its default is in range")
		} else if p.Default > 0 {
			assert.NoError(t, p.Check("--"+p.Flag, p.Default), "its default is in range")
		}
	}
	assert.Equal(t, []string{"cs_cycles", "think_cycles", "locks", "spin_threshold", "spin_threshold_head", "pticket_timeout_shift"}, Keys())
}

func TestChecks(t *testing.T) {
	assert.NoError(t, Locks.Check("--locks", 512))
	assert.EqualError(t, Locks.Check("--locks", 0), "--locks 0: must be between 1 and 512 (leave it out for 1)")
	assert.EqualError(t, CSCycles.Check("--cs-cycles", 1<<32+1), "--cs-cycles 4294967297: must be at most 4294967296 (leave it out for 1000)")
	assert.EqualError(t, SpinThresholdHead.Check("x.yaml:3: spin_threshold_head", 0), "x.yaml:3: spin_threshold_head 0: must be at least 1")
	assert.NoError(t, DelayMax.CheckD("--delay-max", time.Millisecond, 30*time.Millisecond, "the slice"))
	assert.EqualError(t, DelayMax.CheckD("--delay-max", time.Second, 30*time.Millisecond, "the slice"),
		"--delay-max 1s: must be between 1µs and the slice (30ms)")
	assert.EqualError(t, Slice.CheckD("--slice", 10*time.Microsecond, 0, ""), "--slice 10µs: must be between 100µs and 1s")
}

// The flags registered from the table carry its name, default and help.
func TestFlags(t *testing.T) {
	fl := pflag.NewFlagSet("run", pflag.ContinueOnError)
	var cs uint64
	var slice time.Duration
	var shift uint32
	var locks int
	CSCycles.Uint64(fl, &cs)
	Slice.Duration(fl, &slice)
	PTicketShift.Uint32(fl, &shift)
	Locks.Int(fl, &locks)
	assert.Equal(t, uint64(1000), cs)
	assert.Equal(t, 30*time.Millisecond, slice)
	assert.Equal(t, uint32(14), shift)
	assert.Equal(t, 1, locks)
	f := fl.Lookup("cs-cycles")
	require.NotNil(t, f)
	assert.Equal(t, "lock workload: critical-section length, in TSC cycles (at most 4294967296)", f.Usage)
	require.NoError(t, fl.Parse([]string{"--slice", "10ms"}))
	assert.Equal(t, 10*time.Millisecond, slice)
}
