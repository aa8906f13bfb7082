package tests

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/backendtest"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The watchdog of a run of guest code: short when fuzzing, so that inputs
// that spin cost little. In TestGuestCode a seed that spins until the
// watchdog gets spinWatchdog; every other seed ends by itself, in well
// under a second natively and in up to half a second in the emulated kvm
// runner under -race, and gets the tests' hang detector, so that no host,
// however slow or busy, turns its expected outcome into a timeout.
// codeOverrun is how much longer than its watchdog a run may take before
// it counts as a hang (stopping a vCPU may take up to vmm's stopGrace,
// 5 s; it should take microseconds).
const (
	fuzzWatchdog = 200 * time.Millisecond
	spinWatchdog = time.Second
	codeOverrun  = 3 * time.Second
)

// codeOutcomes are the ways a run of guest code may end, whatever the code:
// a clean EXIT (nil), or an error the guest caused and the VMM reported.
// Bad hypercalls are counted and the run goes on, so they end as one of
// these too.
var codeOutcomes = []struct {
	name string
	err  error
}{
	{"guest fault", vmm.ErrGuestFault}, // an exception, a blocked host syscall, a triple fault, MMIO outside RAM
	{"exit code", vmm.ErrGuestExit},    // EXIT with a code other than 0
	{"watchdog", vmm.ErrTimeout},
	{"lost wakeup", vmm.ErrLostWakeup},   // WAIT with nobody to KICK it
	{"check failed", vmm.ErrCheckFailed}, // the code wrote its VCPUPage's check_failures
	// What a backend cannot carry out (ErrUnsupported), where a guest can
	// cause it: below.
	{"unsupported", vmm.ErrUnsupported},
}

// guestUnsupported is what of ErrUnsupported a guest may cause: on
// ptrace, an access to the doorbell by an instruction other than MOV
// (README, "Backends"), or by one its decoder (x86asm) does not know; on
// KVM, an instruction its emulator fails on (KVM_EXIT_INTERNAL_ERROR,
// suberror 1 KVM_INTERNAL_ERROR_EMULATION: on PVM an SSE store or an
// instruction fetch at the doorbell, or ring-0 code it cannot emulate). Any
// other ErrUnsupported, a failed VM entry say, is the VMM's doing.
var guestUnsupported = regexp.MustCompile(`: doorbell access by ".*", which lhpvm does not emulate|: undecodable instruction |: KVM exit INTERNAL_ERROR \(detail 0x1\)`)

// codeOutcome names how a run ended: "ok", one of codeOutcomes, or "" for an
// outcome no guest may cause (a VMM or backend failure).
func codeOutcome(res *vmm.Result) string {
	if res.OK {
		return "ok"
	}
	for _, o := range codeOutcomes {
		if errors.Is(res.Err, o.err) {
			if o.err == vmm.ErrUnsupported && !guestUnsupported.MatchString(res.Error) {
				return ""
			}
			return o.name
		}
	}
	return ""
}

// runCode runs code in a 1-vCPU VM on h and checks everything the VMM
// promises whatever a guest does: the run ends in time as one of
// codeOutcomes, and leaves no process, no fd and no file on the host.
func runCode(t testing.TB, h hv.Hypervisor, code []byte, watchdog time.Duration) *vmm.Result {
	t.Helper()
	fds0, err := openFDs()
	require.NoError(t, err)
	kids0, err := host.Children()
	require.NoError(t, err)

	cfg := config(t, "code", 1)
	cfg.MemBytes = 4 << 20 // the smallest VM: less to set up per input
	cfg.Code = code
	start := time.Now()
	vm, err := vmm.New(h, cfg)
	require.NoError(t, err, "%s: building the VM", h.Name())
	mc := machine(t)
	mc.Timeout = watchdog
	m, err := vmm.NewMachine(mc, vm)
	if err != nil {
		vm.Close()
		require.NoError(t, err, "%s: building the machine", h.Name())
	}
	res := m.Run()
	closeErr := vm.Close()
	took := time.Since(start)

	what := fmt.Sprintf("%s: code % x", h.Name(), code)
	require.NoError(t, closeErr, "%s: closing the VM", what)
	require.NotEmpty(t, codeOutcome(res), "%s: the run ended in a way no guest may cause: %v", what, res.Err)
	require.Less(t, took, watchdog+codeOverrun, "%s: the run outlived its watchdog of %v (%s)", what, watchdog, res.Error)
	kids, err := host.Children()
	require.NoError(t, err)
	require.ElementsMatch(t, kids0, kids, "%s: child processes (stubs, zombies) before and after", what)
	// Give an fd closed asynchronously (by a finalizer, say) a moment; a
	// leaked one stays.
	fds, err := openFDs()
	for deadline := time.Now().Add(time.Second); err == nil && !maps.Equal(fds0, fds) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		fds, err = openFDs()
	}
	require.NoError(t, err)
	require.Equal(t, fds0, fds, "%s: open fds (number: what) before and after", what)
	_, err = os.Stat(hypercall.EscapePath)
	require.True(t, os.IsNotExist(err), "%s: %s exists: the guest reached the host kernel", what, hypercall.EscapePath)
	return res
}

