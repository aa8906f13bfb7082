package vmm

import (
	"fmt"
	"strings"

	"github.com/lhpvm/lhpvm/hypercall"
)

// Workload is a workload of the built-in guest.
type Workload struct {
	Name  string
	ID    uint32
	Doc   string
	Test  bool // misbehaves on purpose; for tests
	Check func(r *VMResult) error
}

var workloads = []Workload{
	{Name: "hello", ID: hypercall.WorkloadHello, Doc: "every vCPU prints its id and exits"},
	{Name: "counter", ID: hypercall.WorkloadCounter, Doc: "shared counter under a test-and-set lock, checked exact", Check: checkCounter},
	{Name: "null", ID: hypercall.WorkloadNull, Doc: "NULL hypercalls timed with rdtsc (ns_per_hypercall)"},
	{Name: "lock", ID: hypercall.WorkloadLock, Doc: "lock benchmark: --lock, --locks, --cs-cycles, --think-cycles; self-checking", Check: checkLock},
	{Name: "hog", ID: hypercall.WorkloadHog, Doc: "pure CPU loop reporting progress (a co-runner)"},
	{Name: "spin", ID: hypercall.WorkloadSpin, Doc: "spins forever, ignoring stop (runaway guest)", Test: true},
	{Name: "fault-gp", ID: hypercall.WorkloadFaultGP, Doc: "#GP in ring 3", Test: true},
	{Name: "fault-pf", ID: hypercall.WorkloadFaultPF, Doc: "#PF in ring 3", Test: true},
	{Name: "fault-triple", ID: hypercall.WorkloadFaultTriple, Doc: "wrecks its IDT and faults: triple fault", Test: true},
	{Name: "hostile", ID: hypercall.WorkloadHostile, Doc: "bad hypercalls, each checked for its error code", Test: true},
	{Name: "wait-forever", ID: hypercall.WorkloadWaitForever, Doc: "WAITs with nobody to kick it (lost wakeup)", Test: true},
	{Name: "syscall-write", ID: hypercall.WorkloadSyscallWrite, Doc: "tries the host's write(2) with the syscall instruction", Test: true},
	{Name: "syscall-open", ID: hypercall.WorkloadSyscallOpen, Doc: "tries to create a host file with openat(2), then creat(2)", Test: true},
	{Name: "syscall-execve", ID: hypercall.WorkloadSyscallExecve, Doc: "tries to execve(2) a host shell", Test: true},
	{Name: "syscall-int80", ID: hypercall.WorkloadSyscallInt80, Doc: "tries the i386 creat(2) through int $0x80", Test: true},
	{Name: "code", ID: hypercall.WorkloadCode, Doc: "calls machine code a test supplies (vmm.Config.Code; the fuzz target FuzzGuestCode)", Test: true},
}

// LookupWorkload finds a workload by name.
func LookupWorkload(name string) (Workload, error) {
	for _, w := range workloads {
		if w.Name == name {
			return w, nil
		}
	}
	return Workload{}, fmt.Errorf("unknown workload %q (have: %s)", name, strings.Join(WorkloadNames(true), ", "))
}

// WorkloadNames lists the workload names, test workloads last if included.
func WorkloadNames(withTest bool) []string {
	var names []string
	for _, w := range workloads {
		if withTest || !w.Test {
			names = append(names, w.Name)
		}
	}
	return names
}

// Workloads lists all workloads.
func Workloads() []Workload { return append([]Workload(nil), workloads...) }

func checkCounter(r *VMResult) error {
	r.CounterExpected = new(uint64)
	*r.CounterExpected = r.Ops
	if *r.CounterActual != r.Ops {
		return fmt.Errorf("%w: counter is %d, but the vCPUs made %d increments: mutual exclusion failed",
			ErrCheckFailed, *r.CounterActual, r.Ops)
	}
	return nil
}
