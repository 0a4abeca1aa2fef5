package tensor

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smallFormat describes one of the narrow float formats for table-driven conversion tests.
type smallFormat struct {
	name      string
	bits      int                  // 8 or 16
	decode    func(uint32) float32 // code to float32
	enc32     func(float32) uint32
	enc64     func(float64) uint32 // the unexported float64 conversion
	maxFinite uint32               // largest positive finite code
	overflow  uint32               // positive code of an overflowing value (Inf, or NaN for e4m3fn)
}

func (f smallFormat) sign() uint32 { return 1 << (f.bits - 1) }

func (f smallFormat) isNaN(c uint32) bool { return math.IsNaN(float64(f.decode(c))) }

var smallFormats = []smallFormat{
	{
		name:      "float16",
		bits:      16,
		decode:    func(c uint32) float32 { return Float16ToFloat32(uint16(c)) },
		enc32:     func(f float32) uint32 { return uint32(Float32ToFloat16(f)) },
		enc64:     func(f float64) uint32 { return uint32(float64ToFloat16(f)) },
		maxFinite: 0x7bff,
		overflow:  0x7c00,
	},
	{
		name:      "bfloat16",
		bits:      16,
		decode:    func(c uint32) float32 { return BFloat16ToFloat32(uint16(c)) },
		enc32:     func(f float32) uint32 { return uint32(Float32ToBFloat16(f)) },
		enc64:     func(f float64) uint32 { return uint32(float64ToBFloat16(f)) },
		maxFinite: 0x7f7f,
		overflow:  0x7f80,
	},
	{
		name:      "float8_e4m3fn",
		bits:      8,
		decode:    func(c uint32) float32 { return Float8E4M3FNToFloat32(uint8(c)) },
		enc32:     func(f float32) uint32 { return uint32(Float32ToFloat8E4M3FN(f)) },
		enc64:     func(f float64) uint32 { return uint32(float64ToFloat8E4M3FN(f)) },
		maxFinite: 0x7e,
		overflow:  0x7f,
	},
	{
		name:      "float8_e5m2",
		bits:      8,
		decode:    func(c uint32) float32 { return Float8E5M2ToFloat32(uint8(c)) },
		enc32:     func(f float32) uint32 { return uint32(Float32ToFloat8E5M2(f)) },
		enc64:     func(f float64) uint32 { return uint32(float64ToFloat8E5M2(f)) },
		maxFinite: 0x7b,
		overflow:  0x7c,
	},
}

// TestConversionRoundTripExhaustive converts every bit pattern of every narrow format to float32
// and back, and expects the same bits, NaNs included.
func TestConversionRoundTripExhaustive(t *testing.T) {
	for _, f := range smallFormats {
		t.Run(f.name, func(t *testing.T) {
			for c := uint32(0); c < 1<<f.bits; c++ {
				v := f.decode(c)
				if got := f.enc32(v); got != c {
					require.Equalf(t, c, got, "code %#x decodes to %v, which encodes back to %#x", c, v, got)
				}
				// The float64 path agrees on every number, and keeps NaNs NaN.
				got := f.enc64(float64(v))
				if f.isNaN(c) {
					require.Truef(t, f.isNaN(got), "NaN code %#x became %#x through float64", c, got)
				} else if got != c {
					require.Equalf(t, c, got, "code %#x (%v) through float64 gave %#x", c, v, got)
				}
			}
		})
	}
}

// TestConversionMonotonic checks that the positive finite codes decode to strictly increasing
// values, and negative codes to their negations.
func TestConversionMonotonic(t *testing.T) {
	for _, f := range smallFormats {
		t.Run(f.name, func(t *testing.T) {
			prev := float32(-1)
			for c := uint32(0); c <= f.maxFinite; c++ {
				v := f.decode(c)
				require.Greaterf(t, v, prev, "code %#x", c)
				prev = v
				neg := f.decode(c | f.sign())
				require.Equalf(t, math.Float32bits(-v), math.Float32bits(neg), "code %#x", c|f.sign())
			}
		})
	}
}

