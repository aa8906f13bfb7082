package vmm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/sched"
)

// ErrBadImage: the guest image is not a loadable x86-64 ELF for this layout.
var ErrBadImage = errors.New("bad guest image")

// MaxImageBytes bounds a guest image.
const MaxImageBytes = 256 << 20

// Image is a parsed guest ELF: its entry points and loadable segments.
type Image struct {
	Entry uint64 // the ELF entry: where a ring-0 start begins (KVM)
	// UserEntry is the ring-3 entry the image declares in its LHPVM note
	// (boot protocol v2), where a backend without ring 0 starts it; 0: none.
	UserEntry uint64
	Segments  []Segment
	Symbols   []elf.Symbol // may be empty (stripped image)
	window    Range        // the image window it was parsed for
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
	if len(b) > MaxImageBytes {
		return nil, badImage("%d bytes is larger than %d MiB", len(b), MaxImageBytes>>20)
	}
	if len(b) < 4 || !bytes.Equal(b[:4], []byte(elf.ELFMAG)) {
		return nil, badImage("not an ELF file")
	}
	if err := checkHeaders(b); err != nil {
		return nil, badImage("%v", err)
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
	img := &Image{Entry: f.Entry, window: window}
	for i, p := range f.Progs {
		if p.Type == elf.PT_NOTE {
			if p.Off > uint64(len(b)) || p.Filesz > uint64(len(b))-p.Off {
				return nil, badImage("note segment %d: file range [%#x, +%#x) is beyond the end of the file (%d bytes)",
					i, p.Off, p.Filesz, len(b))
			}
			entry, err := userEntryNote(b[p.Off : p.Off+p.Filesz])
			if err != nil {
				return nil, badImage("note segment %d: %v", i, err)
			}
			if entry != 0 {
				if img.UserEntry != 0 {
					return nil, badImage("note segment %d: a second ring-3 entry note", i)
				}
				img.UserEntry = entry
			}
			continue
		}
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
	entryOK, userOK := false, img.UserEntry == 0
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
		if s.Flags&elf.PF_X != 0 && img.UserEntry >= r.Start && img.UserEntry < r.End {
			userOK = true
		}
	}
	if !entryOK {
		return nil, badImage("entry point %#x is not inside an executable segment", img.Entry)
	}
	if !userOK {
		return nil, badImage("ring-3 entry point %#x (LHPVM note) is not inside an executable segment", img.UserEntry)
	}
	if syms, err := f.Symbols(); err == nil {
		img.Symbols = syms
	}
	return img, nil
}

// ELF64 header and table entry sizes, and how many entries a guest image may
// have: ours has 4 program headers and about 10 sections.
const (
	elfHeaderSize   = 64
	progHeaderSize  = 56
	sectHeaderSize  = 64
	maxProgHeaders  = 64
	maxSectHeaders  = 4096
	elfClassOffset  = 4
	elfDataOffset   = 5
	elfPhoffOffset  = 32
	elfShoffOffset  = 40
	elfPhentOffset  = 54
	elfPhnumOffset  = 56
	elfShentOffset  = 58
	elfShnumOffset  = 60
	elfShstrndxOffs = 62
)

// checkHeaders is a cheap look at the ELF header and its tables before
// debug/elf reads them: debug/elf sizes its allocations by the counts the
// header claims (10 MiB for a hostile e_phnum and e_phentsize), and reports
// a truncated table as a bare EOF. Each refusal says what is wrong.
func checkHeaders(b []byte) error {
	n := uint64(len(b))
	if n < elfHeaderSize {
		return fmt.Errorf("the ELF header is %d bytes, the file has %d", elfHeaderSize, n)
	}
	if c := elf.Class(b[elfClassOffset]); c != elf.ELFCLASS64 {
		return fmt.Errorf("%v, want ELFCLASS64", c)
	}
	if d := elf.Data(b[elfDataOffset]); d != elf.ELFDATA2LSB {
		return fmt.Errorf("%v, want ELFDATA2LSB (little-endian)", d)
	}
	le := binary.LittleEndian
	phoff, phent, phnum := le.Uint64(b[elfPhoffOffset:]), uint64(le.Uint16(b[elfPhentOffset:])), uint64(le.Uint16(b[elfPhnumOffset:]))
	switch {
	case phnum == 0:
		return errors.New("no program headers")
	case phnum > maxProgHeaders:
		return fmt.Errorf("%d program headers: a guest image may have at most %d", phnum, maxProgHeaders)
	case phent != progHeaderSize:
		return fmt.Errorf("program header entries of %d bytes, want %d", phent, progHeaderSize)
	case phoff > n || phnum*phent > n-phoff:
		return fmt.Errorf("program headers end at byte %d, the file has %d", phoff+phnum*phent, n)
	}
	shoff, shent, shnum := le.Uint64(b[elfShoffOffset:]), uint64(le.Uint16(b[elfShentOffset:])), uint64(le.Uint16(b[elfShnumOffset:]))
	if shnum == 0 && shoff != 0 {
		// The real count is in section header 0 (more than 65279
		// sections): no guest image needs that.
		return errors.New("an extended section count (e_shnum 0 with section headers): not a guest image")
	}
	switch {
	case shnum == 0:
	case shnum > maxSectHeaders:
		return fmt.Errorf("%d section headers: a guest image may have at most %d", shnum, maxSectHeaders)
	case shent != sectHeaderSize:
		return fmt.Errorf("section header entries of %d bytes, want %d", shent, sectHeaderSize)
	case shoff > n || shnum*shent > n-shoff:
		return fmt.Errorf("section headers end at byte %d, the file has %d", shoff+shnum*shent, n)
	case uint64(le.Uint16(b[elfShstrndxOffs:])) >= shnum && le.Uint16(b[elfShstrndxOffs:]) != 0:
		return fmt.Errorf("section name table index %d, but there are %d sections", le.Uint16(b[elfShstrndxOffs:]), shnum)
	}
	return nil
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

// userEntryNote reads the notes of one PT_NOTE segment and returns the
// ring-3 entry of an LHPVM note of type hypercall.NoteUserEntry (0 if there
// is none). Notes of other owners, and LHPVM notes of other types, are
// skipped: later protocol versions may add some.
func userEntryNote(b []byte) (uint64, error) {
	var entry uint64
	align4 := func(n uint64) uint64 { return (n + 3) &^ 3 }
	owner := hypercall.NoteOwner + "\x00"
	for off := uint64(0); off < uint64(len(b)); {
		rest := b[off:]
		if len(rest) < 12 {
			return 0, fmt.Errorf("truncated note header at byte %d: %d bytes left, a header is 12", off, len(rest))
		}
		namesz := uint64(binary.LittleEndian.Uint32(rest[0:]))
		descsz := uint64(binary.LittleEndian.Uint32(rest[4:]))
		typ := binary.LittleEndian.Uint32(rest[8:])
		descOff := 12 + align4(namesz) // both at most 2^32+15: no overflow
		if descOff+descsz > uint64(len(rest)) {
			return 0, fmt.Errorf("note at byte %d: name (%d bytes) and descriptor (%d bytes) end at byte %d, the segment has %d",
				off, namesz, descsz, off+descOff+descsz, len(b))
		}
		if string(rest[12:12+namesz]) == owner && typ == hypercall.NoteUserEntry {
			if descsz != hypercall.NoteUserEntrySize {
				return 0, fmt.Errorf("ring-3 entry note: descriptor of %d bytes, want %d", descsz, hypercall.NoteUserEntrySize)
			}
			if entry != 0 {
				return 0, errors.New("a second ring-3 entry note")
			}
			entry = binary.LittleEndian.Uint64(rest[descOff:])
			if entry == 0 {
				return 0, errors.New("ring-3 entry note: entry address 0")
			}
		}
		off += min(descOff+align4(descsz), uint64(len(rest))) // the last note's padding may be missing
	}
	return entry, nil
}
