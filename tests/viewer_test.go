package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireViewerEnv=1 (make check-viewers, CI) makes a missing Chromium a
// failure of TestTraceInViewer instead of a skip.
const requireViewerEnv = "LHPVM_REQUIRE_VIEWER"

// viewerReport is what tests/viewer/check.html says catapult's trace
// viewer made of a trace.
type viewerReport struct {
	Error    string   `json:"error"`
	Warnings []string `json:"warnings"`
	Flows    int      `json:"flows"`
	// CPUs: a joined host trace's CPUs, their sched_switch slices and the
	// threads those ran.
	CPUs []struct {
		CPU    int   `json:"cpu"`
		Slices int   `json:"slices"`
		TIDs   []int `json:"tids"`
	} `json:"cpus"`
	// Overlaps: per "pid/tid", slices ending past the next one's start
	// as JavaScript reads them.
	Overlaps map[string]int `json:"overlaps"`
	Tracks   []struct {
		Pid, Tid int
		Name     string
		Slices   int
		Nested   int
		Instants map[string]int
		Names    []string
	} `json:"tracks"`
}

// openInViewer loads the trace at path in catapult's trace viewer (the copy
// Go's toolchain ships, $GOROOT/src/internal/trace/traceviewer/static) in
// headless Chromium, offline, and returns the viewer's report.
func openInViewer(t *testing.T, path string) viewerReport {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv(requireViewerEnv) == "1" {
			t.Fatalf("chromium is required (%s=1) but not found: %v", requireViewerEnv, err)
		}
		t.Skipf("no chromium to open the trace in (make check-viewers installs Debian's): %v", err)
	}
	static := filepath.Join(runtime.GOROOT(), "src", "internal", "trace", "traceviewer", "static")
	_, err = os.Stat(filepath.Join(static, "trace_viewer_full.html"))
	require.NoError(t, err, "catapult's viewer as Go ships it")
	mux := http.NewServeMux()
	mux.Handle("/static/", http.StripPrefix("/static/", http.FileServer(http.Dir(static))))
	mux.HandleFunc("/trace.json", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
	mux.HandleFunc("/check.html", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, "viewer/check.html") })
	mux.HandleFunc("/show.html", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, "viewer/show.html") })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	// A Chromium that has just been installed builds its font cache on its
	// first start, and on a loaded machine the page can be dumped before
	// the viewer has reported: that is Chromium's start, not what the
	// viewer made of the trace, so a run without a report is tried again
	// (three times at most), and every miss is logged.
	var out []byte
	var m [][]byte
	for try := 1; try <= 3 && m == nil; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		// The flags keep Chromium off the network (the machine's is closed)
		// and out of the user's profile.
		out, err = exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
			"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir="+t.TempDir(), "--virtual-time-budget=60000", "--dump-dom", srv.URL+"/check.html").Output()
		cancel()
		require.NoError(t, err, "chromium")
		m = regexp.MustCompile(`<pre id="report">(.*?)</pre>`).FindSubmatch(out)
		if m == nil {
			t.Logf("try %d: Chromium dumped the page before the viewer reported (%d bytes)", try, len(out))
		}
	}
	require.NotNil(t, m, "the viewer reported nothing in 3 tries; the last page:\n%s", out)
	// LHPVM_PICTURE=FILE.png (make pictures): a screenshot of the trace in
	// the viewer too, for the docs.
	if pic := os.Getenv("LHPVM_PICTURE"); pic != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
			"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir="+t.TempDir(), "--virtual-time-budget=60000", "--hide-scrollbars", "--window-size=1600,1000",
			"--screenshot="+pic, srv.URL+"/show.html").CombinedOutput()
		cancel()
		require.NoError(t, err, "chromium --screenshot: %s", out)
		t.Logf("drew %s", pic)
	}
	var r viewerReport
	require.NoError(t, json.Unmarshal([]byte(htmlUnescape(string(m[1]))), &r))
	require.Empty(t, r.Error, "the viewer failed")
	return r
}

func htmlUnescape(s string) string {
	return regexp.MustCompile(`&(amp|lt|gt|quot|#39);`).ReplaceAllStringFunc(s, func(e string) string {
		return map[string]string{"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": `"`, "&#39;": "'"}[e]
	})
}