// TestConversionRoundingBoundaries checks every rounding boundary of every format: the exact
// midpoint between two neighbouring codes rounds to the even one, and the floats just above and
// below it round up and down, for both signs and through both the float32 and float64 paths.
// The boundary above the largest finite value decides overflow.
func TestConversionRoundingBoundaries(t *testing.T) {
	for _, f := range smallFormats {
		t.Run(f.name, func(t *testing.T) {
			for c := uint32(0); c <= f.maxFinite; c++ {
				lo := float64(f.decode(c))
				var hi float64
				up := c + 1
				if c == f.maxFinite {
					hi = lo + (lo - float64(f.decode(c-1))) // the next value if the exponent went on
					up = f.overflow
				} else {
					hi = float64(f.decode(c + 1))
				}
				mid := (lo + hi) / 2
				even := c
				if c&1 == 1 {
					even = up
				}
				for _, sign := range []float64{1, -1} {
					sb := uint32(0)
					if sign < 0 {
						sb = f.sign()
					}
					cases := []struct {
						v    float64
						want uint32
					}{
						{lo, c},
						{mid, even},
						{math.Nextafter(mid, 0), c},
						{math.Nextafter(mid, math.Inf(1)), up},
					}
					for _, tc := range cases {
						v := sign * tc.v
						if got := f.enc64(v); got != tc.want|sb {
							require.Equalf(t, tc.want|sb, got, "float64 %v (between codes %#x and %#x)", v, c, up)
						}
					}
					// The float32 neighbours of the midpoint, which is exact in float32.
					m32 := float32(sign * mid)
					require.Equal(t, sign*mid, float64(m32), "midpoint is exact in float32")
					cases32 := []struct {
						v    float32
						want uint32
					}{
						{m32, even},
						{math.Nextafter32(m32, 0), c},
						{math.Nextafter32(m32, float32(sign*math.Inf(1))), up},
					}
					for _, tc := range cases32 {
						if got := f.enc32(tc.v); got != tc.want|sb {
							require.Equalf(t, tc.want|sb, got, "float32 %v (between codes %#x and %#x)", tc.v, c, up)
						}
					}
				}
			}
		})
	}
}

// nearestCode is an independent reference: the code nearest to x by brute-force search over the
// decoded values, ties to the even code.
func nearestCode(f smallFormat, sorted []float64, x float64) uint32 {
	sb := uint32(0)
	if math.Signbit(x) {
		sb = f.sign()
		x = -x
	}
	if math.IsInf(x, 0) {
		return f.overflow | sb
	}
	i := sort.SearchFloat64s(sorted, x) // first value >= x
	if i < len(sorted) && sorted[i] == x {
		return uint32(i) | sb
	}
	if i == len(sorted) {
		// Above the largest finite value: apply the midpoint rule with the virtual next value.
		top := sorted[len(sorted)-1]
		next := top + (top - sorted[len(sorted)-2])
		mid := (top + next) / 2
		if x < mid || (x == mid && (len(sorted)-1)%2 == 0) {
			return uint32(len(sorted)-1) | sb
		}
		return f.overflow | sb
	}
	lo, hi := sorted[i-1], sorted[i]
	switch {
	case x-lo < hi-x:
		return uint32(i-1) | sb
	case x-lo > hi-x:
		return uint32(i) | sb
	case (i-1)%2 == 0:
		return uint32(i-1) | sb
	}
	return uint32(i) | sb
}

func TestConversionMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range smallFormats {
		t.Run(f.name, func(t *testing.T) {
			sorted := make([]float64, f.maxFinite+1)
			for c := range sorted {
				sorted[c] = float64(f.decode(uint32(c)))
			}
			maxExp := math.Log2(sorted[len(sorted)-1]) + 1
			minExp := math.Log2(sorted[1]) - 2
			for range 100000 {
				// Random magnitudes spread evenly over the format's exponent range and a bit beyond.
				x := math.Exp2(minExp + rng.Float64()*(maxExp-minExp))
				if rng.IntN(2) == 0 {
					x = -x
				}
				want := nearestCode(f, sorted, x)
				if got := f.enc64(x); got != want {
					require.Equalf(t, want, got, "float64 %v", x)
				}
				x32 := float32(x)
				want = nearestCode(f, sorted, float64(x32))
				if got := f.enc32(x32); got != want {
					require.Equalf(t, want, got, "float32 %v", x32)
				}
			}
		})
	}
}

