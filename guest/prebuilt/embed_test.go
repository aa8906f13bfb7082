package prebuilt

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sourceHash is guest/Makefile's recipe: sha256 over the guest sources
// concatenated in byte-wise order of their path relative to guest/.
func sourceHash(t *testing.T) string {
	var files []string
	for _, pat := range []string{"*.c", "*.S", "*.h", "*.lds", "include/*.h"} {
		m, err := filepath.Glob(filepath.Join("..", pat))
		require.NoError(t, err)
		for _, f := range m {
			rel, _ := filepath.Rel("..", f)
			files = append(files, rel)
		}
	}
	files = append(files, "Makefile")
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("..", f))
		require.NoError(t, err)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestImageIsCurrent fails when the embedded guest image was not built from
// the sources beside it: run `make` (or `make -C guest`).
func TestImageIsCurrent(t *testing.T) {
	require.NotEmpty(t, Image, "%s is empty: run make", ImageFile)
	f, err := elf.NewFile(bytes.NewReader(Image))
	require.NoError(t, err)
	s := f.Section(".lhpvm_srchash")
	require.NotNil(t, s, "the image has no .lhpvm_srchash section")
	got, err := s.Data()
	require.NoError(t, err)
	assert.Equal(t, sourceHash(t), string(got), "%s is stale: run make", ImageFile)
}
