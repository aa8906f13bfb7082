package scenario

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	s, err := Parse([]byte(`
name: two
pcpus: 0-1
sched: {policy: gang+pv, slice: 10ms}
duration: 2s
vms:
  - {name: a, vcpus: 2, workload: lock, lock: ticket, cs_cycles: 500}
  - {vcpus: 1, workload: hog}

`))
	require.NoError(t, err)
	assert.Equal(t, "gang+pv", s.Sched.Policy)
	assert.Equal(t, Duration(10*time.Millisecond), s.Sched.Slice)
	assert.Equal(t, Duration(2*time.Second), s.Duration)
	require.Len(t, s.VMs, 2)
	assert.Equal(t, "vm1", s.VMs[1].Name)
	assert.EqualValues(t, 500, s.VMs[0].CSCycles)

	for name, bad := range map[string]string{
		"empty":          ``,
		"no vms":         `name: x`,
		"unknown key":    "vms: [{workload: hog, vcpu: 2}]",
		"no vcpus":       "vms: [{workload: hog}]",
		"bad duration":   "duration: soon\nvms: [{workload: hog, vcpus: 1}]",
		"duplicate name": "vms: [{name: a, workload: hog, vcpus: 1}, {name: a, workload: hog, vcpus: 1}]",
		"no workload":    "vms: [{vcpus: 2}]",
		"not yaml":       "vms: [",
		"slash in name":  "vms: [{name: a/b, workload: hog, vcpus: 1}]",
	} {
		_, err := Parse([]byte(bad))
		assert.Error(t, err, name)
	}
}

func TestParseLimitsAndPlaces(t *testing.T) {
	s, err := Parse([]byte("duration: 2s\nvms:\n  - name: a\n    vcpus: 2\n    workload: hog\n    mem: 1T\n"))
	require.NoError(t, err)
	assert.Equal(t, 6, s.Line("vms[0].mem"))
	assert.Equal(t, "line 6: vms[0].mem", s.At("vms[0].mem"))
	assert.Equal(t, "vms[0].lock", s.At("vms[0].lock"), "a key the file leaves out has no line")
	assert.True(t, s.Has("duration"))
	assert.False(t, s.Has("timeout"))

	for name, tt := range map[string]struct{ yaml, want string }{
		"second document": {"vms: [{workload: hog, vcpus: 1}]\n---\nvms: []\n", "line 2: a second YAML document"},
		"too many VMs": {"vms:\n" + strings.Repeat("  - {workload: hog, vcpus: 1}\n", MaxVMs+1),
			"line 2: vms: 257 VMs, a run may have at most 256"},
		"too many vCPUs": {"vms:\n" + strings.Repeat("  - {workload: hog, vcpus: 1024}\n", 5),
			"the VMs have more than 4096 vCPUs together"},
		"huge vCPU count": {"vms: [{workload: hog, vcpus: 2000000}]", "a run may have at most 4096"},
		"duplicate":       {"vms:\n  - {name: a, workload: hog, vcpus: 1}\n  - {name: a, workload: hog, vcpus: 1}\n", "line 3: vms[1].name: duplicate name"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			assert.ErrorContains(t, err, tt.want)
		})
	}
	_, err = Parse(make([]byte, MaxBytes+1))
	assert.ErrorContains(t, err, "a scenario may have at most 1024 KiB")
}

// FuzzParse: any input is a scenario or an error, never a panic, and an
// accepted scenario is within the limits.
func FuzzParse(f *testing.F) {
	f.Add([]byte("sched: {policy: rr, slice: 30ms}\nduration: 3s\nnpcpus: 2\nvms:\n  - {name: a, vcpus: 2, workload: lock, lock: ticket}\n  - {vcpus: 1, workload: hog}\n"))
	f.Add([]byte("vms: [{workload: hog, vcpus: 1}]\n---\n"))
	f.Add([]byte("a: &a [*a, *a]\nvms: *a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		total := 0
		names := map[string]bool{}
		for _, vm := range s.VMs {
			total += vm.VCPUs
			if vm.VCPUs < 1 || vm.Workload == "" || names[vm.Name] || vm.Name == "" {
				t.Fatalf("accepted a bad VM %+v", vm)
			}
			names[vm.Name] = true
		}
		if len(s.VMs) == 0 || len(s.VMs) > MaxVMs || total > MaxTotalVCPUs {
			t.Fatalf("accepted %d VMs with %d vCPUs", len(s.VMs), total)
		}
	})
}
