package vcpu

import (
	"testing"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/kvm"
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
		exit kvm.Exit
		want Event
	}{
		{"EINTR", kvm.Exit{Reason: kvm.ExitInterrupted}, Event{Kind: EventInterrupted}},
		{"KVM_EXIT_INTR", kvm.Exit{Reason: kvm.ExitIntr}, Event{Kind: EventInterrupted}},
		{"hypercall", kvm.Exit{Reason: kvm.ExitMMIO, MMIOAddr: db, MMIOLen: 8, MMIOIsWrite: true, MMIOData: le(hypercall.CallWait)},
			Event{Kind: EventHypercall, Nr: hypercall.CallWait, Addr: db, Len: 8, Write: true}},
		{"huge call number", kvm.Exit{Reason: kvm.ExitMMIO, MMIOAddr: db, MMIOLen: 8, MMIOIsWrite: true, MMIOData: le(^uint64(0))},
			Event{Kind: EventHypercall, Nr: ^uint64(0), Addr: db, Len: 8, Write: true}},
		{"4-byte doorbell write", kvm.Exit{Reason: kvm.ExitMMIO, MMIOAddr: db, MMIOLen: 4, MMIOIsWrite: true},
			Event{Kind: EventBadDoorbell, Addr: db, Len: 4, Write: true}},
		{"doorbell read", kvm.Exit{Reason: kvm.ExitMMIO, MMIOAddr: db, MMIOLen: 8},
			Event{Kind: EventBadDoorbell, Addr: db, Len: 8}},
		{"elsewhere in the doorbell page", kvm.Exit{Reason: kvm.ExitMMIO, MMIOAddr: db + 0x1ffff8, MMIOLen: 8, MMIOIsWrite: true},
			Event{Kind: EventBadDoorbell, Addr: db + 0x1ffff8, Len: 8, Write: true}},
		{"past the doorbell page", kvm.Exit{Reason: kvm.ExitMMIO, MMIOAddr: db + 0x200000, MMIOLen: 1, MMIOIsWrite: true},
			Event{Kind: EventMMIO, Addr: db + 0x200000, Len: 1, Write: true}},
		{"below the doorbell", kvm.Exit{Reason: kvm.ExitMMIO, MMIOAddr: 0x1000, MMIOLen: 2},
			Event{Kind: EventMMIO, Addr: 0x1000, Len: 2}},
		{"hlt", kvm.Exit{Reason: kvm.ExitHLT}, Event{Kind: EventHalted}},
		{"triple fault", kvm.Exit{Reason: kvm.ExitShutdown}, Event{Kind: EventShutdown}},
		{"port out", kvm.Exit{Reason: kvm.ExitIO, IOPort: 0x3f8, IOSize: 1, IODirection: 1},
			Event{Kind: EventPortIO, Addr: 0x3f8, Len: 1, Write: true}},
		{"fail entry", kvm.Exit{Reason: kvm.ExitFailEntry, Detail: 0x80000021},
			Event{Kind: EventFailed, Reason: kvm.ExitFailEntry, Detail: 0x80000021}},
		{"internal error", kvm.Exit{Reason: kvm.ExitInternalError, Detail: 1},
			Event{Kind: EventFailed, Reason: kvm.ExitInternalError, Detail: 1}},
		{"unknown reason", kvm.Exit{Reason: 4242}, Event{Kind: EventFailed, Reason: 4242}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Decode(tt.exit))
		})
	}
}

func TestNames(t *testing.T) {
	assert.Equal(t, "hypercall", EventHypercall.String())
	assert.Equal(t, "event 200", EventKind(200).String())
	assert.Equal(t, "parked", Parked.String())
	assert.Equal(t, "SHUTDOWN", kvm.ExitShutdown.String())
	assert.Equal(t, "exit reason 4242", kvm.ExitReason(4242).String())
}
