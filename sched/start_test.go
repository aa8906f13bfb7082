package sched

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDrawStart: a seed fixes the start; the vCPUs are dealt evenly; the
// state starts them in the drawn order with the drawn phases.
func TestDrawStart(t *testing.T) {
	a, b := DrawStart(7, 5, 2), DrawStart(7, 5, 2)
	assert.Equal(t, a, b, "the same seed gives the same start")
	assert.NotEqual(t, a, DrawStart(8, 5, 2))
	per := map[int]int{}
	for _, h := range a.Home {
		per[h]++
	}
	assert.Equal(t, map[int]int{0: 3, 1: 2}, map[int]int{0: max(per[0], per[1]), 1: min(per[0], per[1])}, "dealt evenly")
	assert.ElementsMatch(t, []int{0, 1, 2, 3, 4}, a.Order)
	for _, f := range a.Phase {
		assert.True(t, f >= 0 && f < 1, "phase %v", f)
	}

	st, err := NewState([]int{0, 1}, []int{3, 2}, 10*time.Millisecond)
	require.NoError(t, err)
	require.NoError(t, st.SetStart(a))
	for i, v := range st.VCPUs {
		assert.Equal(t, a.Home[i], v.Home)
	}
	var order []int
	for _, v := range st.startOrder() {
		order = append(order, v.Index)
	}
	assert.Equal(t, a.Order, order)
	assert.Equal(t, a.Phase[1], st.phase(1))
	assert.Error(t, st.SetStart(DrawStart(1, 4, 2)), "a start for another machine")
}
