package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// supportedPairs returns every (op, dtype) pair CheckReduce accepts.
func supportedPairs() [][2]int {
	var out [][2]int
	for _, dt := range AllDTypes() {
		for _, op := range AllReduceOps() {
			if CheckReduce(op, dt) == nil {
				out = append(out, [2]int{int(op), int(dt)})
			}
		}
	}
	return out
}

var testLengths = []int{0, 1, 7, 1025, 5000}

func TestReduceIntoMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range supportedPairs() {
		op, dt := ReduceOp(p[0]), DType(p[1])
		t.Run(fmt.Sprintf("%s/%s", op, dt), func(t *testing.T) {
			for _, n := range testLengths {
				for _, misaligned := range []bool{false, true} {
					dst, src := randElems(rng, dt, n), randElems(rng, dt, n)
					want := refReduce(op, dt, [][]byte{dst, src})
					operands := [][]byte{append([]byte{}, dst...), src}
					if misaligned {
						dst, src = misalignedCopy(dst), misalignedCopy(src)
					}
					require.NoError(t, ReduceInto(op, dt, dst, src))
					assert.NoErrorf(t, diffElems(op, dt, dst, want, operands), "n=%d misaligned=%v", n, misaligned)
				}
			}
		})
	}
}

func TestReduceManyMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, p := range supportedPairs() {
		op, dt := ReduceOp(p[0]), DType(p[1])
		t.Run(fmt.Sprintf("%s/%s", op, dt), func(t *testing.T) {
			for _, n := range testLengths {
				for _, k := range []int{1, 2, 3, 8} {
					srcs := make([][]byte, k)
					for i := range srcs {
						srcs[i] = randElems(rng, dt, n)
					}
					want := refReduce(op, dt, srcs)

					dst := make([]byte, n*dt.Size())
					require.NoError(t, ReduceMany(op, dt, dst, srcs...))
					require.NoErrorf(t, diffElems(op, dt, dst, want, srcs), "n=%d k=%d", n, k)

					// Same bits again (determinism), with dst aliasing srcs[0], and misaligned.
					again := make([]byte, len(dst))
					require.NoError(t, ReduceMany(op, dt, again, srcs...))
					assert.Equal(t, dst, again, "deterministic")

					aliased := make([][]byte, k)
					for i := range srcs {
						aliased[i] = append([]byte{}, srcs[i]...)
					}
					require.NoError(t, ReduceMany(op, dt, aliased[0], aliased...))
					assert.Equal(t, dst, aliased[0], "dst aliasing srcs[0]")

					if k > 1 {
						for i := range srcs {
							aliased[i] = append(aliased[i][:0], srcs[i]...)
						}
						require.NoError(t, ReduceMany(op, dt, aliased[k-1], aliased...))
						assert.Equal(t, dst, aliased[k-1], "dst aliasing the last source")
					}

					mis := make([][]byte, k)
					for i := range srcs {
						mis[i] = misalignedCopy(srcs[i])
					}
					misDst := misalignedCopy(make([]byte, len(dst)))
					require.NoError(t, ReduceMany(op, dt, misDst, mis...))
					assert.Equal(t, dst, misDst, "misaligned buffers")
				}
			}
		})
	}
}

// TestSumFloat32SmallMatchesReduceMany checks the unchecked small float32 sum, the exported one
// (SSE on amd64) and the portable loop, against ReduceMany bit for bit (infinities, signed zeros,
// subnormals; a NaN where ReduceMany has one, whatever its payload), with dst a fresh buffer, a
// source, or misaligned.
func TestSumFloat32SmallMatchesReduceMany(t *testing.T) {
	impls := map[string]func(dst []byte, srcs [][]byte){
		"SumFloat32Small":   SumFloat32Small,
		"sumFloat32SmallGo": sumFloat32SmallGo,
	}
	rng := rand.New(rand.NewPCG(31, 32))
	for n := range 41 {
		for _, k := range []int{1, 2, 3, 8} {
			for _, flavor := range []dataFlavor{flavorMixed, flavorFinite, flavorSpecial} {
				srcs := make([][]byte, k)
				for i := range srcs {
					srcs[i] = flavorElems(rng, Float32, n, flavor)
				}
				want := make([]byte, 4*n)
				require.NoError(t, ReduceMany(Sum, Float32, want, srcs...))
				for name, sum := range impls {
					what := fmt.Sprintf("%s n=%d k=%d %s", name, n, k, flavor)

					got := make([]byte, 4*n)
					sum(got, srcs)
					sameSum(t, want, got, what)

					in := make([][]byte, k)
					for i := range srcs {
						in[i] = append([]byte{}, srcs[i]...)
					}
					sum(in[k-1], in)
					sameSum(t, want, in[k-1], what+", dst is the last source")

					mis := make([][]byte, k)
					for i := range srcs {
						mis[i] = misalignedCopy(srcs[i])
					}
					misDst := misalignedCopy(make([]byte, 4*n))
					sum(misDst, mis)
					sameSum(t, want, misDst, what+", misaligned")
				}
			}
		}
	}
}

