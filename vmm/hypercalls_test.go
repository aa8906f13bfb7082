package vmm

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/sched"
	"github.com/stretchr/testify/require"
)

// idleHV is a backend whose vCPUs never run: FuzzHypercalls plays the guest
// itself, calling the VMM's hypercall handler the way the vCPU loop does.
// What is under test is the handler, not a backend.
type idleHV struct{}

func (idleHV) Name() string                         { return "idle" }
func (idleHV) MaxVCPUs() int                        { return 0 }
func (idleHV) UserOnly() bool                       { return false }
func (idleHV) CreateVM(*host.Memory) (hv.VM, error) { return idleVM{}, nil }
func (idleHV) Close() error                         { return nil }

type idleVM struct{}

func (idleVM) CreateVCPU(int, hv.Entry) (hv.VCPU, error) { return idleCPU{}, nil }
func (idleVM) TSCkHz() (uint64, error)                   { return 2_000_000, nil }
func (idleVM) Close() error                              { return nil }

type idleCPU struct{}

var errIdle = errors.New("the idle backend does not run guests")

func (idleCPU) Attach() error                        { return errIdle }
func (idleCPU) Run() (hv.Event, error)               { return hv.Event{}, errIdle }
func (idleCPU) RequestExit()                         {}
func (idleCPU) CompleteRead(uint64)                  {}
func (idleCPU) Pin(int) error                        { return nil }
func (idleCPU) Regs() (hv.Regs, error)               { return hv.Regs{}, errIdle }
func (idleCPU) SpecialRegs() (hv.SpecialRegs, error) { return hv.SpecialRegs{}, errIdle }
func (idleCPU) Close() error                         { return nil }

const retSentinel = 0x5eadbeef5eadbeef

// FuzzHypercalls: a hostile guest's random sequence of hypercalls and bad
// doorbell accesses against the VMM's handler, on 4 vCPUs under host or rr:
// no panic, no hang, every call answered, every bad call counted. Each
// record is 18 bytes: vCPU, call, two arguments.
func FuzzHypercalls(f *testing.F) {
	rec := func(id, nr byte, a0, a1 uint64) []byte {
		b := []byte{id, nr}
		b = binary.LittleEndian.AppendUint64(b, a0)
		return binary.LittleEndian.AppendUint64(b, a1)
	}
	seed := func(rs ...[]byte) []byte {
		var b []byte
		for _, r := range rs {
			b = append(b, r...)
		}
		return b
	}
	f.Add(byte(0), seed(rec(0, hypercall.CallNull, 0, 0), rec(1, hypercall.CallPrint, 0x100000, 16),
		rec(2, hypercall.CallKick, 3, 0), rec(3, hypercall.CallWait, 0x1000, 0), rec(0, hypercall.CallYield, 1, 0)))
	f.Add(byte(1), seed(rec(0, hypercall.CallWait, 0x1004, 0), rec(1, hypercall.CallKick, 0, 0),
		rec(0, hypercall.CallExit, 0, 0), rec(1, 0xff, ^uint64(0), 0x40), rec(2, hypercall.CallFault, 0, 0)))
	f.Add(byte(0), seed(rec(0, hypercall.CallPrint, ^uint64(0)-8, 4096), rec(1, hypercall.CallWait, 3, 0),
		rec(2, 0x80, 0, 0), rec(3, 0x81, 0, 0)))
	// One VM for every input (guest RAM costs half a millisecond to set up
	// and tear down); each input gets a fresh machine and fresh VMM state.
	const n = 4
	wl, err := LookupWorkload("hog")
	require.NoError(f, err)
	vm, err := New(idleHV{}, Config{VCPUs: n, MemBytes: minMem, Workload: wl})
	require.NoError(f, err)
	defer vm.Close()
	f.Fuzz(func(t *testing.T, policy byte, b []byte) {
		vm.m, vm.calls = nil, make([]vcpuCalls, n)
		pol := "host"
		if policy%2 == 1 {
			pol = "rr"
		}
		m, err := NewMachine(MachineConfig{PCPUs: []int{0}, Policy: pol}, vm)
		require.NoError(t, err)
		m.scheduler.Start(true)
		defer m.scheduler.Stop()
		for _, v := range vm.vcpus {
			v.Unpark() // whatever a previous input's scheduler asked
		}
		done := make([]bool, n)
		for ; len(b) >= 18; b = b[18:] {
			id, op := int(b[0])%n, b[1]
			a0, a1 := binary.LittleEndian.Uint64(b[2:]), binary.LittleEndian.Uint64(b[10:])
			if op&0x40 != 0 { // point into RAM, near its end or its start
				a0 %= vm.cfg.MemBytes + 64
			}
			blocked := false
			m.scheduler.Snapshot(func(st *sched.State) { blocked = st.VMs[0][id].Status == sched.Blocked })
			if done[id] || blocked {
				continue // such a vCPU does not run
			}
			v := vm.vcpus[id]
			page := vm.layout.Page(id)
			vm.mem.Store64(page+hypercall.OffArgs, a0)
			vm.mem.Store64(page+hypercall.OffArgs+8, a1)
			vm.mem.Store64(page+hypercall.OffRet, retSentinel)
			bad := vm.calls[id].badCalls.Load()
			ev := hv.Event{Kind: hv.EventHypercall, Nr: uint64(op % 10)}
			switch {
			case op >= 0xf0:
				ev.Nr = a0 ^ a1 // any number at all
			case op >= 0xe0:
				ev = hv.Event{Kind: hv.EventBadDoorbell, Addr: hypercall.DoorbellGPA + uint64(op&7), Len: uint32(op & 0xf), Write: op&8 != 0}
			}
			act := vm.HandleExit(v, ev)
			if ev.Kind == hv.EventHypercall && (ev.Nr == hypercall.CallExit || ev.Nr == hypercall.CallFault) {
				if !act.Finish {
					t.Fatalf("call %d did not end vCPU %d", ev.Nr, id)
				}
				done[id] = true
				continue
			}
			if act.Finish {
				t.Fatalf("%+v ended vCPU %d: %v", ev, id, act.Err)
			}
			ret := int64(vm.mem.Load64(page + hypercall.OffRet))
			nowBad := vm.calls[id].badCalls.Load()
			switch {
			case ev.Kind == hv.EventBadDoorbell:
				if nowBad != bad+1 {
					t.Fatalf("a bad doorbell access was not counted")
				}
			case ret == retSentinel:
				t.Fatalf("call %d (%#x, %#x) was not answered", ev.Nr, a0, a1)
			case ret < 0 && nowBad != bad+1, ret >= 0 && nowBad != bad:
				t.Fatalf("call %d (%#x, %#x) returned %d with %d bad calls counted", ev.Nr, a0, a1, ret, nowBad-bad)
			}
		}
	})
}
