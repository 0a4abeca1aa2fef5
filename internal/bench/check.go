package bench

import (
	"context"
	"math"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

// pattern is rank r's element i: small integers, exact in every dtype and under every reduce op
// for the group sizes benchmarked.
func pattern(dt tensor.DType, op tensor.ReduceOp, r, i int) float64 {
	if dt == tensor.Bool {
		return float64((r + i) % 2)
	}
	if op == tensor.Product {
		return float64(1 + b2i((r+i)%4 == 0)) // products stay small
	}
	return float64((r*7 + i*3) % 5)
}

func fill(t *tensor.Tensor, dt tensor.DType, op tensor.ReduceOp, r, offset int) {
	vals := make([]float64, t.Numel())
	for i := range vals {
		vals[i] = pattern(dt, op, r, offset+i)
	}
	src, _ := tensor.FromFloat64s(dt, vals, t.Shape()...)
	_ = t.CopyFrom(src)
}

func combine(dt tensor.DType, op tensor.ReduceOp, a, b float64) float64 {
	switch op {
	case tensor.Product:
		return a * b
	case tensor.Min:
		return math.Min(a, b)
	case tensor.Max:
		return math.Max(a, b)
	case tensor.BAnd:
		return float64(int64(a) & int64(b))
	case tensor.BOr:
		return float64(int64(a) | int64(b))
	case tensor.BXor:
		return float64(int64(a) ^ int64(b))
	}
	if dt == tensor.Bool {
		return math.Max(a, b)
	}
	return a + b
}

// check runs the op once on known data, verifies every element this rank holds, and returns
// the number of wrong elements over all ranks.
func check(ctx context.Context, pg *comm.ProcessGroup, cfg Config, count int) (int64, error) {
	n, r := pg.Size(), pg.Rank()
	dt, op := cfg.DType, cfg.Reduce
	b := makeBuffers(cfg, n, r, count)
	per := count / max(n, 1)
	reduced := func(i int) float64 {
		acc := pattern(dt, op, 0, i)
		for q := 1; q < n; q++ {
			acc = combine(dt, op, acc, pattern(dt, op, q, i))
		}
		if op == tensor.Avg {
			if dt.IsFloat() {
				acc /= float64(n)
			} else {
				acc = math.Trunc(acc / float64(n))
			}
		}
		return acc
	}
	var want func(i int) float64
	var got *tensor.Tensor
	switch cfg.Op {
	case "allreduce":
		fill(b.in, dt, op, r, 0)
		got, want = b.in, reduced
	case "reduce":
		fill(b.in, dt, op, r, 0)
		got, want = b.in, reduced
		if r != 0 {
			want = func(i int) float64 { return pattern(dt, op, r, i) }
		}
	case "broadcast":
		fill(b.in, dt, op, r, 0)
		got, want = b.in, func(i int) float64 { return pattern(dt, op, 0, i) }
	case "allgather", "gather":
		fill(b.in, dt, op, r, 0)
		got, want = b.out, func(i int) float64 { return pattern(dt, op, i/per, i%per) }
		if cfg.Op == "gather" && r != 0 {
			got = nil
		}
	case "reducescatter":
		fill(b.in, dt, op, r, 0)
		got, want = b.out, func(i int) float64 { return reduced(r*per + i) }
	case "scatter":
		fill(b.in, dt, op, 0, 0) // only the root's matters
		got, want = b.out, func(i int) float64 { return pattern(dt, op, 0, r*per+i) }
	case "alltoall":
		// Block q of rank p's input: pattern(p, q*per + j).
		fill(b.in, dt, op, r, 0)
		got, want = b.out, func(i int) float64 { return pattern(dt, op, i/per, r*per+i%per) }
	case "sendrecv":
		fill(b.in, dt, op, r, 0)
		prev := (r - 1 + n) % n
		got, want = b.out, func(i int) float64 { return pattern(dt, op, prev, i) }
	}
	if err := runOnce(ctx, pg, cfg, b); err != nil {
		return 0, err
	}
	var wrong float64
	if got != nil {
		for i, v := range got.Float64s() {
			if v != want(i) {
				wrong++
			}
		}
	}
	t := tensor.FromSlice([]float64{wrong})
	if err := pg.AllReduce(ctx, t, comm.Sum); err != nil {
		return 0, err
	}
	return int64(t.Float(0)), nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
