package kvm

import (
	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"github.com/lhpvm/lhpvm/internal/hv"
)

// tssTypeBusy is a 64-bit TSS descriptor's type once TR is loaded.
const tssTypeBusy = 0xb

// longModeSregs is a 64-bit ring-0 start with paging on (docs/guest-abi.md, "Boot state"):
// flat code and data segments of the VMM-built GDT, TR loaded, no IDT (the
// guest installs its own).
func longModeSregs(base *Sregs, k hv.KernelEntry) *Sregs {
	s := *base
	code := Segment{Base: 0, Limit: 0xffffffff, Selector: k.CodeSel,
		Typ: 11, Present: 1, DPL: 0, DB: 0, S: 1, L: 1, G: 1}
	data := Segment{Base: 0, Limit: 0xffffffff, Selector: k.DataSel,
		Typ: 3, Present: 1, DPL: 0, DB: 1, S: 1, L: 0, G: 1}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = Segment{Base: k.TSSBase, Limit: k.TSSLimit, Selector: k.TSSSel, Typ: tssTypeBusy, Present: 1}
	s.GDT = Descriptor{Base: k.GDTBase, Limit: k.GDTLimit}
	s.IDT = Descriptor{}
	s.CR0 = 0x80050033 // PG | AM | WP | NE | ET | MP | PE
	s.CR3 = k.CR3
	s.CR4 = 0x620  // OSXMMEXCPT | OSFXSR | PAE
	s.EFER = 0x500 // LMA | LME
	return &s
}

// withAPICID returns a copy of cpuid with APIC id id in leaf 1 EBX[31:24]
// and the x2APIC id in leaves 0xB and 0x1F.
func withAPICID(c *gokvm.CPUID, id uint32) *gokvm.CPUID {
	out := &gokvm.CPUID{Nent: c.Nent, Entries: append([]gokvm.CPUIDEntry2(nil), c.Entries...)}
	for i := range out.Entries {
		e := &out.Entries[i]
		switch e.Function {
		case 1:
			e.Ebx = e.Ebx&0x00ffffff | (id&0xff)<<24
		case 0xb, 0x1f:
			e.Edx = id
		}
	}
	return out
}
