package trace

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type file struct {
	TraceEvents []struct {
		Name string         `json:"name"`
		Cat  string         `json:"cat"`
		Ph   string         `json:"ph"`
		Pid  int            `json:"pid"`
		Tid  int            `json:"tid"`
		Ts   float64        `json:"ts"`
		Dur  float64        `json:"dur"`
		ID   uint64         `json:"id"`
		S    string         `json:"s"`
		Bp   string         `json:"bp"`
		Args map[string]any `json:"args"`
	} `json:"traceEvents"`
	DisplayTimeUnit string         `json:"displayTimeUnit"`
	OtherData       map[string]any `json:"otherData"`
}

func TestWriter(t *testing.T) {
	var out bytes.Buffer
	w := New(nopCloser{&out}, 0)
	w.ProcessName(1, "pCPUs")
	w.ThreadName(1, 0, "pCPU \"0\"\n")
	w.Complete("vm0/cpu1", "run", 1, 0, 1500*time.Nanosecond, 30*time.Millisecond+7, S("why", "slice end"), N("vcpu", 1))
	w.Instant("LHP", "sched", "terrible", 1, 0, 2*time.Microsecond, N("lock", 0))
	w.Counter("acquisitions", 2, 3*time.Microsecond, N("vm0", 12345))
	w.FlowStart("kick", 7, 1, 0, 4*time.Microsecond)
	w.FlowEnd("kick", 7, 1, 1, 5*time.Microsecond)
	w.Meta(S("backend", "ptrace"))
	require.NoError(t, w.Close())

	var f file
	require.NoError(t, json.Unmarshal(out.Bytes(), &f), out.String())
	require.Len(t, f.TraceEvents, 7)
	assert.Equal(t, "ms", f.DisplayTimeUnit)
	assert.Equal(t, "pCPU \"0\"\n", f.TraceEvents[1].Args["name"], "strings are escaped")
	x := f.TraceEvents[2]
	assert.Equal(t, "X", x.Ph)
	assert.InDelta(t, 1.5, x.Ts, 1e-9, "microseconds with nanoseconds")
	assert.InDelta(t, 30000.007, x.Dur, 1e-9)
	assert.Equal(t, "slice end", x.Args["why"])
	assert.Equal(t, 1.0, x.Args["vcpu"])
	assert.Equal(t, "t", f.TraceEvents[3].S)
	assert.Equal(t, "e", f.TraceEvents[6].Bp)
	assert.Equal(t, uint64(7), f.TraceEvents[6].ID)
	assert.Equal(t, "ptrace", f.OtherData["backend"])
	assert.Equal(t, false, f.OtherData["truncated"])
}

func TestWriterLimit(t *testing.T) {
	var out bytes.Buffer
	w := New(nopCloser{&out}, 10)
	for i := 0; i < 25; i++ {
		w.Instant("x", "", "", 1, 0, time.Duration(i))
	}
	require.NoError(t, w.Close())
	var f file
	require.NoError(t, json.Unmarshal(out.Bytes(), &f))
	assert.Len(t, f.TraceEvents, 10)
	assert.Equal(t, true, f.OtherData["truncated"], "the file says it was cut")
	assert.Equal(t, 15.0, f.OtherData["dropped_events"])
	assert.Equal(t, 10, w.Events())
}

func TestAppendString(t *testing.T) {
	for in, want := range map[string]string{"a": `"a"`, "\x01": `"\u0001"`, "é": `"é"`, "\xff": `"\ufffd"`, `\"`: `"\\\""`} {
		assert.Equal(t, want, string(appendString(nil, in)), in)
		var s string
		assert.NoError(t, json.Unmarshal(appendString(nil, in), &s))
	}
	assert.Equal(t, "-1.500", string(appendMicros(nil, -1500)))
}

func BenchmarkComplete(b *testing.B) {
	w := New(nopCloser{io.Discard}, 1<<62)
	b.ReportAllocs()
	for b.Loop() {
		w.Complete("vm0/cpu1", "run", 1, 0, time.Second, time.Millisecond, S("why", "slice end"), N("vcpu", 1))
	}
}

// TestBackToBackSlicesDoNotOverlap: slices that end exactly where the next
// one on their track starts, read back as a viewer reads them (doubles,
// ts + dur), never overlap, and lose at most a nanosecond. 9632494.82 +
// 54262.63 is 9686757.450000001 in doubles, past a next slice at
// 9686757.45.
func TestBackToBackSlicesDoNotOverlap(t *testing.T) {
	var out bytes.Buffer
	w := New(nopCloser{&out}, 0)
	w.Complete("a", "run", 1, 1, 9632494820, 54262630)
	ts := 9686757450 * time.Nanosecond
	for i := 0; i < 20000; i++ { // a track of slices of varied length
		d := time.Duration(1+(i*7919)%3_000_000) * time.Nanosecond
		w.Complete("x", "run", 1, 1, ts, d)
		ts += d
	}
	require.NoError(t, w.Close())
	var f file
	require.NoError(t, json.Unmarshal(out.Bytes(), &f))
	evs := f.TraceEvents // the track, in order
	for i := 1; i < len(evs); i++ {
		end := evs[i-1].Ts + evs[i-1].Dur
		require.LessOrEqual(t, end, evs[i].Ts, "slice %d ends at %v, past the next one's start %v", i-1, end, evs[i].Ts)
		require.InDelta(t, evs[i].Ts, end, 0.0011, "at most a nanosecond shorter")
	}
	assert.Equal(t, 54262.629, f.TraceEvents[0].Dur, "the example is shaved")
}
