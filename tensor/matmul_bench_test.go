package tensor

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// matmulBenchShapes are the linear layers of a hidden-2048 Llama-style decoder: decode steps (one
// token: matrix-vector) and prefill (64 or 128 tokens), y[M N] = x[M K]·wᵀ with w [N K].
var matmulBenchShapes = []struct{ m, k, n int }{
	{1, 2048, 2048},  // decode: attention projection
	{1, 2048, 5632},  // decode: MLP up/gate
	{64, 2048, 2048}, // prefill
	{128, 2048, 2048},
}

// BenchmarkSgemm times LinearInto (float32 GEMM, B transposed: the Linear layout) on one thread,
// through OpenBLAS and through gonum, reporting GFLOPS (2·M·K·N per op). Compare with the same
// shapes timed from C: bench/blas/run.sh.
//
//	go test -run '^$' -bench Sgemm -benchtime 0.5s -count 3 ./tensor/
func BenchmarkSgemm(b *testing.B) {
	backends := []struct {
		name string
		be   func(b *testing.B) *blasBackend
	}{
		{"openblas", func(b *testing.B) *blasBackend {
			b.Setenv(EnvBLAS, "auto")
			be := loadBLAS()
			if be.lib == nil {
				b.Skip("OpenBLAS not loaded: " + be.desc)
			}
			return be
		}},
		{"gonum", func(*testing.B) *blasBackend { return gonumBLAS }},
	}
	for _, bk := range backends {
		for _, s := range matmulBenchShapes {
			b.Run(fmt.Sprintf("%s/M=%d,K=%d,N=%d", bk.name, s.m, s.k, s.n), func(b *testing.B) {
				be := bk.be(b)
				defer useBLAS(be)()
				if be.lib != nil {
					prev := be.lib.NumThreads()
					be.lib.SetNumThreads(1)
					defer be.lib.SetNumThreads(prev)
				} else {
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // gonum: one goroutine worker
				}
				rng := rand.New(rand.NewPCG(1, 2))
				x, w, y := New(Float32, s.m, s.k), New(Float32, s.n, s.k), New(Float32, s.m, s.n)
				for _, t := range []*Tensor{x, w} {
					v := t.Float32s()
					for i := range v {
						v[i] = float32(rng.Float64()*2 - 1)
					}
				}
				if err := LinearInto(y, x, w, nil); err != nil { // warm-up
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					if err := LinearInto(y, x, w, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(2*float64(s.m*s.k*s.n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}

// BenchmarkGEMVRowBlocks times one matrix-vector product over a weight far beyond the caches
// (512 MiB, [65536 2048] float32) done in one LinearInto call and in calls over blocks of rows,
// on one thread, reporting the rate the weight is read at. A scheme that splits a decode step's
// products into small blocks (to share them between ranks, say) pays the difference; BENCHMARKS.md
// has the numbers.
//
//	go test -run '^$' -bench GEMVRowBlocks -benchtime 20x ./tensor/
func BenchmarkGEMVRowBlocks(b *testing.B) {
	be := currentBLAS()
	if be.err != nil {
		b.Fatal(be.err)
	}
	if be.lib != nil {
		prev := be.lib.NumThreads()
		be.lib.SetNumThreads(1)
		defer be.lib.SetNumThreads(prev)
	}
	const rows, k = 65536, 2048
	x, w, y := New(Float32, 1, k), New(Float32, rows, k), New(Float32, 1, rows)
	x.Fill(0.5)
	w.Fill(0.25)
	for _, block := range []int{rows, 2048, 256, 32} {
		b.Run(fmt.Sprintf("rows=%d", block), func(b *testing.B) {
			var ys, ws []*Tensor
			for lo := 0; lo < rows; lo += block {
				yb, err := y.Narrow(1, lo, block)
				if err != nil {
					b.Fatal(err)
				}
				wb, err := w.Narrow(0, lo, block)
				if err != nil {
					b.Fatal(err)
				}
				ys, ws = append(ys, yb), append(ws, wb)
			}
			for b.Loop() {
				for i := range ys {
					if err := LinearInto(ys[i], x, ws[i], nil); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(rows*k*4)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
