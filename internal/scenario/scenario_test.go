package scenario

import (
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
