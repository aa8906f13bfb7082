package vmm

import (
	"fmt"

	"github.com/lhpvm/lhpvm/hypercall"
)

const (
	mib        = 1 << 20
	hugePage   = 2 * mib
	minMem     = 4 * mib
	defaultMem = 64 * mib
)

// Range is a half-open guest physical address range [Start, End).
type Range struct{ Start, End uint64 }

func (r Range) overlaps(o Range) bool { return r.Start < o.End && o.Start < r.End }

func (r Range) String() string { return fmt.Sprintf("[%#x, %#x)", r.Start, r.End) }

// Layout is where everything lives in a VM's guest physical memory:
//
//	0x0000_1000  BootInfo page
//	0x0000_2000  page tables (PML4, PDPT, page directories)
//	0x0010_0000  guest image (ELF PT_LOAD segments) ... up to Locks.Start
//	Locks        lock slots shared by all vCPUs (hypercall.LockAreaSize)
//	Blocks       one VCPUBlockSize block per vCPU, up to the end of RAM
type Layout struct {
	MemBytes uint64
	VCPUs    int
	Image    Range // where the image may load
	Locks    Range
	Blocks   Range
}

// NewLayout checks the memory size and vCPU count and places the regions.
func NewLayout(memBytes uint64, vcpus int) (Layout, error) {
	if memBytes < minMem || memBytes > hypercall.MaxMemBytes || memBytes%hugePage != 0 {
		return Layout{}, fmt.Errorf("memory size %d MiB: must be a multiple of 2 MiB between %d MiB and %d MiB",
			memBytes/mib, minMem/mib, hypercall.MaxMemBytes/mib)
	}
	if vcpus < 1 || vcpus > hypercall.MaxVCPUs {
		return Layout{}, fmt.Errorf("vCPU count %d: must be between 1 and %d", vcpus, hypercall.MaxVCPUs)
	}
	l := Layout{MemBytes: memBytes, VCPUs: vcpus}
	blocks := uint64(vcpus) * hypercall.VCPUBlockSize
	// At least 1 MiB must be left for the image.
	if need := hypercall.ImageMinGPA + mib + hypercall.LockAreaSize + blocks; need > memBytes {
		return Layout{}, fmt.Errorf("%d vCPUs need %d KiB of per-vCPU blocks: %d MiB of memory is too small",
			vcpus, blocks>>10, memBytes/mib)
	}
	l.Blocks = Range{memBytes - blocks, memBytes}
	l.Locks = Range{l.Blocks.Start - hypercall.LockAreaSize, l.Blocks.Start}
	l.Image = Range{hypercall.ImageMinGPA, l.Locks.Start}
	return l, nil
}

// Block is the GPA of vCPU id's block.
func (l Layout) Block(id int) uint64 { return l.Blocks.Start + uint64(id)*hypercall.VCPUBlockSize }

// Page is the GPA of vCPU id's shared VCPUPage.
func (l Layout) Page(id int) uint64 { return l.Block(id) + hypercall.BlockPageOff }

// LockSlot is the GPA of lock slot i.
func (l Layout) LockSlot(i int) uint64 { return l.Locks.Start + uint64(i)*hypercall.LockSlotSize }
