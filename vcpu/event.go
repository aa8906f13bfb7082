package vcpu

import (
	"fmt"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/kvm"
)

// EventKind names what a KVM exit means to lhpvm.
type EventKind uint8

const (
	// EventInterrupted: KVM_RUN returned EINTR (a kick, or a Go runtime signal).
	EventInterrupted EventKind = iota
	// EventHypercall: an 8-byte write of a call number to the doorbell.
	EventHypercall
	// EventBadDoorbell: any other access to the doorbell page (wrong width, a
	// read, another offset). The guest gets an error and runs on.
	EventBadDoorbell
	// EventMMIO: an access outside RAM and outside the doorbell page.
	EventMMIO
	// EventHalted: hlt in ring 0 (the guest's fault handler ends this way).
	EventHalted
	// EventShutdown: a triple fault.
	EventShutdown
	// EventPortIO: port I/O, which lhpvm does not emulate.
	EventPortIO
	// EventFailed: FAIL_ENTRY, INTERNAL_ERROR, or a reason lhpvm does not know.
	EventFailed
)

var kindNames = [...]string{"interrupted", "hypercall", "bad doorbell access", "MMIO outside RAM",
	"halted", "shutdown (triple fault)", "port I/O", "failed"}

func (k EventKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("event %d", k)
}

// Event is a decoded exit. Only the fields of its Kind are set.
type Event struct {
	Kind   EventKind
	Nr     uint64 // EventHypercall: the call number
	Addr   uint64 // MMIO address, or port
	Len    uint32 // access width in bytes
	Write  bool
	Reason kvm.ExitReason // the raw reason, for EventFailed
	Detail uint64         // FAIL_ENTRY / INTERNAL_ERROR detail
}

// doorbellPage is the 2 MiB page the VMM maps for the doorbell; accesses to it
// that are not a well-formed hypercall are the guest's mistake, not a crash.
const doorbellPage = 2 << 20

// Decode turns a raw exit into an Event. It is a pure function of the exit.
func Decode(e kvm.Exit) Event {
	switch e.Reason {
	case kvm.ExitInterrupted, kvm.ExitIntr:
		return Event{Kind: EventInterrupted}
	case kvm.ExitMMIO:
		ev := Event{Addr: e.MMIOAddr, Len: e.MMIOLen, Write: e.MMIOIsWrite}
		switch {
		case e.MMIOAddr == hypercall.DoorbellGPA && e.MMIOIsWrite && e.MMIOLen == 8:
			ev.Kind = EventHypercall
			ev.Nr = leUint64(e.MMIOData)
		case e.MMIOAddr >= hypercall.DoorbellGPA && e.MMIOAddr < hypercall.DoorbellGPA+doorbellPage:
			ev.Kind = EventBadDoorbell
		default:
			ev.Kind = EventMMIO
		}
		return ev
	case kvm.ExitHLT:
		return Event{Kind: EventHalted}
	case kvm.ExitShutdown:
		return Event{Kind: EventShutdown}
	case kvm.ExitIO:
		return Event{Kind: EventPortIO, Addr: uint64(e.IOPort), Len: uint32(e.IOSize), Write: e.IODirection == 1}
	default:
		return Event{Kind: EventFailed, Reason: e.Reason, Detail: e.Detail}
	}
}

func leUint64(b [8]byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}