// TestConversionFloat32AgreesWithFloat64 compares the float32 conversions (bfloat16's uses a
// different rounding trick) with the float64 ones on random float32 bit patterns.
func TestConversionFloat32AgreesWithFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, f := range smallFormats {
		t.Run(f.name, func(t *testing.T) {
			for range 1 << 20 {
				v := math.Float32frombits(rng.Uint32())
				got := f.enc32(v)
				want := f.enc64(float64(v))
				if math.IsNaN(float64(v)) {
					require.Truef(t, f.isNaN(got), "NaN %#x gave %#x", math.Float32bits(v), got)
					require.Equal(t, want&f.sign(), got&f.sign(), "NaN keeps its sign")
					continue
				}
				if got != want {
					require.Equalf(t, want, got, "float32 %v (%#x)", v, math.Float32bits(v))
				}
			}
		})
	}
}

func TestConversionKnownValues(t *testing.T) {
	nan := math.NaN()
	inf := math.Inf(1)
	tests := []struct {
		format string
		in     float64 // exact in float32
		want   uint32
	}{
		{"float16", 1, 0x3c00},
		{"float16", -2, 0xc000},
		{"float16", 0.5, 0x3800},
		{"float16", 65504, 0x7bff},         // max
		{"float16", 65519.99, 0x7bff},      // just below the overflow boundary
		{"float16", 65520, 0x7c00},         // the boundary: ties to even, which is Inf
		{"float16", 0x1p-24, 0x0001},       // min subnormal
		{"float16", 0x1p-25, 0x0000},       // half of it: tie to even 0
		{"float16", 0x1.8p-25, 0x0001},     // above half
		{"float16", 0x1p-14, 0x0400},       // min normal
		{"float16", 0x1.ff8p-15, 0x03ff},   // largest subnormal
		{"float16", 0x1.ffcp-15, 0x0400},   // halfway to the min normal: ties to even, up
		{"float16", 1 + 0x1p-11, 0x3c00},   // halfway, ties to even (down)
		{"float16", 1 + 3*0x1p-11, 0x3c02}, // halfway, ties to even (up)
		{"float16", 0.1, 0x2e66},           // float32(0.1)
		{"float16", math.Copysign(0, -1), 0x8000},
		{"float16", inf, 0x7c00},
		{"float16", -inf, 0xfc00},
		{"float16", 1e10, 0x7c00},
		{"bfloat16", 1, 0x3f80},
		{"bfloat16", -1, 0xbf80},
		{"bfloat16", 3.140625, 0x4049},
		{"bfloat16", 0x1.fep127, 0x7f7f},      // max
		{"bfloat16", 0x1p-133, 0x0001},        // min subnormal
		{"bfloat16", 0x1p-126, 0x0080},        // min normal
		{"bfloat16", 1 + 0x1p-8, 0x3f80},      // halfway, ties to even (down)
		{"bfloat16", 1 + 3*0x1p-8, 0x3f82},    // halfway, ties to even (up)
		{"bfloat16", 0x1.ffp127, 0x7f80},      // halfway above max: Inf
		{"bfloat16", math.MaxFloat32, 0x7f80}, // overflow
		{"bfloat16", inf, 0x7f80},
		{"float8_e4m3fn", 1, 0x38},
		{"float8_e4m3fn", -1, 0xb8},
		{"float8_e4m3fn", 448, 0x7e}, // max
		{"float8_e4m3fn", -448, 0xfe},
		{"float8_e4m3fn", 464, 0x7e}, // halfway above max ties to even: 448
		{"float8_e4m3fn", 465, 0x7f}, // overflow is NaN
		{"float8_e4m3fn", 480, 0x7f},
		{"float8_e4m3fn", -1e6, 0xff},
		{"float8_e4m3fn", inf, 0x7f}, // no infinity: NaN
		{"float8_e4m3fn", nan, 0x7f},
		{"float8_e4m3fn", 0x1p-9, 0x01},  // min subnormal
		{"float8_e4m3fn", 0x1p-10, 0x00}, // half of it
		{"float8_e4m3fn", 0x1p-6, 0x08},  // min normal
		{"float8_e4m3fn", 1.0625, 0x38},  // halfway between 1 and 1.125: even
		{"float8_e4m3fn", 1.1875, 0x3a},  // halfway between 1.125 and 1.25: even
		{"float8_e5m2", 1, 0x3c},
		{"float8_e5m2", 57344, 0x7b}, // max
		{"float8_e5m2", 61440, 0x7c}, // halfway above max: Inf
		{"float8_e5m2", 61439, 0x7b},
		{"float8_e5m2", -inf, 0xfc},
		{"float8_e5m2", 0x1p-16, 0x01}, // min subnormal
		{"float8_e5m2", 0x1p-14, 0x04}, // min normal
		{"float8_e5m2", 1.125, 0x3c},   // halfway: even
		{"float8_e5m2", 1.375, 0x3e},   // halfway: even
	}
	byName := map[string]smallFormat{}
	for _, f := range smallFormats {
		byName[f.name] = f
	}
	for _, tc := range tests {
		f := byName[tc.format]
		got32 := f.enc32(float32(tc.in))
		got64 := f.enc64(tc.in)
		if math.IsNaN(tc.in) {
			assert.Truef(t, f.isNaN(got32), "%s(%v) = %#x, want NaN", tc.format, tc.in, got32)
			assert.Truef(t, f.isNaN(got64), "%s(%v) = %#x, want NaN", tc.format, tc.in, got64)
			continue
		}
		assert.Equalf(t, tc.want, got32, "%s(float32 %v)", tc.format, tc.in)
		assert.Equalf(t, tc.want, got64, "%s(float64 %v)", tc.format, tc.in)
	}
}

