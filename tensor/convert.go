package tensor

import "math"

// Conversions between float32 and the 16- and 8-bit float formats.
//
// Every conversion to a narrower format rounds to nearest, ties to even, handles subnormals of
// both formats, and keeps the sign of zeros and NaNs. Conversions to a wider format are exact, so
// Float32ToX(XToFloat32(v)) == v for every bit pattern v, NaNs included (NaN payloads are kept as
// far as the narrower format can hold them, and a NaN never becomes an infinity).

// rne shifts x right by s bits, rounding to nearest, ties to even.
func rne(x uint64, s uint) uint64 {
	if s == 0 {
		return x
	}
	r := x >> s
	rem := x & (1<<s - 1)
	half := uint64(1) << (s - 1)
	if rem > half || (rem == half && r&1 == 1) {
		r++
	}
	return r
}

// roundToFormat rounds the finite non-negative value sig×2^(e-p), where sig has at most p+1 bits,
// to a binary float format with mbits stored mantissa bits and the given exponent bias. It returns
// the magnitude code exponent<<mbits | mantissa, which may exceed the format's largest finite code:
// the caller decides what overflow means.
func roundToFormat(sig uint64, e, p, mbits, bias int) uint64 {
	exp := e + bias
	if exp >= 1 {
		// Normal range: the rounded significand keeps its implicit bit, which adds one to exp-1;
		// a carry out of the mantissa moves into the exponent, as it should.
		return uint64(exp-1)<<mbits + rne(sig, uint(p-mbits))
	}
	s := p - mbits + 1 - exp
	if s > p+1 {
		return 0 // below half the smallest subnormal
	}
	return rne(sig, uint(s))
}

// round32 rounds the magnitude bits a (a finite float32 without its sign) to a format.
func round32(a uint32, mbits, bias int) uint64 {
	ef := int(a >> 23)
	sig := uint64(a & 0x7fffff)
	e := -126
	if ef != 0 {
		sig |= 1 << 23
		e = ef - 127
	}
	return roundToFormat(sig, e, 23, mbits, bias)
}

// round64 rounds the magnitude bits a (a finite float64 without its sign) to a format.
func round64(a uint64, mbits, bias int) uint64 {
	ef := int(a >> 52)
	sig := a & (1<<52 - 1)
	e := -1022
	if ef != 0 {
		sig |= 1 << 52
		e = ef - 1023
	}
	return roundToFormat(sig, e, 52, mbits, bias)
}

// Float32ToFloat16 converts f to IEEE 754 binary16 bits, rounding to nearest even. Values beyond
// the largest float16 (65504) round to ±Inf, tiny values to float16 subnormals or ±0.
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if h, ok := float32ToFloat16Fast(b); ok {
		return h
	}
	return float32ToFloat16Slow(b)
}

// float32ToFloat16Fast converts the float32 bits b if |f| is in [2^-14, 65536), float16's
// normal range (or rounding up to Inf), and otherwise returns false. It is small enough to inline
// into kernel loops.
func float32ToFloat16Fast(b uint32) (uint16, bool) {
	a := b & 0x7fffffff
	if a-0x38800000 >= 0x47800000-0x38800000 {
		return 0, false
	}
	// Rebias the exponent from 127 to 15 and round away the low 13 mantissa bits; a carry out of
	// the mantissa moves into the exponent, up to 0x7c00 (Inf).
	r := a - (127-15)<<23
	r += 0xfff + (r>>13)&1
	return uint16(b>>16)&0x8000 | uint16(r>>13), true
}

// float32ToFloat16Slow converts the float32 bits b outside float16's normal range.
func float32ToFloat16Slow(b uint32) uint16 {
	sign := uint16(b>>16) & 0x8000
	a := b & 0x7fffffff
	switch {
	case a > 0x7f800000:
		m := uint16(a>>13) & 0x3ff
		if m == 0 {
			m = 0x200 // payload only in the low bits: keep it a (quiet) NaN
		}
		return sign | 0x7c00 | m
	case a >= 0x477ff000:
		return sign | 0x7c00 // rounds to or beyond 65536, or Inf
	case a <= 0x33000000:
		return sign // at most half the smallest subnormal (2^-25): ties to even, zero
	}
	return sign | uint16(round32(a, 10, 15))
}

// Float16ToFloat32 converts IEEE 754 binary16 bits to float32, exactly.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	em := uint32(h & 0x7fff)
	switch {
	case em >= 0x7c00: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | (em&0x3ff)<<13)
	case em >= 0x0400: // normal: rebias the exponent from 15 to 127
		return math.Float32frombits(sign | (em<<13 + (127-15)<<23))
	}
	// Zero or subnormal: em×2^-24, exact in float32.
	return math.Float32frombits(sign | math.Float32bits(float32(em)*0x1p-24))
}

