package vmm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"testing"

	"github.com/lhpvm/lhpvm/guest/prebuilt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type seg struct {
	vaddr, paddr, off, filesz, memsz uint64
	flags                            elf.ProgFlag
}

type elfSpec struct {
	class   byte
	machine elf.Machine
	typ     elf.Type
	entry   uint64
	segs    []seg
	notes   []byte // contents of a PT_NOTE segment at noteAt (none if nil)
	noteAt  uint64 // 0: noteOff
	size    uint64 // of the file; 0: 0x2000
}

const noteOff = 0x1800

// note encodes one ELF note (name NUL-terminated, both parts padded to 4).
func note(name string, typ uint32, desc []byte) []byte {
	var b bytes.Buffer
	n := append([]byte(name), 0)
	binary.Write(&b, binary.LittleEndian, [3]uint32{uint32(len(n)), uint32(len(desc)), typ})
	b.Write(n)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(desc)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// userNote is the ring-3 entry note for entry.
func userNote(entry uint64) []byte { return note("LHPVM", 1, le64(entry)) }

var window = Range{0x100000, 0x3000000}

func goodSpec() elfSpec {
	return elfSpec{class: byte(elf.ELFCLASS64), machine: elf.EM_X86_64, typ: elf.ET_EXEC, entry: 0x100000,
		segs: []seg{
			{0x100000, 0x100000, 0x1000, 0x100, 0x100, elf.PF_R | elf.PF_X},
			{0x101000, 0x101000, 0x1100, 0x10, 0x2000, elf.PF_R | elf.PF_W},
		}}
}

// build writes a minimal ELF64 file from spec; file data is 0xcc filler.
func build(s elfSpec) []byte {
	var b bytes.Buffer
	ident := [16]byte{0x7f, 'E', 'L', 'F', s.class, byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)}
	phnum := len(s.segs)
	if s.notes != nil {
		phnum++
	}
	hdr := elf.Header64{Ident: ident, Type: uint16(s.typ), Machine: uint16(s.machine), Version: 1,
		Entry: s.entry, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: uint16(phnum)}
	binary.Write(&b, binary.LittleEndian, hdr)
	for _, g := range s.segs {
		binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(g.flags),
			Off: g.off, Vaddr: g.vaddr, Paddr: g.paddr, Filesz: g.filesz, Memsz: g.memsz, Align: 0x1000})
	}
	at := s.noteAt
	if at == 0 {
		at = noteOff
	}
	if s.notes != nil {
		binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_NOTE), Flags: uint32(elf.PF_R),
			Off: at, Filesz: uint64(len(s.notes)), Align: 4})
	}
	size := s.size
	if size == 0 {
		size = 0x2000
	}
	data := b.Bytes()
	for uint64(len(data)) < size {
		data = append(data, 0xcc)
	}
	if s.notes != nil {
		copy(data[at:], s.notes)
	}
	return data
}

// compactSpec is goodSpec with the segments right behind the headers: a
// fuzz seed of 300 bytes instead of 8 KiB, which the fuzzer's minimisation
// (quadratic in the input) can finish.
func compactSpec() elfSpec {
	s := goodSpec()
	s.segs[0].off, s.segs[0].filesz, s.segs[0].memsz = 0x100, 0x20, 0x20
	s.segs[1].off, s.segs[1].filesz = 0x120, 0x10
	s.notes, s.noteAt = userNote(0x100010), 0x130
	s.size = 0x130 + uint64(len(s.notes))
	return s
}

func TestParseELFGood(t *testing.T) {
	img, err := ParseELF(build(goodSpec()), window)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x100000), img.Entry)
	require.Len(t, img.Segments, 2)
	mem := make([]byte, window.End)
	mem[0x101000+0x10] = 0x55 // bss must be zeroed
	img.Load(mem)
	assert.Equal(t, byte(0xcc), mem[0x100000])
	assert.Equal(t, byte(0), mem[0x101000+0x10])
}

