// Package backendtest is the one way tests get an execution backend: Each
// runs a test once per backend lhpvm has, as subtests named by backend
// (TestHello/ptrace, TestHello/kvm). A backend this host lacks is skipped
// with the reason, unless LHPVM_REQUIRE_BACKENDS names it (CI names every
// backend its host has): then the test fails, so a skip can never hide a
// regression. LHPVM_REQUIRE_KVM=1 is shorthand for naming kvm. A name that is
// not a backend, or a LHPVM_REQUIRE_KVM that is not a boolean, fails every
// test that asks for a backend, in one line: a mistyped switch must not
// quietly turn CI's failures back into skips.
package backendtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lhpvm/lhpvm/internal/backend"
	"github.com/lhpvm/lhpvm/internal/hv"
)

// RequireEnv lists the backends whose absence fails a test (comma-separated).
const RequireEnv = "LHPVM_REQUIRE_BACKENDS"

// RequireKVMEnv=1 adds kvm to RequireEnv.
const RequireKVMEnv = "LHPVM_REQUIRE_KVM"

// Required reports whether the environment requires backend name. A
// mistyped environment (an unknown backend, a value of RequireKVMEnv that is
// not a boolean) is not "not required": EnvError reports it, and every
// helper here fails the test with it.
func Required(name string) bool {
	req, err := required()
	return err == nil && req[name]
}

// EnvError is why RequireEnv or RequireKVMEnv cannot be read, or nil.
func EnvError() error {
	_, err := required()
	return err
}

func required() (map[string]bool, error) {
	req := map[string]bool{}
	known := map[string]bool{}
	for _, n := range backend.Names() {
		known[n] = true
	}
	if v := os.Getenv(RequireKVMEnv); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: want a boolean (1 or 0, true or false)", RequireKVMEnv, v)
		}
		req["kvm"] = b
	}
	for _, n := range strings.Split(os.Getenv(RequireEnv), ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !known[n] {
			return nil, fmt.Errorf("%s names %q, which is not a backend (have: %s)", RequireEnv, n, strings.Join(backend.Names(), ", "))
		}
		req[n] = true
	}
	return req, nil
}

// checkEnv fails t, in one line, when the environment is mistyped.
func checkEnv(t testing.TB) {
	t.Helper()
	if err := EnvError(); err != nil {
		t.Fatal(err)
	}
}

var opened struct {
	mu sync.Mutex
	hv map[string]*backend.Choice
	// err is why a backend could not be opened.
	err map[string]error
}

// open opens backend name once per test process; it stays open until exit.
func open(name string) (*backend.Choice, error) {
	opened.mu.Lock()
	defer opened.mu.Unlock()
	if opened.hv == nil {
		opened.hv, opened.err = map[string]*backend.Choice{}, map[string]error{}
	}
	if h, ok := opened.hv[name]; ok {
		return h, nil
	}
	if err, ok := opened.err[name]; ok {
		return nil, err
	}
	h, err := backend.Open(name)
	if err != nil {
		opened.err[name] = err
		return nil, err
	}
	opened.hv[name] = h
	return h, nil
}

// Open returns backend name for t, or skips t (fails it, if the backend is
// required) when this host cannot run it.
func Open(t testing.TB, name string) hv.Hypervisor {
	t.Helper()
	checkEnv(t)
	h, err := open(name)
	if err != nil {
		if Required(name) {
			t.Fatalf("backend %s is required (%s) but not usable here: %v", name, RequireEnv, err)
		}
		t.Skipf("skipping on backend %s: %v (name it in %s to fail instead)", name, err, RequireEnv)
	}
	return h
}

// Each runs f once per backend as a subtest named by the backend.
func Each(t *testing.T, f func(t *testing.T, h hv.Hypervisor)) {
	t.Helper()
	checkEnv(t)
	for _, name := range backend.Names() {
		t.Run(name, func(t *testing.T) { f(t, Open(t, name)) })
	}
}

// EachB is Each for benchmarks.
func EachB(b *testing.B, f func(b *testing.B, h hv.Hypervisor)) {
	b.Helper()
	for _, name := range backend.Names() {
		b.Run(name, func(b *testing.B) { f(b, Open(b, name)) })
	}
}

// Available returns every backend this host can run, for a test (a fuzz
// target) that runs each input on all of them rather than as subtests. A
// backend the host lacks is logged, or fails t if it is required; t is
// skipped only when there is none at all.
func Available(t testing.TB) []hv.Hypervisor {
	t.Helper()
	checkEnv(t)
	var hs []hv.Hypervisor
	for _, name := range backend.Names() {
		h, err := open(name)
		switch {
		case err == nil:
			hs = append(hs, h)
		case Required(name):
			t.Fatalf("backend %s is required (%s) but not usable here: %v", name, RequireEnv, err)
		default:
			t.Logf("not on backend %s: %v (name it in %s to fail instead)", name, err, RequireEnv)
		}
	}
	if len(hs) == 0 {
		t.Skip("no backend is usable on this host")
	}
	return hs
}