// TestTraceInViewer: a traced run opened in catapult's trace viewer, as a
// user would open it, shows what the run did: no import warning, every
// slice of the file on its track and none nested under another (a slice
// overlapping the next is nested by this viewer, dropped by Chrome's
// Performance panel), the LHP, LWP and waiter-preempt marks the scheduler
// counted, the kick arrows, and the tracks' full names. The trace format
// is the same on every backend: the run takes the best one this host has.
func TestTraceInViewer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.json")
	stdout, stderr, code := lhpvm(t, "run", "--workload", "lock", "--lock", "pvticket", "--vcpus", "4",
		"--pcpus", "0,1", "--sched", "rr+pv", "--duration", "500ms", "--trace", path, "--json", "--quiet")
	require.Equal(t, 0, code, stderr)
	var rep runReport
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	var tf traceFile
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &tf))
	type track struct{ pid, tid int }
	want := map[track]int{}
	flows := 0
	for _, e := range tf.TraceEvents {
		if e.Ph == "X" && e.Dur > 0 {
			want[track{e.Pid, e.Tid}]++
		}
		if e.Ph == "s" {
			flows++
		}
	}
	r := openInViewer(t, path)
	assert.Empty(t, r.Warnings, "import warnings")
	for k, n := range r.Overlaps {
		assert.Zero(t, n, "track %s: slices ending past the next one's start, read as doubles", k)
	}
	marks := map[string]int{}
	names := map[string]bool{}
	for _, tr := range r.Tracks {
		assert.Equal(t, want[track{tr.Pid, tr.Tid}], tr.Slices, "track %q: slices shown", tr.Name)
		assert.Zero(t, tr.Nested, "track %q: slices nested under an overlapping one", tr.Name)
		for k, n := range tr.Instants {
			marks[k] += n
		}
		names[tr.Name] = true
	}
	assert.EqualValues(t, rep.Sched.LHPEvents, marks["LHP"])
	assert.EqualValues(t, rep.Sched.LWPEvents, marks["LWP"])
	assert.EqualValues(t, rep.Sched.WaiterPreemptions, marks["waiter-preempt"])
	assert.Greater(t, marks["kick"], 0)
	assert.Equal(t, flows, r.Flows, "kick arrows")
	for _, n := range []string{"pCPU 0 (host CPU 0)", "vm0/cpu3 · tid ", "lock 0 off-CPU"} {
		found := false
		for name := range names {
			found = found || strings.HasPrefix(name, n)
		}
		assert.True(t, found, "a track named %q…", n)
	}
}

// ftraceInstance makes a tracefs instance of its own (its own buffer and
// clock, leaving the host's tracing as it was) recording sched_switch in
// CLOCK_MONOTONIC, removed when the test ends; it skips without root or
// tracefs.
func ftraceInstance(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("recording the host's sched_switch needs root")
	}
	root := "/sys/kernel/tracing"
	if _, err := os.Stat(filepath.Join(root, "instances")); err != nil {
		if out, err := exec.Command("mount", "-t", "tracefs", "tracefs", root).CombinedOutput(); err != nil {
			t.Skipf("no tracefs here: %s", out)
		}
	}
	dir := filepath.Join(root, "instances", fmt.Sprintf("lhpvm-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("no tracefs instance here: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	for _, w := range [][2]string{{"trace_clock", "mono"}, {"set_event", "sched:sched_switch"}, {"buffer_size_kb", "8192"}} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, w[0]), []byte(w[1]), 0o644), w[0])
	}
	return dir
}

// TestTraceJoinInViewer: a run traced in CLOCK_MONOTONIC, with the host's
// sched_switch recorded meanwhile, joined (lhpvm trace-join) and opened in
// catapult's viewer: the host CPUs' slices import on the run's timeline,
// and among the threads they ran are the ones the vCPU tracks name.
func TestTraceJoinInViewer(t *testing.T) {
	inst := ftraceInstance(t)
	dir := t.TempDir()
	lt, ht, both := filepath.Join(dir, "lhpvm.json"), filepath.Join(dir, "host.txt"), filepath.Join(dir, "both.json")
	require.NoError(t, os.WriteFile(filepath.Join(inst, "tracing_on"), []byte("1"), 0o644))
	_, stderr, code := lhpvm(t, "run", "--workload", "lock", "--lock", "ticket", "--vcpus", "4", "--pcpus", "0,1",
		"--sched", "rr", "--slice", "10ms", "--duration", "300ms", "--trace", lt, "--trace-clock", "monotonic", "--quiet")
	require.NoError(t, os.WriteFile(filepath.Join(inst, "tracing_on"), []byte("0"), 0o644))
	require.Equal(t, 0, code, stderr)
	host, err := os.ReadFile(filepath.Join(inst, "trace"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ht, host, 0o644))
	stdout, stderr, code := lhpvm(t, "trace-join", "--out", both, lt, ht)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "wrote "+both)

	// The threads the vCPU tracks name (the guest's: the stub on ptrace).
	var tf traceFile
	require.NoError(t, json.Unmarshal(readFile(t, lt), &tf))
	guests := map[int]bool{}
	re := regexp.MustCompile(`· tid (\d+)(?:, guest pid (\d+))?$`)
	for _, e := range tf.TraceEvents {
		if e.Ph == "M" && e.Name == "thread_name" {
			if m := re.FindStringSubmatch(fmt.Sprint(e.Args["name"])); m != nil {
				id := m[1]
				if m[2] != "" {
					id = m[2]
				}
				n, _ := strconv.Atoi(id)
				guests[n] = true
			}
		}
	}
	require.Len(t, guests, 4, "every vCPU track names its host thread")

	r := openInViewer(t, both)
	assert.Empty(t, r.Warnings, "import warnings")
	require.NotEmpty(t, r.CPUs, "the host's CPUs imported")
	ran := false
	for _, c := range r.CPUs {
		for _, tid := range c.TIDs {
			ran = ran || guests[tid]
		}
	}
	assert.True(t, ran, "a host CPU's sched_switch shows a vCPU's guest thread running: %+v", r.CPUs)

	// A trace in the run's clock cannot share the host's timeline.
	usage(t, "record it with lhpvm run --trace-clock monotonic", "trace-join", "--out", filepath.Join(dir, "x.json"),
		writeTemp(t, `{"traceEvents":[],"otherData":{"clock":"run"}}`), ht)
}
