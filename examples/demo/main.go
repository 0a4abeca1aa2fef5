// Command demo is gccl's smallest multi-rank program: every rank all-reduces, all-gathers and
// broadcasts a tensor and checks the result. Run it with gccl run:
//
//	gccl run --nproc-per-node 4 -- go run ./examples/demo
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

func main() {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{}) // rank and world size from gccl run's environment
	if err != nil {
		log.Fatal(err)
	}
	defer pg.Close()
	rank, n := pg.Rank(), pg.Size()

	// All-reduce: every rank contributes [rank, rank, ...]; the sum is 0+1+...+(n-1) everywhere.
	t := tensor.New(tensor.Float32, 1024)
	t.Fill(float64(rank))
	if err := pg.AllReduce(ctx, t, comm.Sum); err != nil {
		log.Fatal(err)
	}
	want := float64(n * (n - 1) / 2)
	for i, v := range t.Float32s() {
		if float64(v) != want {
			fail("all_reduce: element %d is %v, want %v", i, v, want)
		}
	}
	fmt.Printf("all_reduce ok: sum of ranks = %v on all %d elements\n", want, t.Numel())

	// All-gather: rank r contributes [r*10, r*10+1]; everyone gets all of them in rank order.
	in := tensor.FromSlice([]int64{int64(rank * 10), int64(rank*10 + 1)})
	out := tensor.New(tensor.Int64, 2*n)
	if err := pg.AllGather(ctx, out, in); err != nil {
		log.Fatal(err)
	}
	for i, v := range out.Int64s() {
		if w := int64(i/2*10 + i%2); v != w {
			fail("all_gather: slot %d is %d, want %d", i, v, w)
		}
	}
	fmt.Printf("all_gather ok: %v\n", out.Int64s())

	// Broadcast: the last rank's bfloat16 values reach everyone.
	root := n - 1
	b := tensor.New(tensor.BFloat16, 4)
	if rank == root {
		b.Fill(3.5)
	}
	if err := pg.Broadcast(ctx, b, root); err != nil {
		log.Fatal(err)
	}
	for i, v := range b.Float64s() {
		if v != 3.5 {
			fail("broadcast: element %d is %v, want 3.5", i, v)
		}
	}
	fmt.Printf("broadcast ok: rank %d's bfloat16 values %v\n", root, b.Float64s())
	if err := pg.Barrier(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("rank %d of %d: all checks passed\n", rank, n)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
