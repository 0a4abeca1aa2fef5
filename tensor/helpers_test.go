package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
)

// Test helpers: random element data and an element-by-element reference for the kernels, written
// independently of them (float64 and int64/big.Int arithmetic, one element at a time).

// specialFloats are values every float kernel test mixes into its random data.
var specialFloats = []float64{
	0, math.Copysign(0, -1), 1, -1, math.Inf(1), math.Inf(-1), math.NaN(),
	math.MaxFloat32, -math.MaxFloat32, 0x1p-149, -0x1p-149, 0x1p-126, 65504, 0x1p-24,
}

// randElems returns n random little-endian elements of dt.
func randElems(rng *rand.Rand, dt DType, n int) []byte {
	size := dt.Size()
	b := make([]byte, n*size)
	for i := range n {
		e := b[i*size : (i+1)*size]
		switch dt {
		case Float32, Float64:
			switch r := rng.IntN(10); {
			case r == 0:
				encodeFloat(dt, e, specialFloats[rng.IntN(len(specialFloats))])
			case r == 1:
				for j := range e {
					e[j] = byte(rng.Uint32()) // any bits, NaN payloads included
				}
			default:
				encodeFloat(dt, e, rng.NormFloat64()*math.Exp2(float64(rng.IntN(40)-20)))
			}
		case Float16, BFloat16:
			if rng.IntN(4) == 0 {
				binary.LittleEndian.PutUint16(e, uint16(rng.Uint32())) // any bits
			} else {
				encodeFloat(dt, e, rng.NormFloat64()*math.Exp2(float64(rng.IntN(16)-8)))
			}
		case Bool:
			e[0] = byte(rng.IntN(2))
		default:
			for j := range e {
				e[j] = byte(rng.Uint32())
			}
			if rng.IntN(8) == 0 { // extremes, for wraparound
				encodeInt(dt, e, []int64{math.MaxInt64, math.MinInt64, math.MaxInt32, math.MinInt32, 127, -128, 255, -1}[rng.IntN(8)])
			}
		}
	}
	return b
}

// refFloat combines two float64 operands; MIN/MAX give NaN if either is NaN (unlike math.Max,
// which prefers +Inf), else math.Min/Max (-0 < +0).
func refFloat(op ReduceOp, x, y float64) float64 {
	if (op == Min || op == Max) && (math.IsNaN(x) || math.IsNaN(y)) {
		return math.NaN()
	}
	switch op {
	case Product:
		return x * y
	case Min:
		return math.Min(x, y)
	case Max:
		return math.Max(x, y)
	}
	return x + y
}

var two64 = new(big.Int).Lsh(big.NewInt(1), 64)

// refInt combines two integers exactly and wraps the result modulo 2^64 (encodeInt then wraps it
// to the dtype's width).
func refInt(op ReduceOp, x, y int64) int64 {
	switch op {
	case Min:
		return min(x, y)
	case Max:
		return max(x, y)
	case BAnd:
		return x & y
	case BOr:
		return x | y
	case BXor:
		return x ^ y
	}
	r := new(big.Int)
	if op == Product {
		r.Mul(big.NewInt(x), big.NewInt(y))
	} else {
		r.Add(big.NewInt(x), big.NewInt(y))
	}
	r.Mod(r, two64)
	return int64(r.Uint64())
}

func refBool(op ReduceOp, x, y bool) bool {
	switch op {
	case Sum, Max, BOr:
		return x || y
	case Product, Min, BAnd:
		return x && y
	}
	return x != y
}

// refReduce folds srcs element by element as ReduceMany should: integers and bool exactly,
// float32/float64 rounding after each step, float16/bfloat16 in float32 with one final rounding.
func refReduce(op ReduceOp, dt DType, srcs [][]byte) []byte {
	size := dt.Size()
	out := make([]byte, len(srcs[0]))
	for off := 0; off < len(out); off += size {
		e := out[off : off+size]
		switch {
		case dt == Bool:
			acc := srcs[0][off] != 0
			for _, s := range srcs[1:] {
				acc = refBool(op, acc, s[off] != 0)
			}
			e[0] = b2u(acc)
		case dt.IsInteger():
			acc := decodeInt(dt, srcs[0][off:])
			for _, s := range srcs[1:] {
				acc = refInt(op, acc, decodeInt(dt, s[off:]))
			}
			encodeInt(dt, e, acc)
		case dt.isHalf():
			acc := float32(decodeFloat(dt, srcs[0][off:]))
			for _, s := range srcs[1:] {
				// float64 holds the exact sum or product of two float32s to within a rounding that
				// does not change the correctly rounded float32 result.
				acc = float32(refFloat(op, float64(acc), decodeFloat(dt, s[off:])))
			}
			encodeFloat(dt, e, float64(acc))
		default: // Float32, Float64
			acc := decodeFloat(dt, srcs[0][off:])
			for _, s := range srcs[1:] {
				acc = refFloat(op, acc, decodeFloat(dt, s[off:]))
				if dt == Float32 {
					acc = float64(float32(acc))
				}
			}
			encodeFloat(dt, e, acc)
		}
	}
	return out
}

// isNaNElem reports whether the element of dt at the start of b is a NaN.
func isNaNElem(dt DType, b []byte) bool {
	return dt.IsFloat() && math.IsNaN(decodeFloat(dt, b))
}

// diffElems compares a kernel's result with the reference element by element. NaN results need
// only be NaN, except for MIN/MAX, whose NaN must be one of the operands' NaNs bit for bit.
func diffElems(op ReduceOp, dt DType, got, want []byte, srcs [][]byte) error {
	if len(got) != len(want) {
		return fmt.Errorf("length %d, want %d", len(got), len(want))
	}
	size := dt.Size()
	for off := 0; off < len(got); off += size {
		g, w := got[off:off+size], want[off:off+size]
		if isNaNElem(dt, w) {
			if !isNaNElem(dt, g) {
				return fmt.Errorf("element %d: got %x (%v), want NaN", off/size, g, decodeFloat(dt, g))
			}
			if (op == Min || op == Max) && !oneOf(g, srcs, off) {
				return fmt.Errorf("element %d: %s NaN %x is none of the operands' NaNs", off/size, op, g)
			}
			continue
		}
		if string(g) != string(w) {
			ops := make([]float64, len(srcs))
			for i, s := range srcs {
				ops[i] = decodeFloat(dt, s[off:])
			}
			return fmt.Errorf("element %d: got %x (%v), want %x (%v); operands %v",
				off/size, g, decodeFloat(dt, g), w, decodeFloat(dt, w), ops)
		}
	}
	return nil
}

func oneOf(g []byte, srcs [][]byte, off int) bool {
	for _, s := range srcs {
		if string(s[off:off+len(g)]) == string(g) {
			return true
		}
	}
	return false
}

// misalignedCopy returns a copy of b that starts one byte past an aligned address, to exercise
// the kernels' scratch path.
func misalignedCopy(b []byte) []byte {
	buf := alloc(len(b) + 1)[1:]
	copy(buf, b)
	return buf
}
