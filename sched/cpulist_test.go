package sched

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{
		"0": {0}, "0,1": {0, 1}, "0-1": {0, 1}, "1,0,1": {0, 1}, "0-2,5": {0, 1, 2, 5}, " 3 ": {3},
	} {
		got, err := ParseCPUList(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "a", "-1", "1-0", "0,,1", "0-", "0-99999", "+1", "0x1", "1 -2", "9000"} {
		_, err := ParseCPUList(bad)
		assert.Error(t, err, bad)
	}
	_, err := ParseCPUList("-1")
	assert.ErrorContains(t, err, `"-1" is not a CPU number (CPUs are numbered from 0)`)
	_, err = ParseCPUList("+1")
	assert.ErrorContains(t, err, `"+1" is not a CPU number`)
	assert.Equal(t, "0-2,5,7-8", FormatCPUList([]int{0, 1, 2, 5, 7, 8}))
}

// FuzzCPUList: any input either fails or gives a sorted list of distinct
// CPUs that formats back to a list parsing to the same CPUs.
func FuzzCPUList(f *testing.F) {
	for _, s := range []string{"0", "0-3", "0,2-5,7", " 1 ", "-1", "+1", "0-8191", "1-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := ParseCPUList(s)
		if err != nil {
			return
		}
		if len(cpus) == 0 {
			t.Fatalf("%q: no CPUs and no error", s)
		}
		for i, c := range cpus {
			if c < 0 || c > maxCPU || i > 0 && c <= cpus[i-1] {
				t.Fatalf("%q: bad list %v", s, cpus)
			}
		}
		again, err := ParseCPUList(FormatCPUList(cpus))
		if err != nil || len(again) != len(cpus) {
			t.Fatalf("%q: %v formats to %q, which parses to %v, %v", s, cpus, FormatCPUList(cpus), again, err)
		}
	})
}
