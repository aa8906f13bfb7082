package ptrace

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStubIsCurrent fails when the embedded stub was not built from the
// sources beside it: run `make` (or `make -C internal/ptrace/stub`).
func TestStubIsCurrent(t *testing.T) {
	require.NotEmpty(t, stubImage, "%s is empty: run make", StubFile)
	f, err := elf.NewFile(bytes.NewReader(stubImage))
	require.NoError(t, err)
	s := f.Section(".lhpvm_srchash")
	require.NotNil(t, s, "the stub has no .lhpvm_srchash section")
	got, err := s.Data()
	require.NoError(t, err)
	h := sha256.New()
	for _, name := range []string{"stub/stub.c", "stub/Makefile"} { // stub/Makefile's SRCS, in order
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		h.Write(b)
	}
	assert.Equal(t, hex.EncodeToString(h.Sum(nil)), string(got), "%s is stale: run make", StubFile)
}

// TestStubLayout: nothing of the stub may lie below 4 GiB, where guest RAM
// and the doorbell are, and it is a static executable.
func TestStubLayout(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(stubImage))
	require.NoError(t, err)
	assert.Equal(t, elf.ET_EXEC, f.Type)
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "no dynamic loader")
		assert.NotEqual(t, elf.PT_DYNAMIC, p.Type)
		if p.Type == elf.PT_LOAD {
			assert.GreaterOrEqual(t, p.Vaddr, uint64(1<<32), "segment at %#x", p.Vaddr)
		}
	}
	assert.GreaterOrEqual(t, f.Entry, uint64(1<<32))
}
