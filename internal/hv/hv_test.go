package hv

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSyscallName(t *testing.T) {
	assert.Equal(t, "write", SyscallName(ArchX8664, 1))
	assert.Equal(t, "execve", SyscallName(ArchX8664, 59))
	assert.Equal(t, "openat", SyscallName(ArchX8664, 257))
	assert.Equal(t, "write", SyscallName(ArchI386, 4), "int $0x80 numbers are i386's")
	assert.Equal(t, "execve", SyscallName(ArchI386, 11))
	assert.Equal(t, "execve", SyscallName(ArchX32, x32Bit|520))
	assert.Equal(t, "unknown", SyscallName(ArchX8664, 100000))
	assert.Equal(t, "unknown", SyscallName(SyscallArch(9), 1))
}

func TestNames(t *testing.T) {
	assert.Equal(t, "#GP", VectorName(VectorGP))
	assert.Equal(t, "#PF", VectorName(14))
	assert.Equal(t, "", VectorName(15))
	assert.Equal(t, "", VectorName(200))
	assert.Equal(t, "guest fault", EventFault.String())
	assert.Equal(t, "event 200", EventKind(200).String())
	assert.Equal(t, "i386", ArchI386.String())
}