// Float32ToBFloat16 converts f to bfloat16 bits (the upper half of a float32), rounding to nearest
// even. Values that round beyond the largest bfloat16 become ±Inf.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		h := uint16(b >> 16)
		if h&0x7f == 0 {
			h |= 0x40 // payload only in the low bits: keep it a (quiet) NaN
		}
		return h
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// BFloat16ToFloat32 converts bfloat16 bits to float32, exactly.
func BFloat16ToFloat32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// Float32ToFloat8E4M3FN converts f to float8 e4m3fn bits (1 sign, 4 exponent bits with bias 7, 3
// mantissa bits; no infinities; NaN is 0x7f/0xff; largest finite 448), rounding to nearest even.
//
// Overflow gives NaN, not saturation, as PyTorch's conversion does: a value whose magnitude rounds
// above 448 (anything at or above 464 rounds away from 448; exactly 464 is a tie and rounds to
// 448), and ±Inf, become NaN with the input's sign.
func Float32ToFloat8E4M3FN(f float32) uint8 {
	b := math.Float32bits(f)
	sign := uint8(b>>24) & 0x80
	a := b & 0x7fffffff
	if a >= 0x7f800000 {
		return sign | 0x7f
	}
	c := round32(a, 3, 7)
	if c > 0x7e {
		return sign | 0x7f
	}
	return sign | uint8(c)
}

// Float8E4M3FNToFloat32 converts float8 e4m3fn bits to float32, exactly. 0x7f and 0xff are NaN.
func Float8E4M3FNToFloat32(v uint8) float32 {
	sign := uint32(v&0x80) << 24
	exp := uint32(v>>3) & 0xf
	mant := uint32(v & 7)
	switch {
	case v&0x7f == 0x7f:
		return math.Float32frombits(sign | 0x7fc00000)
	case exp == 0:
		return math.Float32frombits(sign | math.Float32bits(float32(mant)*0x1p-9))
	}
	return math.Float32frombits(sign | (exp+120)<<23 | mant<<20)
}

// Float32ToFloat8E5M2 converts f to float8 e5m2 bits (1 sign, 5 exponent bits with bias 15, 2
// mantissa bits; IEEE-like with ±Inf and NaNs; largest finite 57344), rounding to nearest even.
// Values that round beyond 57344 become ±Inf.
func Float32ToFloat8E5M2(f float32) uint8 {
	b := math.Float32bits(f)
	sign := uint8(b>>24) & 0x80
	a := b & 0x7fffffff
	if a >= 0x7f800000 {
		if a == 0x7f800000 {
			return sign | 0x7c
		}
		m := uint8(a>>21) & 3
		if m == 0 {
			m = 2 // payload only in the low bits: keep it a (quiet) NaN
		}
		return sign | 0x7c | m
	}
	c := round32(a, 2, 15)
	if c >= 0x7c {
		c = 0x7c
	}
	return sign | uint8(c)
}

// Float8E5M2ToFloat32 converts float8 e5m2 bits to float32, exactly.
func Float8E5M2ToFloat32(v uint8) float32 {
	sign := uint32(v&0x80) << 24
	exp := uint32(v>>2) & 0x1f
	mant := uint32(v & 3)
	switch exp {
	case 0:
		return math.Float32frombits(sign | math.Float32bits(float32(mant)*0x1p-16))
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<21)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<21)
}

// Conversions from float64, rounding once (used where values arrive as float64: FromFloat64s,
// SetFloat, Fill, Scale, DivideBy). A NaN becomes the format's quiet NaN with the input's sign.

func float64ToFloat16(v float64) uint16 {
	b := math.Float64bits(v)
	sign := uint16(b>>48) & 0x8000
	a := b &^ (1 << 63)
	switch {
	case a > 0x7ff0000000000000:
		return sign | 0x7e00
	case a == 0x7ff0000000000000:
		return sign | 0x7c00
	}
	c := round64(a, 10, 15)
	if c >= 0x7c00 {
		c = 0x7c00
	}
	return sign | uint16(c)
}

func float64ToBFloat16(v float64) uint16 {
	b := math.Float64bits(v)
	sign := uint16(b>>48) & 0x8000
	a := b &^ (1 << 63)
	switch {
	case a > 0x7ff0000000000000:
		return sign | 0x7fc0
	case a == 0x7ff0000000000000:
		return sign | 0x7f80
	}
	c := round64(a, 7, 127)
	if c >= 0x7f80 {
		c = 0x7f80
	}
	return sign | uint16(c)
}

func float64ToFloat8E4M3FN(v float64) uint8 {
	b := math.Float64bits(v)
	sign := uint8(b>>56) & 0x80
	a := b &^ (1 << 63)
	if a >= 0x7ff0000000000000 {
		return sign | 0x7f
	}
	c := round64(a, 3, 7)
	if c > 0x7e {
		return sign | 0x7f
	}
	return sign | uint8(c)
}

