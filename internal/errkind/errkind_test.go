package errkind

import (
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKinds(t *testing.T) {
	base := errors.New("base")
	assert.Nil(t, Usage(nil))
	assert.Nil(t, Run(nil))
	assert.Nil(t, IO("x", nil))

	var u *UsageError
	require.ErrorAs(t, Usage(base), &u)
	assert.ErrorIs(t, Usage(base), base)
	assert.Equal(t, "base", Usage(base).Error(), "the message is unchanged")
	assert.EqualError(t, Usagef("--x %d: %w", 3, base), "--x 3: base")
	assert.ErrorIs(t, Usagef("--x %d: %w", 3, base), base)

	var r *RunError
	require.ErrorAs(t, Run(base), &r)
	assert.False(t, errors.As(Run(base), &u))
	assert.Equal(t, "base", Run(base).Error())
}

// TestIOError: an I/O error keeps its message (an os error names its
// file) and says which path it is about.
func TestIOError(t *testing.T) {
	_, err := os.ReadFile("/nonexistent/results.json")
	e := IO("/nonexistent", err)
	assert.Equal(t, "open /nonexistent/results.json: no such file or directory", e.Error())
	assert.ErrorIs(t, e, fs.ErrNotExist)
	var io *IOError
	require.ErrorAs(t, e, &io)
	assert.Equal(t, "/nonexistent", io.Path)
}
