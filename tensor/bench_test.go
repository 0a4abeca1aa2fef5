package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

var benchSizes = []struct {
	name  string
	bytes int
}{
	{"4KiB", 4 << 10},
	{"1MiB", 1 << 20},
	{"4MiB", 4 << 20}, // 1M float32 elements
}

func benchData(dt DType, nbytes, count int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 1))
	out := make([][]byte, count)
	for i := range out {
		// Finite values, as in real use: NaN-free data keeps MIN/MAX on their fast path.
		vals := make([]float64, nbytes/dt.Size())
		for j := range vals {
			vals[j] = rng.NormFloat64()
		}
		x, err := FromFloat64s(dt, vals)
		if err != nil {
			panic(err)
		}
		out[i] = x.Bytes()
	}
	return out
}

// BenchmarkReduceInto reports the throughput of dst += src in bytes of dst per second.
func BenchmarkReduceInto(b *testing.B) {
	cases := []struct {
		op ReduceOp
		dt DType
	}{
		{Sum, Float32},
		{Sum, BFloat16},
		{Sum, Float16},
		{Max, Float32},
		{Sum, Int64},
	}
	for _, c := range cases {
		for _, sz := range benchSizes {
			b.Run(fmt.Sprintf("%s/%s/%s", c.op, c.dt, sz.name), func(b *testing.B) {
				bufs := benchData(c.dt, sz.bytes, 2)
				b.SetBytes(int64(sz.bytes))
				for b.Loop() {
					if err := ReduceInto(c.op, c.dt, bufs[0], bufs[1]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkReduceMany reports the throughput of dst = src0 + ... + src7, in bytes of dst per
// second.
func BenchmarkReduceMany(b *testing.B) {
	for _, dt := range []DType{Float32, BFloat16} {
		for _, sz := range benchSizes {
			b.Run(fmt.Sprintf("SUM/%s/8srcs/%s", dt, sz.name), func(b *testing.B) {
				srcs := benchData(dt, sz.bytes, 8)
				dst := make([]byte, sz.bytes)
				b.SetBytes(int64(sz.bytes))
				for b.Loop() {
					if err := ReduceMany(Sum, dt, dst, srcs...); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
