package trace

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// JoinHost keeps the lhpvm trace, adds the host's lines as one JSON string
// (no \u escapes: "==>" stays), trims Linux 6.x's fifth flag, adds a clock
// sync marker, and refuses what cannot share the run's timeline.
func TestJoinHost(t *testing.T) {
	lt := `{"displayTimeUnit":"ms","traceEvents":[
{"name":"running","ph":"X","pid":2,"tid":1,"ts":1000000,"dur":500000}
],"otherData":{"clock":"monotonic"}}`
	host := "# tracer: nop\n" +
		"  lhpvm-stub-42    [001] d..2. 1.200000: sched_switch: prev_comm=lhpvm-stub prev_pid=42 prev_prio=120 prev_state=R ==> next_comm=x next_pid=7 next_prio=120\n" +
		"  x-7    [001] d..2 9.000000: sched_switch: prev_comm=x prev_pid=7 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120\n"
	b, err := JoinHost([]byte(lt), []byte(host))
	require.NoError(t, err)
	var got struct {
		TraceEvents []map[string]any `json:"traceEvents"`
		OtherData   map[string]any   `json:"otherData"`
		System      string           `json:"systemTraceEvents"`
	}
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Len(t, got.TraceEvents, 1)
	assert.Equal(t, "monotonic", got.OtherData["clock"])
	assert.Contains(t, string(b), "==> next_comm=x", "no \\u escapes")
	assert.Contains(t, got.System, "[001] d..2 1.200000: sched_switch", "the fifth flag trimmed")
	assert.Contains(t, got.System, "[001] d..2 9.000000: sched_switch", "four flags kept")
	assert.Contains(t, got.System, "1.000000: tracing_mark_write: trace_event_clock_sync: parent_ts=1.000000")
	assert.True(t, strings.HasPrefix(got.System, "# tracer: nop\n"))

	for want, c := range map[string][2]string{
		"record it with lhpvm run --trace-clock monotonic": {strings.Replace(lt, "monotonic", "run", 1), host},
		"no ftrace event line":                             {lt, "# tracer: nop\nnothing\n"},
		"none of the host trace's 1 events":                {lt, "  x-7    [001] d..2 50.000000: sched_switch: a\n"},
		"not an lhpvm trace":                               {"[1,2]", host},
		"already has a host trace":                         {string(b), host},
	} {
		_, err := JoinHost([]byte(c[0]), []byte(c[1]))
		require.Error(t, err, want)
		assert.Contains(t, err.Error(), want)
	}
}
