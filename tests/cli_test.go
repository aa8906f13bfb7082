package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/internal/backendtest"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lhpvmBin is the lhpvm binary the CLI tests run, built on first use, so
// that a process that runs none of them (a fuzz worker of FuzzGuestCode)
// does not build it.
func lhpvmBin(t testing.TB) string {
	t.Helper()
	return artifact(t, "lhpvm")
}

// lhpvm runs the CLI and returns stdout, stderr and the exit code.
func lhpvm(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(lhpvmBin(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return stdout.String(), stderr.String(), code
}

var badScenario string

func TestCLIUsageErrors(t *testing.T) {
	badScenario = filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(badScenario, []byte("vms:\n  - {workload: hog, vcpu: 2}\n"), 0o644))
	notELF := filepath.Join(t.TempDir(), "image.txt")
	require.NoError(t, os.WriteFile(notELF, []byte("this is not an ELF file\n"), 0o644))
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"zero vCPUs", []string{"run", "--vcpus", "0"}, "--vcpus 0: must be between 1 and 1024"},
		{"too many vCPUs", []string{"run", "--vcpus", "5000"}, "--vcpus 5000"},
		{"non-ELF image", []string{"run", "--image", notELF}, "not an ELF file"},
		{"missing image", []string{"run", "--image", "/nonexistent/guest.elf"}, "no such file"},
		{"unknown workload", []string{"run", "--workload", "nope"}, `unknown workload "nope"`},
		{"workload code", []string{"run", "--workload", "code"}, "--workload code: runs machine code that only a test can supply"},
		{"unknown flag", []string{"run", "--bogus"}, "unknown flag: --bogus"},
		{"bad pcpus", []string{"run", "--pcpus", "0-x"}, "--pcpus"},
		{"unavailable pcpu", []string{"run", "--pcpus", "4000"}, "CPU 4000 is not available"},
		{"bad mem", []string{"run", "--mem", "lots"}, "--mem"},
		{"odd mem", []string{"run", "--mem", "63M"}, "multiple of 2 MiB"},
		{"both bounds", []string{"run", "--iterations", "5", "--duration", "1s"}, "give one"},
		{"timeout not after duration", []string{"run", "--duration", "2s", "--timeout", "1s"}, "must be longer"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"unknown policy", []string{"run", "--sched", "fifo"}, `unknown scheduling policy "fifo"`},
		{"host cannot be modified", []string{"run", "--sched", "host+pv"}, "host does not gate"},
		{"slice too short", []string{"run", "--sched", "rr", "--slice", "10us"}, "--slice 10µs"},
		{"lock flag without lock workload", []string{"run", "--workload", "counter", "--lock", "mcs"}, "applies to --workload lock only"},
		{"unknown lock", []string{"run", "--workload", "lock", "--lock", "spin"}, `unknown lock "spin"`},
		{"scenario and VM flags", []string{"run", "--scenario", "default", "--vcpus", "3"}, "with --scenario the scenario describes the VMs"},
		{"missing scenario", []string{"run", "--scenario", "/nonexistent.yaml"}, "built-in scenarios"},
		{"bad scenario", []string{"run", "--scenario", badScenario}, "field vcpu not found"},
		{"unbounded hogs", []string{"run", "--workload", "hog"}, "nothing bounds the run"},
		{"negative corunner", []string{"run", "--corunner", "-1"}, "--corunner -1"},
		{"stray argument", []string{"run", "extra"}, "unknown command"},
		// Messages and defaults that used to mislead: each is a rule now.
		{"mem too large", []string{"run", "--mem", "1T"}, "--mem 1T: must be a multiple of 2 MiB between 4 MiB and 2048 MiB"},
		{"mem zero", []string{"run", "--mem", "0"}, "--mem 0: must be a multiple of 2 MiB between 4 MiB and 2048 MiB"},
		{"negative pcpu", []string{"run", "--pcpus=-1"}, `"-1" is not a CPU number (CPUs are numbered from 0)`},
		{"signed pcpu", []string{"run", "--pcpus", "+1"}, `"+1" is not a CPU number`},
		{"modifier twice", []string{"run", "--sched", "pv+pv"}, `--sched: policy "pv+pv": pv appears twice`},
		{"gang names the VM", []string{"run", "--sched", "gang", "--vcpus", "4", "--pcpus", "0,1", "--workload", "hello"},
			"gang: vm0 has 4 vCPUs but there are only 2 pCPUs"},
		{"zero locks", []string{"run", "--workload", "lock", "--locks", "0"}, "--locks 0: must be between 1 and 512"},
		{"zero spin threshold", []string{"run", "--workload", "lock", "--lock", "pvticket", "--spin-threshold", "0"}, "--spin-threshold 0: must be at least 1"},
		{"empty mem", []string{"run", "--mem="}, "--mem is empty"},
		{"empty image", []string{"run", "--image="}, "--image is empty"},
		{"empty scenario", []string{"run", "--scenario="}, "--scenario is empty"},
		{"empty pcpus", []string{"run", "--pcpus="}, "--pcpus is empty"},
		{"timeout too short", []string{"run", "--timeout", "1ns"}, "--timeout 1ns: must be between 100ms and"},
		{"skew unbounded", []string{"run", "--sched", "relaxed", "--skew", "100h"}, "--skew 100h0m0s: must be between 1µs and 1s"},
		{"delay past the slice", []string{"run", "--sched", "delay", "--delay-max", "1s"}, "--delay-max 1s: must be between 1µs and the slice (30ms)"},
		{"bad backend", []string{"run", "--backend", "xen"}, `--backend: unknown backend "xen"`},
		{"pv knob on another lock", []string{"run", "--workload", "lock", "--lock", "ticket", "--pv-steal", "off"},
			"--pv-steal: applies to lock pvqspin only (this VM runs ticket)"},
		{"bad pv knob", []string{"run", "--workload", "lock", "--lock", "pvqspin", "--pv-kick", "later"},
			`--pv-kick "later": must be deferred, immediate`},
		{"empty pv knob", []string{"run", "--workload", "lock", "--lock", "pvqspin", "--pv-pending="}, "--pv-pending is empty"},
		{"zero head threshold", []string{"run", "--workload", "lock", "--lock", "pvqspin", "--spin-threshold-head", "0"},
			"--spin-threshold-head 0: must be at least 1"},
		{"pv knob without lock workload", []string{"run", "--workload", "counter", "--pv-prev-check", "off"}, "--pv-prev-check applies to --workload lock only"},
		{"boost without pv", []string{"run", "--sched", "rr", "--boost-kicked"}, "--boost-kicked: applies to a policy with pv (this run's is rr)"},
		{"unknown ablation", []string{"experiment", "--ablation", "ticket"}, `--ablation "ticket": have pticket, pvqspin`},
		{"pticket shift on another lock", []string{"run", "--workload", "lock", "--lock", "ticket", "--pticket-timeout-shift", "8"},
			"--pticket-timeout-shift: applies to lock pticket only (this VM runs ticket)"},
		{"zero pticket shift", []string{"run", "--workload", "lock", "--lock", "pticket", "--pticket-timeout-shift", "0"},
			"--pticket-timeout-shift 0: must be between 1 and 30 (leave it out for 14)"},
		{"pticket shift too large", []string{"run", "--workload", "lock", "--lock", "pticket", "--pticket-timeout-shift", "31"},
			"--pticket-timeout-shift 31: must be between 1 and 30"},
		{"ablation with locks", []string{"experiment", "--ablation", "pvqspin", "--locks", "ticket"}, "--locks: an ablation runs its own lock"},
		{"variants without ablation", []string{"experiment", "--variants", "full"}, "--variants needs --ablation"},
		{"unknown variant", []string{"experiment", "--ablation", "pvqspin", "--variants", "no-queue"}, `"no-queue" is not a variant of the pvqspin ablation`},
		{"experiment pcpus", []string{"experiment", "--pcpus", "4000"}, "--pcpus: CPU 4000 is not available"},
		{"experiment repeat", []string{"experiment", "--repeat", "0"}, "--repeat 0: must be between 1 and 100"},
		{"experiment empty locks", []string{"experiment", "--locks", ","}, "may not be empty"},
		// Values no run could use, and settings that would silently mean
		// nothing, refused before anything runs.
		{"cs cycles unbounded", []string{"run", "--workload", "lock", "--cs-cycles", "18446744073709551615"},
			"--cs-cycles 18446744073709551615: must be at most 4294967296"},
		{"experiment think cycles unbounded", []string{"experiment", "--think-cycles", "4294967297"}, "--think-cycles 4294967297: must be at most"},
		{"spin threshold on a lock without one", []string{"run", "--workload", "lock", "--lock", "ticket", "--spin-threshold", "5"},
			"--spin-threshold: applies to a lock that spins a threshold (pvticket, pvqspin, spinyield; this VM runs ticket)"},
		{"delay-max without delay", []string{"run", "--sched", "rr", "--delay-max", "1ms"}, "--delay-max: applies to a policy with delay (this run's is rr)"},
		{"skew without relaxed", []string{"run", "--sched", "gang", "--skew", "1ms"}, "--skew: applies to the relaxed policy (this run's is gang)"},
		{"boost with a lock that never kicks", []string{"run", "--sched", "pv", "--boost-kicked", "--workload", "lock", "--lock", "tas"},
			"no VM runs a lock that kicks (pvticket, pvqspin)"},
		{"experiment boost with locks that never kick", []string{"experiment", "--boost-kicked", "--locks", "tas,ticket", "--policies", "pv"},
			"none of --locks kicks (pvticket, pvqspin do)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := lhpvm(t, tt.args...)
			assert.Equal(t, 2, code, "usage errors exit 2; stderr: %s", stderr)
			assert.Empty(t, stdout)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one clear line: %q", stderr)
			assert.Contains(t, stderr, tt.want)
			assert.NotContains(t, stderr, "panic")
		})
	}
}

