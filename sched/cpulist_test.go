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
	for _, bad := range []string{"", "a", "-1", "1-0", "0,,1", "0-", "0-99999"} {
		_, err := ParseCPUList(bad)
		assert.Error(t, err, bad)
	}
	assert.Equal(t, "0-2,5,7-8", FormatCPUList([]int{0, 1, 2, 5, 7, 8}))
}
