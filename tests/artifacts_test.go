package tests

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
)

// The end-to-end tests need a few things built with go and gcc: the lhpvm
// binary their CLI tests run, the README guest, the C reference programs of
// the benchmarks. Each is built once per test process, when a test first
// needs it, by the recipe below.
//
// The emulated kvm runner (tests/kvmrunner) has neither go nor gcc. It runs
// this test binary on the host first with LHPVM_PREBUILD=DIR, which builds
// every artifact into DIR and exits, carries DIR into the runner, and there
// sets LHPVM_ARTIFACTS=DIR: the tests then take each artifact from DIR
// instead of building it. So the recipes stay here, written once.
const (
	prebuildEnv  = "LHPVM_PREBUILD"
	artifactsEnv = "LHPVM_ARTIFACTS"
)

// builders are the artifacts' recipes: each builds its file at out. They run
// in the tests' own directory.
var builders = map[string]func(out string) error{
	// Static (no cgo), so that it runs where there is no libc too.
	"lhpvm": func(out string) error {
		return command([]string{"CGO_ENABLED=0"}, "go", "build", "-o", out, "../cmd/lhpvm")
	},
	"readme-guest":         func(out string) error { return readmeGuest(out) },
	"readme-guest-no-note": func(out string) error { return readmeGuest(out, "-DNO_NOTE") },
	"refvmm":               func(out string) error { return cReference(out, "refvmm") },
	"reftracer":            func(out string) error { return cReference(out, "reftracer") },
}

// readmeGuest assembles testdata/readme-guest.S, a guest written from the
// README's boot protocol and ABI alone, with the given cpp flags.
func readmeGuest(out string, flags ...string) error {
	args := append([]string{"-nostdlib", "-static", "-no-pie", "-Wl,-Ttext-segment=0x100000",
		"-Wl,--build-id=none", "-o", out}, flags...)
	return command(nil, "gcc", append(args, "testdata/readme-guest.S")...)
}

// cReference builds one of the benchmarks' C reference programs.
func cReference(out, name string) error {
	return command(nil, "gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, name+"/"+name+".c")
}

func command(env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %w\n%s", name, args, err, out)
	}
	return nil
}

var built struct {
	mu   sync.Mutex
	dir  string // where this process builds; removed by TestMain
	path map[string]string
	err  map[string]error
}

// buildArtifact returns the path of artifact name: from LHPVM_ARTIFACTS when
// set (it must be there), else built once into this process's directory.
func buildArtifact(name string) (string, error) {
	build, ok := builders[name]
	if !ok {
		return "", fmt.Errorf("no artifact %q", name)
	}
	if dir := os.Getenv(artifactsEnv); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s lacks %s (built on the host with %s): %w", artifactsEnv, dir, name, prebuildEnv, err)
		}
		return p, nil
	}
	built.mu.Lock()
	defer built.mu.Unlock()
	if p, ok := built.path[name]; ok {
		return p, built.err[name]
	}
	if built.path == nil {
		built.path, built.err = map[string]string{}, map[string]error{}
	}
	p := filepath.Join(built.dir, name)
	err := build(p)
	built.path[name], built.err[name] = p, err
	return p, err
}

// artifact is buildArtifact for a test: a failed build fails it.
func artifact(t testing.TB, name string) string {
	t.Helper()
	p, err := buildArtifact(name)
	if err != nil {
		t.Fatalf("building %s: %v", name, err)
	}
	return p
}

// prebuild builds every artifact into dir (LHPVM_PREBUILD).
func prebuild(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(builders))
	for n := range builders {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := builders[n](filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("artifact %s: %w", n, err)
		}
	}
	return nil
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(prebuildEnv); dir != "" {
		if err := prebuild(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// -short: the unit tests of every other package, without this suite
	// of real VMs (minutes on our machines).
	flag.Parse()
	if testing.Short() {
		fmt.Println("tests: the end-to-end suite (real VMs, minutes) is skipped under -short")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "lhpvm-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
