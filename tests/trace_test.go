package tests

import (
	"encoding/json"
	"encoding/xml"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/internal/backendtest"
	"github.com/lhpvm/lhpvm/internal/figures"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/internal/trace"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type traceFile struct {
	TraceEvents []traceEvent   `json:"traceEvents"`
	OtherData   map[string]any `json:"otherData"`
}

// runReport is the part of --json the trace is checked against.
type runReport struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	Sched struct {
		LHPEvents         uint64 `json:"lhp_events"`
		LWPEvents         uint64 `json:"lwp_events"`
		WaiterPreemptions uint64 `json:"waiter_preemptions"`
	} `json:"sched"`
	VMs []struct {
		Name string `json:"name"`
		VCPU []struct {
			ID          int    `json:"id"`
			RunNs       int64  `json:"run_ns"`
			Dispatches  uint64 `json:"dispatches"`
			Preemptions uint64 `json:"preemptions"`
		} `json:"vcpu"`
	} `json:"vms"`
	Trace *struct {
		Events  int `json:"events"`
		Dropped int `json:"dropped"`
	} `json:"trace"`
}

// TestTrace: a run's Perfetto trace agrees with the run's own numbers: as
// many LHP, LWP and waiter-preempt instants as the scheduler counted,
// slices on one pCPU that never overlap, each vCPU's slices summing to its
// run_ns, state tracks, kick arrows, counter tracks.
func TestTrace(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		for _, tt := range []struct{ name, lock, policy string }{
			{"ticket under rr", "ticket", "rr"},
			{"pvticket under rr+pv", "pvticket", "rr+pv"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "t.json")
				args := on(h, "run", "--workload", "lock", "--lock", tt.lock, "--vcpus", "4",
					"--pcpus", "0,1", "--sched", tt.policy, "--duration", "1s", "--trace", path, "--json", "--quiet")
				if strings.HasPrefix(tt.lock, "pv") {
					// Every contended acquisition through the slow path, so
					// that kicks happen whatever the host's speed and the
					// run's drawn start (the emulated runner spins slowly).
					args = append(args, "--spin-threshold", "1")
				}
				stdout, stderr, code := lhpvm(t, args...)
				require.Equal(t, 0, code, stderr)
				var rep runReport
				require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
				require.True(t, rep.OK, rep.Error)
				var tf traceFile
				b, err := os.ReadFile(path)
				require.NoError(t, err)
				require.NoError(t, json.Unmarshal(b, &tf), "the trace is JSON")
				require.NotNil(t, rep.Trace)
				assert.Equal(t, rep.Trace.Events, len(tf.TraceEvents))
				assert.Equal(t, false, tf.OtherData["truncated"])

				count := map[string]uint64{}
				slices := map[int][][2]float64{} // pCPU track -> [start, end]
				run := map[int]float64{}         // vCPU -> µs
				nslices := map[int]int{}
				states, counters, flows := 0, 0, 0
				for _, e := range tf.TraceEvents {
					switch {
					case e.Ph == "i":
						count[e.Name]++
					case e.Ph == "X" && e.Pid == 1:
						slices[e.Tid] = append(slices[e.Tid], [2]float64{e.Ts, e.Ts + e.Dur})
						id := int(e.Args["vcpu"].(float64))
						run[id] += e.Dur
						nslices[id]++
						assert.NotEmpty(t, e.Args["ended"])
						assert.NotEmpty(t, e.Args["lock_state_start"])
					case e.Ph == "X" && e.Cat == "state":
						states++
					case e.Ph == "C":
						counters++
					case e.Ph == "s" || e.Ph == "f":
						flows++
					}
				}
				assert.Equal(t, rep.Sched.LHPEvents, count["LHP"], "LHP instants = sched.lhp_events")
				assert.Equal(t, rep.Sched.LWPEvents, count["LWP"])
				assert.Equal(t, rep.Sched.WaiterPreemptions, count["waiter-preempt"])
				for tid, ss := range slices {
					sort.Slice(ss, func(i, j int) bool { return ss[i][0] < ss[j][0] })
					for i := 1; i < len(ss); i++ {
						// As a viewer reads them: doubles, no tolerance.
						require.GreaterOrEqual(t, ss[i][0], ss[i-1][1], "pCPU track %d: slices overlap", tid)
					}
				}
				for _, v := range rep.VMs[0].VCPU {
					// Within a nanosecond per slice: the trace writes µs with ns.
					assert.InDelta(t, float64(v.RunNs)/1e3, run[v.ID], float64(nslices[v.ID])*1e-3+1e-6,
						"vCPU %d: slices sum to run_ns", v.ID)
				}
				assert.Greater(t, states, 0, "vCPU state tracks")
				assert.Greater(t, counters, 0, "counter tracks")
				if strings.HasPrefix(tt.lock, "pv") {
					assert.Greater(t, count["kick"], uint64(0))
					assert.Greater(t, flows, 0, "kick arrows")
				}
			})
		}
	})
}