// TestSumFloat32SmallChecksMemory shows that SumFloat32Small, which validates nothing else,
// panics rather than read past a short source, and leaves a trailing partial element alone.
func TestSumFloat32SmallChecksMemory(t *testing.T) {
	assert.Panics(t, func() { SumFloat32Small(make([]byte, 8), nil) }, "no sources")
	assert.Panics(t, func() {
		SumFloat32Small(make([]byte, 8), [][]byte{make([]byte, 8), make([]byte, 4)})
	}, "a source shorter than dst")
	one := math.Float32bits(1)
	src := binary.LittleEndian.AppendUint32(nil, one)
	dst := []byte{0, 0, 0, 0, 0xAA, 0xBB}
	SumFloat32Small(dst, [][]byte{src, src})
	assert.Equal(t, math.Float32bits(2), binary.LittleEndian.Uint32(dst), "the whole element")
	assert.Equal(t, []byte{0xAA, 0xBB}, dst[4:], "the partial element is not written")
}

// sameSum requires got to hold want's float32 bits, but for a NaN, any NaN.
func sameSum(t *testing.T, want, got []byte, what string) {
	t.Helper()
	require.Len(t, got, len(want), what)
	for i := 0; i < len(want); i += 4 {
		w := math.Float32frombits(binary.LittleEndian.Uint32(want[i:]))
		g := math.Float32frombits(binary.LittleEndian.Uint32(got[i:]))
		if math.IsNaN(float64(w)) && math.IsNaN(float64(g)) {
			continue
		}
		require.Equalf(t, want[i:i+4], got[i:i+4], "%s: element %d", what, i/4)
	}
}

// TestReduceManyHalfAccumulatesInFloat32 shows that ReduceMany keeps a float32 accumulator across
// all sources: adding many values below half an ulp of the running sum is lost with a rounding to
// the 16-bit format after every step, but not in ReduceMany.
func TestReduceManyHalfAccumulatesInFloat32(t *testing.T) {
	tests := []struct {
		dt    DType
		small float64 // a quarter ulp of 1.0 in dt
		count int     // count*small = 0.25 or 0.5, exactly representable
		want  float64
	}{
		{BFloat16, 0x1p-9, 256, 1.5},
		{Float16, 0x1p-12, 1024, 1.25},
	}
	for _, tc := range tests {
		t.Run(tc.dt.String(), func(t *testing.T) {
			one, err := FromFloat64s(tc.dt, []float64{1})
			require.NoError(t, err)
			small, err := FromFloat64s(tc.dt, []float64{tc.small})
			require.NoError(t, err)
			srcs := [][]byte{one.Bytes()}
			for range tc.count {
				srcs = append(srcs, small.Bytes())
			}

			acc := New(tc.dt, 1)
			require.NoError(t, ReduceMany(Sum, tc.dt, acc.Bytes(), srcs...))
			assert.Equal(t, tc.want, acc.Float(0), "float32 accumulation")

			// Step-by-step, each partial sum rounded to dt: 1 + small rounds back to 1 every time.
			step := one.Clone()
			for _, s := range srcs[1:] {
				require.NoError(t, ReduceInto(Sum, tc.dt, step.Bytes(), s))
			}
			assert.Equal(t, 1.0, step.Float(0), "rounding after every step loses the small values")
		})
	}
}

