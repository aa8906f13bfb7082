package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWrite: the file appears whole; a failed write leaves the old one and
// no temporary file.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "results.json")
	require.NoError(t, WriteBytes(path, []byte("old\n")))
	err := Write(path, func(w io.Writer) error {
		io.WriteString(w, "half of the new")
		return errors.New("disk full")
	})
	require.Error(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "old\n", string(b), "the old file is intact")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file is left")
	require.NoError(t, WriteBytes(path, []byte("new\n")))
	b, _ = os.ReadFile(path)
	assert.Equal(t, "new\n", string(b))
	st, _ := os.Stat(path)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
}
