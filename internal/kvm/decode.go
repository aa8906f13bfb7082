package kvm

import (
	"fmt"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/hv"
)

// Decode turns a raw exit into an Event. It is a pure function of the exit.
// Accesses to the doorbell page that are not a well-formed hypercall are the
// guest's mistake, not a crash: EventBadDoorbell.
func Decode(e Exit) hv.Event {
	switch e.Reason {
	case ExitInterrupted, ExitIntr:
		return hv.Event{Kind: hv.EventInterrupted}
	case ExitMMIO:
		ev := hv.Event{Addr: e.MMIOAddr, Len: e.MMIOLen, Write: e.MMIOIsWrite}
		switch {
		case e.MMIOAddr == hypercall.DoorbellGPA && e.MMIOIsWrite && e.MMIOLen == 8:
			ev.Kind = hv.EventHypercall
			ev.Nr = leUint64(e.MMIOData)
		case e.MMIOAddr >= hypercall.DoorbellGPA && e.MMIOAddr < hypercall.DoorbellGPA+hypercall.DoorbellSize:
			ev.Kind = hv.EventBadDoorbell
		default:
			ev.Kind = hv.EventMMIO
		}
		return ev
	case ExitHLT:
		return hv.Event{Kind: hv.EventHalted}
	case ExitShutdown:
		return hv.Event{Kind: hv.EventShutdown}
	case ExitIO:
		return hv.Event{Kind: hv.EventPortIO, Addr: uint64(e.IOPort), Len: uint32(e.IOSize), Write: e.IODirection == 1}
	default:
		return hv.Event{Kind: hv.EventFailed, Reason: fmt.Sprintf("KVM exit %v (detail %#x)", e.Reason, e.Detail)}
	}
}

func leUint64(b [8]byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}
