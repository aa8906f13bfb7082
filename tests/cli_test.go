package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lhpvm/lhpvm/internal/backendtest"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var lhpvmBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lhpvm-test")
	if err != nil {
		panic(err)
	}
	lhpvmBin = filepath.Join(dir, "lhpvm")
	if out, err := exec.Command("go", "build", "-o", lhpvmBin, "../cmd/lhpvm").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lhpvm runs the CLI and returns stdout, stderr and the exit code.
func lhpvm(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(lhpvmBin, args...)
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

type report struct {
	OK            bool    `json:"ok"`
	Error         string  `json:"error"`
	ElapsedS      float64 `json:"elapsed_s"`
	Backend       string  `json:"backend"`
	BackendReason string  `json:"backend_reason"`
	Sched         struct {
		Policy string `json:"policy"`
		PCPUs  []int  `json:"pcpus"`
	} `json:"sched"`
	VMs []struct {
		Name            string   `json:"name"`
		VCPUs           int      `json:"vcpus"`
		Workload        string   `json:"workload"`
		ExitCode        uint64   `json:"exit_code"`
		Ops             uint64   `json:"ops"`
		OpsPerS         float64  `json:"ops_per_s"`
		CounterExpected *uint64  `json:"counter_expected"`
		CounterActual   *uint64  `json:"counter_actual"`
		NsPerHypercall  *float64 `json:"ns_per_hypercall"`
		VCPU            []struct {
			ID         int    `json:"id"`
			PCPU       int    `json:"pcpu"`
			Ops        uint64 `json:"ops"`
			Exits      uint64 `json:"exits"`
			Hypercalls uint64 `json:"hypercalls"`
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
func on(h vmm.Hypervisor, args ...string) []string { return append(args, "--backend", h.Name()) }

func TestCLIRun(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, h vmm.Hypervisor) {
		t.Run("hello", func(t *testing.T) {
			r := runJSON(t, 0, on(h, "run", "--workload", "hello", "--vcpus", "8", "--pcpus", "0,1")...)
			require.True(t, r.OK, r.Error)
			assert.Equal(t, "host", r.Sched.Policy)
			assert.Equal(t, []int{0, 1}, r.Sched.PCPUs)
			require.Len(t, r.VMs, 1)
			require.Len(t, r.VMs[0].VCPU, 8)
			for i, v := range r.VMs[0].VCPU {
				assert.Equal(t, i%2, v.PCPU, "round-robin pinning")
				assert.EqualValues(t, 1, v.Ops)
			}
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

// buildREADMEGuest assembles testdata/readme-guest.S, a guest written from
// the README's boot protocol and ABI alone, with the given cpp flags.
func buildREADMEGuest(t *testing.T, flags ...string) string {
	bin := filepath.Join(t.TempDir(), "readme-guest")
	args := append([]string{"-nostdlib", "-static", "-no-pie", "-Wl,-Ttext-segment=0x100000",
		"-Wl,--build-id=none", "-o", bin}, flags...)
	out, err := exec.Command("gcc", append(args, "testdata/readme-guest.S")...).CombinedOutput()
	require.NoError(t, err, "gcc: %s", out)
	return bin
}

// TestREADMEGuest: a guest written from the README alone (ring-3 entry
// note, PRINT, EXIT) runs on every backend; without the note it runs on KVM
// and the ptrace backend refuses it with a usage error.
func TestREADMEGuest(t *testing.T) {
	img := buildREADMEGuest(t)
	noNote := buildREADMEGuest(t, "-DNO_NOTE")
	backendtest.Each(t, func(t *testing.T, h vmm.Hypervisor) {
		stdout, stderr, code := lhpvm(t, on(h, "run", "--image", img, "--vcpus", "3")...)
		require.Equal(t, 0, code, stderr)
		for i := 0; i < 3; i++ {
			assert.Contains(t, stdout, fmt.Sprintf("[vm0/cpu%d] hello from a README guest\n", i))
		}
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