// usage runs a CLI command expected to be a usage error: exit 2, nothing on
// stdout, one line on stderr containing want, and quickly with little
// memory, whatever the input.
func usage(t *testing.T, want string, args ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, lhpvmBin(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.Error(t, err, "must fail: %v", args)
	require.NoError(t, ctx.Err(), "hung: %v", args)
	assert.Equal(t, 2, cmd.ProcessState.ExitCode(), "usage errors exit 2; stderr: %s", stderr.String())
	assert.Empty(t, stdout.String())
	assert.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one line: %q", stderr.String())
	assert.Contains(t, stderr.String(), want)
	// ru_maxrss (KiB) also counts the address space the child was forked
	// from, ours, which grows as the tests run (Chromium's children, the
	// soak): what the command itself added is its peak over that of a
	// command that does nothing, forked from us at the same size.
	if peak, ok := peakKiB(cmd); ok && !raceEnabled {
		base := exec.Command(lhpvmBin(t), "version")
		if base.Run() == nil {
			if basePeak, ok := peakKiB(base); ok {
				assert.Less(t, peak-basePeak, int64(64<<10), "peak memory (KiB) above `lhpvm version`'s %d", basePeak)
			}
		}
	}
}

func peakKiB(cmd *exec.Cmd) (int64, bool) {
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, false
	}
	return ru.Maxrss, true
}

