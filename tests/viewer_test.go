package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
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
	for _, n := range []string{"pCPU 0 (host CPU 0)", "vm0/cpu3", "lock 0 off-CPU"} {
		assert.True(t, names[n], "a track named %q", n)
	}
}
