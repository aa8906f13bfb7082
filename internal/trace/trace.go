// Package trace writes Chrome Trace Event Format JSON, the format
// ui.perfetto.dev and catapult's trace viewer open, streamed to a file and
// bounded in events. It knows nothing of lhpvm: vmm turns scheduler records
// into its events.
//
// The file is one object: {"traceEvents": [...], "displayTimeUnit": "ms",
// "otherData": {...}}. Times are integer nanoseconds here and written as
// microseconds with their nanoseconds. Viewers read them as doubles and end
// a slice at ts + dur: a slice written as it is could then end a hair past
// the next one's start on its track (9686.874000000002 > 9686.874), which
// Chrome's Performance panel answers by dropping the slice and speedscope
// by nesting the track. So a slice's dur is written 1 ns shorter where the
// doubles would overlap (appendDur). When the limit is reached further
// events are counted, not written, and otherData says how many were cut.
package trace

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
	"unicode/utf8"
)

// DefaultLimit is the default bound on the events of one trace.
const DefaultLimit = 1_000_000

// Arg is one key of an event's args: a string, a number or a boolean.
type Arg struct {
	Key  string
	Str  string
	Num  float64
	kind byte // 's', 'n', 'b'
}

// S is a string arg, N a numeric one, B a boolean one.
func S(k, v string) Arg         { return Arg{Key: k, Str: v, kind: 's'} }
func N(k string, v float64) Arg { return Arg{Key: k, Num: v, kind: 'n'} }
func B(k string, v bool) Arg {
	a := Arg{Key: k, kind: 'b'}
	if v {
		a.Num = 1
	}
	return a
}

// Writer streams one trace. It is not safe for concurrent use.
type Writer struct {
	f       io.WriteCloser
	w       *bufio.Writer
	buf     []byte
	limit   int
	n       int // events written
	dropped int
	meta    []Arg // otherData
	err     error
	offset  time.Duration // added to every timestamp (Offset)
}

// Offset shifts the timestamp of every event written after it by d: the
// trace is then in another clock than the run's (d is that clock's reading
// at the run's time 0; the host's CLOCK_MONOTONIC for --trace-clock).
func (t *Writer) Offset(d time.Duration) { t.offset = d }

// Create starts a trace in path with at most limit events (0: DefaultLimit).
func Create(path string, limit int) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return New(f, limit), nil
}

// New starts a trace on w, which Close closes.
func New(w io.WriteCloser, limit int) *Writer {
	if limit <= 0 {
		limit = DefaultLimit
	}
	t := &Writer{f: w, w: bufio.NewWriterSize(w, 64<<10), limit: limit}
	t.write([]byte(`{"displayTimeUnit":"ms","traceEvents":[` + "\n"))
	return t
}

// Meta adds a key to the trace's otherData (written at Close).
func (t *Writer) Meta(a ...Arg) { t.meta = append(t.meta, a...) }

// Events is how many events were written, Dropped how many the limit cut.
func (t *Writer) Events() int  { return t.n }
func (t *Writer) Dropped() int { return t.dropped }

// ProcessName and ThreadName name a track group and a track.
func (t *Writer) ProcessName(pid int, name string) {
	t.event("process_name", "", 'M', pid, 0, 0, 0, nil, S("name", name))
}

func (t *Writer) ThreadName(pid, tid int, name string) {
	t.event("thread_name", "", 'M', pid, tid, 0, 0, nil, S("name", name))
}

// SortIndex orders a track among its siblings.
func (t *Writer) SortIndex(pid, tid, i int) {
	if tid == 0 {
		t.event("process_sort_index", "", 'M', pid, 0, 0, 0, nil, N("sort_index", float64(i)))
		return
	}
	t.event("thread_sort_index", "", 'M', pid, tid, 0, 0, nil, N("sort_index", float64(i)))
}

// Complete is a slice on track (pid, tid) from ts for dur.
func (t *Writer) Complete(name, cat string, pid, tid int, ts, dur time.Duration, args ...Arg) {
	t.event(name, cat, 'X', pid, tid, ts, dur, nil, args...)
}

// CompleteColor is Complete in one of the viewers' reserved colours
// ("cname": "thread_state_running", "terrible", ...).
func (t *Writer) CompleteColor(name, cat, cname string, pid, tid int, ts, dur time.Duration, args ...Arg) {
	t.event(name, cat, 'X', pid, tid, ts, dur, cnameField(cname), args...)
}

// Instant is a point on track (pid, tid), in reserved colour cname ("" for
// the viewer's choice).
func (t *Writer) Instant(name, cat, cname string, pid, tid int, ts time.Duration, args ...Arg) {
	t.event(name, cat, 'i', pid, tid, ts, 0, append([]byte(`"s":"t",`), cnameField(cname)...), args...)
}