// TestCLIHostileFiles: --image and --scenario on what is not a small regular
// file are refused before anything is read.
func TestCLIHostileFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	sparse := filepath.Join(dir, "sparse")
	f, err := os.Create(sparse)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(10<<30)) // 10 GiB, no blocks
	f.Close()
	big := filepath.Join(dir, "big.yaml")
	require.NoError(t, os.WriteFile(big, bytes.Repeat([]byte("# padding\n"), 200_000), 0o644))
	for _, tt := range []struct{ name, path, want string }{
		{"/dev/zero", "/dev/zero", "not a regular file (a character device)"},
		{"a FIFO", fifo, "not a regular file (a FIFO)"},
		{"a directory", dir, "not a regular file (a directory)"},
		{"a 10 GB sparse file", sparse, "too large: 10737418240 bytes"},
	} {
		t.Run("image "+tt.name, func(t *testing.T) { usage(t, tt.want, "run", "--image", tt.path) })
		t.Run("scenario "+tt.name, func(t *testing.T) { usage(t, tt.want, "run", "--scenario", tt.path) })
	}
	t.Run("a 2 MB scenario", func(t *testing.T) { usage(t, "the limit is 1 MiB", "run", "--scenario", big) })
	trunc := filepath.Join(dir, "truncated.elf")
	require.NoError(t, os.WriteFile(trunc, readFile(t, "../"+prebuiltImage)[:100], 0o644))
	t.Run("truncated ELF", func(t *testing.T) {
		usage(t, "program headers end at byte 288, the file has 100", "run", "--image", trunc)
	})
}

// TestCLIScenarioErrors: a scenario's bad values are reported at their
// file, line and key, by the same rules as the flags, before anything runs.
func TestCLIScenarioErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(yaml), 0o644))
		return p
	}
	var huge strings.Builder
	huge.WriteString("vms:\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&huge, "  - {name: v%d, vcpus: 1000, workload: hog, mem: 2G}\n", i)
	}
	var ram strings.Builder
	ram.WriteString("duration: 1s\nvms:\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&ram, "  - {name: v%d, vcpus: 1, workload: hog, mem: 2G}\n", i)
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"negative duration", "duration: -1s\nvms:\n  - {vcpus: 2, workload: counter}\n", "d.yaml: line 1: duration -1s: must be between 1ms"},
		{"mem", "vms:\n  - name: a\n    vcpus: 2\n    workload: counter\n    mem: 1T\n", "d.yaml: line 5: vms[0].mem 1T: must be a multiple of 2 MiB"},
		{"lock key on counter", "vms:\n  - {vcpus: 2, workload: counter, lock: mcs}\n", "d.yaml: line 2: vms[0].lock: applies to workload lock only (this VM runs counter)"},
		{"zero locks", "vms:\n  - {vcpus: 2, workload: lock, locks: 0}\n", "d.yaml: line 2: vms[0].locks 0: must be between 1 and 512"},
		{"pv key on ticket", "vms:\n  - {vcpus: 2, workload: lock, lock: ticket, pv_steal: off}\n", "d.yaml: line 2: vms[0].pv_steal: applies to lock pvqspin only (this VM runs ticket)"},
		{"bad pv key", "vms:\n  - {vcpus: 2, workload: lock, lock: pvqspin, pv_prev_check: always}\n", `d.yaml: line 2: vms[0].pv_prev_check "always": must be node, off, preempted`},
		{"boost without pv", "sched: {policy: gang, boost_kicked: true}\nvms:\n  - {vcpus: 2, workload: counter}\n", "d.yaml: line 1: sched.boost_kicked: applies to a policy with pv (this run's is gang)"},
		{"second document", "vms:\n  - {vcpus: 2, workload: counter}\n---\nvms: []\n", "line 3: a second YAML document"},
		{"skew", "sched: {policy: relaxed, skew: 5s}\nvms:\n  - {vcpus: 2, workload: counter}\n", "d.yaml: line 1: sched.skew 5s: must be between"},
		{"npcpus", "npcpus: 64\nvms:\n  - {vcpus: 2, workload: hello}\n", "d.yaml: line 1: npcpus 64: this scenario needs 64 host CPUs"},
		{"2 million vCPUs", huge.String(), "2000 VMs, a run may have at most 256"},
		{"more RAM than the host", ram.String(), "MiB this host has available (MemAvailable)"},
		{"unknown key", "vms:\n  - {workload: hog, vcpu: 2}\n", "field vcpu not found"},
	} {
		t.Run(tt.name, func(t *testing.T) { usage(t, tt.want, "run", "--scenario", write("d.yaml", tt.yaml)) })
	}
}

