package prebuilt

import (
	"testing"

	"github.com/lhpvm/lhpvm/internal/srchash"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestImageIsCurrent fails when the committed guest image was not built from
// the sources beside it. The pattern list is guest/Makefile's SRCHASH_FILES.
func TestImageIsCurrent(t *testing.T) {
	got, err := SourceHash()
	require.NoError(t, err, "the built-in guest image: %s", ImageFile)
	want, err := srchash.Sources("..", "*.c", "*.S", "*.h", "*.lds", "include/*.h", "Makefile")
	require.NoError(t, err)
	assert.Equal(t, want, got, "%s is stale: run 'make generate' (or 'go generate ./guest/prebuilt') and commit it", ImageFile)
}
