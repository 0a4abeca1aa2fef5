package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The per-token ops of a decode step on one hidden vector (2048: Llama-1B-ish hidden size; 5632:
// its MLP width). Bytes are everything read and written once: x, weight and dst for RMSNorm; gate,
// up and dst for SwiGLU.
func BenchmarkRMSNorm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{2048, 5632} {
		b.Run(fmt.Sprintf("hidden=%d", n), func(b *testing.B) {
			x, w, d := randF32(rng, 1, 1, n), randF32(rng, 1, n), New(Float32, 1, n)
			b.SetBytes(int64(3 * 4 * n))
			b.ReportAllocs()
			for b.Loop() {
				if err := RMSNormInto(d, x, w, 1e-5); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSwiGLU(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	for _, n := range []int{2048, 5632} {
		b.Run(fmt.Sprintf("hidden=%d", n), func(b *testing.B) {
			g, u, d := randF32(rng, 1, 1, n), randF32(rng, 1, 1, n), New(Float32, 1, n)
			b.SetBytes(int64(3 * 4 * n))
			b.ReportAllocs()
			for b.Loop() {
				if err := SwiGLUInto(d, g, u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
