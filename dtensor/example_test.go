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