// TestCLIIOErrors: a file or directory lhpvm cannot write is an I/O error,
// not bad usage: exit 1, one line that names it.
func TestCLIIOErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	check := func(t *testing.T, args ...string) {
		t.Helper()
		stdout, stderr, code := lhpvm(t, args...)
		assert.Equal(t, 1, code, "I/O errors exit 1; stderr: %s", stderr)
		assert.Empty(t, stdout)
		assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		assert.Contains(t, stderr, file+"/sub")
		assert.Contains(t, stderr, "not a directory")
	}
	t.Run("experiment --out under a file", func(t *testing.T) {
		check(t, "experiment", "--sizes", "4", "--policies", "rr", "--locks", "tas", "--quiet", "--out", filepath.Join(file, "sub"))
	})
	t.Run("experiment --trace under a file", func(t *testing.T) {
		check(t, "experiment", "--sizes", "4", "--policies", "rr", "--locks", "tas", "--quiet", "--trace", filepath.Join(file, "sub"))
	})
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		t.Run("run --trace under a file", func(t *testing.T) {
			check(t, on(h, "run", "--workload", "hello", "--quiet", "--trace", filepath.Join(file, "sub", "t.json"))...)
		})
	})
}

// TestCLIRunsThatCannotStart: a run that never started prints no table of
// zeros; --json has the error and no VMs.
func TestCLIRunsThatCannotStart(t *testing.T) {
	stdout, stderr, code := lhpvm(t, "run", "--backend", "kvm", "--workload", "hello")
	if code == 0 {
		t.Skip("this host has KVM: every backend starts")
	}
	assert.Equal(t, 1, code)
	assert.Empty(t, stdout, "no table")
	assert.Equal(t, 1, strings.Count(stderr, "\n"))
	r := runJSON(t, 1, "run", "--backend", "kvm", "--workload", "hello")
	assert.False(t, r.OK)
	assert.NotEmpty(t, r.Error)
	assert.NotNil(t, r.VMs)
	assert.Empty(t, r.VMs)
}

// TestCLIExperimentFails: a failing cell makes the experiment exit 1 and
// name the cell; a cell the policy refuses is not a failure. The broken
// lock's cell runs under host, where Linux preempts vCPU threads anywhere:
// under lhpvm's own policies on the emulated kvm runner, whose CPUs switch
// at pause instructions, preemptions land where the guest pauses, and a
// vCPU is hardly ever preempted inside its critical section (docs/kvm.md).
// The critical section is long and nothing is outside it, so the first
// switch between two vCPU threads on one CPU catches the broken lock: with
// the default 1000 cycles, on the emulated runner (where the code around
// the critical section is emulated slowly but the TSC is not) with a CPU
// hog on the host, a 100 ms run once saw no overlap and passed, and so did
// one in CI with 100000 cycles. Whether a run without exclusion overlaps is
// up to the host's scheduler, so the test asks until one does: a run that
// saw no overlap is retried with a longer duration, a few times at most.
func TestCLIExperimentFails(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		var stdout, stderr string
		var code int
		for _, d := range []string{"100ms", "500ms", "2s", "5s"} {
			stdout, stderr, code = lhpvm(t, on(h, "experiment", "--locks", "ticket,broken", "--policies", "host,gang",
				"--sizes", "4", "--duration", d, "--repeat", "1", "--quiet", "--cs-cycles", "100000", "--think-cycles", "0")...)
			if code != 0 {
				break
			}
			t.Logf("a %s run of the broken lock saw no overlap; again, longer", d)
		}
		assert.Equal(t, 1, code, stderr)
		assert.Contains(t, stdout, "refused: gang: vm0 has 4 vCPUs")
		assert.Contains(t, stdout, "Failed cells (1):\n- 4 vCPUs, broken, host: self-check failed")
		assert.Contains(t, stderr, "1 of 4 cells failed: 4 vCPUs, broken, host")
		assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	})
}