// TestTraceLimit: a trace cut by --trace-limit stays valid and says so.
func TestTraceLimit(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		path := filepath.Join(t.TempDir(), "t.json")
		r := runJSON(t, 0, on(h, "run", "--workload", "lock", "--vcpus", "4", "--pcpus", "0,1", "--sched", "rr",
			"--slice", "1ms", "--duration", "300ms", "--trace", path, "--trace-limit", "100", "--quiet")...)
		require.True(t, r.OK, r.Error)
		var tf traceFile
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &tf))
		assert.Len(t, tf.TraceEvents, 100)
		assert.Equal(t, true, tf.OtherData["truncated"])
		assert.Greater(t, tf.OtherData["dropped_events"].(float64), 0.0)
	})
}

// TestTimeline: --timeline draws an SVG of who held each pCPU; under host
// there is none to draw, and that is a usage error.
func TestTimeline(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		path := filepath.Join(t.TempDir(), "s8.svg")
		_, stderr, code := lhpvm(t, on(h, "run", "--scenario", "slide8-lhp-two-vms", "--duration", "300ms",
			"--timeline", path, "--timeline-window", "0-200ms", "--quiet")...)
		require.Equal(t, 0, code, stderr)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		var doc struct {
			XMLName xml.Name
		}
		require.NoError(t, xml.Unmarshal(b, &doc), "the SVG is XML")
		assert.Equal(t, "svg", doc.XMLName.Local)
		for _, want := range []string{"app/cpu", "pCPU 0", "pCPU 1", "noisy", "LHP", "idle"} {
			assert.Contains(t, string(b), want)
		}
	})
	usage(t, "Linux decides who runs where", "run", "--sched", "host", "--timeline", filepath.Join(t.TempDir(), "x.svg"))
	usage(t, "--timeline-window \"200ms\": want START-END", "run", "--sched", "rr", "--timeline", "x.svg", "--timeline-window", "200ms")
	usage(t, "--timeline-window needs --timeline", "run", "--timeline-window", "0-1s")
}

// BenchmarkTraceOverhead: the lock workload's throughput with --trace
// against the same run without, interleaved in one process; trace/plain is
// the ratio (the aim is at least 0.95). A tas lock on 4 vCPUs on 2 pCPUs
// under rr with 1 ms slices: two thousand switches a second, each one
// traced (tas, because a FIFO lock's throughput under overcommit swings
// twofold from run to run and would hide the ratio).
func BenchmarkTraceOverhead(b *testing.B) {
	backendtest.EachB(b, func(b *testing.B, h hv.Hypervisor) {
		once := func(traced bool) float64 {
			cfg := lockConfig(b, "tas", 4)
			mc := lockMachine(b, "rr", 300*time.Millisecond)
			mc.Options.Slice = time.Millisecond
			if traced {
				w, err := trace.Create(filepath.Join(b.TempDir(), "t.json"), 0)
				require.NoError(b, err)
				mc.Trace = w
				defer w.Close()
			}
			r := runM(b, h, mc, cfg)
			require.True(b, r.OK, r.Error)
			return r.VMs[0].OpsPerSec
		}
		var plain, traced []float64
		for b.Loop() {
			plain = append(plain, once(false))
			traced = append(traced, once(true))
		}
		p, t := median(plain), median(traced)
		b.ReportMetric(p, "plain-acq/s")
		b.ReportMetric(t, "traced-acq/s")
		b.ReportMetric(t/p, "trace/plain")
	})
}

// slide8 is the slide8-lhp-two-vms scenario built by hand: app (ticket
// lock, 2 vCPUs) and noisy (a hog) on 2 pCPUs under rr with 30 ms slices.
func slide8(t *testing.T, d time.Duration) (vmm.MachineConfig, []vmm.Config) {
	app := lockConfig(t, "ticket", 2)
	app.Name, app.CSCycles, app.ThinkCycles = "app", 1000, 2000
	noisy := config(t, "hog", 1)
	noisy.Name, noisy.UntilOthers = "noisy", true
	mc := lockMachine(t, "rr", d)
	mc.Options.Slice = 30 * time.Millisecond
	return mc, []vmm.Config{app, noisy}
}

