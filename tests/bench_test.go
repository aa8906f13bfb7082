package tests

import (
	"errors"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lhpvm/lhpvm/internal/backendtest"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/vcpu"
	"github.com/lhpvm/lhpvm/vmm"
	"github.com/stretchr/testify/require"
)

// goHypercallNs runs n NULL hypercalls in the guest and returns the round
// trip as the guest measured it with rdtsc.
func goHypercallNs(b *testing.B, h hv.Hypervisor, n int) float64 {
	cfg := config(b, "null", 1)
	cfg.Iterations = uint64(n)
	mc := machine(b)
	mc.PCPUs = mc.PCPUs[:1]
	r := runM(b, h, mc, cfg)
	require.True(b, r.OK, r.Error)
	return *r.VMs[0].NsPerHypercall
}

// reference builds the minimal C program doing backend h's doorbell round
// trip with nothing else in the way, so the Go VMM is compared with it on the
// same machine in the same run: tests/refvmm (one KVM_EXIT_MMIO from ring 3)
// for kvm, tests/reftracer (one ptrace SIGSEGV stop, served with the same
// requests the Go tracer makes) for ptrace.
func reference(b *testing.B, h hv.Hypervisor) string {
	name := "refvmm"
	if h.UserOnly() {
		name = "reftracer"
	}
	return artifact(b, name)
}

func refHypercallNs(b *testing.B, bin string, n int) float64 {
	out, err := exec.Command("taskset", "-c", strconv.Itoa(pcpus(b)[0]), bin, strconv.Itoa(n)).Output()
	require.NoError(b, err)
	f := strings.Fields(string(out))
	require.NotEmpty(b, f)
	ns, err := strconv.ParseFloat(strings.TrimPrefix(f[0], "ns_per_exit="), 64)
	require.NoError(b, err, string(out))
	return ns
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// BenchmarkHypercall: the ring-3 doorbell round trip of the Go VMM, and the
// same exit in the backend's C reference, interleaved in rounds so that both
// see the same machine noise; ratio = Go / C (medians). Both run on the first
// pCPU (on ptrace: tracer and stub together). One b.N = one round of 2000
// calls each.
func BenchmarkHypercall(b *testing.B) {
	backendtest.EachB(b, func(b *testing.B, h hv.Hypervisor) {
		bin := reference(b, h)
		const n = 2000
		var goNs, cNs []float64
		for b.Loop() {
			goNs = append(goNs, goHypercallNs(b, h, n))
			cNs = append(cNs, refHypercallNs(b, bin, n))
		}
		g, c := median(goNs), median(cNs)
		b.ReportMetric(g, "ns/hypercall")
		b.ReportMetric(c, "ref-ns/exit")
		b.ReportMetric(g/c, "go/ref")
	})
}

// BenchmarkBootToFirstHypercall: from vmm.New (KVM_CREATE_VM, memory, image,
// boot state, one vCPU) to the guest's first hypercall reaching the VMM.
func BenchmarkBootToFirstHypercall(b *testing.B) {
	backendtest.EachB(b, func(b *testing.B, h hv.Hypervisor) {
		cfg := config(b, "hello", 1)
		var total time.Duration
		for b.Loop() {
			start := time.Now()
			vm, err := vmm.New(h, cfg)
			require.NoError(b, err)
			m, err := vmm.NewMachine(machine(b), vm)
			require.NoError(b, err)
			r := m.Run()
			require.True(b, r.OK, r.Error)
			total += vm.FirstHypercall().Sub(start)
			require.NoError(b, vm.Close())
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/boot")
	})
}

// rounds is how many kicks or switches one benchmark op makes: the metrics
// are medians over every one of them, because on our shared, virtual CPUs a
// few outliers of milliseconds would dominate a mean of a handful.
const rounds = 20

func p50(ds []time.Duration) float64 {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d.Nanoseconds())
	}
	return median(xs)
}

