package backendtest

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestRequiredEnv: a mistyped switch is an error, never "not required".
func TestRequiredEnv(t *testing.T) {
	for _, c := range []struct {
		backends, kvm string
		ok            bool
		ptrace, kvmOn bool
	}{
		{"", "", true, false, false},
		{"ptrace,kvm", "", true, true, true},
		{" ptrace , kvm ", "", true, true, true},
		{"ptrace", "1", true, true, true},
		{"ptrace", "true", true, true, true},
		{"ptrace", "0", true, true, false},
		{"", "false", true, false, false},
		{"kvn", "", false, false, false},
		{"ptrace,kvn", "", false, false, false},
		{"", "yes", false, false, false},
		{"", "2", false, false, false},
	} {
		t.Setenv(RequireEnv, c.backends)
		t.Setenv(RequireKVMEnv, c.kvm)
		err := EnvError()
		if c.ok {
			assert.NoError(t, err, "%q %q", c.backends, c.kvm)
		} else {
			assert.Error(t, err, "%q %q", c.backends, c.kvm)
		}
		assert.Equal(t, c.ptrace, Required("ptrace"), "%q %q", c.backends, c.kvm)
		assert.Equal(t, c.kvmOn, Required("kvm"), "%q %q", c.backends, c.kvm)
	}
}
