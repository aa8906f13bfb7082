package vmm

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/lhpvm/lhpvm/sched"
)

// ErrBadImage: the guest image is not a loadable x86-64 ELF for this layout.
var ErrBadImage = errors.New("bad guest image")

// maxImageBytes bounds what LoadELF will read.
const maxImageBytes = 256 << 20

// Image is a parsed guest ELF: its entry point and loadable segments.
type Image struct {
	Entry    uint64
	Segments []Segment
	Symbols  []elf.Symbol // may be empty (stripped image)
}

// Segment is one PT_LOAD segment.
type Segment struct {
	Addr  uint64 // guest physical (= virtual) address
	Data  []byte // file bytes; the rest up to MemSz is zero
	MemSz uint64
	Flags elf.ProgFlag
}

func badImage(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadImage, fmt.Sprintf(format, a...))
}

// ParseELF checks that b is a static x86-64 ELF64 executable whose PT_LOAD
// segments fit in the window and do not overlap, and whose entry point lies in
// an executable segment.
func ParseELF(b []byte, window Range) (*Image, error) {
	if len(b) == 0 {
		return nil, badImage("empty file")
	}
	if len(b) > maxImageBytes {
		return nil, badImage("%d bytes is larger than %d MiB", len(b), maxImageBytes>>20)
	}
	if len(b) < 4 || !bytes.Equal(b[:4], []byte(elf.ELFMAG)) {
		return nil, badImage("not an ELF file")
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, badImage("%v", err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 {
		return nil, badImage("%v, want ELFCLASS64", f.Class)
	}
	if f.Machine != elf.EM_X86_64 {
		return nil, badImage("machine %v, want EM_X86_64", f.Machine)
	}
	if f.Type != elf.ET_EXEC {
		return nil, badImage("type %v, want ET_EXEC (a static, non-PIE executable)", f.Type)
	}
	img := &Image{Entry: f.Entry}
	for i, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz {
			return nil, badImage("segment %d: file size %#x exceeds memory size %#x", i, p.Filesz, p.Memsz)
		}
		if p.Off > uint64(len(b)) || p.Filesz > uint64(len(b))-p.Off {
			return nil, badImage("segment %d: file range [%#x, +%#x) is beyond the end of the file", i, p.Off, p.Filesz)
		}
		end := p.Paddr + p.Memsz
		if end < p.Paddr || p.Paddr < window.Start || end > window.End {
			return nil, badImage("segment %d: [%#x, %#x) is outside the image window %v", i, p.Paddr, end, window)
		}
		if p.Vaddr != p.Paddr {
			return nil, badImage("segment %d: virtual %#x != physical %#x (the guest is identity mapped)", i, p.Vaddr, p.Paddr)
		}
		data := make([]byte, p.Filesz)
		if _, err := io.ReadFull(p.Open(), data); err != nil {
			return nil, badImage("segment %d: %v", i, err)
		}
		img.Segments = append(img.Segments, Segment{Addr: p.Paddr, Data: data, MemSz: p.Memsz, Flags: p.Flags})
	}
	if len(img.Segments) == 0 {
		return nil, badImage("no PT_LOAD segment")
	}
	sort.Slice(img.Segments, func(i, j int) bool { return img.Segments[i].Addr < img.Segments[j].Addr })
	entryOK := false
	for i, s := range img.Segments {
		r := Range{s.Addr, s.Addr + s.MemSz}
		if i > 0 {
			prev := img.Segments[i-1]
			if pr := (Range{prev.Addr, prev.Addr + prev.MemSz}); pr.overlaps(r) {
				return nil, badImage("segments %v and %v overlap", pr, r)
			}
		}
		if s.Flags&elf.PF_X != 0 && img.Entry >= r.Start && img.Entry < r.End {
			entryOK = true
		}
	}
	if !entryOK {
		return nil, badImage("entry point %#x is not inside an executable segment", img.Entry)
	}
	if syms, err := f.Symbols(); err == nil {
		img.Symbols = syms
	}
	return img, nil
}

// Load copies the segments into guest memory and zeroes their tails.
func (img *Image) Load(mem []byte) {
	for _, s := range img.Segments {
		copy(mem[s.Addr:], s.Data)
		clear(mem[s.Addr+uint64(len(s.Data)) : s.Addr+s.MemSz])
	}
}

// Symbol looks up a symbol by name.
func (img *Image) Symbol(name string) (elf.Symbol, bool) {
	for _, s := range img.Symbols {
		if s.Name == name {
			return s, true
		}
	}
	return elf.Symbol{}, false
}

// codeMap reads the guest's code ranges from its symbols: the lock wait
// loops in [__lhpvm_spin_start, __lhpvm_spin_end) and the critical sections
// in [__lhpvm_cs_start, __lhpvm_cs_end) (see guest/guest.lds). An image
// without them gets empty ranges.
func (img *Image) codeMap() sched.CodeMap {
	rng := func(start, end string) sched.AddrRange {
		a, ok1 := img.Symbol(start)
		b, ok2 := img.Symbol(end)
		if !ok1 || !ok2 || b.Value < a.Value {
			return sched.AddrRange{}
		}
		return sched.AddrRange{Start: a.Value, End: b.Value}
	}
	return sched.CodeMap{Spin: rng("__lhpvm_spin_start", "__lhpvm_spin_end"), CS: rng("__lhpvm_cs_start", "__lhpvm_cs_end")}
}
