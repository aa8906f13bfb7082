package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type record struct {
	mode uint32
	data string
}

// readNewc parses a newc archive back, as the kernel's unpacker does.
func readNewc(t *testing.T, b []byte) map[string]record {
	out := map[string]record{}
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		require.GreaterOrEqual(t, len(b)-off, 110)
		require.Equal(t, "070701", string(b[off:off+6]))
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			require.NoError(t, err)
			return int(v)
		}
		mode, size, namesize := uint32(field(1)), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		off += 110 + namesize
		align()
		data := string(b[off : off+size])
		off += size
		align()
		if name == "TRAILER!!!" {
			require.Equal(t, len(b), off, "nothing after the trailer")
			return out
		}
		out[name] = record{mode, data}
	}
}

func TestInitramfs(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "prog")
	require.NoError(t, os.WriteFile(host, []byte("#!/bin/sh\necho hi\n"), 0o755))
	fs := newInitramfs()
	fs.Dir("proc")
	require.NoError(t, fs.File("lhpvm/tests/prog", host))
	fs.Data("init", 0o755, []byte("x"))
	fs.Symlink("bin/sh", "busybox")
	var buf bytes.Buffer
	n, err := fs.WriteTo(&buf)
	require.NoError(t, err)
	assert.EqualValues(t, buf.Len(), n)
	got := readNewc(t, buf.Bytes())
	assert.Equal(t, record{0o100755, "#!/bin/sh\necho hi\n"}, got["lhpvm/tests/prog"])
	assert.Equal(t, record{0o040755, ""}, got["lhpvm/tests"], "parents are made")
	assert.Equal(t, record{0o040755, ""}, got["lhpvm"])
	assert.Equal(t, record{0o120777, "busybox"}, got["bin/sh"])
	assert.Equal(t, record{0o100755, "x"}, got["init"])
	assert.Contains(t, got, "proc")
	assert.Error(t, fs.File("x", dir), "a directory is not a file")
}

func TestSharedLibs(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	libs, err := sharedLibs(self)
	require.NoError(t, err)
	// go test builds this test without cgo or with it: either no
	// libraries, or a loader among them.
	for _, l := range libs {
		assert.True(t, filepath.IsAbs(l), l)
	}
}

func TestModName(t *testing.T) {
	assert.Equal(t, "kvm_amd", modName("kvm-amd.ko"))
	assert.Equal(t, "irqbypass", modName("irqbypass"))
}
