package kvm

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Memory is guest RAM: an anonymous shared mapping the VMM reads and writes
// directly while the guest runs. The atomic accessors are for words the guest
// and the VMM both touch concurrently (flags, counters); offsets must be
// naturally aligned and inside the mapping, or they panic like a slice index.
type Memory struct {
	b []byte
}

// NewMemory maps size bytes of zeroed guest RAM (MAP_SHARED|MAP_ANONYMOUS|
// MAP_NORESERVE: pages are only backed once touched).
func NewMemory(size int) (*Memory, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_SHARED|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes of guest memory: %w", size, err)
	}
	return &Memory{b: b}, nil
}

// Bytes is the whole of guest RAM.
func (m *Memory) Bytes() []byte { return m.b }

// Size is the size of guest RAM in bytes.
func (m *Memory) Size() uint64 { return uint64(len(m.b)) }

func (m *Memory) addr() uint64 { return uint64(uintptr(unsafe.Pointer(&m.b[0]))) }

func (m *Memory) word32(off uint64) *uint32 {
	if off%4 != 0 {
		panic(fmt.Sprintf("guest memory: unaligned 32-bit access at %#x", off))
	}
	return (*uint32)(unsafe.Pointer(&m.b[off : off+4][0]))
}

func (m *Memory) word64(off uint64) *uint64 {
	if off%8 != 0 {
		panic(fmt.Sprintf("guest memory: unaligned 64-bit access at %#x", off))
	}
	return (*uint64)(unsafe.Pointer(&m.b[off : off+8][0]))
}

// Load32 atomically reads the 32-bit word at guest physical address off.
func (m *Memory) Load32(off uint64) uint32 { return atomic.LoadUint32(m.word32(off)) }

// Store32 atomically writes the 32-bit word at guest physical address off.
func (m *Memory) Store32(off uint64, v uint32) { atomic.StoreUint32(m.word32(off), v) }

// Load64 atomically reads the 64-bit word at guest physical address off.
func (m *Memory) Load64(off uint64) uint64 { return atomic.LoadUint64(m.word64(off)) }

// Store64 atomically writes the 64-bit word at guest physical address off.
func (m *Memory) Store64(off uint64, v uint64) { atomic.StoreUint64(m.word64(off), v) }

// Close unmaps guest RAM. Close the VM first.
func (m *Memory) Close() error {
	if m.b == nil {
		return nil
	}
	err := unix.Munmap(m.b)
	m.b = nil
	return err
}
