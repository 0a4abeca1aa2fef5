package comm_test

import (
	"context"
	"testing"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

// BenchmarkAllReduceOverhead measures what comm adds to every op (validation, ordering,
// flight recorder, timeout) on a one-rank group, where the backend moves nothing.
func BenchmarkAllReduceOverhead(b *testing.B) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	t := tensor.New(tensor.Float32, 2)
	b.ReportAllocs()
	for b.Loop() {
		if err := pg.AllReduce(ctx, t, comm.Sum); err != nil {
			b.Fatal(err)
		}
	}
}
