package fsdp_test

import (
	"context"
	"fmt"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/fsdp"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// One training step of a one-layer model y = w·x with loss sum(y), on a one-rank mesh; under
// gccl run the same code shards w over every rank and averages the gradients.
func ExampleShard() {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pg.Close()
	m, err := mesh.New(ctx, pg, []int{pg.Size()}, []string{"shard"}, mesh.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	w, _ := tensor.FromFloat64s(tensor.Float32, []float64{1, 2, 3, 4, 5, 6}, 3, 2)
	model, err := fsdp.Shard(ctx, m, [][]fsdp.Param{{{Name: "w", Tensor: w}}}, fsdp.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	opt := fsdp.NewSGD(model, fsdp.SGD{LR: 0.5})
	g := model.Group(0)
	if err := g.Unshard(ctx); err != nil { // all-gather
		fmt.Println(err)
		return
	}
	full, _ := g.Param("w")
	fmt.Println("full:", full.Float64s())
	// d sum(w·x) / dw = 1·xᵀ for every row; x = [1 -1].
	grad, _ := g.Grad("w")
	copy(grad.Float32s(), []float32{1, -1, 1, -1, 1, -1})
	g.Reshard()
	if err := g.ReduceGradients(ctx); err != nil { // reduce-scatter, averaged
		fmt.Println(err)
		return
	}
	_ = opt.Step()
	fmt.Println("shard:", model.Sharded("w").Local().Float64s(), model.Sharded("w").Placements())

	// A mesh of the wrong rank is refused.
	m3, _ := mesh.New(ctx, pg, []int{1, 1, 1}, []string{"a", "b", "c"}, mesh.Options{})
	defer m3.Close()
	_, err = fsdp.Shard(ctx, m3, [][]fsdp.Param{{{Name: "w", Tensor: w}}}, fsdp.Options{})
	fmt.Println(err)
	// Output:
	// full: [1 2 3 4 5 6]
	// shard: [0.5 2.5 2.5 4.5 4.5 6.5] [S(0)]
	// gccl: fsdp.Shard (rank 0): mesh(a=1, b=1, c=1) at [0 0 0] has 3 dimensions; pass a 1-D mesh (FSDP) or a 2-D mesh (HSDP: replicate x shard): invalid argument
}