type report struct {
	OK            bool    `json:"ok"`
	Error         string  `json:"error"`
	ElapsedS      float64 `json:"elapsed_s"`
	Backend       string  `json:"backend"`
	BackendReason string  `json:"backend_reason"`
	Seed          uint64  `json:"seed"`
	Start         struct {
		Seed  uint64    `json:"seed"`
		Home  []int     `json:"home"`
		Order []int     `json:"order"`
		Phase []float64 `json:"phase"`
	} `json:"start"`
	Sched struct {
		Policy string `json:"policy"`
		PCPUs  []int  `json:"pcpus"`
	} `json:"sched"`
	VMs []struct {
		SteadyOpsPerSec *float64          `json:"steady_ops_per_s"`
		WarmupS         float64           `json:"warmup_s"`
		OpsSeries       []json.RawMessage `json:"ops_series"`
		Name            string            `json:"name"`
		Image           string            `json:"image"`
		VCPUs           int               `json:"vcpus"`
		Workload        string            `json:"workload"`
		ExitCode        uint64            `json:"exit_code"`
		Ops             uint64            `json:"ops"`
		OpsPerS         float64           `json:"ops_per_s"`
		CounterExpected *uint64           `json:"counter_expected"`
		CounterActual   *uint64           `json:"counter_actual"`
		NsPerHypercall  *float64          `json:"ns_per_hypercall"`
		// The lock workload's (--json embeds them in the VM).
		LockEvents         map[string]float64 `json:"lock_events"`
		HeldPreemptedNs    *int64             `json:"held_preempted_ns"`
		GrantedPreemptedNs *int64             `json:"granted_preempted_ns"`
		Fairness           *struct {
			MinAcq     uint64  `json:"min_acq"`
			AvgAcq     float64 `json:"avg_acq"`
			MaxAcq     uint64  `json:"max_acq"`
			MaxOverMin float64 `json:"max_over_min"`
			Jain       float64 `json:"jain"`
		} `json:"fairness"`
		Acquisitions uint64 `json:"acquisitions"`
		Locks        []struct {
			Lock               int   `json:"lock"`
			HeldPreemptedNs    int64 `json:"held_preempted_ns"`
			GrantedPreemptedNs int64 `json:"granted_preempted_ns"`
		} `json:"locks"`
		VCPU []struct {
			ID                 int                `json:"id"`
			PCPU               int                `json:"pcpu"`
			Ops                uint64             `json:"ops"`
			Exits              uint64             `json:"exits"`
			Hypercalls         uint64             `json:"hypercalls"`
			Acquisitions       uint64             `json:"acquisitions"`
			LockEvents         map[string]float64 `json:"lock_events"`
			HeldPreemptedNs    *int64             `json:"held_preempted_ns"`
			GrantedPreemptedNs *int64             `json:"granted_preempted_ns"`
		} `json:"vcpu"`
	} `json:"vms"`
}

func runJSON(t *testing.T, wantCode int, args ...string) report {
	t.Helper()
	stdout, stderr, code := lhpvm(t, append(args, "--json")...)
	require.Equal(t, wantCode, code, "stderr: %s", stderr)
	var r report
	require.NoError(t, json.Unmarshal([]byte(stdout), &r), stdout)
	return r
}

// on names backend h for a CLI run.
func on(h hv.Hypervisor, args ...string) []string { return append(args, "--backend", h.Name()) }