func cnameField(cname string) []byte {
	if cname == "" {
		return nil
	}
	return append(appendString([]byte(`"cname":`), cname), ',')
}

// Counter sets the series of counter track name in process pid at ts.
func (t *Writer) Counter(name string, pid int, ts time.Duration, series ...Arg) {
	t.event(name, "", 'C', pid, 0, ts, 0, nil, series...)
}

// FlowStart and FlowEnd draw an arrow from the slice enclosing the start
// to the slice that starts at the end (binding point "enclosing").
func (t *Writer) FlowStart(name string, id uint64, pid, tid int, ts time.Duration) {
	t.event(name, "flow", 's', pid, tid, ts, 0, flowID(id, false))
}

func (t *Writer) FlowEnd(name string, id uint64, pid, tid int, ts time.Duration) {
	t.event(name, "flow", 'f', pid, tid, ts, 0, flowID(id, true))
}

func flowID(id uint64, end bool) []byte {
	b := append([]byte(`"id":`), strconv.FormatUint(id, 10)...)
	if end {
		b = append(b, `,"bp":"e"`...)
	}
	return append(b, ',')
}

func (t *Writer) event(name, cat string, ph byte, pid, tid int, ts, dur time.Duration, extra []byte, args ...Arg) {
	if t.err != nil {
		return
	}
	if t.n >= t.limit {
		t.dropped++
		return
	}
	b := t.buf[:0]
	if t.n > 0 {
		b = append(b, ",\n"...)
	}
	b = append(b, `{"name":`...)
	b = appendString(b, name)
	if cat != "" {
		b = append(b, `,"cat":`...)
		b = appendString(b, cat)
	}
	b = append(b, `,"ph":"`...)
	b = append(b, ph, '"', ',')
	b = append(b, extra...)
	b = append(b, `"pid":`...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, `,"tid":`...)
	b = strconv.AppendInt(b, int64(tid), 10)
	if ph != 'M' {
		ts += t.offset
		b = append(b, `,"ts":`...)
		b = appendMicros(b, ts)
	}
	if ph == 'X' {
		b = append(b, `,"dur":`...)
		b = appendMicros(b, durWritten(ts, dur))
	}
	if len(args) > 0 {
		b = append(b, `,"args":{`...)
		b = appendArgs(b, args)
		b = append(b, '}')
	}
	b = append(b, '}')
	t.buf = b
	t.write(b)
	t.n++
}

func (t *Writer) write(b []byte) {
	if t.err == nil {
		_, t.err = t.w.Write(b)
	}
}

// durWritten is the dur to write for a slice at ts: the largest, at most
// dur, for which ts + dur read as microsecond doubles does not pass
// (ts + dur) read so; the next slice on the track may start there. A
// microsecond value with three decimals, parsed, is the double nearest to
// ns/1000, the same as float64(ns)/1000.
func durWritten(ts, dur time.Duration) time.Duration {
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	end := us(ts + dur)
	for dur > 0 && us(ts)+us(dur) > end {
		dur--
	}
	return dur
}

// appendMicros writes d in microseconds with its nanoseconds.
func appendMicros(b []byte, d time.Duration) []byte {
	if d < 0 {
		b, d = append(b, '-'), -d
	}
	b = strconv.AppendInt(b, int64(d/time.Microsecond), 10)
	if ns := int64(d % time.Microsecond); ns != 0 {
		b = append(b, '.')
		b = append(b, byte('0'+ns/100), byte('0'+ns/10%10), byte('0'+ns%10))
	}
	return b
}

// appendString writes s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20:
			b = append(b, fmt.Sprintf(`\u%04x`, c)...)
			i++
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
		}
	}
	return append(b, '"')
}

// appendArgs appends args as the members of a JSON object ("k":v,...).
func appendArgs(b []byte, args []Arg) []byte {
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, a.Key)
		b = append(b, ':')
		switch a.kind {
		case 'n':
			b = strconv.AppendFloat(b, a.Num, 'g', -1, 64)
		case 'b':
			b = strconv.AppendBool(b, a.Num != 0)
		default:
			b = appendString(b, a.Str)
		}
	}
	return b
}

// Close ends the trace: the events array, then otherData with the meta
// keys and whether the limit cut it.
func (t *Writer) Close() error {
	b := []byte("\n],\"otherData\":{")
	meta := append(t.meta, N("events", float64(t.n)), N("dropped_events", float64(t.dropped)),
		B("truncated", t.dropped > 0))
	b = appendArgs(b, meta)
	b = append(b, "}}\n"...)
	t.write(b)
	if err := t.w.Flush(); t.err == nil {
		t.err = err
	}
	if err := t.f.Close(); t.err == nil {
		t.err = err
	}
	return t.err
}
