package vmm

import (
	"encoding/binary"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/hv"
)

// 64-bit GDT descriptors (docs/guest-abi.md, "Boot state").
const (
	gdtKernelCode = 0x00af9b000000ffff
	gdtKernelData = 0x00cf93000000ffff
	gdtUserData   = 0x00cff3000000ffff
	gdtUserCode   = 0x00affb000000ffff
	tssLimit      = 103
	tssTypeBusy   = 0xb // 64-bit TSS, busy: the state after TR is loaded
	// userRFLAGS is the ring-3 entry's RFLAGS: reserved bit 1 and IF, as the
	// built-in guest's iretq leaves it.
	userRFLAGS = 0x202
)

// buildCPUTables writes vCPU id's GDT and TSS into its block.
func buildCPUTables(mem []byte, l Layout, id int) {
	block := l.Block(id)
	gdt := block + hypercall.BlockGDTOff
	tss := block + hypercall.BlockTSSOff
	put := func(at, v uint64) { binary.LittleEndian.PutUint64(mem[at:], v) }

	put(gdt+0, 0)
	put(gdt+hypercall.SelKernelCode, gdtKernelCode)
	put(gdt+hypercall.SelKernelData, gdtKernelData)
	put(gdt+hypercall.SelUserData, gdtUserData)
	put(gdt+hypercall.SelUserCode, gdtUserCode)
	lo, hi := tssDescriptor(tss)
	put(gdt+hypercall.SelTSS, lo)
	put(gdt+hypercall.SelTSS+8, hi)

	clear(mem[tss : tss+tssLimit+1])
	put(tss+4, block+hypercall.BlockKStackTop)               // RSP0: ring 3 -> ring 0 lands here
	binary.LittleEndian.PutUint16(mem[tss+102:], tssLimit+1) // I/O map base beyond the limit: no I/O bitmap
}

// tssDescriptor encodes the 16-byte system descriptor of a 64-bit TSS.
func tssDescriptor(base uint64) (lo, hi uint64) {
	lo = tssLimit&0xffff |
		(base&0xffffff)<<16 |
		uint64(tssTypeBusy)<<40 |
		1<<47 | // present
		(base>>24&0xff)<<56
	hi = base >> 32
	return lo, hi
}

// entry is vCPU id's start (the boot protocol in README): in ring 0 at the
// ELF entry on its ring-0 stack with its own GDT and TSS (KVM), or in ring 3
// at the image's declared ring-3 entry on its ring-3 stack (ptrace), with
// the same three arguments either way.
func entry(l Layout, id int, img *Image, cr3 uint64) hv.Entry {
	block := l.Block(id)
	return hv.Entry{
		RDI: hypercall.BootInfoGPA,
		RSI: uint64(id),
		RDX: l.Page(id),
		Kernel: hv.KernelEntry{
			RIP: img.Entry, RSP: block + hypercall.BlockKStackTop, CR3: cr3,
			GDTBase: block + hypercall.BlockGDTOff, GDTLimit: hypercall.GDTEntries*8 - 1,
			TSSBase: block + hypercall.BlockTSSOff, TSSLimit: tssLimit,
			CodeSel: hypercall.SelKernelCode, DataSel: hypercall.SelKernelData, TSSSel: hypercall.SelTSS,
			APICID: uint32(id),
		},
		User: hv.UserEntry{RIP: img.UserEntry, RSP: block + hypercall.BlockUStackTop, RFLAGS: userRFLAGS},
	}
}
