package main

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestConsoleStalls(t *testing.T) {
	for _, l := range []string{
		"[  123.456789] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
		"[   88.000001] rcu: INFO: rcu_sched self-detected stall on CPU",
		"[   70.1] watchdog: BUG: soft lockup - CPU#0 stuck for 49s! [tests.test:312]",
		"[   70.1] NMI watchdog: Watchdog detected hard LOCKUP on cpu 1",
		"[  242.9] INFO: task tests.test:301 blocked for more than 120 seconds.",
		"[    9.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000",
		"[   12.3] BUG: kernel NULL pointer dereference, address: 0000000000000008",
	} {
		var called atomic.Int32
		c := &console{onStall: func() { called.Add(1) }}
		c.line("[    0.5] Nested Paging enabled")
		c.line(l)
		c.line(l) // only the first stall counts
		stall, _, tail := c.state()
		assert.Equal(t, l, stall)
		assert.Eventually(t, func() bool { return called.Load() == 1 }, time.Second, time.Millisecond, l)
		assert.Len(t, tail, 3)
	}
}

func TestConsoleQuiet(t *testing.T) {
	var log strings.Builder
	c := &console{log: &log, onStall: func() { t.Error("no stall here") }}
	var in strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&in, "[ %d.0] kvm_amd: line %d\r\n", i, i)
	}
	in.WriteString("[ 5.0] WARNING: CPU: 1 PID: 300 at arch/x86/kvm/x86.c:10795 kvm_arch_vcpu_ioctl_run+0x1/0x2 [kvm]\n")
	c.scan(strings.NewReader(in.String()))
	stall, warnings, tail := c.state()
	assert.Empty(t, stall)
	assert.Len(t, warnings, 1, "a kernel WARN is kept, and is not a stall")
	assert.Len(t, tail, tailLines)
	assert.Equal(t, "[ 99.0] kvm_amd: line 99", tail[len(tail)-2], "carriage returns dropped")
	assert.Equal(t, 101, strings.Count(log.String(), "\n"))
}

func TestJobOutput(t *testing.T) {
	var w strings.Builder
	j := &jobOutput{mode: "test", code: -1}
	j.copy(strings.NewReader("lhpvm-runner: 6.1.0, 2 CPUs: /dev/kvm ready\n{\"Action\":\"pass\"}\r\nlhpvm-runner: exit 3\n"), &w)
	assert.Equal(t, 3, j.code)
	assert.Equal(t, "{\"Action\":\"pass\"}\n", w.String(), "the runner's own lines go to stderr")
	assert.Equal(t, []string{`{"Action":"pass"}`}, j.tail)

	j = &jobOutput{mode: "bench", code: -1}
	w.Reset()
	j.copy(strings.NewReader("BenchmarkHypercall/kvm-2 \t5\t100 ns/op\n"), &w)
	assert.Equal(t, -1, j.code, "no status: the runner died")
	assert.Contains(t, w.String(), "functional, not a performance figure")
}

func TestHeartbeat(t *testing.T) {
	c := &console{}
	assert.Zero(t, c.silentFor(), "no beat yet: the runner is booting")
	c.line("lhpvm-runner: alive 12.34")
	assert.Less(t, c.silentFor(), time.Minute)
	_, _, tail := c.state()
	assert.Empty(t, tail, "heartbeats are not kept")
}
