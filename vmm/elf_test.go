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
}

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
	hdr := elf.Header64{Ident: ident, Type: uint16(s.typ), Machine: uint16(s.machine), Version: 1,
		Entry: s.entry, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: uint16(len(s.segs))}
	binary.Write(&b, binary.LittleEndian, hdr)
	for _, g := range s.segs {
		binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(g.flags),
			Off: g.off, Vaddr: g.vaddr, Paddr: g.paddr, Filesz: g.filesz, Memsz: g.memsz, Align: 0x1000})
	}
	data := b.Bytes()
	for len(data) < 0x2000 {
		data = append(data, 0xcc)
	}
	return data
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

func TestParseELFBad(t *testing.T) {
	mod := func(f func(*elfSpec)) []byte { s := goodSpec(); f(&s); return build(s) }
	good := build(goodSpec())
	cases := map[string][]byte{
		"empty":                {},
		"not ELF":              []byte("#!/bin/sh\necho hello\n"),
		"truncated header":     good[:40],
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
}

func FuzzParseELF(f *testing.F) {
	f.Add(build(goodSpec()))
	// The real image's headers (the whole 24 KiB image slows the mutator ~100x).
	f.Add(prebuilt.Image[:1024])
	f.Add([]byte("\x7fELF"))
	mem := make([]byte, window.End) // one buffer: allocating 48 MiB per input starves the fuzzer
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := ParseELF(b, window)
		if err != nil {
			return
		}
		end := uint64(0)
		for _, s := range img.Segments {
			if s.Addr < window.Start || s.Addr+s.MemSz > window.End || s.Addr < end || uint64(len(s.Data)) > s.MemSz {
				t.Fatalf("accepted a bad segment %#x+%#x", s.Addr, s.MemSz)
			}
			end = s.Addr + s.MemSz
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
