package vmm

import (
	"encoding/binary"
	"testing"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLayout(t *testing.T) {
	l, err := NewLayout(64*mib, 8)
	require.NoError(t, err)
	assert.Equal(t, Range{64*mib - 8*hypercall.VCPUBlockSize, 64 * mib}, l.Blocks)
	assert.Equal(t, l.Blocks.Start, l.Locks.End)
	assert.Equal(t, uint64(hypercall.ImageMinGPA), l.Image.Start)
	assert.Equal(t, l.Locks.Start, l.Image.End)
	assert.Zero(t, l.Block(3)%hypercall.VCPUBlockSize, "blocks are block-aligned: ring 0 finds its page from RSP")
	assert.Equal(t, l.Block(7)+hypercall.VCPUBlockSize, l.MemBytes)

	for _, bad := range []struct {
		mem   uint64
		vcpus int
	}{{0, 1}, {2 * mib, 1}, {65 * mib, 1}, {hypercall.MaxMemBytes + hugePage, 1}, {64 * mib, 0}, {64 * mib, 1025}, {4 * mib, 1024}} {
		_, err := NewLayout(bad.mem, bad.vcpus)
		assert.Error(t, err, "%d bytes, %d vCPUs", bad.mem, bad.vcpus)
	}
	_, err = NewLayout(64*mib, 1024)
	assert.NoError(t, err, "1024 vCPUs fit in 64 MiB")
}

func TestPageTables(t *testing.T) {
	for _, size := range []uint64{4 * mib, 64 * mib, 1 << 30, 1<<30 + hugePage, hypercall.MaxMemBytes} {
		mem := make([]byte, 16*mib) // tables only live below 64 KiB
		cr3, err := buildPageTables(mem, size)
		require.NoError(t, err)
		assert.Equal(t, uint64(hypercall.PageTableGPA), cr3)
		for _, va := range []uint64{0, 0x1000, hypercall.ImageMinGPA + 123, size/2 + 77, size - 1} {
			pa, uw, ok := translate(mem, cr3, va)
			if assert.True(t, ok, "size %#x va %#x mapped", size, va) {
				assert.Equal(t, va, pa, "identity map")
				assert.True(t, uw, "ring 3 may write %#x", va)
			}
		}
		pa, _, ok := translate(mem, cr3, hypercall.DoorbellGPA+8)
		assert.True(t, ok, "doorbell mapped")
		assert.Equal(t, uint64(hypercall.DoorbellGPA+8), pa)
		if size <= hypercall.FaultUnmappedGPA {
			_, _, ok = translate(mem, cr3, hypercall.FaultUnmappedGPA)
			assert.False(t, ok, "FaultUnmappedGPA must stay unmapped")
		}
		_, _, ok = translate(mem, cr3, size+hugePage*3)
		if size+hugePage*3 < hypercall.DoorbellGPA {
			assert.False(t, ok, "nothing mapped past RAM (size %#x)", size)
		}
	}
}

func TestCPUTables(t *testing.T) {
	l, err := NewLayout(64*mib, 4)
	require.NoError(t, err)
	mem := make([]byte, l.MemBytes)
	buildCPUTables(mem, l, 2)
	gdt := l.Block(2) + hypercall.BlockGDTOff
	get := func(off uint64) uint64 { return binary.LittleEndian.Uint64(mem[gdt+off:]) }
	assert.Zero(t, get(0))
	assert.Equal(t, uint64(gdtKernelCode), get(hypercall.SelKernelCode))
	assert.Equal(t, uint64(gdtUserCode), get(hypercall.SelUserCode))
	assert.Equal(t, uint64(gdtUserData), get(hypercall.SelUserData))
	assert.Equal(t, uint64(3), get(hypercall.SelUserCode)>>45&3, "user code is DPL 3")
	assert.NotZero(t, get(hypercall.SelUserCode)&(1<<53), "user code is 64-bit (L)")

	// The TSS descriptor decodes back to this vCPU's TSS.
	lo, hi := get(hypercall.SelTSS), get(hypercall.SelTSS+8)
	base := (lo>>16)&0xffffff | (lo>>56)<<24 | hi<<32
	assert.Equal(t, l.Block(2)+hypercall.BlockTSSOff, base)
	assert.Equal(t, uint64(tssLimit), lo&0xffff)
	assert.Equal(t, uint64(tssTypeBusy), lo>>40&0xf)
	tss := l.Block(2) + hypercall.BlockTSSOff
	assert.Equal(t, l.Block(2)+hypercall.BlockKStackTop, binary.LittleEndian.Uint64(mem[tss+4:]), "RSP0")

	e := entry(l, 2, &Image{Entry: 0x100000, UserEntry: 0x100400}, 0x2000)
	assert.Equal(t, base, e.Kernel.TSSBase)
	assert.Equal(t, gdt, e.Kernel.GDTBase)
	assert.Equal(t, uint16(hypercall.GDTEntries*8-1), e.Kernel.GDTLimit)
	assert.Equal(t, uint64(0x2000), e.Kernel.CR3)
	assert.Equal(t, uint64(0x100000), e.Kernel.RIP)
	assert.Equal(t, uint32(2), e.Kernel.APICID)
	assert.Equal(t, uint64(2), e.RSI)
	assert.Equal(t, l.Page(2), e.RDX)
	assert.Equal(t, uint64(hypercall.BootInfoGPA), e.RDI)
	assert.Equal(t, l.Block(2)+hypercall.BlockKStackTop, e.Kernel.RSP)
	// The ring-3 entry: what the ring-0 stub's iretq leaves.
	assert.Equal(t, uint64(0x100400), e.User.RIP)
	assert.Equal(t, l.Page(2)+hypercall.BlockUStackTop, e.User.RSP)
	assert.Equal(t, uint64(0x202), e.User.RFLAGS)
}
