package tensor

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConvertFloatsMatchesTo checks To's fast path for the float pairs (convertFloats) against
// its element-by-element path (decodeFloat then encodeFloat) bit for bit: every bfloat16 and
// float16 pattern when widening; when narrowing float32, every exponent with mantissas at and
// around the rounding boundaries, NaNs with payloads, and random bits.
func TestConvertFloatsMatchesTo(t *testing.T) {
	var f32 []uint32
	for e := uint32(0); e < 256; e++ {
		for _, m := range []uint32{0, 1, 0x7fff, 0x8000, 0x8001, 0xffff, 0x10000, 0x17fff, 0x18000, 0x1000, 0xfff, 0x2000,
			0x3fffff, 0x400000, 0x400001, 0x7fe000, 0x7fefff, 0x7ff000, 0x7fffff} {
			f32 = append(f32, e<<23|m, 1<<31|e<<23|m)
		}
	}
	rng := rand.New(rand.NewPCG(51, 52))
	for range 1 << 16 {
		f32 = append(f32, rng.Uint32())
	}
	f32Bytes := make([]byte, 4*len(f32))
	for i, b := range f32 {
		binary.LittleEndian.PutUint32(f32Bytes[4*i:], b)
	}
	// float64: each float32 above, widened and nudged by -1..1 ulp of float64 (rounding ties and
	// their neighbours), then random bits.
	var f64 []uint64
	for _, b := range f32 {
		w := math.Float64bits(float64(math.Float32frombits(b)))
		f64 = append(f64, w-1, w, w+1, w+1<<28, w|1<<28)
	}
	for range 1 << 16 {
		f64 = append(f64, rng.Uint64())
	}
	f64Bytes := make([]byte, 8*len(f64))
	for i, b := range f64 {
		binary.LittleEndian.PutUint64(f64Bytes[8*i:], b)
	}
	all16 := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(all16[2*i:], uint16(i))
	}
	tests := []struct {
		sd, dd DType
		src    []byte
	}{
		{Float32, BFloat16, f32Bytes},
		{Float32, Float16, f32Bytes},
		{BFloat16, Float32, all16},
		{Float16, Float32, all16},
		{Float32, Float64, f32Bytes},
		{Float64, Float32, f64Bytes},
	}
	for _, tc := range tests {
		for _, lv := range simdLevels {
			t.Run(tc.sd.String()+"_to_"+tc.dd.String()+"/"+lv.String(), func(t *testing.T) {
				useLevel(t, lv)
				checkConvertFloats(t, tc.sd, tc.dd, tc.src)
			})
		}
	}
	require.False(t, convertFloats(Int32, alloc(4), Float32, alloc(4)), "not a float pair")
	require.False(t, convertFloats(BFloat16, alloc(4), Float32, alloc(9)[1:]), "misaligned source")
}

// checkConvertFloats converts src (dtype sd) to dd with convertFloats, and with To, and checks both
// against the element-by-element path, whole and from a few element offsets on (vector tails, and
// vectors that do not start on a 32-byte boundary).
func checkConvertFloats(t *testing.T, sd, dd DType, all []byte) {
	for _, skip := range []int{0, 1, 3, 7, 15, 17} {
		tc := struct {
			sd, dd DType
			src    []byte
		}{sd, dd, all[skip*sd.Size():]}
		func() {
			n := len(tc.src) / tc.sd.Size()
			src := alloc(len(tc.src))
			copy(src, tc.src)
			got := alloc(n * tc.dd.Size())
			require.True(t, convertFloats(tc.dd, got, tc.sd, src))
			want := make([]byte, n*tc.dd.Size())
			for i := range n {
				encodeFloat(tc.dd, want[i*tc.dd.Size():], decodeFloat(tc.sd, src[i*tc.sd.Size():]))
			}
			for i := range n {
				g, w := got[i*tc.dd.Size():(i+1)*tc.dd.Size()], want[i*tc.dd.Size():(i+1)*tc.dd.Size()]
				if string(g) != string(w) {
					t.Fatalf("from element %d, element %d (%x): got %x, want %x", skip, i, src[i*tc.sd.Size():(i+1)*tc.sd.Size()], g, w)
				}
			}
			// To takes the fast path for a contiguous tensor, and gives the same.
			tt, err := FromBytes(tc.sd, src)
			require.NoError(t, err)
			require.Equal(t, want, tt.To(tc.dd).Bytes())
		}()
	}
}