func TestCLIRun(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		t.Run("hello", func(t *testing.T) {
			r := runJSON(t, 0, on(h, "run", "--workload", "hello", "--vcpus", "8", "--pcpus", "0,1")...)
			require.True(t, r.OK, r.Error)
			assert.Equal(t, "host", r.Sched.Policy)
			assert.Equal(t, []int{0, 1}, r.Sched.PCPUs)
			require.Len(t, r.VMs, 1)
			require.Len(t, r.VMs[0].VCPU, 8)
			require.Len(t, r.Start.Home, 8)
			perPCPU := map[int]int{}
			for i, v := range r.VMs[0].VCPU {
				assert.Equal(t, r.Start.Home[i], v.PCPU, "pinned where the seeded start put it")
				perPCPU[v.PCPU]++
				assert.EqualValues(t, 1, v.Ops)
			}
			assert.Equal(t, map[int]int{0: 4, 1: 4}, perPCPU, "the start deals the vCPUs evenly")
			assert.Equal(t, r.Seed, r.Start.Seed)
		})
		t.Run("seed", func(t *testing.T) {
			// The same seed gives the same start; the run reports it.
			// Long enough that the warm-up (120 ms here) ends well before the
			// run does, however slow the host.
			args := on(h, "run", "--workload", "lock", "--vcpus", "4", "--pcpus", "0,1", "--sched", "rr", "--duration", "400ms", "--seed", "42")
			a, b := runJSON(t, 0, args...), runJSON(t, 0, args...)
			assert.EqualValues(t, 42, a.Seed)
			assert.Equal(t, a.Start, b.Start)
			assert.Len(t, a.Start.Order, 4)
			assert.Len(t, a.Start.Phase, 2)
			// A run of fixed duration separates its start from its steady
			// state. A host so busy that the warm-up's snapshot came late
			// leaves the window too short to give a figure (vmm.progress):
			// then a longer run must.
			require.Len(t, a.VMs, 1)
			assert.Greater(t, a.VMs[0].WarmupS, 0.0)
			assert.NotEmpty(t, a.VMs[0].OpsSeries)
			steady := a.VMs[0].SteadyOpsPerSec
			for _, d := range []string{"2s", "5s"} {
				if steady != nil {
					break
				}
				t.Logf("no steady-state figure from a 400 ms run on this host; again, %s", d)
				r := runJSON(t, 0, on(h, "run", "--workload", "lock", "--vcpus", "4", "--pcpus", "0,1", "--sched", "rr", "--duration", d, "--seed", "42")...)
				require.Len(t, r.VMs, 1)
				steady = r.VMs[0].SteadyOpsPerSec
			}
			assert.NotNil(t, steady, "steady_ops_per_s")
		})
		t.Run("counter", func(t *testing.T) {
			r := runJSON(t, 0, on(h, "run", "--workload", "counter", "--vcpus", "4", "--pcpus", "0,1", "--iterations", "1000000")...)
			require.True(t, r.OK, r.Error)
			vm := r.VMs[0]
			require.NotNil(t, vm.CounterExpected)
			require.NotNil(t, vm.CounterActual)
			assert.EqualValues(t, 4000000, *vm.CounterExpected)
			assert.EqualValues(t, 4000000, *vm.CounterActual)
			assert.Greater(t, vm.OpsPerS, 0.0)
		})
		t.Run("null", func(t *testing.T) {
			r := runJSON(t, 0, on(h, "run", "--workload", "null", "--vcpus", "1", "--iterations", "2000")...)
			require.True(t, r.OK, r.Error)
			require.NotNil(t, r.VMs[0].NsPerHypercall)
			assert.Greater(t, *r.VMs[0].NsPerHypercall, 0.0)
		})
		t.Run("failure", func(t *testing.T) {
			r := runJSON(t, 1, on(h, "run", "--workload", "fault-gp", "--vcpus", "1")...)
			assert.False(t, r.OK)
			assert.Contains(t, r.Error, "#GP")
		})
		t.Run("table", func(t *testing.T) {
			stdout, stderr, code := lhpvm(t, on(h, "run", "--workload", "hello", "--vcpus", "2")...)
			require.Equal(t, 0, code, stderr)
			assert.Contains(t, stdout, "hello from vCPU 1 of 2")
			assert.Contains(t, stdout, ": ok")
		})
		t.Run("rr with a corunner", func(t *testing.T) {
			r := runJSON(t, 0, on(h, "run", "--workload", "counter", "--vcpus", "2", "--corunner", "2", "--sched", "rr",
				"--slice", "1ms", "--iterations", "2000000")...)
			require.True(t, r.OK, r.Error)
			assert.Equal(t, "rr", r.Sched.Policy)
			require.Len(t, r.VMs, 2)
			assert.Equal(t, "hog", r.VMs[1].Name)
			assert.Greater(t, r.VMs[1].Ops, uint64(0), "the hog ran while the counter VM did")
		})
		t.Run("scenario", func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "s.yaml")
			require.NoError(t, os.WriteFile(f, []byte(`
sched: {policy: rr, slice: 2ms}
duration: 200ms
vms:
  - {name: a, vcpus: 2, workload: counter}
  - {name: b, vcpus: 1, workload: hog}
`), 0o644))
			r := runJSON(t, 0, on(h, "run", "--scenario", f)...)
			require.True(t, r.OK, r.Error)
			require.Len(t, r.VMs, 2)
			assert.Equal(t, "a", r.VMs[0].Name)
			assert.Equal(t, *r.VMs[0].CounterExpected, *r.VMs[0].CounterActual)
		})
		t.Run("the default watchdog follows --duration", func(t *testing.T) {
			// hello exits at once; a --duration of a minute must not be
			// refused against a fixed one-minute watchdog.
			r := runJSON(t, 0, on(h, "run", "--workload", "hello", "--duration", "1m", "--quiet")...)
			assert.True(t, r.OK, r.Error)
		})
		t.Run("lock events and damage", func(t *testing.T) {
			if len(pcpus(t)) < 2 {
				t.Skip("needs 2 host CPUs")
			}
			// Contention is up to the host: on the emulated runner under
			// -race a 300 ms run once saw no steal and no slow path, so a
			// run without them is made again, longer.
			var r report
			for _, d := range []string{"300ms", "1s", "3s"} {
				r = runJSON(t, 0, on(h, "run", "--workload", "lock", "--lock", "pvqspin", "--vcpus", "4", "--pcpus", "0,1",
					"--sched", "pv", "--boost-kicked", "--slice", "5ms", "--duration", d, "--quiet")...)
				require.True(t, r.OK, r.Error)
				if ev := r.VMs[0].LockEvents; ev["pv_lock_stealing"] > 0 && ev["lock_slowpath"] > 0 {
					break
				}
				t.Logf("a %s run saw no steal or no slow path on this host; again, longer", d)
			}
			vm := r.VMs[0]
			names := []string{"lock_slowpath", "lock_pending", "pv_lock_stealing", "pv_wait_node", "pv_wait_head",
				"pv_wait_early", "pv_wait_again", "pv_spurious_wakeup", "pv_kick_unlock", "pv_kick_wake",
				"pv_hash_hops", "pv_latency_kick_ns", "pv_latency_wake_ns"}
			for _, n := range names {
				assert.Contains(t, vm.LockEvents, n)
			}
			assert.Greater(t, vm.LockEvents["pv_lock_stealing"], 0.0, "4 vCPUs on 2 pCPUs steal the lock")
			assert.Greater(t, vm.LockEvents["lock_slowpath"], 0.0)
			assert.Zero(t, vm.LockEvents["lock_pending"], "pv skips the pending fast path, as Linux does")
			var steals float64
			for _, v := range vm.VCPU {
				steals += v.LockEvents["pv_lock_stealing"]
				require.NotNil(t, v.HeldPreemptedNs)
			}
			assert.Equal(t, vm.LockEvents["pv_lock_stealing"], steals, "the VM's events are its vCPUs'")
			// Fairness: the spread of the vCPUs' acquisitions.
			require.NotNil(t, vm.Fairness)
			lo, hi := vm.VCPU[0].Acquisitions, vm.VCPU[0].Acquisitions
			for _, v := range vm.VCPU {
				lo, hi = min(lo, v.Acquisitions), max(hi, v.Acquisitions)
			}
			assert.Equal(t, lo, vm.Fairness.MinAcq)
			assert.Equal(t, hi, vm.Fairness.MaxAcq)
			assert.InDelta(t, float64(vm.Acquisitions)/4, vm.Fairness.AvgAcq, 1e-6)
			assert.True(t, vm.Fairness.Jain >= 0.25 && vm.Fairness.Jain <= 1, "Jain's index in [1/n, 1]: %v", vm.Fairness.Jain)
			require.NotNil(t, vm.HeldPreemptedNs)
			require.NotNil(t, vm.GrantedPreemptedNs)
			require.Len(t, vm.Locks, 1)
			assert.Equal(t, *vm.HeldPreemptedNs, vm.Locks[0].HeldPreemptedNs)
			assert.Zero(t, *vm.GrantedPreemptedNs, "pvqspin hands nothing over: the new holder takes the lock itself")

			// A FIFO lock under rr: handed to preempted waiters, as
			// measured (5 ms slices, 300 ms: dozens of preemptions).
			r = runJSON(t, 0, on(h, "run", "--workload", "lock", "--lock", "ticket", "--vcpus", "4", "--pcpus", "0,1",
				"--sched", "rr", "--slice", "5ms", "--duration", "300ms", "--quiet")...)
			require.True(t, r.OK, r.Error)
			require.NotNil(t, r.VMs[0].GrantedPreemptedNs)
			assert.Greater(t, *r.VMs[0].GrantedPreemptedNs, int64(0))

			// Linux's scheduler: nobody knows who runs.
			r = runJSON(t, 0, on(h, "run", "--workload", "lock", "--lock", "ticket", "--vcpus", "2", "--duration", "100ms", "--quiet")...)
			require.True(t, r.OK, r.Error)
			assert.Nil(t, r.VMs[0].HeldPreemptedNs)
			assert.Nil(t, r.VMs[0].Locks)
		})
		t.Run("timeout", func(t *testing.T) {
			_, stderr, code := lhpvm(t, on(h, "run", "--workload", "spin", "--vcpus", "2", "--timeout", "300ms")...)
			assert.Equal(t, 1, code)
			assert.Contains(t, stderr, "watchdog timeout")
		})
	})
}

