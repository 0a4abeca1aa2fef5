package mesh_test

import (
	"context"
	"fmt"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// A one-rank job has a 1x1 mesh; under gccl run the same code lays out every rank, and each
// dimension's all-reduce sums over one row or column of the mesh.
func ExampleNew() {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pg.Close()
	m, err := mesh.New(ctx, pg, []int{1, pg.Size()}, []string{"dp", "tp"}, mesh.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	tp, err := m.Group("tp")
	if err != nil {
		fmt.Println(err)
		return
	}
	x := tensor.FromSlice([]float32{1, 2})
	if err := tp.AllReduce(ctx, x, comm.Sum); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m, "tp group:", tp.GlobalRanks(), x.Float32s())
	// Output: mesh(dp=1, tp=1) at [0 0] tp group: [0] [1 2]
}

// A shape that does not cover the group fails on every rank, before any group is created.
func ExampleNew_badShape() {
	ctx := context.Background()
	pg, _ := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	defer pg.Close()
	_, err := mesh.New(ctx, pg, []int{2, 2}, []string{"dp", "tp"}, mesh.Options{})
	fmt.Println(err)
	// Output: gccl: mesh.New on group "0" (rank 0): shape [2 2] holds 4 ranks but the group has 1; pass a shape whose sizes multiply to 1: invalid argument
}

// Views share the root's groups; Flatten creates one group over several dimensions, once.
func ExampleMesh_Flatten() {
	ctx := context.Background()
	pg, _ := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	defer pg.Close()
	m, _ := mesh.New(ctx, pg, []int{1, 1, 1}, []string{"pp", "dp", "tp"}, mesh.Options{})
	defer m.Close()
	sub, _ := m.Sub("dp", "tp")
	flat, _ := sub.Flatten(ctx, "dp_tp", mesh.DimOptions{})
	again, _ := sub.Flatten(ctx, "dp_tp", mesh.DimOptions{})
	g, _ := flat.Group("dp_tp")
	fmt.Println(sub.Names(), flat.Names(), flat == again, g.Size())
	// Output: [dp tp] [dp_tp] true 1
}
