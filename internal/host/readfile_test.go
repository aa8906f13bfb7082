package host

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadFileLimited(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	require.NoError(t, os.WriteFile(small, []byte("hello"), 0o644))
	b, err := ReadFileLimited(small, 5)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))

	_, err = ReadFileLimited(small, 4)
	assert.ErrorIs(t, err, ErrTooLarge)

	sparse := filepath.Join(dir, "sparse")
	f, err := os.Create(sparse)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(10<<30)) // 10 GiB, no blocks
	f.Close()
	_, err = ReadFileLimited(sparse, 1<<20)
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.ErrorContains(t, err, "the limit is 1 MiB")

	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	_, err = ReadFileLimited(fifo, 1<<20) // must not block waiting for a writer
	assert.ErrorContains(t, err, "is not a regular file (a FIFO)")

	_, err = ReadFileLimited("/dev/zero", 1<<20)
	assert.ErrorContains(t, err, "a character device")
	_, err = ReadFileLimited(dir, 1<<20)
	assert.ErrorContains(t, err, "a directory")
	_, err = ReadFileLimited(filepath.Join(dir, "missing"), 1<<20)
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = ReadFileLimited("", 1<<20)
	assert.Error(t, err)
}
