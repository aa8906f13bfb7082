package vmm

import (
	"encoding/binary"
	"fmt"

	"github.com/lhpvm/lhpvm/hypercall"
)

// Page-table entry bits.
const (
	ptePresent = 1 << 0
	pteWrite   = 1 << 1
	pteUser    = 1 << 2
	ptePWT     = 1 << 3
	ptePCD     = 1 << 4
	pteHuge    = 1 << 7 // PS: a 2 MiB page in a page directory
	pteAddr    = 0x000f_ffff_ffff_f000
)

// buildPageTables writes identity page tables at hypercall.PageTableGPA: RAM
// [0, memBytes) and the doorbell's 2 MiB page, all with 2 MiB pages and the U
// bit at every level (the workload runs in ring 3). 1 GiB pages fault on our
// hosts, so none are used. It returns CR3.
func buildPageTables(mem []byte, memBytes uint64) (uint64, error) {
	const (
		pml4 = hypercall.PageTableGPA
		pdpt = pml4 + 0x1000
		pd0  = pdpt + 0x1000 // one page directory per GiB, from 0
	)
	gib := uint64(1 << 30)
	nPD := int((memBytes + gib - 1) / gib)
	doorbellPD := pd0 + uint64(nPD)*0x1000
	if doorbellPD+0x1000 > hypercall.PageTableEnd {
		return 0, fmt.Errorf("page tables for %d MiB do not fit below %#x", memBytes/mib, hypercall.PageTableEnd)
	}
	clear(mem[pml4 : doorbellPD+0x1000])
	put := func(at, v uint64) { binary.LittleEndian.PutUint64(mem[at:], v) }
	const dir = ptePresent | pteWrite | pteUser

	put(pml4, pdpt|dir)
	for i := 0; i < nPD; i++ {
		put(pdpt+uint64(i)*8, (pd0+uint64(i)*0x1000)|dir)
	}
	for pa := uint64(0); pa < memBytes; pa += hugePage {
		pd := pd0 + (pa/gib)*0x1000
		put(pd+((pa%gib)/hugePage)*8, pa|dir|pteHuge)
	}
	db := uint64(hypercall.DoorbellGPA)
	put(pdpt+(db/gib)*8, doorbellPD|dir)
	put(doorbellPD+((db%gib)/hugePage)*8, db|dir|pteHuge|ptePCD|ptePWT)
	return pml4, nil
}

// translate walks the page tables like the MMU (4-level, 2 MiB leaves only)
// and returns the physical address and whether ring 3 may write there.
func translate(mem []byte, cr3, va uint64) (pa uint64, userWritable bool, ok bool) {
	get := func(at uint64) (uint64, bool) {
		if at+8 > uint64(len(mem)) {
			return 0, false
		}
		return binary.LittleEndian.Uint64(mem[at:]), true
	}
	table := cr3 & pteAddr
	uw := true
	for level, shift := range []uint{39, 30, 21} {
		e, ok := get(table + ((va>>shift)&0x1ff)*8)
		if !ok || e&ptePresent == 0 {
			return 0, false, false
		}
		uw = uw && e&pteUser != 0 && e&pteWrite != 0
		if level == 2 {
			if e&pteHuge == 0 {
				return 0, false, false
			}
			return (e & pteAddr &^ (hugePage - 1)) | va&(hugePage-1), uw, true
		}
		table = e & pteAddr
	}
	return 0, false, false
}
