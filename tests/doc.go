// Package tests holds lhpvm's end-to-end tests: they boot the real guest on
// /dev/kvm through the same code paths the CLI uses, and run the CLI binary
// itself. Without KVM they skip (or fail under LHPVM_REQUIRE_KVM=1).
package tests