func TestParseELFUserEntryNote(t *testing.T) {
	withNotes := func(notes ...[]byte) []byte {
		s := goodSpec()
		s.notes = bytes.Join(notes, nil)
		return build(s)
	}
	img, err := ParseELF(build(goodSpec()), window)
	require.NoError(t, err)
	assert.Zero(t, img.UserEntry, "no note: KVM only")

	img, err = ParseELF(withNotes(userNote(0x100080)), window)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x100080), img.UserEntry)

	// Other owners' notes and other LHPVM note types are skipped.
	img, err = ParseELF(withNotes(note("GNU", 3, []byte{1, 2, 3, 4, 5}), note("LHPVM", 7, le64(5)), userNote(0x100010)), window)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x100010), img.UserEntry)
	// The last note may lack its padding.
	unpadded := note("GNU", 3, []byte{1, 2, 3, 4, 5})[:12+4+5]
	img, err = ParseELF(withNotes(userNote(0x100010), unpadded), window)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x100010), img.UserEntry)

	bad := map[string][]byte{
		"truncated header":     withNotes(userNote(0x100080)[:10]),
		"descriptor past end":  withNotes(userNote(0x100080)[:20]),
		"huge namesz":          withNotes([]byte{0xff, 0xff, 0xff, 0xff, 8, 0, 0, 0, 1, 0, 0, 0}),
		"short descriptor":     withNotes(note("LHPVM", 1, []byte{0, 0, 0x10, 0})),
		"entry 0":              withNotes(userNote(0)),
		"two entries":          withNotes(userNote(0x100080), userNote(0x100090)),
		"entry not executable": withNotes(userNote(0x101000)),
		"entry outside":        withNotes(userNote(0x200000)),
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := ParseELF(b, window)
			assert.ErrorIs(t, err, ErrBadImage)
		})
	}
	t.Run("note segment past EOF", func(t *testing.T) {
		b := withNotes(userNote(0x100080))
		binary.LittleEndian.PutUint64(b[64+2*56+32:], 0x10000) // p_filesz of the note
		_, err := ParseELF(b, window)
		assert.ErrorIs(t, err, ErrBadImage)
		assert.ErrorContains(t, err, "beyond the end of the file")
	})
}

func TestParseELFCompact(t *testing.T) {
	b := build(compactSpec())
	assert.Less(t, len(b), 400, "a fuzz seed stays small")
	img, err := ParseELF(b, window)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x100010), img.UserEntry)
}

// TestParseELFHeaders: the header checks say what is wrong, before
// debug/elf reads anything.
func TestParseELFHeaders(t *testing.T) {
	good := build(compactSpec())
	set16 := func(off int, v uint16) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint16(b[off:], v)
		return b
	}
	set64 := func(off int, v uint64) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint64(b[off:], v)
		return b
	}
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"short header", good[:40], "the ELF header is 64 bytes, the file has 40"},
		{"truncated program headers", good[:150], "program headers end at byte 232, the file has 150"},
		{"huge phnum", set16(56, 0xffff), "65535 program headers: a guest image may have at most 64"},
		{"wrong phentsize", set16(54, 0x4000), "program header entries of 16384 bytes, want 56"},
		{"no program headers", set16(56, 0), "no program headers"},
		{"phoff past the end", set64(32, 1<<62), "program headers end at byte"},
		{"big-endian", func() []byte { b := bytes.Clone(good); b[5] = 2; return b }(), "want ELFDATA2LSB"},
		{"section headers past the end", func() []byte {
			b := set64(40, 0x100)
			binary.LittleEndian.PutUint16(b[58:], 64)
			binary.LittleEndian.PutUint16(b[60:], 30)
			return b
		}(), "section headers end at byte 2176"},
		{"extended section count", set64(40, 0x100), "extended section count"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseELF(tt.b, window)
			assert.ErrorIs(t, err, ErrBadImage)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestParseELFBad(t *testing.T) {
	mod := func(f func(*elfSpec)) []byte { s := goodSpec(); f(&s); return build(s) }
	good := build(goodSpec())
	cases := map[string][]byte{
		"empty":                {},
		"not ELF":              []byte("#!/bin/sh\necho hello\n"),
		"truncated header":     good[:40],
		"truncated phdrs":      good[:64+56],
		"truncated segment":    good[:0x1050],
		"32-bit":               mod(func(s *elfSpec) { s.class = byte(elf.ELFCLASS32) }),
		"wrong machine":        mod(func(s *elfSpec) { s.machine = elf.EM_AARCH64 }),
		"shared object":        mod(func(s *elfSpec) { s.typ = elf.ET_DYN }),
		"no segments":          mod(func(s *elfSpec) { s.segs = nil }),
		"below the window":     mod(func(s *elfSpec) { s.segs[0].vaddr, s.segs[0].paddr = 0x1000, 0x1000 }),
		"past the window":      mod(func(s *elfSpec) { s.segs[1].memsz = window.End }),
		"address overflow":     mod(func(s *elfSpec) { s.segs[1].memsz = ^uint64(0) - 0x1000 }),
		"filesz > memsz":       mod(func(s *elfSpec) { s.segs[0].filesz = 0x200 }),
		"file range past EOF":  mod(func(s *elfSpec) { s.segs[0].off = 0x1fff0 }),
		"overlapping segments": mod(func(s *elfSpec) { s.segs[1].vaddr, s.segs[1].paddr = 0x1000f0, 0x1000f0 }),
		"entry outside":        mod(func(s *elfSpec) { s.entry = 0x200000 }),
		"entry not executable": mod(func(s *elfSpec) { s.entry = 0x101000 }),
		"virtual != physical":  mod(func(s *elfSpec) { s.segs[0].vaddr = 0xffffffff80100000 }),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseELF(b, window)
			assert.ErrorIs(t, err, ErrBadImage)
		})
	}
}

