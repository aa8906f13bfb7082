// Package srchash reads and computes the source hash that the built-in guest
// image and the ptrace stub carry. Both are small generated ELF files that
// are committed beside the Go code that embeds them, as cilium/ebpf's bpf2go
// commits its objects, so that `go install` gives a working lhpvm; each
// carries the sha256 of the sources it was built from in its .lhpvm_srchash
// section (written by its Makefile), and a test compares the two.
package srchash

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Section is the ELF section that holds the hash: 64 lowercase hex digits.
const Section = ".lhpvm_srchash"

// Embedded returns the source hash an ELF file carries.
func Embedded(image []byte) (string, error) {
	if len(image) == 0 {
		return "", errors.New("empty file")
	}
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return "", err
	}
	s := f.Section(Section)
	if s == nil {
		return "", fmt.Errorf("no %s section", Section)
	}
	b, err := s.Data()
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// Sources is a Makefile's recipe for the hash: sha256 over the files that
// match patterns under dir, concatenated in byte-wise order of their path
// relative to dir (LC_ALL=C sort). A pattern that names one file must match.
func Sources(dir string, patterns ...string) (string, error) {
	var files []string
	for _, pat := range patterns {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return "", err
		}
		if len(m) == 0 && !hasMeta(pat) {
			return "", fmt.Errorf("%s: no such file", filepath.Join(dir, pat))
		}
		for _, f := range m {
			rel, err := filepath.Rel(dir, f)
			if err != nil {
				return "", err
			}
			files = append(files, rel)
		}
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hasMeta(p string) bool { return bytes.ContainsAny([]byte(p), `*?[\`) }
