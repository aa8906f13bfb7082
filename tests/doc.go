// Package tests holds lhpvm's end-to-end tests: they boot the real guest on
// /dev/kvm through the same code paths the CLI uses, and run the CLI binary
// itself, on every backend this host has (internal/backendtest): a backend
// it lacks is skipped with the reason, or fails the test when
// LHPVM_REQUIRE_BACKENDS names it (make test and CI name ptrace and kvm,
// kvm in the emulated runner where there is no /dev/kvm). -short skips the
// suite.
package tests