func TestBuiltinImageParses(t *testing.T) {
	l, err := NewLayout(defaultMem, 64)
	require.NoError(t, err)
	img, err := ParseELF(prebuilt.Image, l.Image)
	require.NoError(t, err, "the committed guest image must load (run make)")
	_, ok := img.Symbol("_start")
	assert.True(t, ok, "the guest keeps its symbols")
	ue, ok := img.Symbol("user_entry")
	require.True(t, ok)
	assert.Equal(t, ue.Value, img.UserEntry, "the built-in guest declares its ring-3 entry (boot protocol v2)")
}

func FuzzParseELF(f *testing.F) {
	// Small seeds: the fuzzer minimises every new input before it goes on,
	// for up to a minute and quadratically in its size.
	f.Add(build(compactSpec()))
	withNote := compactSpec()
	withNote.notes = append(note("GNU", 3, []byte{1, 2, 3}), userNote(0x100010)...)
	withNote.size = 0x130 + uint64(len(withNote.notes))
	f.Add(build(withNote))
	f.Add([]byte("\x7fELF"))
	mem := make([]byte, window.End) // one buffer: allocating 48 MiB per input starves the fuzzer
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := ParseELF(b, window)
		if err != nil {
			return
		}
		end := uint64(0)
		userOK := img.UserEntry == 0
		for _, s := range img.Segments {
			if s.Flags&elf.PF_X != 0 && img.UserEntry >= s.Addr && img.UserEntry < s.Addr+s.MemSz {
				userOK = true
			}
			if s.Addr < window.Start || s.Addr+s.MemSz > window.End || s.Addr < end || uint64(len(s.Data)) > s.MemSz {
				t.Fatalf("accepted a bad segment %#x+%#x", s.Addr, s.MemSz)
			}
			end = s.Addr + s.MemSz
		}
		if !userOK {
			t.Fatalf("accepted a ring-3 entry %#x outside every executable segment", img.UserEntry)
		}
		img.Load(mem)
	})
}

func TestBuiltinCodeMap(t *testing.T) {
	l, err := NewLayout(defaultMem, 4)
	require.NoError(t, err)
	img, err := ParseELF(prebuilt.Image, l.Image)
	require.NoError(t, err)
	cm := img.codeMap()
	assert.Less(t, cm.Spin.Start, cm.Spin.End, "the guest marks its spin loops")
	assert.Less(t, cm.CS.Start, cm.CS.End, "the guest marks its critical sections")
	f, ok := img.Symbol("counter_tas_acquire")
	require.True(t, ok)
	assert.True(t, cm.Spin.Contains(f.Value))
}
