package layering

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const mod = "github.com/lhpvm/lhpvm/"

// imports maps each package of the module (its path without the module
// prefix) to what its non-test files import.
func imports(t *testing.T) map[string][]string {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"...").Output()
	require.NoError(t, err)
	m := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var deps []string
		for _, d := range f[1:] {
			deps = append(deps, strings.TrimPrefix(d, mod))
		}
		m[strings.TrimPrefix(f[0], mod)] = deps
	}
	require.NotEmpty(t, m)
	return m
}

func TestLayering(t *testing.T) {
	pkgs := imports(t)
	syscalls := map[string]bool{"internal/kvm": true, "internal/ptrace": true, "internal/host": true}
	backends := []string{"internal/kvm", "internal/ptrace"}
	for pkg, deps := range pkgs {
		for _, d := range deps {
			switch {
			case d == "unsafe" || d == "syscall" || d == "golang.org/x/sys/unix":
				assert.True(t, syscalls[pkg], "%s imports %s: only the backends and internal/host make system calls", pkg, d)
			case strings.HasPrefix(d, "cmd/"):
				t.Errorf("%s imports %s: nothing imports a command", pkg, d)
			}
		}
		has := func(d string) bool {
			for _, x := range deps {
				if x == d {
					return true
				}
			}
			return false
		}
		switch {
		case pkg == "internal/hv":
			for _, d := range deps {
				_, inModule := pkgs[d]
				assert.False(t, inModule && d != "internal/host",
					"internal/hv imports %s: it sits below everyone (internal/host only)", d)
			}
		case pkg == "internal/kvm" || pkg == "internal/ptrace":
			for _, up := range []string{"vcpu", "vmm", "sched", "internal/backend"} {
				assert.False(t, has(up), "backend %s imports %s: a backend imports nothing above hv", pkg, up)
			}
		case pkg == "vcpu":
			assert.False(t, has("sched"), "vcpu imports sched: vmm connects them")
		case pkg == "sched":
			assert.False(t, has("vcpu"), "sched imports vcpu: vmm connects them")
		}
		if pkg == "vcpu" || pkg == "vmm" || pkg == "sched" {
			for _, b := range append(backends, "internal/backend") {
				assert.False(t, has(b), "%s imports %s: it names no backend", pkg, b)
			}
		}
	}
}
