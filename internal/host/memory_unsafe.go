package host

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Memory is guest RAM: one memfd, mapped shared by the VMM, which reads and
// writes it directly while the guest runs, and by whatever executes the guest
// (KVM maps the VMM's mapping into the VM; the ptrace backend's stubs map the
// memfd itself). The file is sealed at its size, so nothing can shrink it
// under a mapping. The atomic accessors are for words the guest and the VMM
// both touch concurrently (flags, counters); offsets must be naturally
// aligned and inside the mapping, or they panic like a slice index.
type Memory struct {
	fd int
	b  []byte
}

// NewMemory makes size bytes of zeroed guest RAM. Pages are only backed once
// touched.
func NewMemory(size int) (_ *Memory, err error) {
	if size <= 0 {
		return nil, fmt.Errorf("guest memory of %d bytes", size)
	}
	fd, err := unix.MemfdCreate("lhpvm-guest-ram", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create for guest memory: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return nil, fmt.Errorf("ftruncate guest memory to %d bytes: %w", size, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		return nil, fmt.Errorf("sealing guest memory: %w", err)
	}
	b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes of guest memory: %w", size, err)
	}
	return &Memory{fd: fd, b: b}, nil
}

// Bytes is the whole of guest RAM.
func (m *Memory) Bytes() []byte { return m.b }

// Size is the size of guest RAM in bytes.
func (m *Memory) Size() uint64 { return uint64(len(m.b)) }

// Addr is where the VMM has guest RAM mapped (for KVM_SET_USER_MEMORY_REGION).
func (m *Memory) Addr() uintptr { return uintptr(unsafe.Pointer(&m.b[0])) }

// FD is the memfd behind guest RAM, for a backend that maps it into another
// process. It stays owned by m.
func (m *Memory) FD() int { return m.fd }

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

// Close unmaps guest RAM and closes the memfd. Close the VM first; a stub
// process that still maps the memfd keeps its pages until it exits.
func (m *Memory) Close() error {
	if m.b == nil {
		return nil
	}
	err := unix.Munmap(m.b)
	m.b = nil
	if cerr := unix.Close(m.fd); err == nil {
		err = cerr
	}
	m.fd = -1
	return err
}