func TestMinMaxSpecialValues(t *testing.T) {
	nan, inf, negZero := math.NaN(), math.Inf(1), math.Copysign(0, -1)
	tests := []struct {
		op      ReduceOp
		a, b    float64
		want    float64
		wantNeg bool // sign bit of want, for zeros
	}{
		{Min, negZero, 0, negZero, true},
		{Min, 0, negZero, negZero, true},
		{Max, negZero, 0, 0, false},
		{Max, 0, negZero, 0, false},
		{Min, negZero, negZero, negZero, true},
		{Max, negZero, negZero, negZero, true},
		{Min, nan, 1, nan, false},
		{Min, 1, nan, nan, false},
		{Max, nan, -inf, nan, false},
		{Max, inf, nan, nan, false},
		{Min, -inf, 3, -inf, true},
		{Max, -inf, inf, inf, false},
		{Min, 2, 3, 2, false},
		{Max, -2, -3, -2, true},
	}
	for _, dt := range []DType{Float32, Float64, Float16, BFloat16} {
		for _, tc := range tests {
			name := fmt.Sprintf("%s/%s(%v,%v)", dt, tc.op, tc.a, tc.b)
			a, err := FromFloat64s(dt, []float64{tc.a})
			require.NoError(t, err)
			b, err := FromFloat64s(dt, []float64{tc.b})
			require.NoError(t, err)
			require.NoError(t, ReduceInto(tc.op, dt, a.Bytes(), b.Bytes()), name)
			got := a.Float(0)
			if math.IsNaN(tc.want) {
				assert.True(t, math.IsNaN(got), name)
				continue
			}
			assert.Equal(t, tc.want, got, name)
			assert.Equal(t, tc.wantNeg, math.Signbit(got), name+": sign")
		}
	}
}

// TestMinMaxCommutativeBitwise checks min(a,b) and min(b,a) give the same bits on random values,
// NaNs with different payloads and signed zeros included.
func TestMinMaxCommutativeBitwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	nans32 := []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0x7fc00123, 0xff812345}
	for _, dt := range []DType{Float32, Float64, Float16, BFloat16} {
		for _, op := range []ReduceOp{Min, Max} {
			n := 4096
			a, b := randElems(rng, dt, n), randElems(rng, dt, n)
			// Force plenty of NaN/NaN and zero/zero pairs.
			for i := 0; i < n; i += 5 {
				for j, buf := range [][]byte{a, b} {
					e := buf[i*dt.Size() : (i+1)*dt.Size()]
					switch dt {
					case Float32:
						binary.LittleEndian.PutUint32(e, nans32[(i+j)%len(nans32)])
					case Float64:
						binary.LittleEndian.PutUint64(e, 0x7ff8000000000000|uint64(i+j)<<uint(j*60%63))
					default:
						binary.LittleEndian.PutUint16(e, uint16(0x7e00|(i+j)%64|j<<15))
					}
				}
			}
			for i := 2; i < n; i += 7 {
				encodeFloat(dt, a[i*dt.Size():], 0)
				encodeFloat(dt, b[i*dt.Size():], math.Copysign(0, -1))
			}
			ab, ba := append([]byte{}, a...), append([]byte{}, b...)
			require.NoError(t, ReduceInto(op, dt, ab, b))
			require.NoError(t, ReduceInto(op, dt, ba, a))
			assert.Equalf(t, ab, ba, "%s %s not commutative bit for bit", op, dt)
		}
	}
}

func TestBoolSemantics(t *testing.T) {
	pairs := [][2]byte{{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 0}, {0, 255}, {2, 4}}
	tests := []struct {
		op   ReduceOp
		want []byte // for each pair; non-zero bytes are true, results are 0/1
	}{
		{Sum, []byte{0, 1, 1, 1, 1, 1, 1}},
		{Max, []byte{0, 1, 1, 1, 1, 1, 1}},
		{BOr, []byte{0, 1, 1, 1, 1, 1, 1}},
		{Product, []byte{0, 0, 0, 1, 0, 0, 1}},
		{Min, []byte{0, 0, 0, 1, 0, 0, 1}},
		{BAnd, []byte{0, 0, 0, 1, 0, 0, 1}},
		{BXor, []byte{0, 1, 1, 0, 1, 1, 0}},
	}
	for _, tc := range tests {
		dst := make([]byte, len(pairs))
		src := make([]byte, len(pairs))
		for i, p := range pairs {
			dst[i], src[i] = p[0], p[1]
		}
		require.NoError(t, ReduceInto(tc.op, Bool, dst, src))
		assert.Equal(t, tc.want, dst, tc.op.String())
	}
	assert.ErrorIs(t, ReduceInto(Avg, Bool, []byte{1}, []byte{1}), ErrUnsupported)
	assert.ErrorIs(t, ReduceInto(PreMulSum, Bool, []byte{1}, []byte{1}), ErrUnsupported)
}

