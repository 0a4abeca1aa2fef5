package dtensor

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestChunkRange(t *testing.T) {
	cases := []struct {
		n, m    int
		starts  []int
		lengths []int
	}{
		{8, 4, []int{0, 2, 4, 6}, []int{2, 2, 2, 2}},
		{7, 4, []int{0, 2, 4, 6}, []int{2, 2, 2, 1}},
		{5, 4, []int{0, 2, 4, 5}, []int{2, 2, 1, 0}}, // torch.chunk(5 rows, 4) gives 3 chunks
		{6, 4, []int{0, 2, 4, 6}, []int{2, 2, 2, 0}},
		{1, 3, []int{0, 1, 1}, []int{1, 0, 0}},
		{0, 3, []int{0, 0, 0}, []int{0, 0, 0}},
		{7, 3, []int{0, 3, 6}, []int{3, 3, 1}},
		{3, 1, []int{0}, []int{3}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d_over_%d", tc.n, tc.m), func(t *testing.T) {
			total := 0
			for i := range tc.m {
				s, l := ChunkRange(tc.n, tc.m, i)
				assert.Equal(t, tc.starts[i], s, "start of chunk %d", i)
				assert.Equal(t, tc.lengths[i], l, "length of chunk %d", i)
				total += l
			}
			assert.Equal(t, tc.n, total)
		})
	}
}

func TestLocalShape(t *testing.T) {
	cases := []struct {
		name       string
		global     []int
		mesh       []int
		placements []Placement
		shapes     [][]int // per row-major mesh rank
		offsets    [][]int
	}{
		{"1d_even", []int{8, 3}, []int{4}, []Placement{Shard{0}},
			[][]int{{2, 3}, {2, 3}, {2, 3}, {2, 3}}, [][]int{{0, 0}, {2, 0}, {4, 0}, {6, 0}}},
		{"1d_uneven_empty_tail", []int{5, 3}, []int{4}, []Placement{Shard{0}},
			[][]int{{2, 3}, {2, 3}, {1, 3}, {0, 3}}, [][]int{{0, 0}, {2, 0}, {4, 0}, {5, 0}}},
		{"1d_negative_dim", []int{2, 7}, []int{3}, []Placement{Shard{-1}},
			[][]int{{2, 3}, {2, 3}, {2, 1}}, [][]int{{0, 0}, {0, 3}, {0, 6}}},
		{"1d_replicate_partial", []int{2, 7}, []int{2}, []Placement{Partial{}},
			[][]int{{2, 7}, {2, 7}}, [][]int{{0, 0}, {0, 0}}},
		{"2d_two_dims", []int{5, 7}, []int{2, 2}, []Placement{Shard{0}, Shard{1}},
			[][]int{{3, 4}, {3, 3}, {2, 4}, {2, 3}}, [][]int{{0, 0}, {0, 4}, {3, 0}, {3, 4}}},
		// nested: 7 rows in 2 chunks (4, 3), each in 2 chunks: (2, 2), (2, 1)
		{"2d_nested", []int{7, 1}, []int{2, 2}, []Placement{Shard{0}, Shard{0}},
			[][]int{{2, 1}, {2, 1}, {2, 1}, {1, 1}}, [][]int{{0, 0}, {2, 0}, {4, 0}, {6, 0}}},
		// nested 5 over 2x3: (3, 2) then (1,1,1), (1,1,0)
		{"2x3_nested", []int{5}, []int{2, 3}, []Placement{Shard{0}, Shard{0}},
			[][]int{{1}, {1}, {1}, {1}, {1}, {0}}, [][]int{{0}, {1}, {2}, {3}, {4}, {5}}},
		{"2d_replicate_shard", []int{1, 4}, []int{2, 2}, []Placement{Replicate{}, Shard{0}},
			[][]int{{1, 4}, {0, 4}, {1, 4}, {0, 4}}, [][]int{{0, 0}, {1, 0}, {0, 0}, {1, 0}}},
		{"zero_size", []int{0, 4}, []int{3}, []Placement{Shard{0}},
			[][]int{{0, 4}, {0, 4}, {0, 4}}, [][]int{{0, 0}, {0, 0}, {0, 0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := 1
			for _, s := range tc.mesh {
				n *= s
			}
			require.Len(t, tc.shapes, n)
			for r := range n {
				coord := make([]int, len(tc.mesh))
				rem := r
				for i := len(tc.mesh) - 1; i >= 0; i-- {
					coord[i] = rem % tc.mesh[i]
					rem /= tc.mesh[i]
				}
				shape, off, err := LocalShape(tc.global, tc.mesh, coord, tc.placements)
				require.NoError(t, err)
				assert.Equal(t, tc.shapes[r], shape, "shape at %v", coord)
				assert.Equal(t, tc.offsets[r], off, "offset at %v", coord)
			}
		})
	}
}

func TestLocalShapeErrors(t *testing.T) {
	cases := []struct {
		name       string
		global     []int
		mesh       []int
		coord      []int
		placements []Placement
		want       string
	}{
		{"wrong_length", []int{4}, []int{2, 2}, []int{0, 0}, []Placement{Shard{0}}, "1 placement for a mesh of 2 dimensions"},
		{"dim_out_of_range", []int{4}, []int{2}, []int{0}, []Placement{Shard{1}}, "shards dimension 1 of a 1-d tensor; pass a dim in [-1, 1)"},
		{"nil_placement", []int{4}, []int{2}, []int{0}, []Placement{nil}, "placement 0 is nil"},
		{"coord_length", []int{4}, []int{2}, []int{0, 0}, []Placement{Shard{0}}, "one coordinate per mesh dimension"},
		{"negative_size", []int{-1}, []int{2}, []int{0}, []Placement{Shard{0}}, "negative size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := LocalShape(tc.global, tc.mesh, tc.coord, tc.placements)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "dtensor.LocalShape")
		})
	}
}

func TestPlacementString(t *testing.T) {
	assert.Equal(t, "[S(0), R, P(sum), P(max)]",
		formatPlacements([]Placement{Shard{0}, Replicate{}, Partial{}, Partial{Op: 4}}))
}