func TestConversionNaNs(t *testing.T) {
	// A NaN whose payload sits only in bits the narrow format drops stays NaN, keeping its sign.
	lowPayload := math.Float32frombits(0x7f800001)
	negLowPayload := math.Float32frombits(0xff800001)
	for _, f := range smallFormats {
		assert.Truef(t, f.isNaN(f.enc32(lowPayload)), "%s", f.name)
		assert.Truef(t, f.isNaN(f.enc32(negLowPayload)), "%s", f.name)
		assert.Equalf(t, f.sign(), f.enc32(negLowPayload)&f.sign(), "%s keeps the sign", f.name)
		assert.Truef(t, f.isNaN(f.enc32(float32(math.NaN()))), "%s", f.name)
	}
	assert.True(t, math.IsNaN(float64(Float8E4M3FNToFloat32(0x7f))))
	assert.True(t, math.IsNaN(float64(Float8E4M3FNToFloat32(0xff))))
	assert.True(t, math.Signbit(float64(Float8E4M3FNToFloat32(0xff))))
	assert.Equal(t, float32(448), Float8E4M3FNToFloat32(0x7e))
}

func TestTruncWrap(t *testing.T) {
	tests := []struct {
		in   float64
		want int64
	}{
		{0, 0},
		{1.9, 1},
		{-1.9, -1},
		{0x1p62, 1 << 62},
		{-0x1p63, math.MinInt64},
		{0x1p63, math.MinInt64},      // 2^63 wraps to -2^63
		{0x1p64, 0},                  // 2^64 wraps to 0
		{0x1p64 + 0x1p12, 1 << 12},   // wraps modulo 2^64
		{-0x1p64 - 0x1p12, -1 << 12}, //
		{3 * 0x1p63, math.MinInt64},  // 3·2^63 ≡ 2^63 ≡ -2^63
		{math.NaN(), 0},
		{math.Inf(1), 0},
		{math.Inf(-1), 0},
	}
	for _, tc := range tests {
		assert.Equalf(t, tc.want, truncWrap(tc.in), "truncWrap(%v)", tc.in)
	}
	assert.Equal(t, int8(44), int8(truncWrap(300)), "300 wraps to 44 in int8")
	assert.Equal(t, uint8(255), uint8(truncWrap(-1)))
}