// openFDs lists this process's open file descriptors and what each is.
func openFDs() (map[int]string, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	fds := map[int]string{}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The directory's own fd, open while it was read, is gone now.
		if what, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			fds[fd] = what
		}
	}
	return fds, nil
}

// TestGuestCode runs every seed of FuzzGuestCode on every backend, as
// FuzzGuestCode runs an input, and checks the outcome a seed says it has.
func TestGuestCode(t *testing.T) {
	require.NoError(t, os.RemoveAll(hypercall.EscapePath))
	backendtest.Each(t, func(t *testing.T, h hv.Hypervisor) {
		runCode(t, h, []byte{0xc3}, hangWatchdog) // see FuzzGuestCode
		for _, s := range codeSeeds {
			t.Run(s.name, func(t *testing.T) {
				watchdog := hangWatchdog
				if s.want == "watchdog" {
					watchdog = spinWatchdog
				}
				res := runCode(t, h, s.code(), watchdog)
				if s.want != "" {
					assert.Equal(t, s.want, codeOutcome(res), "%s (%s): %s", s.name, s.doc, res.Error)
					assert.Equal(t, s.bad, res.VMs[0].BadHypercalls, "%s (%s): bad hypercalls", s.name, s.doc)
				}
				if s.ptrace != "" && h.UserOnly() {
					assert.Regexp(t, s.ptrace, res.Error, "%s (%s)", s.name, s.doc)
				}
			})
		}
	})
}

// fuzzing reports whether this test binary runs with -test.fuzz.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

// FuzzGuestCode runs ring-3 machine code as the guest, on every backend
// this host has (workload code, 1 vCPU, a 200 ms watchdog). Whatever the
// code does, the run must end within the watchdog as a clean EXIT or an
// error the guest caused (codeOutcomes), and leave nothing behind: not a
// VMM panic, a hang, a stub process, an fd, or a system call performed by
// the host.
//
// The seeds (codeSeeds) are added only when fuzzing: go test runs them per
// backend in TestGuestCode, where make test's passes can put each backend
// where it runs (tests/gotest.sh); the inputs of go test -run
// FuzzGuestCode/NAME, from testdata/fuzz, run on every backend here.
func FuzzGuestCode(f *testing.F) {
	if fuzzing() {
		for _, s := range codeSeeds {
			f.Add(s.code())
		}
	}
	var (
		once sync.Once
		hs   []hv.Hypervisor
	)
	f.Fuzz(func(t *testing.T, code []byte) {
		once.Do(func() {
			hs = backendtest.Available(t)
			require.NoError(t, os.RemoveAll(hypercall.EscapePath))
			// A first run on each backend opens what stays open (the
			// runtime's threads, a backend's handles), so that the fd
			// counts compare like with like.
			for _, h := range hs {
				runCode(t, h, []byte{0xc3}, fuzzWatchdog)
			}
		})
		if len(hs) == 0 {
			t.Skip("no backend is usable on this host")
		}
		if len(code) > hypercall.MaxCodeLen {
			code = code[:hypercall.MaxCodeLen]
		}
		for _, h := range hs {
			runCode(t, h, code, fuzzWatchdog)
		}
	})
}
