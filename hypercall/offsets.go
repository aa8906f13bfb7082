package hypercall

import "reflect"

// Byte offsets of the VCPUPage and BootInfo fields the VMM touches while the
// guest runs (computed once from the declarations above, so they cannot drift).
var (
	OffArgs           = offsetOf(VCPUPage{}, "Args")
	OffRet            = offsetOf(VCPUPage{}, "Ret")
	OffPreempted      = offsetOf(VCPUPage{}, "Preempted")
	OffYieldRequested = offsetOf(VCPUPage{}, "YieldRequested")
	OffStealNs        = offsetOf(VCPUPage{}, "StealNs")
	OffInCS           = offsetOf(VCPUPage{}, "InCS")
	OffLockState      = offsetOf(VCPUPage{}, "LockState")
	OffLockID         = offsetOf(VCPUPage{}, "LockID")
	OffTicket         = offsetOf(VCPUPage{}, "Ticket")
	OffOps            = offsetOf(VCPUPage{}, "Ops")
	OffAcquisitions   = offsetOf(VCPUPage{}, "Acquisitions")
	OffSpinCycles     = offsetOf(VCPUPage{}, "SpinCycles")
	OffStop           = offsetOf(BootInfo{}, "Stop")
	OffGranted        = offsetOf(LockSlot{}, "Granted")
)

func offsetOf(v any, field string) uint64 {
	f, ok := reflect.TypeOf(v).FieldByName(field)
	if !ok {
		panic("hypercall: no field " + field)
	}
	return uint64(f.Offset)
}
