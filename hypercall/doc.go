// Package hypercall declares the guest<->VMM ABI, version 1: the guest memory
// map, the BootInfo page, the per-vCPU shared page, the lock slots, the call
// numbers and their results. abi.go is the single declaration; the guest's C
// header (guest/include/lhpvm_abi.h) is generated from it by `go generate` and
// a test fails when the two drift.
//
// A hypercall is one 8-byte MMIO write of the call number to DoorbellGPA, with
// the arguments already stored in the caller's VCPUPage.Args. The write leaves
// the guest with a single KVM_EXIT_MMIO; the VMM reads the arguments from guest
// RAM through its own mapping, stores the result in VCPUPage.Ret and re-enters.
// This works from ring 3, where vmcall does not reach userspace on our hosts.
package hypercall
