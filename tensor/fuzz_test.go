package tensor

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzReduceInto checks ReduceInto against the element-by-element reference for arbitrary bytes,
// ops and dtypes, including unsupported pairs (which must fail) and misaligned buffers.
func FuzzReduceInto(f *testing.F) {
	f.Add(uint8(Sum), uint8(Float32), false, []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40})
	f.Add(uint8(Max), uint8(BFloat16), true, []byte{0xc0, 0x7f, 0x80, 0x3f, 0, 0x80, 0, 0})
	f.Add(uint8(Min), uint8(Float16), false, []byte{0, 0x80, 0, 0, 0, 0x7e, 0, 0x7c})
	f.Add(uint8(Product), uint8(Int8), false, []byte{127, 2, 3, 128})
	f.Add(uint8(BXor), uint8(Bool), false, []byte{1, 0, 2, 1})
	f.Add(uint8(BAnd), uint8(Float64), false, make([]byte, 16))
	f.Add(uint8(Sum), uint8(Float8E4M3FN), false, []byte{1, 2})
	f.Fuzz(func(t *testing.T, opByte, dtByte uint8, misaligned bool, data []byte) {
		op := ReduceOp(opByte % uint8(numReduceOps))
		dt := DType(1 + dtByte%uint8(numDTypes-1))
		size := dt.Size()
		n := len(data) / 2 / size * size
		dst := append([]byte{}, data[:n]...)
		src := append([]byte{}, data[n:2*n]...)
		if err := CheckReduce(op, dt); err != nil {
			require.ErrorIs(t, ReduceInto(op, dt, dst, src), ErrUnsupported)
			return
		}
		want := refReduce(op, dt, [][]byte{dst, src})
		operands := [][]byte{append([]byte{}, dst...), src}
		if misaligned {
			dst, src = misalignedCopy(dst), misalignedCopy(src)
		}
		require.NoError(t, ReduceInto(op, dt, dst, src))
		require.NoError(t, diffElems(op, dt, dst, want, operands))
	})
}

// FuzzFloat16RoundTrip checks the float32 conversions to every narrow format against the float64
// ones and that decoding and re-encoding a converted value changes nothing.
func FuzzFloat16RoundTrip(f *testing.F) {
	for _, v := range []float32{0, 1, -1, 65504, 65520, 0x1p-24, 448, 464, 57344, 1e-40} {
		f.Add(math.Float32bits(v))
	}
	f.Add(uint32(0x7fc00001))
	f.Fuzz(func(t *testing.T, bits uint32) {
		v := math.Float32frombits(bits)
		for _, fm := range smallFormats {
			c := fm.enc32(v)
			require.Equalf(t, c, fm.enc32(fm.decode(c)), "%s: %v -> %#x is not stable", fm.name, v, c)
			if math.IsNaN(float64(v)) {
				require.Truef(t, fm.isNaN(c), "%s: NaN -> %#x", fm.name, c)
				continue
			}
			require.Equalf(t, fm.enc64(float64(v)), c, "%s: float32 and float64 paths differ for %v", fm.name, v)
			// The result is at least as close as either neighbour code.
			d := math.Abs(float64(fm.decode(c)) - float64(v))
			if !math.IsInf(d, 0) && !math.IsNaN(d) && c&^fm.sign() > 0 && c&^fm.sign() <= fm.maxFinite {
				below := math.Abs(float64(fm.decode(c-1)) - float64(v))
				require.LessOrEqualf(t, d, below, "%s: %v -> %#x but %#x is closer", fm.name, v, c, c-1)
				if c&^fm.sign() < fm.maxFinite {
					above := math.Abs(float64(fm.decode(c+1)) - float64(v))
					require.LessOrEqualf(t, d, above, "%s: %v -> %#x but %#x is closer", fm.name, v, c, c+1)
				}
			}
		}
	})
}
