package mesh_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/mesh"
)

// TestBadInput: on 4 real processes, every bad argument to New, the accessors, Sub, Dim and
// Flatten returns, on every rank and within seconds, an error that wraps
// comm.ErrInvalidArgument (or comm.ErrMismatch when ranks disagree) and names the op, the rank
// and the fix; bad calls to New create no group.
func TestBadInput(t *testing.T) {
	if ranktest.Child(t) {
		badInputChild(t)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 4, Timeout: time.Minute,
		Env: []string{"GCCL_TIMEOUT=20s", "GCCL_BACKEND=gloo"}})
	ranktest.AssertExitedZero(t, res)
}

func badInputChild(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	require.NoError(t, err)
	defer pg.Close()
	rank := pg.Rank()
	who := fmt.Sprintf("(rank %d)", rank)
	n0, _ := groupCount(pg)

	news := []struct {
		name  string
		shape []int
		names []string
		opts  mesh.Options
		want  []string
	}{
		{"product_too_big", []int{2, 3}, []string{"dp", "tp"}, mesh.Options{}, []string{"shape [2 3] holds 6 ranks but the group has 4", "multiply to 4"}},
		{"product_too_small", []int{3}, []string{"dp"}, mesh.Options{}, []string{"holds 3 ranks", "multiply to 4"}},
		{"zero_size", []int{0, 4}, []string{"dp", "tp"}, mesh.Options{}, []string{`dimension "dp" has size 0`, "at least 1"}},
		{"negative_sizes_product_4", []int{-2, -2}, []string{"dp", "tp"}, mesh.Options{}, []string{`dimension "dp" has size -2`, "at least 1"}},
		{"empty_shape", nil, nil, mesh.Options{}, []string{"the shape is empty", "[]int{4}"}},
		{"too_few_names", []int{2, 2}, []string{"dp"}, mesh.Options{}, []string{"2 dimensions but 1 names", "one name per dimension"}},
		{"duplicate_name", []int{2, 2}, []string{"tp", "tp"}, mesh.Options{}, []string{`"tp" is used twice`, "its own name"}},
		{"empty_name", []int{2, 2}, []string{"dp", ""}, mesh.Options{}, []string{"dimension 1 has an empty name", "name every dimension"}},
		{"unknown_dim_option", []int{2, 2}, []string{"dp", "tp"},
			mesh.Options{Dims: map[string]mesh.DimOptions{"pp": {Backend: "shm"}}}, []string{`Options.Dims names dimension "pp"`, "use the mesh's dimension names"}},
	}
	for _, tc := range news {
		start := time.Now()
		m, err := mesh.New(ctx, pg, tc.shape, tc.names, tc.opts)
		assert.Nil(t, m, tc.name)
		assert.ErrorIs(t, err, comm.ErrInvalidArgument, tc.name)
		if err != nil {
			for _, s := range append([]string{"mesh.New", who}, tc.want...) {
				assert.Contains(t, err.Error(), s, tc.name)
			}
		}
		assert.Less(t, time.Since(start), 5*time.Second, tc.name)
	}
	if n, _ := groupCount(pg); n != n0 {
		t.Errorf("bad calls to New created %d groups", n-n0)
	}

	// Ranks that pass different shapes fail on every rank, naming the odd one.
	shape := []int{2, 2}
	if rank == 3 {
		shape = []int{4, 1}
	}
	_, err = mesh.New(ctx, pg, shape, []string{"dp", "tp"}, mesh.Options{})
	assert.ErrorIs(t, err, comm.ErrMismatch)
	assert.ErrorContains(t, err, "rank 3 passed shape [4 1]")
	assert.ErrorContains(t, err, "same arguments on every rank")
	if n, _ := groupCount(pg); n != n0 {
		t.Errorf("a mismatched New created %d groups", n-n0)
	}

	// An unknown backend for one dimension fails on every rank.
	_, err = mesh.New(ctx, pg, []int{2, 2}, []string{"dp", "tp"},
		mesh.Options{Dims: map[string]mesh.DimOptions{"tp": {Backend: "nope"}}})
	assert.ErrorContains(t, err, `creating the group of dimension "tp"`)
	assert.ErrorContains(t, err, "nope")

	m, err := mesh.New(ctx, pg, []int{2, 2}, []string{"dp", "tp"}, mesh.Options{})
	require.NoError(t, err)
	defer m.Close()
	both, err := m.Sub("dp", "tp")
	require.NoError(t, err)
	tp, err := m.Dim("tp")
	require.NoError(t, err)
	calls := []struct {
		name string
		call func() error
		want []string
	}{
		{"Group_unknown", func() error { _, err := m.Group("pp"); return err }, []string{"mesh.Group", `no dimension is named "pp"`, `["dp" "tp"]`}},
		{"LocalRank_unknown", func() error { _, err := m.LocalRank("x"); return err }, []string{"mesh.LocalRank", `"x"`}},
		{"Size_unknown", func() error { _, err := m.Size("x"); return err }, []string{"mesh.Size", `"x"`}},
		{"Dim_unknown", func() error { _, err := m.Dim("x"); return err }, []string{"mesh.Dim", `"x"`}},
		{"Dim_not_in_view", func() error { _, err := tp.Dim("dp"); return err }, []string{"mesh.Dim", `no dimension is named "dp"`, `["tp"]`}},
		{"GroupAt_too_big", func() error { _, err := m.GroupAt(2); return err }, []string{"mesh.GroupAt", "dimension 2 is out of range", "0..1"}},
		{"GroupAt_negative", func() error { _, err := m.GroupAt(-1); return err }, []string{"mesh.GroupAt", "dimension -1 is out of range"}},
		{"Sub_empty", func() error { _, err := m.Sub(); return err }, []string{"mesh.Sub", "no dimension names given"}},
		{"Sub_unknown", func() error { _, err := m.Sub("dp", "pp"); return err }, []string{"mesh.Sub", `"pp"`}},
		{"Sub_order", func() error { _, err := m.Sub("tp", "dp"); return err }, []string{"mesh.Sub", "not in the mesh's order", "list them in that order"}},
		{"Sub_twice", func() error { _, err := m.Sub("dp", "dp"); return err }, []string{"mesh.Sub", `"dp" is named twice`}},
		{"Flatten_empty_name", func() error { _, err := both.Flatten(ctx, "", mesh.DimOptions{}); return err }, []string{"mesh.Flatten", "the name is empty"}},
		{"Flatten_dim_name", func() error { _, err := both.Flatten(ctx, "tp", mesh.DimOptions{}); return err }, []string{"mesh.Flatten", `"tp" is a dimension of the mesh`, "pick another name"}},
		{"Flatten_name_taken", func() error {
			if _, err := both.Flatten(ctx, "x", mesh.DimOptions{}); err != nil {
				return err
			}
			_, err := tp.Flatten(ctx, "x", mesh.DimOptions{})
			return err
		}, []string{"mesh.Flatten", `"x" is taken by a flattened mesh over dimensions ["dp" "tp"]`, "pick another name"}},
		{"Flatten_other_options", func() error { _, err := both.Flatten(ctx, "x", mesh.DimOptions{Backend: "shm"}); return err }, []string{"mesh.Flatten", `"x" is taken`}},
	}
	for _, tc := range calls {
		start := time.Now()
		err := tc.call()
		assert.ErrorIs(t, err, comm.ErrInvalidArgument, tc.name)
		if err != nil {
			for _, s := range append([]string{who}, tc.want...) {
				assert.Contains(t, err.Error(), s, tc.name)
			}
		}
		assert.Less(t, time.Since(start), 5*time.Second, tc.name)
	}

	// Ranks that flatten under different names fail on every rank.
	name := "a"
	if rank == 1 {
		name = "b"
	}
	_, err = both.Flatten(ctx, name, mesh.DimOptions{})
	assert.ErrorIs(t, err, comm.ErrMismatch)
	assert.ErrorContains(t, err, "mesh.Flatten")
	assert.ErrorContains(t, err, "rank 1 passed")

	// The mesh still works after all that.
	g, err := m.Group("tp")
	require.NoError(t, err)
	checkSum(t, ctx, g, lineOf(rank, []int{2, 2}, []int{1}), "tp")
}
