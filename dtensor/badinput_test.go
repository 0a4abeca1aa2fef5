package dtensor_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// TestBadInput: on a 2x2 mesh of 4 real processes, placements of the wrong length, shard dims
// out of range, reduce ops the dtype does not support, a source rank outside the mesh, and
// FromLocal shapes that disagree across ranks (with Check) fail on every rank, within seconds,
// with an error that wraps comm.ErrInvalidArgument and names the op, the rank and the fix; the
// mesh still works afterwards.
func TestBadInput(t *testing.T) {
	if ranktest.Child(t) {
		badInputChild(t)
		return
	}
	start := time.Now()
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 4, Timeout: time.Minute,
		Env: []string{"GCCL_TIMEOUT=20s", "GCCL_BACKEND=gloo"}})
	ranktest.AssertExitedZero(t, res)
	assert.Less(t, time.Since(start), 30*time.Second, "bad input must fail fast, not wait for a timeout")
	t.Log(res[0].Output)
}

func badInputChild(t *testing.T) {
	ctx := context.Background()
	pg, m := childMesh(ctx, t, []int{2, 2})
	rank := pg.Rank()
	g := globalTensor(tensor.Float32, []int{7, 5})
	good, err := dtensor.Distribute(ctx, g, m, []dtensor.Placement{dtensor.Shard{Dim: 0}, dtensor.Replicate{}}, dtensor.DistributeOptions{LocalIsFull: true})
	require.NoError(t, err)
	S, R := dtensor.Shard{Dim: 0}, dtensor.Replicate{}

	calls := []struct {
		name string
		call func() error
		want []string
	}{
		{"redistribute_too_few", func() error { _, err := good.Redistribute(ctx, []dtensor.Placement{R}); return err },
			[]string{"dtensor.Redistribute", "placements [R]: 1 placement for a mesh of 2 dimensions", "one placement per mesh dimension"}},
		{"redistribute_too_many", func() error { _, err := good.Redistribute(ctx, []dtensor.Placement{R, R, R}); return err },
			[]string{"dtensor.Redistribute", "3 placements for a mesh of 2 dimensions"}},
		{"redistribute_dim_out_of_range", func() error {
			_, err := good.Redistribute(ctx, []dtensor.Placement{dtensor.Shard{Dim: 2}, R})
			return err
		}, []string{"dtensor.Redistribute", "S(2), shards dimension 2 of a 2-d tensor", "pass a dim in [-2, 2)"}},
		{"redistribute_negative_dim_out_of_range", func() error {
			_, err := good.Redistribute(ctx, []dtensor.Placement{dtensor.Shard{Dim: -3}, R})
			return err
		}, []string{"shards dimension -3"}},
		{"redistribute_nil", func() error { _, err := good.Redistribute(ctx, []dtensor.Placement{nil, R}); return err },
			[]string{"placement 0 is nil", "Shard{Dim: d}, Replicate{} or Partial{}"}},
		{"redistribute_band_on_float", func() error {
			_, err := good.Redistribute(ctx, []dtensor.Placement{S, dtensor.Partial{Op: comm.BAnd}})
			return err
		}, []string{"dtensor.Redistribute", "P(band)", "float32"}},
		{"distribute_wrong_length", func() error {
			_, err := dtensor.Distribute(ctx, g, m, []dtensor.Placement{S}, dtensor.DistributeOptions{})
			return err
		}, []string{"dtensor.Distribute", "1 placement for a mesh of 2 dimensions"}},
		{"distribute_src_outside", func() error {
			_, err := dtensor.Distribute(ctx, g, m, []dtensor.Placement{S, R}, dtensor.DistributeOptions{Src: 9})
			return err
		}, []string{"dtensor.Distribute", "Src 9 is not a rank of", "[0 1 2 3]"}},
		{"distribute_nil", func() error {
			_, err := dtensor.Distribute(ctx, nil, m, []dtensor.Placement{S, R}, dtensor.DistributeOptions{})
			return err
		}, []string{"dtensor.Distribute", "the tensor is nil"}},
		{"from_local_dim_out_of_range", func() error {
			_, err := dtensor.FromLocal(ctx, tensor.New(tensor.Float32, 2), m, []dtensor.Placement{dtensor.Shard{Dim: 1}, R}, dtensor.FromLocalOptions{Check: true})
			return err
		}, []string{"dtensor.FromLocal", "shards dimension 1 of a 1-d tensor"}},
		// Rank 1 passes a shard of the wrong size: with Check every rank fails, naming rank 1.
		{"from_local_check_one_rank_wrong", func() error {
			shape := []int{2, 5}
			if rank == 1 {
				shape = []int{3, 5}
			}
			_, err := dtensor.FromLocal(ctx, tensor.New(tensor.Float32, shape...), m, []dtensor.Placement{R, S},
				dtensor.FromLocalOptions{GlobalShape: []int{4, 5}, Check: true})
			return err
		}, []string{"dtensor.FromLocal", "Check found ranks that disagree", "rank 1: the local tensor has shape [3 5] but global shape [4 5]", "gives rank 1 (mesh coordinate [0 1]) [2 5]"}},
		// Uneven shards without GlobalShape: each rank infers a different global shape.
		{"from_local_check_inferred_shapes_disagree", func() error {
			_, err := dtensor.FromLocal(ctx, tensor.New(tensor.Float32, 2-rank%2, 5), m, []dtensor.Placement{R, S},
				dtensor.FromLocalOptions{Check: true})
			return err
		}, []string{"dtensor.FromLocal", "rank 1 has dtype float32, global shape [2 5] and placements [R, S(0)] but rank 0 dtype float32, global shape [4 5]", "same dtype, global shape and placements"}},
		{"from_local_check_dtypes_disagree", func() error {
			dt := tensor.Float32
			if rank == 3 {
				dt = tensor.Int32
			}
			_, err := dtensor.FromLocal(ctx, tensor.New(dt, 2, 5), m, []dtensor.Placement{R, S}, dtensor.FromLocalOptions{Check: true})
			return err
		}, []string{"rank 3 has dtype int32"}},
	}
	for _, c := range calls {
		start := time.Now()
		err := c.call()
		require.Error(t, err, c.name)
		assert.ErrorIs(t, err, comm.ErrInvalidArgument, c.name)
		for _, w := range append(c.want, fmt.Sprintf("(rank %d)", rank)) {
			assert.Contains(t, err.Error(), w, c.name)
		}
		assert.Less(t, time.Since(start), 10*time.Second, c.name)
		if rank == 0 {
			fmt.Println(err)
		}
	}

	// Without Check a wrong shard is caught on its own rank only, with no communication.
	shape := []int{2, 5}
	if rank == 2 {
		shape = []int{1, 5}
	}
	_, err = dtensor.FromLocal(ctx, tensor.New(tensor.Float32, shape...), m, []dtensor.Placement{R, S}, dtensor.FromLocalOptions{GlobalShape: []int{4, 5}})
	if rank == 2 {
		require.Error(t, err)
		assert.ErrorIs(t, err, comm.ErrInvalidArgument)
		assert.Contains(t, err.Error(), "dtensor.FromLocal (rank 2): the local tensor has shape [1 5]")
	} else {
		require.NoError(t, err)
	}

	// The mesh still works: nothing was left half-sent.
	full, err := good.Full(ctx)
	require.NoError(t, err)
	assert.True(t, tensor.Equal(g, full))
}
