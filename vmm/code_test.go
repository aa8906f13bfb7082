package vmm

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/lhpvm/lhpvm/guest/prebuilt"
	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckCode(t *testing.T) {
	code, err := LookupWorkload("code")
	require.NoError(t, err)
	hello, err := LookupWorkload("hello")
	require.NoError(t, err)
	for _, tt := range []struct {
		name string
		cfg  Config
		err  string // "" if accepted
	}{
		{"no code", Config{Workload: code}, ""},
		{"empty code", Config{Workload: code, Code: []byte{}}, ""},
		{"ret", Config{Workload: code, Code: []byte{0xc3}}, ""},
		{"a whole page", Config{Workload: code, Code: make([]byte, hypercall.MaxCodeLen)}, ""},
		{"a page and a byte", Config{Workload: code, Code: make([]byte, hypercall.MaxCodeLen+1)}, "code of 4097 bytes: at most 4096"},
		{"another workload", Config{Workload: hello, Code: []byte{0xc3}}, `code (1 bytes) is for workload code only, not "hello"`},
		{"another workload, no code", Config{Workload: hello}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkCode(tt.cfg)
			if tt.err == "" {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, tt.err)
			_, err = New(nil, tt.cfg) // refused before the backend is touched
			assert.EqualError(t, err, tt.err)
		})
	}
}

func TestCodePage(t *testing.T) {
	l, err := NewLayout(defaultMem, 4)
	require.NoError(t, err)
	img, err := ParseELF(prebuilt.Image, l.Image)
	require.NoError(t, err)
	gpa, err := codePage(l, img)
	require.NoError(t, err)
	assert.Equal(t, l.Locks.Start-hypercall.PageSize, gpa, "the last page below the lock area")
	assert.Zero(t, gpa%hypercall.PageSize)

	// An image that reaches into that page is refused.
	big := &Image{Segments: []Segment{{Addr: hypercall.ImageMinGPA, MemSz: gpa + 1 - hypercall.ImageMinGPA}}}
	_, err = codePage(l, big)
	assert.ErrorIs(t, err, ErrBadImage)
	big.Segments[0].MemSz--
	_, err = codePage(l, big)
	assert.NoError(t, err, "an image that ends where the page starts fits")

	page := bytes.Repeat([]byte{0x90}, hypercall.PageSize)
	loadCode(page, []byte{0x0f, 0x05})
	assert.Equal(t, []byte{0x0f, 0x05, 0xcc, 0xcc}, page[:4])
	assert.Equal(t, bytes.Repeat([]byte{0xcc}, hypercall.PageSize-2), page[2:], "int3 after the code")
	loadCode(page, nil)
	assert.Equal(t, bytes.Repeat([]byte{0xcc}, hypercall.PageSize), page, "no code: all int3")
}

// TestCodeBootInfo: the code page and length reach the guest in BootInfo,
// and other workloads see zeros there.
func TestCodeBootInfo(t *testing.T) {
	for _, tt := range []struct {
		workload string
		code     []byte
	}{{"code", []byte{0x90, 0xc3}}, {"hello", nil}} {
		wl, err := LookupWorkload(tt.workload)
		require.NoError(t, err)
		l, err := NewLayout(defaultMem, 1)
		require.NoError(t, err)
		vm := &VM{cfg: Config{VCPUs: 1, MemBytes: defaultMem, Workload: wl, Code: tt.code}, layout: l}
		if wl.ID == hypercall.WorkloadCode {
			vm.codeGPA = l.Image.End - hypercall.PageSize
		}
		mem := make([]byte, hypercall.PageTableGPA)
		vm.writeBootInfo(mem)
		var bi hypercall.BootInfo
		require.NoError(t, binary.Read(bytes.NewReader(mem[hypercall.BootInfoGPA:]), binary.LittleEndian, &bi))
		assert.Equal(t, vm.codeGPA, bi.CodeGPA, tt.workload)
		assert.EqualValues(t, len(tt.code), bi.CodeLen, tt.workload)
	}
}