// TestSlide8Accounting: slide 8's scenario, traced and drawn. Across every
// interval a vCPU did not run, its lock state changes only as another
// vCPU's release can change it (the run itself fails otherwise:
// sched.Acct.Impossible); every LHP preemption begins, at the moment the
// vCPU was seen out of the guest, a measured interval of the lock with a
// vCPU that does not run (lock damage), and every such interval that does
// not is a hand-over to a waiter already off its pCPU; and the picture
// hatches waste. A run too short to show waste here is run again, longer.
func TestSlide8Accounting(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		for d := time.Second; ; d *= 2 {
			mc, cfgs := slide8(t, d)
			path := filepath.Join(t.TempDir(), "s8.json")
			w, err := trace.Create(path, 0)
			require.NoError(t, err)
			mc.Trace = w
			mc.Timeline = &vmm.Timeline{From: 0, To: 20 * mc.Options.Slice}
			res := runM(t, h, mc, cfgs...)
			require.NoError(t, w.Close())
			require.True(t, res.OK, res.Error)
			var tf traceFile
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &tf))
			runs := map[string][]traceEvent{} // vCPU -> its slices
			var lhp, damage []traceEvent
			for _, e := range tf.TraceEvents {
				switch {
				case e.Ph == "X" && e.Cat == "run":
					runs[e.Name] = append(runs[e.Name], e)
				case e.Ph == "i" && e.Name == "LHP":
					lhp = append(lhp, e)
				case e.Ph == "X" && (e.Name == "held_preempted" || e.Name == "granted_preempted"):
					damage = append(damage, e)
				}
			}
			for v, rs := range runs {
				sort.Slice(rs, func(i, j int) bool { return rs[i].Ts < rs[j].Ts })
				for i := 1; i < len(rs); i++ {
					was, now := lockKind(rs[i-1].Args["lock_state_end"]), lockKind(rs[i].Args["lock_state_start"])
					waiting := func(k string) bool { return k == "next for" || k == "waiting for" }
					assert.True(t, was == now || waiting(was) && now != "none" || was == "handed" && (waiting(now) || now == "holding"),
						"%s: %q when it stopped at %.3f µs, %q at its dispatch at %.3f µs", v, was, rs[i-1].Ts+rs[i-1].Dur, now, rs[i].Ts)
				}
			}
			begun := map[int]bool{} // damage intervals an LHP began
			for _, m := range lhp {
				v := m.Args["vcpu"].(string)
				var stop float64 = -1
				for _, r := range runs[v] {
					if r.Ts+r.Dur == m.Ts || math.Abs(r.Ts+r.Dur-m.Ts) < 1e-3 {
						stop = m.Ts + r.Args["stop_latency_us"].(float64)
					}
				}
				found := false
				for i, iv := range damage {
					if strings.HasSuffix(iv.Args["what"].(string), " "+v+", which does not run") && math.Abs(iv.Ts-stop) < 1e-3 {
						found, begun[i] = true, true
					}
				}
				assert.True(t, found, "the LHP of %s at %.3f µs (stopped at %.3f) begins no measured interval", v, m.Ts, stop)
			}
			for i, iv := range damage {
				if !begun[i] {
					assert.Equal(t, "granted_preempted", iv.Name, "an interval no LHP began: %v", iv.Args["what"])
				}
			}
			waste := figures.Waste(mc.Timeline)
			t.Logf("%v: %d LHP, %d measured intervals, %d hatched spans in the picture's window", d, len(lhp), len(damage), len(waste))
			if len(waste) > 0 || d >= 16*time.Second {
				assert.NotEmpty(t, waste, "slide 8's picture hatches the waste")
				return
			}
		}
	})
}

type traceEvent = struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat"`
	Ph   string         `json:"ph"`
	Pid  int            `json:"pid"`
	Tid  int            `json:"tid"`
	Ts   float64        `json:"ts"`
	Dur  float64        `json:"dur"`
	ID   uint64         `json:"id"`
	Args map[string]any `json:"args"`
}

// lockKind is a trace's lock state without the lock and ticket: "holding",
// "handed", "next for", "waiting for", "in a critical section", "none".
func lockKind(s any) string {
	str, _ := s.(string)
	if i := strings.Index(str, " lock "); i >= 0 {
		return str[:i]
	}
	return str
}
