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

// TestIOErrorNamesItsPath: an I/O error's message names the file, once.
func TestIOErrorNamesItsPath(t *testing.T) {
	_, err := os.ReadFile("/nonexistent/results.json")
	e := IO("/nonexistent/results.json", err)
	assert.Equal(t, err.Error(), e.Error(), "os errors name their path already")
	assert.ErrorIs(t, e, fs.ErrNotExist)
	var io *IOError
	require.ErrorAs(t, e, &io)
	assert.Equal(t, "/nonexistent/results.json", io.Path)

	assert.EqualError(t, IO("/out/cells.csv", errors.New("short write")), "/out/cells.csv: short write")
	assert.EqualError(t, IO("", errors.New("short write")), "short write")
}
