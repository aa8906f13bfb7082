// Package kvmtest is the one way tests get /dev/kvm: a test that needs it
// skips with the reason when it is missing, and fails instead when
// LHPVM_REQUIRE_KVM=1 (CI sets it), so a skip can never hide a regression.
package kvmtest

import (
	"os"
	"testing"

	"github.com/lhpvm/lhpvm/internal/kvm"
)

// RequireEnv is the variable that turns a skip into a failure.
const RequireEnv = "LHPVM_REQUIRE_KVM"

// Open returns an open /dev/kvm, closed when the test ends, or skips (or
// fails, under LHPVM_REQUIRE_KVM=1) when KVM is not usable.
func Open(t testing.TB) *kvm.System {
	t.Helper()
	sys, err := kvm.Open()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("KVM required (%s=1) but not usable: %v", RequireEnv, err)
		}
		t.Skipf("skipping: KVM not usable: %v (set %s=1 to fail instead)", err, RequireEnv)
	}
	t.Cleanup(func() { sys.Close() })
	return sys
}
