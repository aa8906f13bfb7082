package hypercall

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCHeaderIsCurrent(t *testing.T) {
	src, err := os.ReadFile("abi.go")
	require.NoError(t, err)
	want, err := CHeader(src)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join("..", HeaderPath))
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got), "%s is stale: run `go generate ./hypercall`", HeaderPath)
}

func TestLayout(t *testing.T) {
	assert.EqualValues(t, PageSize, unsafe.Sizeof(VCPUPage{}), "VCPUPage must be exactly one page")
	assert.LessOrEqual(t, unsafe.Sizeof(BootInfo{}), uintptr(PageSize))
	assert.EqualValues(t, LockSlotSize, unsafe.Sizeof(LockSlot{}))
	assert.Zero(t, unsafe.Offsetof(BootInfo{}.Stop)%64, "Stop sits on its own cache line")
	assert.Zero(t, unsafe.Offsetof(VCPUPage{}.Preempted)%64, "host section sits on its own cache line")
	assert.Zero(t, unsafe.Offsetof(VCPUPage{}.InCS)%64, "guest section sits on its own cache line")
	assert.Zero(t, unsafe.Offsetof(VCPUPage{}.Ops)%64, "counters sit on their own cache line")

	// Block layout: ordered, non-overlapping, inside the block, power-of-two block.
	assert.Zero(t, VCPUBlockSize&(VCPUBlockSize-1))
	assert.LessOrEqual(t, BlockPageOff+PageSize, BlockGDTOff)
	assert.LessOrEqual(t, BlockGDTOff+GDTEntries*8, BlockTSSOff)
	assert.LessOrEqual(t, BlockTSSOff+104, BlockKStackLow)
	assert.Less(t, BlockKStackLow, BlockKStackTop)
	assert.LessOrEqual(t, BlockKStackTop, BlockUStackLow)
	assert.LessOrEqual(t, BlockUStackTop, VCPUBlockSize)
	assert.Greater(t, DoorbellGPA, MaxMemBytes-1)
	assert.GreaterOrEqual(t, FaultUnmappedGPA, MaxMemBytes)
	assert.Less(t, FaultUnmappedGPA, DoorbellGPA)
}
