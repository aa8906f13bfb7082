package vmm

import (
	"encoding/binary"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/kvm"
)

// 64-bit GDT descriptors (see DESIGN.md §3).
const (
	gdtKernelCode = 0x00af9b000000ffff
	gdtKernelData = 0x00cf93000000ffff
	gdtUserData   = 0x00cff3000000ffff
	gdtUserCode   = 0x00affb000000ffff
	tssLimit      = 103
	tssTypeBusy   = 0xb // 64-bit TSS, busy: the state after TR is loaded
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

// cpuSregs is vCPU id's special-register state: long mode, paging on, its own
// GDT and TSS, no IDT (the guest installs one).
func cpuSregs(base *kvm.Sregs, l Layout, id int, cr3 uint64) *kvm.Sregs {
	s := *base
	block := l.Block(id)
	code := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: hypercall.SelKernelCode,
		Typ: 11, Present: 1, DPL: 0, DB: 0, S: 1, L: 1, G: 1}
	data := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: hypercall.SelKernelData,
		Typ: 3, Present: 1, DPL: 0, DB: 1, S: 1, L: 0, G: 1}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = kvm.Segment{Base: block + hypercall.BlockTSSOff, Limit: tssLimit, Selector: hypercall.SelTSS,
		Typ: tssTypeBusy, Present: 1}
	s.GDT = kvm.Descriptor{Base: block + hypercall.BlockGDTOff, Limit: hypercall.GDTEntries*8 - 1}
	s.IDT = kvm.Descriptor{}
	s.CR0 = 0x80050033 // PG | AM | WP | NE | ET | MP | PE
	s.CR3 = cr3
	s.CR4 = 0x620  // OSXMMEXCPT | OSFXSR | PAE
	s.EFER = 0x500 // LMA | LME
	return &s
}

// cpuRegs is vCPU id's entry register state (the boot protocol in README).
func cpuRegs(l Layout, id int, entry uint64) *kvm.Regs {
	return &kvm.Regs{
		RIP:    entry,
		RSP:    l.Block(id) + hypercall.BlockKStackTop,
		RDI:    hypercall.BootInfoGPA,
		RSI:    uint64(id),
		RDX:    l.Page(id),
		RFLAGS: 0x2,
	}
}