func TestIntegerWraparound(t *testing.T) {
	tests := []struct {
		op   ReduceOp
		dt   DType
		a, b int64
		want int64
	}{
		{Sum, Int8, 127, 1, -128},
		{Sum, Int8, -128, -1, 127},
		{Sum, Uint8, 255, 1, 0},
		{Sum, Uint8, 200, 100, 44},
		{Sum, Int32, math.MaxInt32, 1, math.MinInt32},
		{Sum, Int64, math.MaxInt64, 1, math.MinInt64},
		{Product, Int8, 16, 16, 0},
		{Product, Int8, 100, 3, 44},
		{Product, Uint8, 16, 17, 16},
		{Product, Int32, 1 << 16, 1 << 16, 0},
		{Product, Int64, math.MaxInt64, 2, -2},
		{Avg, Int32, math.MaxInt32, math.MaxInt32, -2}, // AVG sums here; the caller divides
		{Min, Uint8, 255, 0, 0},
		{Min, Int8, -128, 127, -128},
		{Max, Int64, math.MinInt64, math.MaxInt64, math.MaxInt64},
		{BAnd, Int32, 0b1100, 0b1010, 0b1000},
		{BOr, Int64, 0b1100, 0b1010, 0b1110},
		{BXor, Uint8, 0b1100, 0b1010, 0b0110},
		{BXor, Int8, -1, 0x0f, -16},
	}
	for _, tc := range tests {
		a, err := FromFloat64s(tc.dt, []float64{float64(tc.a)})
		require.NoError(t, err)
		encodeInt(tc.dt, a.Bytes(), tc.a) // exact, even for int64 extremes
		b := New(tc.dt, 1)
		encodeInt(tc.dt, b.Bytes(), tc.b)
		require.NoError(t, ReduceInto(tc.op, tc.dt, a.Bytes(), b.Bytes()))
		assert.Equalf(t, tc.want, decodeInt(tc.dt, a.Bytes()), "%s %s(%d, %d)", tc.dt, tc.op, tc.a, tc.b)
	}
}

func TestCheckReduce(t *testing.T) {
	for _, dt := range AllDTypes() {
		for _, op := range AllReduceOps() {
			err := CheckReduce(op, dt)
			wantErr := dt.isFloat8() ||
				(op.isBitwise() && dt.IsFloat()) ||
				(dt == Bool && (op == Avg || op == PreMulSum))
			name := op.String() + "/" + dt.String()
			if !wantErr {
				assert.NoError(t, err, name)
				continue
			}
			require.Error(t, err, name)
			assert.ErrorIs(t, err, ErrUnsupported, name)
			assert.Contains(t, err.Error(), op.String(), name)
			assert.Contains(t, err.Error(), dt.String(), name)

			// The kernels refuse the same pairs, and leave dst alone.
			dst := []byte{1, 2, 3, 4, 5, 6, 7, 8}[:dt.Size()]
			orig := append([]byte{}, dst...)
			assert.ErrorIs(t, ReduceInto(op, dt, dst, make([]byte, len(dst))), ErrUnsupported, name)
			assert.ErrorIs(t, ReduceMany(op, dt, dst, make([]byte, len(dst)), make([]byte, len(dst))), ErrUnsupported, name)
			assert.Equal(t, orig, dst, name)
		}
	}
	assert.ErrorContains(t, CheckReduce(Sum, Float8E4M3FN), "convert to bfloat16 or float32")
	assert.ErrorIs(t, CheckReduce(ReduceOp(99), Float32), ErrUnsupported)
	assert.ErrorIs(t, CheckReduce(Sum, Invalid), ErrUnsupported)
	assert.ErrorIs(t, CheckReduce(Sum, DType(200)), ErrUnsupported)
}

func TestReduceArgumentErrors(t *testing.T) {
	tests := []struct {
		name    string
		run     func() error
		wantMsg string
	}{
		{"length mismatch", func() error { return ReduceInto(Sum, Float32, make([]byte, 8), make([]byte, 4)) }, "dst has 8 bytes but src has 4"},
		{"partial element", func() error { return ReduceInto(Sum, Float32, make([]byte, 6), make([]byte, 6)) }, "not a whole number of float32 elements"},
		{"many mismatch", func() error {
			return ReduceMany(Sum, Int64, make([]byte, 16), make([]byte, 16), make([]byte, 8))
		}, "srcs[1] has 8"},
		{"no sources", func() error { return ReduceMany(Sum, Int64, make([]byte, 16)) }, "no sources"},
		{"invalid dtype", func() error { return ReduceInto(Sum, Invalid, nil, nil) }, "invalid dtype"},
	}
	for _, tc := range tests {
		err := tc.run()
		require.Error(t, err, tc.name)
		assert.ErrorContains(t, err, tc.wantMsg, tc.name)
		assert.Contains(t, err.Error(), "tensor: ", tc.name)
	}
}