// BenchmarkKick: kick a vCPU spinning in ring 3 out of the guest and park
// it, then let it run again. kick-ns is from the kick to the vCPU loop seeing
// the interrupted run (the guest stopped); park-ns until the state is
// Parked. Medians; one op is rounds kicks.
func BenchmarkKick(b *testing.B) {
	backendtest.EachB(b, func(b *testing.B, h hv.Hypervisor) {
		cfg := config(b, "spin", 1)
		vm, err := vmm.New(h, cfg)
		require.NoError(b, err)
		defer vm.Close()
		cpus := pcpus(b)
		defer pinBenchmark(b, cpus[0])()
		v := vm.VCPUs()[0]
		v.Dispatch(cpus[len(cpus)-1]) // the vCPU on the other CPU than this goroutine
		require.NoError(b, <-v.Start())
		time.Sleep(10 * time.Millisecond)
		var kick, park []time.Duration
		for b.Loop() {
			for range rounds {
				start := time.Now()
				v.RequestPark()
				for v.State() != vcpu.Parked {
				}
				park = append(park, time.Since(start))
				kick = append(kick, time.Duration(v.Stats.KickToStop.Load()))
				v.Unpark()
				for v.State() != vcpu.Running {
				}
				time.Sleep(200 * time.Microsecond) // let it re-enter the guest
			}
		}
		b.ReportMetric(p50(kick), "kick-ns")
		b.ReportMetric(p50(park), "park-ns")
		v.Stop()
		require.NoError(b, v.Wait(5*time.Second))
	})
}

// BenchmarkSwitch: the cost of one preempt-and-dispatch on a pCPU through
// the scheduler (policy decision, kick, park, seat hand-over, unpark)
// against the raw stop+restart floor measured in the same run: stop one
// vCPU thread, wait until it is parked, then start the other. Two vCPUs
// spinning in ring 3 share one pCPU; a switch is timed until the outgoing
// vCPU is parked and the incoming one runs. switch-ns is the median; one op
// is rounds switches.
func BenchmarkSwitch(b *testing.B) {
	backendtest.EachB(b, func(b *testing.B, h hv.Hypervisor) {
		cpus := pcpus(b)
		if len(cpus) < 2 {
			b.Skip("needs 2 host CPUs: one for the vCPUs, one for the benchmark")
		}
		cpu := cpus[1:2]
		defer pinBenchmark(b, cpus[0])()

		b.Run("raw", func(b *testing.B) {
			vm, err := vmm.New(h, config(b, "spin", 2))
			require.NoError(b, err)
			defer vm.Close()
			vs := vm.VCPUs()
			for _, v := range vs {
				v.Dispatch(cpu[0])
				require.NoError(b, <-v.Start())
			}
			vs[1].RequestPark()
			waitState(vs[1], vcpu.Parked)
			cur := 0
			var ds []time.Duration
			for b.Loop() {
				for range rounds {
					start := time.Now()
					out, in := vs[cur], vs[1-cur]
					out.RequestPark()
					waitState(out, vcpu.Parked)
					in.Unpark()
					waitState(in, vcpu.Running)
					ds = append(ds, time.Since(start))
					cur = 1 - cur
				}
			}
			b.ReportMetric(p50(ds), "switch-ns")
			for _, v := range vs {
				v.Stop()
			}
		})

		b.Run("scheduler", func(b *testing.B) {
			vm, err := vmm.New(h, config(b, "spin", 2))
			require.NoError(b, err)
			defer vm.Close()
			mc := machine(b)
			mc.PCPUs, mc.Policy, mc.Options.Slice, mc.Timeout = cpu, "rr", time.Second, time.Hour
			m, err := vmm.NewMachine(mc, vm)
			require.NoError(b, err)
			done := make(chan *vmm.Result)
			go func() { done <- m.Run() }()
			vs, svs := vm.VCPUs(), m.SchedVCPUs(0)
			require.Eventually(b, func() bool { return vs[0].State() == vcpu.Running }, 5*time.Second, time.Millisecond)
			cur := 0
			var ds []time.Duration
			for b.Loop() {
				for range rounds {
					start := time.Now()
					out, in := cur, 1-cur
					m.Scheduler().Yield(svs[out], -1) // rr: the slice ends, the other vCPU is dispatched
					waitState(vs[out], vcpu.Parked)
					waitState(vs[in], vcpu.Running)
					ds = append(ds, time.Since(start))
					cur = in
				}
			}
			b.StopTimer()
			b.ReportMetric(p50(ds), "switch-ns")
			m.Abort(errors.New("benchmark done"))
			<-done
		})
	})
}

// pinBenchmark keeps the benchmark's goroutine (which busy-waits on vCPU
// states) on cpu, away from the vCPU threads it measures. Call the result
// to undo it.
func pinBenchmark(b *testing.B, cpu int) func() {
	runtime.LockOSThread()
	require.NoError(b, host.PinThread(cpu))
	return runtime.UnlockOSThread // the thread keeps its affinity; the runtime may reuse it: harmless here
}

func waitState(v *vcpu.VCPU, s vcpu.State) {
	for v.State() != s {
		runtime.Gosched()
	}
}
