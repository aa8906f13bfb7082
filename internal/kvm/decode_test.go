package kvm

import (
	"testing"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/stretchr/testify/assert"
)

func le(v uint64) (b [8]byte) {
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

func TestDecode(t *testing.T) {
	db := uint64(hypercall.DoorbellGPA)
	tests := []struct {
		name string
		exit Exit
		want hv.Event
	}{
		{"EINTR", Exit{Reason: ExitInterrupted}, hv.Event{Kind: hv.EventInterrupted}},
		{"KVM_EXIT_INTR", Exit{Reason: ExitIntr}, hv.Event{Kind: hv.EventInterrupted}},
		{"hypercall", Exit{Reason: ExitMMIO, MMIOAddr: db, MMIOLen: 8, MMIOIsWrite: true, MMIOData: le(hypercall.CallWait)},
			hv.Event{Kind: hv.EventHypercall, Nr: hypercall.CallWait, Addr: db, Len: 8, Write: true}},
		{"huge call number", Exit{Reason: ExitMMIO, MMIOAddr: db, MMIOLen: 8, MMIOIsWrite: true, MMIOData: le(^uint64(0))},
			hv.Event{Kind: hv.EventHypercall, Nr: ^uint64(0), Addr: db, Len: 8, Write: true}},
		{"4-byte doorbell write", Exit{Reason: ExitMMIO, MMIOAddr: db, MMIOLen: 4, MMIOIsWrite: true},
			hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: 4, Write: true}},
		{"doorbell read", Exit{Reason: ExitMMIO, MMIOAddr: db, MMIOLen: 8},
			hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: 8}},
		{"elsewhere in the doorbell page", Exit{Reason: ExitMMIO, MMIOAddr: db + 0x1ffff8, MMIOLen: 8, MMIOIsWrite: true},
			hv.Event{Kind: hv.EventBadDoorbell, Addr: db + 0x1ffff8, Len: 8, Write: true}},
		{"past the doorbell page", Exit{Reason: ExitMMIO, MMIOAddr: db + 0x200000, MMIOLen: 1, MMIOIsWrite: true},
			hv.Event{Kind: hv.EventMMIO, Addr: db + 0x200000, Len: 1, Write: true}},
		{"below the doorbell", Exit{Reason: ExitMMIO, MMIOAddr: 0x1000, MMIOLen: 2},
			hv.Event{Kind: hv.EventMMIO, Addr: 0x1000, Len: 2}},
		{"hlt", Exit{Reason: ExitHLT}, hv.Event{Kind: hv.EventHalted}},
		{"triple fault", Exit{Reason: ExitShutdown}, hv.Event{Kind: hv.EventShutdown}},
		{"port out", Exit{Reason: ExitIO, IOPort: 0x3f8, IOSize: 1, IODirection: 1},
			hv.Event{Kind: hv.EventPortIO, Addr: 0x3f8, Len: 1, Write: true}},
		{"fail entry", Exit{Reason: ExitFailEntry, Detail: 0x80000021},
			hv.Event{Kind: hv.EventFailed, Reason: "KVM exit FAIL_ENTRY (detail 0x80000021)"}},
		{"internal error", Exit{Reason: ExitInternalError, Detail: 1},
			hv.Event{Kind: hv.EventFailed, Reason: "KVM exit INTERNAL_ERROR (detail 0x1)"}},
		{"unknown reason", Exit{Reason: 4242}, hv.Event{Kind: hv.EventFailed, Reason: "KVM exit exit reason 4242 (detail 0x0)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Decode(tt.exit))
		})
	}
}

func TestNames(t *testing.T) {
	assert.Equal(t, "hypercall", hv.EventHypercall.String())
	assert.Equal(t, "event 200", hv.EventKind(200).String())
	assert.Equal(t, "SHUTDOWN", ExitShutdown.String())
	assert.Equal(t, "exit reason 4242", ExitReason(4242).String())
}

func TestLongModeSregs(t *testing.T) {
	k := hv.KernelEntry{RIP: 0x100000, RSP: 0x3000, CR3: 0x2000, GDTBase: 0x5000, GDTLimit: 55,
		TSSBase: 0x5080, TSSLimit: 103, CodeSel: 0x08, DataSel: 0x10, TSSSel: 0x28}
	s := longModeSregs(&Sregs{}, k)
	assert.Equal(t, uint64(0x5080), s.TR.Base)
	assert.Equal(t, uint16(0x28), s.TR.Selector)
	assert.Equal(t, uint8(tssTypeBusy), s.TR.Typ)
	assert.Equal(t, uint64(0x5000), s.GDT.Base)
	assert.Equal(t, uint16(55), s.GDT.Limit)
	assert.Zero(t, s.IDT.Limit, "no IDT: the guest installs its own")
	assert.Equal(t, uint64(0x500), s.EFER, "LME | LMA")
	assert.Equal(t, uint64(0x2000), s.CR3)
	assert.Equal(t, uint8(1), s.CS.L, "64-bit code")
	assert.Equal(t, uint16(0x08), s.CS.Selector)
	assert.Equal(t, uint16(0x10), s.SS.Selector)
}

func TestWithAPICID(t *testing.T) {
	in := &gokvm.CPUID{Nent: 3, Entries: []gokvm.CPUIDEntry2{
		{Function: 1, Ebx: 0xff123456}, {Function: 0xb, Edx: 9}, {Function: 7, Ebx: 42}}}
	out := withAPICID(in, 5)
	assert.Equal(t, uint32(0x05123456), out.Entries[0].Ebx)
	assert.Equal(t, uint32(5), out.Entries[1].Edx)
	assert.Equal(t, uint32(42), out.Entries[2].Ebx)
	assert.Equal(t, uint32(0xff123456), in.Entries[0].Ebx, "the input is not changed")
}
