package dtensor_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// On a one-rank mesh every placement holds the whole tensor; under gccl run the same code
// shards it over every rank of the mesh.
func ExampleDistribute() {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pg.Close()
	m, err := mesh.New(ctx, pg, []int{pg.Size()}, []string{"tp"}, mesh.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	x, _ := tensor.FromFloat64s(tensor.Float32, []float64{1, 2, 3, 4, 5, 6}, 2, 3)
	d, err := dtensor.Distribute(ctx, x, m, []dtensor.Placement{dtensor.Shard{Dim: 1}}, dtensor.DistributeOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	r, err := d.Redistribute(ctx, []dtensor.Placement{dtensor.Replicate{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	full, _ := r.Full(ctx)
	fmt.Println(d)
	fmt.Println(r.Placements(), full.Float64s())
	// Output:
	// DTensor(float32 [2 3], [S(1)], local [2 3])
	// [R] [1 2 3 4 5 6]
}

// LocalShape computes any rank's shard without communication: 7 rows over 4 ranks by
// torch.chunk's rules are 2, 2, 2 and 1 rows; 5 rows are 2, 2, 1 and none.
func ExampleLocalShape() {
	for _, rows := range []int{7, 5} {
		var parts []string
		for r := range 4 {
			shape, offset, _ := dtensor.LocalShape([]int{rows, 3}, []int{4}, []int{r}, []dtensor.Placement{dtensor.Shard{Dim: 0}})
			parts = append(parts, fmt.Sprintf("%v@%v", shape, offset))
		}
		fmt.Println(strings.Join(parts, " "))
	}
	// Output:
	// [2 3]@[0 0] [2 3]@[2 0] [2 3]@[4 0] [1 3]@[6 0]
	// [2 3]@[0 0] [2 3]@[2 0] [1 3]@[4 0] [0 3]@[5 0]
}

// A placement list must have one entry per mesh dimension; the error names the op, the rank and
// the fix, on every rank, before anything is sent.
func ExampleDTensor_Redistribute_badPlacements() {
	ctx := context.Background()
	pg, _ := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	defer pg.Close()
	m, _ := mesh.New(ctx, pg, []int{1}, []string{"tp"}, mesh.Options{})
	defer m.Close()
	d, _ := dtensor.FromLocal(ctx, tensor.New(tensor.Float32, 4), m, []dtensor.Placement{dtensor.Replicate{}}, dtensor.FromLocalOptions{})
	_, err := d.Redistribute(ctx, []dtensor.Placement{dtensor.Shard{Dim: 0}, dtensor.Replicate{}})
	fmt.Println(err)
	// Output: gccl: dtensor.Redistribute (rank 0): placements [S(0), R]: 2 placements for a mesh of 1 dimension; pass one placement per mesh dimension: invalid argument
}

// A Megatron-style MLP: the first linear layer's weight is split by output features (S(0) of w
// [out in], column-parallel: the activations come out S(1)), the second's by input features
// (S(1), row-parallel: the product comes out P(sum) with no communication), and one
// Redistribute to Replicate is the all-reduce. On a one-rank mesh, as here, every shard is the
// whole tensor; under gccl run the same code splits the hidden dim over the ranks.
func ExampleMatMul_columnThenRowParallel() {
	ctx := context.Background()
	pg, _ := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	defer pg.Close()
	m, _ := mesh.New(ctx, pg, []int{pg.Size()}, []string{"tp"}, mesh.Options{})
	defer m.Close()
	R, col, row := []dtensor.Placement{dtensor.Replicate{}}, []dtensor.Placement{dtensor.Shard{Dim: 0}}, []dtensor.Placement{dtensor.Shard{Dim: 1}}
	full := dtensor.DistributeOptions{LocalIsFull: true}
	xt, _ := tensor.FromFloat64s(tensor.Float32, []float64{1, 2}, 1, 2)
	w1t, _ := tensor.FromFloat64s(tensor.Float32, []float64{1, 0, 0, 1, 1, 1}, 3, 2) // [hidden 3, in 2]
	w2t, _ := tensor.FromFloat64s(tensor.Float32, []float64{1, 1, 1, 0, 0, 2}, 2, 3) // [out 2, hidden 3]
	x, _ := dtensor.Distribute(ctx, xt, m, R, full)
	w1, _ := dtensor.Distribute(ctx, w1t, m, col, full)
	w2, _ := dtensor.Distribute(ctx, w2t, m, row, full)
	h, _ := dtensor.Linear(ctx, x, w1, nil) // [1 3], S(1): each rank has its hidden units
	y, _ := dtensor.Linear(ctx, h, w2, nil) // [1 2], P(sum): each rank has a part of the sum
	fmt.Println(h.Placements(), y.Placements())
	y, _ = y.Redistribute(ctx, R) // all-reduce
	out, _ := y.Full(ctx)
	fmt.Println(y.Placements(), out.Float64s())

	// Without a rule for the placements, the op refuses, and never gathers behind your back.
	_, err := dtensor.MatMul(ctx, w1, w2) // [3 2] S(0) x [2 3] S(1)
	fmt.Println(err)
	// Output:
	// [S(1)] [P(sum)]
	// [R] [6 6]
	// gccl: dtensor.MatMul (rank 0): no rule for [S(0)] x [S(1)] (mesh dimension 0: S(0) x S(1)): redistribute one side first (e.g. b to Replicate): no sharding rule: invalid argument
}
