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

// BenchmarkReduceInto reports the throughput of dst op= src in bytes of dst per second, for every
// kernel level this CPU has (go is the pure-Go path; see simd.go).
func BenchmarkReduceInto(b *testing.B) {
	cases := []struct {
		op ReduceOp
		dt DType
	}{
		{Sum, Float32},
		{Max, Float32},
		{Sum, BFloat16},
		{Max, BFloat16},
		{Sum, Float16},
		{Max, Float16},
		{Sum, Int32},
		{Sum, Int64},
	}
	for _, c := range cases {
		for _, sz := range benchSizes {
			for _, lv := range simdLevels {
				b.Run(fmt.Sprintf("%s/%s/%s/%s", c.op, c.dt, sz.name, lv), func(b *testing.B) {
					useLevel(b, lv)
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
}

// BenchmarkReduceMany reports the throughput of dst = src0 + ... + src(k-1), in bytes of dst per
// second: 2 sources of 8 and 64 bytes (the shm backend's inline all-reduce), 2 and 8 sources of
// 8 KiB (the shm backend's small-message all-reduce sums every rank's slot this way), and 8
// sources of the larger sizes.
func BenchmarkReduceMany(b *testing.B) {
	type benchCase struct {
		k     int
		name  string
		bytes int
	}
	cases := []benchCase{{2, "8B", 8}, {2, "64B", 64}, {2, "8KiB", 8 << 10}, {8, "8KiB", 8 << 10}}
	for _, sz := range benchSizes {
		cases = append(cases, benchCase{8, sz.name, sz.bytes})
	}
	for _, dt := range []DType{Float32, BFloat16} {
		for _, c := range cases {
			for _, lv := range simdLevels {
				b.Run(fmt.Sprintf("SUM/%s/%dsrcs/%s/%s", dt, c.k, c.name, lv), func(b *testing.B) {
					useLevel(b, lv)
					srcs := benchData(dt, c.bytes, c.k)
					dst := make([]byte, c.bytes)
					b.SetBytes(int64(c.bytes))
					for b.Loop() {
						if err := ReduceMany(Sum, dt, dst, srcs...); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkSumFloat32Small compares the unchecked small float32 sum (SSE on amd64), its portable
// loop and ReduceMany at the sizes of the shm backend's inline all-reduce (up to 80 bytes), 2 and
// 4 sources.
func BenchmarkSumFloat32Small(b *testing.B) {
	impls := []struct {
		name string
		sum  func(dst []byte, srcs [][]byte)
	}{
		{"SumFloat32Small", SumFloat32Small},
		{"portable", sumFloat32SmallGo},
		{"ReduceMany", func(dst []byte, srcs [][]byte) {
			if err := ReduceMany(Sum, Float32, dst, srcs...); err != nil {
				b.Fatal(err)
			}
		}},
	}
	for _, k := range []int{2, 4} {
		for _, n := range []int{8, 32, 64, 80} {
			for _, im := range impls {
				b.Run(fmt.Sprintf("%dsrcs/%dB/%s", k, n, im.name), func(b *testing.B) {
					srcs := benchData(Float32, n, k)
					dst := make([]byte, n)
					b.SetBytes(int64(n))
					for b.Loop() {
						im.sum(dst, srcs)
					}
				})
			}
		}
	}
}

// BenchmarkDivideBy reports DivideBy's throughput on 512 KiB of float32 (fsdp's averaging of a
// 1 MiB group's gradient over 2 ranks): by 2 (a multiplication by the exact reciprocal, SIMD) and
// by 3 (a float64 division per element), at every level.
func BenchmarkDivideBy(b *testing.B) {
	for _, n := range []int{2, 3} {
		for _, lv := range simdLevels {
			b.Run(fmt.Sprintf("by%d/%s", n, lv), func(b *testing.B) {
				useLevel(b, lv)
				buf := benchData(Float32, 512<<10, 1)[0]
				b.SetBytes(int64(len(buf)))
				for b.Loop() {
					if err := DivideBy(Float32, buf, n); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkTo reports To's throughput, in bytes of the source per second, for the float pairs it
// converts on its fast path (a 512x512 float32 weight and its bfloat16 and float16 forms: fsdp's
// mixed precision), and through its element-by-element path (a transposed view).
func BenchmarkTo(b *testing.B) {
	w := New(Float32, 512, 512)
	for i := range w.Float32s() {
		w.Float32s()[i] = float32(i%1000) * 0.001
	}
	wt, err := w.Transpose(0, 1)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		src  *Tensor
		dt   DType
	}{
		{"float32_to_bfloat16", w, BFloat16},
		{"bfloat16_to_float32", w.To(BFloat16), Float32},
		{"float32_to_float16", w, Float16},
		{"float16_to_float32", w.To(Float16), Float32},
		{"float32_to_bfloat16_strided", wt, BFloat16},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(c.src.NBytes()))
			for b.Loop() {
				_ = c.src.To(c.dt)
			}
		})
	}
}