func float64ToFloat8E5M2(v float64) uint8 {
	b := math.Float64bits(v)
	sign := uint8(b>>56) & 0x80
	a := b &^ (1 << 63)
	switch {
	case a > 0x7ff0000000000000:
		return sign | 0x7e
	case a == 0x7ff0000000000000:
		return sign | 0x7c
	}
	c := round64(a, 2, 15)
	if c >= 0x7c {
		c = 0x7c
	}
	return sign | uint8(c)
}

// truncWrap converts v to an integer: truncated toward zero and wrapped modulo 2^64 into int64's
// range (two's complement), so that a further conversion to a narrower integer type wraps too.
// NaN and ±Inf give 0.
func truncWrap(v float64) int64 {
	v = math.Trunc(v)
	if v >= -0x1p63 && v < 0x1p63 {
		return int64(v)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	m := math.Mod(v, 0x1p64) // exact; an integer in (-2^64, 2^64) with v's sign
	switch {
	case m >= 0x1p63:
		m -= 0x1p64
	case m < -0x1p63:
		m += 0x1p64
	}
	return int64(m)
}

// convertFloats converts the contiguous elements of src (dtype sd) into dst (dtype dd, as many
// elements) for the pairs of float32 with bfloat16, float16 and float64, with exactly To's
// results (which go through float64 element by element: a NaN comes out as that format's
// canonical quiet NaN with its sign when narrowing, quieted when widening) at a few ns an element
// instead of To's ~20, under a ns with the SIMD kernels for bfloat16 and float16
// (vector_amd64.s). It reports false, having done nothing, for other pairs or for buffers it
// cannot view as typed slices (misaligned, or a big-endian host).
func convertFloats(dd DType, dst []byte, sd DType, src []byte) bool {
	if !aligned(src, sd.Size()) || !aligned(dst, dd.Size()) {
		return false
	}
	switch {
	case sd == Float32 && dd == BFloat16:
		toBFloat16(as[uint16](dst), as[float32](src))
	case sd == Float32 && dd == Float16:
		toFloat16(as[uint16](dst), as[float32](src))
	case sd == BFloat16 && dd == Float32:
		fromBFloat16(as[uint32](dst), as[uint16](src))
	case sd == Float16 && dd == Float32:
		fromFloat16(as[float32](dst), as[uint16](src))
	case sd == Float32 && dd == Float64:
		d := as[float64](dst)
		for i, v := range as[float32](src) {
			d[i] = float64(v)
		}
	case sd == Float64 && dd == Float32:
		d := as[float32](dst)
		for i, v := range as[float64](src) {
			d[i] = float32(v)
		}
	default:
		return false
	}
	return true
}

// toBFloat16Go is toBFloat16's portable loop, and its reference.
func toBFloat16Go(d []uint16, s []float32) {
	for i, v := range s {
		d[i] = narrowToBFloat16(math.Float32bits(v))
	}
}

// fromBFloat16Go is fromBFloat16's portable loop, and its reference.
func fromBFloat16Go(d []uint32, s []uint16) {
	for i, h := range s {
		d[i] = quietNaN32(uint32(h) << 16)
	}
}

// toFloat16Go is toFloat16's portable loop, and its reference.
func toFloat16Go(d []uint16, s []float32) {
	for i, v := range s {
		d[i] = narrowToFloat16(math.Float32bits(v))
	}
}

// fromFloat16Go is fromFloat16's portable loop, and its reference.
func fromFloat16Go(d []float32, s []uint16) {
	for i, h := range s {
		d[i] = math.Float32frombits(quietNaN32(math.Float32bits(Float16ToFloat32(h))))
	}
}

// narrowToBFloat16 is To's float32 -> bfloat16: rounding to nearest even, and a NaN becomes the
// canonical quiet NaN with its sign (where Float32ToBFloat16 keeps the payload).
func narrowToBFloat16(b uint32) uint16 {
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16)&0x8000 | 0x7fc0
	}
	return Float32ToBFloat16(math.Float32frombits(b))
}

// narrowToFloat16 is To's float32 -> float16: rounding to nearest even, and a NaN becomes the
// canonical quiet NaN with its sign (where Float32ToFloat16 keeps the payload).
func narrowToFloat16(b uint32) uint16 {
	if h, ok := float32ToFloat16Fast(b); ok {
		return h
	}
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16)&0x8000 | 0x7e00
	}
	return float32ToFloat16Slow(b)
}

// quietNaN32 sets the quiet bit of float32 bits that are a NaN, as the round trip through float64
// in To does.
func quietNaN32(b uint32) uint32 {
	if b&0x7fffffff > 0x7f800000 {
		b |= 0x00400000
	}
	return b
}