func TestCLIWorkloads(t *testing.T) {
	stdout, _, code := lhpvm(t, "workloads")
	assert.Equal(t, 0, code)
	for _, w := range []string{"hello", "counter", "null", "hog", "spin", "hostile"} {
		assert.Contains(t, stdout, w)
	}
}

// TestREADMEGuest: a guest written from the README alone (ring-3 entry
// note, PRINT, EXIT) runs on every backend; without the note it runs on KVM
// and the ptrace backend refuses it with a usage error.
func TestREADMEGuest(t *testing.T) {
	img := artifact(t, "readme-guest")
	noNote := artifact(t, "readme-guest-no-note")
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		stdout, stderr, code := lhpvm(t, on(h, "run", "--image", img, "--vcpus", "3")...)
		require.Equal(t, 0, code, stderr)
		for i := 0; i < 3; i++ {
			assert.Contains(t, stdout, fmt.Sprintf("[vm0/cpu%d] hello from a README guest\n", i))
		}
		// --image is the flag-built VM's; a --corunner runs the built-in hog.
		r := runJSON(t, 0, on(h, "run", "--image", img, "--vcpus", "1", "--corunner", "1", "--quiet")...)
		require.Len(t, r.VMs, 2)
		assert.Equal(t, img, r.VMs[0].Image)
		assert.Equal(t, "built-in", r.VMs[1].Image)
		stdout, stderr, code = lhpvm(t, on(h, "run", "--image", noNote, "--vcpus", "1")...)
		if h.UserOnly() {
			assert.Equal(t, 2, code, "an image the backend cannot start is a usage error")
			assert.Empty(t, stdout)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			assert.Contains(t, stderr, "declares no ring-3 entry")
		} else {
			assert.Equal(t, 0, code, stderr)
			assert.Contains(t, stdout, "hello from a README guest")
		}
	})
}