func TestScale(t *testing.T) {
	tests := []struct {
		dt     DType
		in     []float64
		factor float64
		want   []float64
	}{
		{Float32, []float64{1, -2, 0.5, 3}, 0.25, []float64{0.25, -0.5, 0.125, 0.75}},
		{Float64, []float64{1, -2, math.Inf(1)}, -2, []float64{-2, 4, math.Inf(-1)}},
		{Float16, []float64{1, 2, 65504}, 0.5, []float64{0.5, 1, 32752}},
		{BFloat16, []float64{1, 3}, 1.0 / 3, []float64{float64(BFloat16ToFloat32(Float32ToBFloat16(1.0 / 3))), 1}},
		{Int32, []float64{7, -7, 10}, 0.5, []float64{3, -3, 5}}, // toward zero
		{Int8, []float64{100, -100}, 2, []float64{-56, 56}},     // wraps
		{Uint8, []float64{255, 10}, 0.9, []float64{229, 9}},
		{Int64, []float64{1 << 40, -3}, 1.5, []float64{3 << 39, -4}},
	}
	for _, tc := range tests {
		for _, misaligned := range []bool{false, true} {
			x, err := FromFloat64s(tc.dt, tc.in)
			require.NoError(t, err)
			buf := x.Bytes()
			if misaligned {
				buf = misalignedCopy(buf)
			}
			require.NoError(t, Scale(tc.dt, buf, tc.factor))
			got, err := FromBytes(tc.dt, buf)
			require.NoError(t, err)
			assert.Equalf(t, tc.want, got.Float64s(), "%s × %v", tc.dt, tc.factor)
		}
	}
	assert.ErrorIs(t, Scale(Bool, []byte{1}, 2), ErrUnsupported)
	assert.ErrorIs(t, Scale(Float8E5M2, []byte{1}, 2), ErrUnsupported)
	assert.ErrorContains(t, Scale(Int32, make([]byte, 4), math.NaN()), "not finite")
	assert.ErrorContains(t, Scale(Int32, make([]byte, 5), 1), "whole number")
}

func TestDivideBy(t *testing.T) {
	tests := []struct {
		dt   DType
		in   []float64
		n    int
		want []float64
	}{
		{Float32, []float64{1, -3, 6}, 3, []float64{float64(float32(1.0 / 3)), -1, 2}},
		{Float64, []float64{1, 10}, 4, []float64{0.25, 2.5}},
		{Float16, []float64{1, 3}, 3, []float64{float64(Float16ToFloat32(Float32ToFloat16(1.0 / 3))), 1}},
		{BFloat16, []float64{1, 256}, 2, []float64{0.5, 128}},
		{Int32, []float64{7, -7, 9}, 2, []float64{3, -3, 4}}, // truncating
		{Int8, []float64{-128, 127}, 3, []float64{-42, 42}},
		{Uint8, []float64{255, 7}, 2, []float64{127, 3}},
		{Int64, []float64{-9, 9}, 4, []float64{-2, 2}},
		{Int8, []float64{-128, 5}, 1000, []float64{0, 0}},
	}
	for _, tc := range tests {
		for _, misaligned := range []bool{false, true} {
			x, err := FromFloat64s(tc.dt, tc.in)
			require.NoError(t, err)
			buf := x.Bytes()
			if misaligned {
				buf = misalignedCopy(buf)
			}
			require.NoError(t, DivideBy(tc.dt, buf, tc.n))
			got, err := FromBytes(tc.dt, buf)
			require.NoError(t, err)
			assert.Equalf(t, tc.want, got.Float64s(), "%s / %d", tc.dt, tc.n)
		}
	}
	assert.ErrorIs(t, DivideBy(Bool, []byte{1}, 2), ErrUnsupported)
	assert.ErrorIs(t, DivideBy(Float8E4M3FN, []byte{1}, 2), ErrUnsupported)
	assert.ErrorContains(t, DivideBy(Float32, make([]byte, 4), 0), "at least 1")
}

