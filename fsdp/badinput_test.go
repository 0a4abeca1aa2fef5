package fsdp_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/fsdp"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// TestBadInput: on a one-rank mesh (one process), every bad argument fails with an error that
// wraps comm.ErrInvalidArgument and names the op, the rank, the parameter and the fix.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	require.NoError(t, err)
	defer pg.Close()
	m, err := mesh.New(ctx, pg, []int{1}, []string{"shard"}, mesh.Options{})
	require.NoError(t, err)
	defer m.Close()
	f32 := func(shape ...int) *tensor.Tensor { return tensor.New(tensor.Float32, shape...) }
	p := func(name string, t *tensor.Tensor) fsdp.Param { return fsdp.Param{Name: name, Tensor: t} }
	for _, c := range []struct {
		name   string
		groups [][]fsdp.Param
		opts   fsdp.Options
		want   string
	}{
		{"mixed_dtypes", [][]fsdp.Param{{p("w", f32(2, 2)), p("b", tensor.New(tensor.Float64, 2))}}, fsdp.Options{},
			`group 0 mixes dtypes: "w" is float32 but "b" is float64; put parameters of different dtypes in separate groups`},
		{"not_float32", [][]fsdp.Param{{p("w", tensor.New(tensor.BFloat16, 2))}}, fsdp.Options{}, `"w" is bfloat16; pass float32 master parameters`},
		{"scalar", [][]fsdp.Param{{p("s", f32())}}, fsdp.Options{}, `"s" is a scalar; reshape it to [1]`},
		{"duplicate", [][]fsdp.Param{{p("w", f32(2))}, {p("w", f32(3))}}, fsdp.Options{}, `"w" appears twice`},
		{"unnamed", [][]fsdp.Param{{p("", f32(2))}}, fsdp.Options{}, "without a name"},
		{"nil_tensor", [][]fsdp.Param{{p("w", nil)}}, fsdp.Options{}, `"w" is nil`},
		{"no_groups", nil, fsdp.Options{}, "no parameter groups"},
		{"empty_group", [][]fsdp.Param{{}}, fsdp.Options{}, "group 0 is empty"},
		{"int_param_dtype", [][]fsdp.Param{{p("w", f32(2))}},
			fsdp.Options{MixedPrecision: fsdp.MixedPrecisionPolicy{ParamDType: tensor.Int8}}, "ParamDType int8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := fsdp.Shard(ctx, m, c.groups, c.opts)
			assert.ErrorIs(t, err, comm.ErrInvalidArgument)
			assert.ErrorContains(t, err, "fsdp.Shard (rank 0)")
			assert.ErrorContains(t, err, c.want)
		})
	}
	_, err = fsdp.Shard(ctx, nil, [][]fsdp.Param{{p("w", f32(2))}}, fsdp.Options{})
	assert.ErrorContains(t, err, "the mesh is nil")

	md, err := fsdp.Shard(ctx, m, [][]fsdp.Param{{p("w", f32(3, 2))}}, fsdp.Options{})
	require.NoError(t, err)
	g := md.Group(0)
	assert.ErrorContains(t, g.AccumulateGrad("w", f32(2, 3)), `the gradient of "w" must be a floating-point tensor of its shape [3 2]`)
	assert.ErrorContains(t, g.AccumulateGrad("v", f32(3, 2)), `no parameter "v"`)
	_, err = g.Param("w")
	assert.ErrorContains(t, err, `call Unshard before reading "w"`)
	err = md.LoadShardedStateDict(map[string]*tensor.Tensor{"w": f32(2, 2)})
	assert.ErrorContains(t, err, `key "w" has shape [2 2] but the model's is [3 2]`)
	err = md.LoadShardedStateDict(map[string]*tensor.Tensor{"w": f32(3, 2), "x": f32(1)})
	assert.ErrorContains(t, err, `unexpected key "x"`)
	err = md.LoadCheckpoint(ctx, t.TempDir(), nil)
	assert.ErrorContains(t, err, "pass a directory written by SaveCheckpoint")

	// A group refuses the name of a parameter that another group holds.
	md, err = fsdp.Shard(ctx, m, [][]fsdp.Param{{p("a", f32(2))}, {p("b", f32(3))}}, fsdp.Options{})
	require.NoError(t, err)
	_, err = md.Group(0).Grad("b")
	assert.ErrorIs(t, err, comm.ErrInvalidArgument)
	assert.ErrorContains(t, err, `group 0 has no parameter "b" (it has a); ask the group that holds it (Model.GroupOf)`)
	_, err = md.Group(1).Grad("b")
	assert.NoError(t, err)
}
