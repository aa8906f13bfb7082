package trace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
)

// A host trace beside lhpvm's: the text ftrace writes (the tracefs trace
// file, or trace-cmd report) of the same run, recorded in CLOCK_MONOTONIC,
// goes into the JSON trace's systemTraceEvents, which Perfetto and
// catapult's viewer import as a system trace on the same timeline: the
// host CPUs' sched_switch under lhpvm's vCPU and pCPU tracks.

// ftraceLine is one event line of ftrace's text: "comm-pid [cpu] flags
// seconds.micros: event: ...", the flags and a "(tgid)" optional.
var ftraceLine = regexp.MustCompile(`^\s*.+-\d+\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]\s+(?:\S+\s+)?(\d+\.\d+):\s*[\w:]+:`)

// fiveFlags is the flags column of a Linux 6.x ftrace line, "] d..2. ".
var fiveFlags = regexp.MustCompile(`(\]\s+)([^\s]{4})[^\s](\s+\d+\.\d+:)`)

// JoinHost returns the lhpvm trace lhpvm (written with --trace-clock
// monotonic) with the host's ftrace text host as its systemTraceEvents.
// It refuses a trace in the run's clock, a host text with no event line,
// and one none of whose events falls within the run: recorded in another
// clock than CLOCK_MONOTONIC (trace-cmd record -C mono; the tracefs
// trace_clock mono), or at another time.
func JoinHost(lhpvm, host []byte) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(lhpvm, &top); err != nil {
		return nil, fmt.Errorf("not an lhpvm trace: %w", err)
	}
	var other struct {
		Clock string `json:"clock"`
	}
	var events []struct {
		Ph  string   `json:"ph"`
		Ts  *float64 `json:"ts"`
		Dur float64  `json:"dur"`
	}
	if err := json.Unmarshal(top["otherData"], &other); err != nil || top["traceEvents"] == nil {
		return nil, errors.New("not an lhpvm trace: no traceEvents or otherData")
	}
	if _, ok := top["systemTraceEvents"]; ok {
		return nil, errors.New("the trace already has a host trace (systemTraceEvents)")
	}
	if other.Clock != "monotonic" {
		return nil, fmt.Errorf("the trace's clock is %q: record it with lhpvm run --trace-clock monotonic, the clock the host trace can share", other.Clock)
	}
	if err := json.Unmarshal(top["traceEvents"], &events); err != nil {
		return nil, fmt.Errorf("not an lhpvm trace: %w", err)
	}
	from, to := math.Inf(1), math.Inf(-1) // the run, in seconds
	for _, e := range events {
		if e.Ts != nil {
			from, to = math.Min(from, *e.Ts/1e6), math.Max(to, (*e.Ts+e.Dur)/1e6)
		}
	}
	lines, within := 0, 0
	var text bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(host))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		m := ftraceLine.FindSubmatch(line)
		if m == nil {
			text.Write(line)
			text.WriteByte('\n')
			continue
		}
		// Linux 6.x prints five flag characters ("d..2."); catapult's
		// importer reads four, Perfetto's up to five: the fifth (the
		// migrate-disable depth) is dropped so that both import it.
		text.Write(fiveFlags.ReplaceAll(line, []byte("$1$2$3")))
		text.WriteByte('\n')
		lines++
		if s, err := strconv.ParseFloat(string(m[1]), 64); err == nil && s >= from && s <= to {
			within++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("the host trace: %w", err)
	}
	// Both clocks are CLOCK_MONOTONIC: a clock sync marker as Chrome's
	// systrace writes one (ftrace time = the JSON's time) tells viewers
	// that ask for one (catapult) that they are one timeline.
	fmt.Fprintf(&text, "lhpvm-0 [000] .... %.6f: tracing_mark_write: trace_event_clock_sync: parent_ts=%.6f\n", from, from)
	switch {
	case lines == 0:
		return nil, errors.New("the host trace has no ftrace event line (comm-pid [cpu] seconds: event:)")
	case within == 0:
		return nil, fmt.Errorf("none of the host trace's %d events falls within the run (%.6f-%.6f s of CLOCK_MONOTONIC): record it in that clock (trace-cmd record -C mono, or mono in tracefs's trace_clock) while lhpvm runs", lines, from, to)
	}
	// No \u escapes (Perfetto's reader of this key takes none): "==>" in
	// every sched_switch line stays as it is.
	var sys bytes.Buffer
	enc := json.NewEncoder(&sys)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(text.String()); err != nil {
		return nil, err
	}
	top["systemTraceEvents"] = bytes.TrimSpace(sys.Bytes())
	// traceEvents first: a streaming reader meets the events before the
	// rest, as lhpvm writes them.
	var b bytes.Buffer
	b.WriteString(`{"traceEvents":`)
	b.Write(top["traceEvents"])
	for _, k := range []string{"displayTimeUnit", "otherData", "systemTraceEvents"} {
		if v, ok := top[k]; ok {
			fmt.Fprintf(&b, ",%q:", k)
			b.Write(v)
		}
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}