// TestDivideByCorrectlyRounded compares float division with a correctly rounded reference on
// random bit patterns (subnormals, infinities and NaNs included), for divisors that are powers of
// two (a multiplication by the exact reciprocal) and others (a division).
func TestDivideByCorrectlyRounded(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, dt := range []DType{Float32, Float64, Float16, BFloat16} {
		for _, n := range []int{2, 3, 4, 7, 8, 10, 64} {
			in := randElems(rng, dt, 20000)
			buf := append([]byte{}, in...)
			require.NoError(t, DivideBy(dt, buf, n))
			for i := 0; i < len(in); i += dt.Size() {
				x := decodeFloat(dt, in[i:])
				want := make([]byte, dt.Size())
				encodeFloat(dt, want, x/float64(n)) // float64 quotient, rounded once
				if isNaNElem(dt, want) {
					assert.True(t, isNaNElem(dt, buf[i:]))
					continue
				}
				require.Equalf(t, want, buf[i:i+dt.Size()], "%s: %v / %d", dt, x, n)
			}
		}
	}
}

// TestHalfPathsAgree checks that ReduceInto's single-pass loops for float16 and bfloat16 (aligned
// buffers) give the same bits as the block path through a float32 accumulator (misaligned
// buffers), for every bit pattern against random partners and for every op.
func TestHalfPathsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, dt := range []DType{Float16, BFloat16} {
		for _, op := range []ReduceOp{Sum, Product, Min, Max} {
			dst := make([]byte, 2<<16)
			for h := range 1 << 16 {
				binary.LittleEndian.PutUint16(dst[2*h:], uint16(h))
			}
			src := randElems(rng, dt, 1<<16)
			// Also pair every pattern with itself and with its negation.
			for h := 0; h < 1<<16; h += 3 {
				copy(src[2*h:2*h+2], dst[2*h:2*h+2])
				src[2*h+1] ^= 0x80 * byte(h%2)
			}
			fast := append([]byte{}, dst...)
			require.NoError(t, ReduceInto(op, dt, fast, src))
			slow := misalignedCopy(dst)
			require.NoError(t, ReduceInto(op, dt, slow, misalignedCopy(src)))
			for i := 0; i < len(fast); i += 2 {
				if fast[i] != slow[i] || fast[i+1] != slow[i+1] {
					if op == Sum || op == Product { // NaN payloads of arithmetic may differ
						require.True(t, isNaNElem(dt, fast[i:]) && isNaNElem(dt, slow[i:]),
							"%s %s element %d: %x vs %x", dt, op, i/2, fast[i:i+2], slow[i:i+2])
						continue
					}
					require.Failf(t, "paths differ", "%s %s element %d: %x vs %x", dt, op, i/2, fast[i:i+2], slow[i:i+2])
				}
			}
		}
	}
}

// TestCopyNonTemporal checks it against copy at every alignment of dst and src, at lengths
// around the 64-byte blocks of the non-temporal loop, with dst longer or shorter than src, and
// for overlapping slices; the bytes around the destination must be left alone.
func TestCopyNonTemporal(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	buf := make([]byte, 1<<16)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	lengths := []int{0, 1, 31, 63, 64, 65, 95, 127, 128, 129, 200, 1000, 4096 + 17, 40000}
	for _, n := range lengths {
		for dOff := range 64 {
			for _, sOff := range []int{0, 1, 8, 33} {
				for _, extra := range []int{0, 5, -1} {
					m := max(n+extra, 0)
					src := buf[sOff : sOff+n]
					got := make([]byte, m+128)
					want := make([]byte, m+128)
					for i := range got {
						got[i], want[i] = 0xA5, 0xA5
					}
					wn := copy(want[dOff:dOff+m], src)
					gn := CopyNonTemporal(got[dOff:dOff+m], src)
					if gn != wn || string(got) != string(want) {
						t.Fatalf("len %d, dst offset %d (len %d), src offset %d: copied %d, want %d; bytes differ: %v",
							n, dOff, m, sOff, gn, wn, string(got) != string(want))
					}
				}
			}
		}
	}
	// Overlapping: as copy (memmove) does.
	for _, shift := range []int{-100, -1, 1, 64, 100} {
		got := append([]byte(nil), buf[:5000]...)
		want := append([]byte(nil), buf[:5000]...)
		copy(want[1000+shift:4000+shift], want[1000:4000])
		CopyNonTemporal(got[1000+shift:4000+shift], got[1000:4000])
		require.Equal(t, want, got, "overlap shift %d", shift)
	}
}
