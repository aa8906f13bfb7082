// Package layering holds no code: its test checks the architecture's rules
// on the import graph of the whole module, so that they cannot erode
// unnoticed (README: Architecture).
//
//   - Only the backends (internal/kvm, internal/ptrace) and internal/host make
//     system calls: no other package imports unsafe, syscall or
//     golang.org/x/sys/unix.
//   - hv, the contract, sits below everyone: it imports internal/host only.
//   - The backends import nothing above hv: not vcpu, vmm, sched.
//   - vcpu and vmm import no backend, and nothing names one but
//     internal/backend (and the tests).
//   - vcpu and sched never import each other: vmm connects them.
//   - cmd/ is imported by nothing.
package layering
