package comm

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestHostLayout: hosts are numbered by their lowest rank, members listed in rank order, and
// the mode follows from the hosts' sizes.
func TestHostLayout(t *testing.T) {
	cases := []struct {
		ids       []string
		members   [][]int
		hostMajor bool
		mode      string
	}{
		{[]string{"a"}, [][]int{{0}}, true, "shm"},
		{[]string{"a", "a", "a"}, [][]int{{0, 1, 2}}, true, "shm"},
		{[]string{"b", "a", "c"}, [][]int{{0}, {1}, {2}}, true, "gloo"},
		{[]string{"x", "y", "x"}, [][]int{{0, 2}, {1}}, false, "hierarchical"},
		{[]string{"y", "y", "x", "x"}, [][]int{{0, 1}, {2, 3}}, true, "hierarchical"},
		{[]string{"y", "y", "x", "x", "x"}, [][]int{{0, 1}, {2, 3, 4}}, false, "hierarchical"},
		{[]string{"h0", "h1", "h2", "h0", "h1", "h2", "h0", "h1"}, [][]int{{0, 3, 6}, {1, 4, 7}, {2, 5}}, false, "hierarchical"},
	}
	for _, tc := range cases {
		l := newHostLayout(tc.ids)
		assert.Equal(t, tc.members, l.members, "%v", tc.ids)
		assert.Equal(t, tc.hostMajor, l.hostMajor, "%v: hostMajor", tc.ids)
		assert.Equal(t, tc.mode, l.mode(), "%v: mode", tc.ids)
		for h, m := range l.members {
			for j, r := range m {
				assert.Equal(t, h, l.hostOf[r], "%v: host of rank %d", tc.ids, r)
				assert.Equal(t, j, l.localRank[r], "%v: local rank of rank %d", tc.ids, r)
			}
		}
	}
}
