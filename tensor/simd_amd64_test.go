//go:build !purego

package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// narrowing is one of the kernels' float32-to-16-bit conversions, run on its own.
type narrowing struct {
	name string
	lv   isaLevel
	fn   func(dst, src *byte, n int) int
	ref  func(float32) uint16
	bf   bool // bfloat16: each vector's results interleave its two registers of float32s
	// stopsAtDenormal: the kernels stop at denormal float32s as well as at NaNs.
	stopsAtDenormal bool
}

func narrowings() []narrowing {
	var out []narrowing
	for _, lv := range simdLevels[1:] {
		switch lv {
		case levelAVX2:
			out = append(out,
				narrowing{"bfloat16", lv, cvtF32ToBF16AVX2, Float32ToBFloat16, true, false},
				narrowing{"float16", lv, cvtF32ToF16AVX2, Float32ToFloat16, false, false})
		case levelAVX512:
			out = append(out,
				narrowing{"bfloat16", lv, cvtF32ToBF16AVX512, Float32ToBFloat16, true, false},
				narrowing{"float16", lv, cvtF32ToF16AVX512, Float32ToFloat16, false, false})
		case levelAVX512BF16:
			out = append(out, narrowing{"bfloat16", lv, cvtF32ToBF16AVX512BF16, Float32ToBFloat16, true, true})
		}
	}
	return out
}

// vectorElems is the number of 16-bit results per vector at level lv.
func vectorElems(lv isaLevel) int {
	if lv >= levelAVX512 {
		return 32
	}
	return 16
}

// sourceIndex maps result p of a vector to the index of its float32 source within the vector.
func (c narrowing) sourceIndex(p int) int {
	if !c.bf {
		return p
	}
	if p%2 == 0 {
		return p / 2
	}
	return vectorElems(c.lv)/2 + p/2 // the second register of float32s
}

// check converts src (a multiple of a vector long) and compares every result with the reference;
// a vector the kernel stops at must hold a NaN. It returns a description of the first mismatch.
func (c narrowing) check(src []uint32, dst []uint16) string {
	v := vectorElems(c.lv)
	for start := 0; start < len(src); {
		done := c.fn((*byte)(ptrOfU16(dst[start:])), (*byte)(ptrOfU32(src[start:])), len(src)-start)
		for i := start; i < start+done; i += v {
			for p := range v {
				x := src[i+c.sourceIndex(p)]
				if got, want := dst[i+p], c.ref(math.Float32frombits(x)); got != want {
					return fmt.Sprintf("%s %s: %#08x -> %#04x, want %#04x", c.lv, c.name, x, got, want)
				}
			}
		}
		start += done
		if start == len(src) {
			break
		}
		special := false
		for _, x := range src[start : start+v] {
			a := x & 0x7fffffff
			special = special || a > 0x7f800000 || (c.stopsAtDenormal && a != 0 && a < 0x00800000)
		}
		if !special {
			return fmt.Sprintf("%s %s: stopped at %d, a vector without NaN (or denormal)", c.lv, c.name, start)
		}
		start += v
	}
	return ""
}

// TestNarrowingExhaustive checks the kernels' rounding of float32 to bfloat16 and float16 against
// Float32ToBFloat16 and Float32ToFloat16: equal for every non-NaN value; vectors holding a NaN
// are left to the Go code. By default it checks every upper half (sign, exponent, top mantissa
// bits) with the lower halves that matter for rounding (ties, one below and above, for both
// formats' rounding points) and random ones, about 4 million values per conversion; with
// GCCL_TENSOR_EXHAUSTIVE=1 every one of the 2^32 float32 bit patterns (about a minute on two
// cores).
func TestNarrowingExhaustive(t *testing.T) {
	cs := narrowings()
	if len(cs) == 0 {
		t.Skip("no SIMD kernels on this CPU")
	}
	if os.Getenv("GCCL_TENSOR_EXHAUSTIVE") != "1" {
		rng := rand.New(rand.NewPCG(31, 32))
		lows := []uint32{0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x2001, 0x2fff, 0x3000, 0x3001,
			0x7fff, 0x8000, 0x8001, 0xffff}
		nRandom := 48
		if testing.Short() || raceEnabled {
			nRandom = 4
		}
		for range nRandom {
			lows = append(lows, rng.Uint32()&0xffff)
		}
		var src []uint32
		for _, lo := range lows {
			for hi := range uint32(1 << 16) {
				src = append(src, hi<<16|lo)
			}
		}
		for _, c := range cs {
			dst := make([]uint16, len(src))
			require.Empty(t, c.check(src, dst))
		}
		return
	}
	const chunk = 1 << 20
	for _, c := range cs {
		var next atomic.Uint64
		var failed atomic.Value
		var wg sync.WaitGroup
		for range runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				src := make([]uint32, chunk)
				dst := make([]uint16, chunk)
				for {
					base := next.Add(chunk) - chunk
					if base >= 1<<32 || failed.Load() != nil {
						return
					}
					for i := range src {
						src[i] = uint32(base) + uint32(i)
					}
					if msg := c.check(src, dst); msg != "" {
						failed.CompareAndSwap(nil, msg)
						return
					}
				}
			})
		}
		wg.Wait()
		if msg := failed.Load(); msg != nil {
			t.Fatal(msg)
		}
	}
}

func ptrOfU16(s []uint16) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(s)) }

func ptrOfU32(s []uint32) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(s)) }
