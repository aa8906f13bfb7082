// Package hv holds the values every execution backend produces and every
// consumer above the backends reads: the decoded exit (Event), the guest's
// registers, a guest fault as the backend saw it, and the entry state a vCPU
// starts from. It sits below vcpu, vmm and the backends (internal/kvm,
// internal/ptrace), as cloud-hypervisor's hypervisor crate sits below its
// VMM, so that no arrow runs from a backend back up to its consumer. The
// interfaces themselves belong to their consumers: vcpu.Backend, vmm.Hypervisor.
//
// Nothing here touches the host; it builds and tests anywhere.
package hv
