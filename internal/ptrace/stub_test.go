package ptrace

import (
	"bytes"
	"debug/elf"
	"testing"

	"github.com/lhpvm/lhpvm/internal/srchash"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStubIsCurrent fails when the committed stub was not built from the
// sources beside it (stub/Makefile's SRCS).
func TestStubIsCurrent(t *testing.T) {
	got, err := StubSourceHash()
	require.NoError(t, err, "the embedded stub: %s", StubFile)
	want, err := srchash.Sources("stub", "Makefile", "stub.c")
	require.NoError(t, err)
	assert.Equal(t, want, got, "%s is stale: run 'make generate' (or 'go generate ./internal/ptrace') and commit it", StubFile)
}

// TestStubLayout: nothing of the stub may lie below 4 GiB, where guest RAM
// and the doorbell are, and it is a static executable.
func TestStubLayout(t *testing.T) {
	require.NotEmpty(t, stubImage, "the embedded stub: %s", StubFile)
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
