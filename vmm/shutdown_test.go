package vmm

import (
	"errors"
	"testing"

	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/stretchr/testify/assert"
)

// TestShutdownError: a triple fault is reported as each host vendor leaves
// the vCPU. Intel keeps the registers of the fault; AMD's KVM re-initialises
// the vCPU first (CR0 0x60000010, CS 0xf000, RIP 0xfff0), and the reset
// vector must not be reported as the place of the fault.
func TestShutdownError(t *testing.T) {
	sym := func(rip uint64) string {
		if rip == 0x103e21 {
			return " (workload_fault_triple+0x21)"
		}
		return ""
	}
	intel := shutdownError(1, hv.Regs{RIP: 0x103e21, RSP: 0x3ff7fd0}, hv.SpecialRegs{CS: 0x2b, CR0: 0x80050033, CR2: 0}, nil, sym)
	assert.ErrorIs(t, intel, ErrGuestFault)
	assert.Equal(t, "guest fault: vCPU 1: triple fault (KVM_EXIT_SHUTDOWN) at RIP 0x103e21 (workload_fault_triple+0x21) RSP 0x3ff7fd0 CS 0x2b CR2 0x0", intel.Error())

	amd := shutdownError(0, hv.Regs{RIP: 0xfff0}, hv.SpecialRegs{CS: 0xf000, CR0: 0x60000010}, nil, sym)
	assert.ErrorIs(t, amd, ErrGuestFault)
	assert.Contains(t, amd.Error(), "vCPU 0: triple fault (KVM_EXIT_SHUTDOWN); KVM reset the vCPU at the shutdown")
	assert.Contains(t, amd.Error(), "where the guest faulted is lost")
	assert.NotContains(t, amd.Error(), "at RIP 0xfff0", "the reset vector is not where it faulted")

	lost := shutdownError(2, hv.Regs{}, hv.SpecialRegs{}, errors.New("KVM_GET_REGS: bad file descriptor"), sym)
	assert.ErrorIs(t, lost, ErrGuestFault)
	assert.Contains(t, lost.Error(), "its registers cannot be read: KVM_GET_REGS")
}
