// Package hv is the contract between the execution backends and everything
// above them: the interfaces every backend implements (Hypervisor, VM,
// VCPU) and the values they pass — the decoded exit (Event), the guest's
// registers, a guest fault as the backend saw it, and the entry state a
// vCPU starts from. It sits below vcpu, vmm and the backends (internal/kvm,
// internal/ptrace), as cloud-hypervisor's hypervisor crate sits below its
// VMM, so that no arrow runs from a backend back up to its consumer and no
// adapter is needed between them.
//
// Nothing here touches the host; it builds and tests anywhere.
package hv