// TestBackendChoice: --backend names what runs; a backend this host lacks is
// one line and exit 1, an unknown one a usage error; 'lhpvm backends' lists
// both with their state.
func TestBackendChoice(t *testing.T) {
	stdout, _, code := lhpvm(t, "backends", "--json")
	require.Equal(t, 0, code)
	var list []struct {
		Name      string `json:"name"`
		Available bool   `json:"available"`
		Reason    string `json:"reason"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &list))
	require.Len(t, list, 2)
	for _, b := range list {
		t.Run(b.Name, func(t *testing.T) {
			if !b.Available {
				assert.NotEmpty(t, b.Reason, "a missing backend says why")
				stdout, stderr, code := lhpvm(t, "run", "--backend", b.Name, "--workload", "hello")
				assert.Equal(t, 1, code)
				assert.Empty(t, stdout)
				assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
				assert.Contains(t, stderr, b.Reason)
				return
			}
			r := runJSON(t, 0, "run", "--backend", b.Name, "--workload", "hello", "--vcpus", "8", "--pcpus", "0,1")
			assert.True(t, r.OK, r.Error)
			assert.Equal(t, b.Name, r.Backend)
			assert.Len(t, r.VMs[0].VCPU, 8)
		})
	}
	r := runJSON(t, 0, "run", "--workload", "hello")
	assert.Equal(t, list[0].Name == "kvm" && list[0].Available, r.Backend == "kvm", "auto prefers kvm")
	assert.NotEmpty(t, r.BackendReason)
	_, stderr, code := lhpvm(t, "run", "--backend", "xen")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `unknown backend "xen"`)
}

// prebuiltImage is the built-in guest, relative to the repository root.
const prebuiltImage = "guest/prebuilt/image/lhpvm-guest.elf"

func readFile(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// lockedBuffer is a buffer a running command writes and a test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCLIPCPULock: two lhpvm processes never measure on one host CPU at
// once. The second says whom it waits for and runs when the first is
// done; one stopped while waiting exits 130 without running.
func TestCLIPCPULock(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LHPVM_LOCK_DIR", dir)
	first := exec.Command(lhpvmBin(t), "run", "--workload", "lock", "--pcpus", "0", "--duration", "10m", "--quiet")
	require.NoError(t, first.Start())
	defer first.Process.Kill()
	held := fmt.Sprintf("pid %d (", first.Process.Pid)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "lhpvm-cpu0.lock"))
		return strings.HasPrefix(string(b), held)
	}, 5*time.Minute, 10*time.Millisecond, "the first run holds CPU 0")

	start := func() (*exec.Cmd, *lockedBuffer) {
		var stderr lockedBuffer
		cmd := exec.Command(lhpvmBin(t), "run", "--workload", "hello", "--pcpus", "0", "--quiet")
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "waiting for host CPU 0") }, 5*time.Minute,
			10*time.Millisecond, "it waits, and says so")
		return cmd, &stderr
	}
	stopped, stderr := start()
	require.NoError(t, stopped.Process.Signal(os.Interrupt))
	var ee *exec.ExitError
	require.ErrorAs(t, stopped.Wait(), &ee)
	assert.Equal(t, 130, ee.ExitCode(), stderr.String())

	second, stderr := start()
	assert.Contains(t, stderr.String(), "another lhpvm measures on it ("+held)
	require.NoError(t, first.Process.Signal(os.Interrupt)) // the first ends; the second gets CPU 0
	_ = first.Wait()
	require.NoError(t, second.Wait(), stderr.String())
}
