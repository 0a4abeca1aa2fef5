package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of the SIMD kernels (simd.go): every level the CPU supports must give the same bits as the
// pure-Go path (levelGo), which the other kernel tests check against an independent reference.

// useLevel switches ReduceInto and ReduceMany to level l until the test ends.
func useLevel(tb testing.TB, l isaLevel) {
	tb.Helper()
	old := simdLevel
	simdLevel = l
	tb.Cleanup(func() { simdLevel = old })
}

// simdOnly returns the SIMD levels of this CPU, skipping the test if there are none.
func simdOnly(t *testing.T) []isaLevel {
	t.Helper()
	if len(simdLevels) < 2 {
		t.Skipf("no SIMD kernels on this platform (levels %v)", simdLevels)
	}
	return simdLevels[1:]
}

// dataFlavor shapes the random operands of a comparison.
type dataFlavor int

const (
	flavorMixed   dataFlavor = iota // randElems: NaNs with payloads, ±Inf, ±0, subnormals, extremes
	flavorFinite                    // no NaN: the kernels' uninterrupted path
	flavorSpecial                   // few distinct special values: ties, ±0 pairs, equal operands
)

func (f dataFlavor) String() string { return [...]string{"mixed", "finite", "special"}[f] }

// specialBits returns a small set of bit patterns of dt full of edge cases.
func specialBits(dt DType) []uint64 {
	switch dt {
	case Float32:
		return []uint64{0, 0x80000000, 0x3f800000, 0xbf800000, 0x7f800000, 0xff800000, 1, 0x80000001,
			0x7f7fffff, 0x00800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x3f800001}
	case Float64:
		return []uint64{0, 1 << 63, 0x3ff0000000000000, 0xbff0000000000000, 0x7ff0000000000000,
			0xfff0000000000000, 1, 1<<63 | 1, 0x7ff8000000000000, 0xfff8000000000123, 0x7ff0000000000001}
	case Float16:
		return []uint64{0, 0x8000, 0x3c00, 0xbc00, 0x7c00, 0xfc00, 1, 0x8001, 0x7bff, 0x0400, 0x7e00, 0xfe01, 0x7c01, 0x3c01}
	case BFloat16:
		return []uint64{0, 0x8000, 0x3f80, 0xbf80, 0x7f80, 0xff80, 1, 0x8001, 0x7f7f, 0x0080, 0x7fc0, 0xffc1, 0x7f81, 0x3f81}
	case Bool:
		return []uint64{0, 1, 2, 255}
	}
	return []uint64{0, 1, math.MaxUint64, 1 << 63, 1<<63 - 1, 0x80, 0x7f, 0xff, 1 << 31, 1<<31 - 1}
}

// flavorElems returns n random elements of dt shaped by flavor.
func flavorElems(rng *rand.Rand, dt DType, n int, flavor dataFlavor) []byte {
	b := randElems(rng, dt, n)
	size := dt.Size()
	switch flavor {
	case flavorFinite:
		for i := 0; i < len(b); i += size {
			for isNaNElem(dt, b[i:]) {
				encodeFloat(dt, b[i:], rng.NormFloat64())
			}
		}
	case flavorSpecial:
		sp := specialBits(dt)
		for i := 0; i < len(b); i += size {
			v := sp[rng.IntN(len(sp))]
			for j := range size {
				b[i+j] = byte(v >> (8 * j))
			}
		}
	}
	return b
}

// misalignBy returns a copy of b that starts off bytes past an address aligned to 64 bytes.
func misalignBy(b []byte, off int) []byte {
	buf := alloc(len(b) + off + 64)
	pad := int(-uintptr(ptrOf(buf)) & 63)
	out := buf[pad+off : pad+off+len(b)]
	copy(out, b)
	return out
}

// callMode is how compareLevels calls the kernels.
type callMode int

const (
	modeInto      callMode = iota // ReduceInto(srcs[0], srcs[1])
	modeMany                      // ReduceMany into a separate dst
	modeManyAlias                 // ReduceMany into the last source
)

func (m callMode) String() string {
	return [...]string{"ReduceInto", "ReduceMany", "ReduceMany(dst=last src)"}[m]
}

// compareLevels runs ReduceInto or ReduceMany (see callMode) at level lv and at levelGo on copies
// of srcs that start dstOff and other bytes past a 64-byte boundary, and fails unless the results
// are the same bits.
func compareLevels(t *testing.T, lv isaLevel, op ReduceOp, dt DType, srcs [][]byte, dstOff int, mode callMode) {
	t.Helper()
	run := func(l isaLevel) []byte {
		simdLevel = l
		cp := make([][]byte, len(srcs))
		for i, s := range srcs {
			cp[i] = misalignBy(s, (dstOff+3*i+1)%8)
		}
		var dst []byte
		switch mode {
		case modeInto:
			cp[0] = misalignBy(srcs[0], dstOff)
			require.NoError(t, ReduceInto(op, dt, cp[0], cp[1]))
			dst = cp[0]
		case modeMany:
			dst = misalignBy(make([]byte, len(srcs[0])), dstOff)
			require.NoError(t, ReduceMany(op, dt, dst, cp...))
		case modeManyAlias:
			dst = cp[len(cp)-1]
			require.NoError(t, ReduceMany(op, dt, dst, cp...))
		}
		return append([]byte{}, dst...)
	}
	old := simdLevel
	defer func() { simdLevel = old }()
	want, got := run(levelGo), run(lv)
	if string(got) == string(want) {
		return
	}
	size := dt.Size()
	for i := 0; i < len(got); i += size {
		if string(got[i:i+size]) != string(want[i:i+size]) {
			ops := make([]string, len(srcs))
			for j, s := range srcs {
				ops[j] = fmt.Sprintf("%x", s[i:i+size])
			}
			require.Failf(t, "SIMD and Go differ", "%s %s %s %s k=%d n=%d dstOff=%d element %d: %s got %x, Go %x; operands (little-endian) %v",
				lv, op, dt, mode, len(srcs), len(got)/size, dstOff, i/size, lv, got[i:i+size], want[i:i+size], ops)
		}
	}
}

// TestSIMDMatchesGo compares every SIMD kernel with the pure-Go path, bit for bit, on every
// supported (op, dtype) pair, lengths 0 to 300 and a few large ones, misaligned buffers, 2 to 20
// sources and several data flavors.
func TestSIMDMatchesGo(t *testing.T) {
	levels := simdOnly(t)
	rng := rand.New(rand.NewPCG(21, 22))
	lengths := []int{1000, 4096 + 7}
	if !testing.Short() && !raceEnabled {
		lengths = append(lengths, 1<<16+13)
	}
	for n := range 301 {
		if n <= 70 || (!testing.Short() && !raceEnabled) {
			lengths = append(lengths, n)
		}
	}
	for _, lv := range levels {
		for _, p := range supportedPairs() {
			op, dt := ReduceOp(p[0]), DType(p[1])
			t.Run(fmt.Sprintf("%s/%s/%s", lv, op, dt), func(t *testing.T) {
				for _, n := range lengths {
					flavor := dataFlavor(n % 3)
					dstOff := n % 8
					pair := [][]byte{flavorElems(rng, dt, n, flavor), flavorElems(rng, dt, n, flavor)}
					compareLevels(t, lv, op, dt, pair, dstOff, modeInto)
					k := []int{2, 3, 5, 8}[n%4]
					if n%50 == 0 {
						k = 17 + n%4 // beyond the AVX2 tail's stack scratch
					}
					srcs := make([][]byte, k)
					for i := range srcs {
						srcs[i] = flavorElems(rng, dt, n, flavor)
					}
					mode := modeMany
					if n%5 == 0 {
						mode = modeManyAlias
					}
					compareLevels(t, lv, op, dt, srcs, dstOff, mode)
				}
			})
		}
	}
}

// TestSIMDHalfAllPatterns compares the float16 and bfloat16 kernels with the Go path for every
// bit pattern against random partners, itself, its negation, -0 (SUM's identity) and 1
// (PRODUCT's), for ReduceInto and three-source ReduceMany.
func TestSIMDHalfAllPatterns(t *testing.T) {
	levels := simdOnly(t)
	rng := rand.New(rand.NewPCG(23, 24))
	for _, lv := range levels {
		for _, dt := range []DType{Float16, BFloat16} {
			for _, op := range []ReduceOp{Sum, Product, Min, Max} {
				t.Run(fmt.Sprintf("%s/%s/%s", lv, op, dt), func(t *testing.T) {
					all := make([]byte, 2<<16)
					for h := range 1 << 16 {
						binary.LittleEndian.PutUint16(all[2*h:], uint16(h))
					}
					one, negZero := Float32ToFloat16(1), uint16(0x8000)
					if dt == BFloat16 {
						one = Float32ToBFloat16(1)
					}
					partners := [][]byte{randElems(rng, dt, 1<<16), flavorElems(rng, dt, 1<<16, flavorFinite),
						append([]byte{}, all...), make([]byte, 2<<16), make([]byte, 2<<16), make([]byte, 2<<16)}
					for h := range 1 << 16 {
						binary.LittleEndian.PutUint16(partners[3][2*h:], uint16(h)^0x8000)
						binary.LittleEndian.PutUint16(partners[4][2*h:], negZero)
						binary.LittleEndian.PutUint16(partners[5][2*h:], one)
					}
					for i, p := range partners {
						compareLevels(t, lv, op, dt, [][]byte{all, p}, i%3, modeInto)
						compareLevels(t, lv, op, dt, [][]byte{p, all, partners[(i+1)%len(partners)]}, 0, modeMany)
					}
				})
			}
		}
	}
}

// TestSIMDIdentities checks the widening and narrowing of float16 and bfloat16 in the kernels on
// their own: x + (-0) and x × 1 must give back every non-NaN bit pattern x unchanged.
func TestSIMDIdentities(t *testing.T) {
	for _, lv := range simdLevels {
		useLevel(t, lv)
		for _, dt := range []DType{Float16, BFloat16} {
			one := Float32ToFloat16(1)
			if dt == BFloat16 {
				one = Float32ToBFloat16(1)
			}
			for _, tc := range []struct {
				op      ReduceOp
				partner uint16
			}{{Sum, 0x8000}, {Product, one}} {
				x := make([]byte, 2<<16)
				p := make([]byte, 2<<16)
				for h := range 1 << 16 {
					binary.LittleEndian.PutUint16(x[2*h:], uint16(h))
					binary.LittleEndian.PutUint16(p[2*h:], tc.partner)
				}
				orig := append([]byte{}, x...)
				require.NoError(t, ReduceInto(tc.op, dt, x, p))
				for h := range 1 << 16 {
					if isNaNElem(dt, orig[2*h:]) {
						require.Truef(t, isNaNElem(dt, x[2*h:]), "%s %s %s: NaN %#04x lost", lv, dt, tc.op, h)
						continue
					}
					require.Equalf(t, orig[2*h:2*h+2], x[2*h:2*h+2], "%s %s %s %#04x", lv, dt, tc.op, h)
				}
			}
		}
	}
}

// TestSIMDManySources checks the fused ReduceMany against ReduceInto step by step for float32 SUM
// (((s0+s1)+s2)+...), the order the shm backend relies on, and against the Go path for bfloat16
// (one rounding at the end).
func TestSIMDManySources(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for _, lv := range simdLevels {
		useLevel(t, lv)
		for _, k := range []int{2, 3, 8, 16, 17, 33} {
			n := 2048 + k
			srcs := make([][]byte, k)
			for i := range srcs {
				srcs[i] = flavorElems(rng, Float32, n, flavorFinite)
			}
			step := append([]byte{}, srcs[0]...)
			for _, s := range srcs[1:] {
				require.NoError(t, ReduceInto(Sum, Float32, step, s))
			}
			got := make([]byte, len(step))
			require.NoError(t, ReduceMany(Sum, Float32, got, srcs...))
			require.Equalf(t, step, got, "%s k=%d", lv, k)
		}
	}
}

// TestReduceNoAllocs checks that the kernels do not allocate, whatever the path.
func TestReduceNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes escape analysis")
	}
	rng := rand.New(rand.NewPCG(27, 28))
	for _, lv := range simdLevels {
		useLevel(t, lv)
		for _, dt := range []DType{Float32, BFloat16, Float16, Int32} {
			for _, n := range []int{5, 100, 1000} {
				dst, src := randElems(rng, dt, n), flavorElems(rng, dt, n, flavorFinite)
				srcs := make([][]byte, 16)
				for i := range srcs {
					srcs[i] = src
				}
				withNaNs := append(srcs[:15:15], randElems(rng, dt, n)) // the kernels stop
				allocs := testing.AllocsPerRun(20, func() {
					_ = ReduceInto(Sum, dt, dst, src)
					_ = ReduceMany(Max, dt, dst, srcs[:4]...)
					_ = ReduceMany(Sum, dt, dst, srcs[:8]...)
					_ = ReduceMany(Sum, dt, dst, withNaNs...)
				})
				assert.Zerof(t, allocs, "%s %s n=%d", lv, dt, n)
			}
		}
	}
}

// FuzzSIMDMatchesGo compares every SIMD level with the Go path on arbitrary bytes, ops, dtypes,
// source counts and misalignments.
func FuzzSIMDMatchesGo(f *testing.F) {
	f.Add(uint8(Sum), uint8(BFloat16), uint8(2), uint8(0), []byte{0xc0, 0x7f, 0x80, 0x3f, 0, 0x80, 0, 0, 1, 2, 3, 4})
	f.Add(uint8(Max), uint8(Float32), uint8(3), uint8(1), []byte{0, 0, 0xc0, 0x7f, 0, 0, 0, 0x80, 0, 0, 0, 0})
	f.Add(uint8(Min), uint8(Float16), uint8(2), uint8(5), []byte{0, 0x80, 0, 0, 0, 0x7e, 0, 0x7c})
	f.Add(uint8(Product), uint8(Int64), uint8(2), uint8(3), make([]byte, 48))
	f.Add(uint8(BXor), uint8(Bool), uint8(4), uint8(2), []byte{1, 0, 2, 1, 3, 0, 0, 9})
	f.Fuzz(func(t *testing.T, opByte, dtByte, kByte, offByte uint8, data []byte) {
		if len(simdLevels) < 2 {
			t.Skip("no SIMD kernels on this platform")
		}
		op := ReduceOp(opByte % uint8(numReduceOps))
		dt := DType(1 + dtByte%uint8(numDTypes-1))
		if CheckReduce(op, dt) != nil {
			return
		}
		k := 2 + int(kByte%7)
		size := dt.Size()
		n := len(data) / k / size
		srcs := make([][]byte, k)
		for i := range srcs {
			srcs[i] = data[i*n*size : (i+1)*n*size]
		}
		for _, lv := range simdLevels[1:] {
			compareLevels(t, lv, op, dt, srcs[:2], int(offByte%8), modeInto)
			compareLevels(t, lv, op, dt, srcs, int(offByte/8%8), callMode(1+offByte/64%2))
		}
	})
}

// ptrOf returns the address of b's first element.
func ptrOf(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// TestScaleFloat32MatchesGo compares the SIMD scaling of float32 (Scale, and DivideBy: by a
// float32 factor in float32, by anything else through float64) with the scalar reference,
// float32(float64(x)·f) or float32(float64(x)/d), bit for bit, NaN payloads included, at every
// level this CPU has.
func TestScaleFloat32MatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	lengths := []int{4099}
	for n := range 80 {
		lengths = append(lengths, n)
	}
	type kernel struct {
		name string
		run  func(v []float32)
		want func(x float32) float32
	}
	var kernels []kernel
	for _, r := range []float32{0.5, 0.125, 3, -1.5, 1e-30, 1e30, float32(math.Inf(1)), 0} {
		kernels = append(kernels, kernel{fmt.Sprintf("scale32 %g", r),
			func(v []float32) { scaleFloat32(v, r) },
			func(x float32) float32 { return float32(float64(x) * float64(r)) }})
	}
	for _, f := range []float64{0.1, 1.0 / 3, -2.5e-40, 1e300, 1e-300, math.Inf(-1)} {
		kernels = append(kernels, kernel{fmt.Sprintf("scale64 %g", f),
			func(v []float32) { scaleFloat32By64(v, f) },
			func(x float32) float32 { return float32(float64(x) * f) }})
	}
	for _, d := range []float64{3, 5, 6, 7, 1e-300} {
		kernels = append(kernels, kernel{fmt.Sprintf("divide %g", d),
			func(v []float32) { divideFloat32(v, d) },
			func(x float32) float32 { return float32(float64(x) / d) }})
	}
	for _, lv := range simdLevels {
		t.Run(lv.String(), func(t *testing.T) {
			useLevel(t, lv)
			for _, n := range lengths {
				for _, flavor := range []dataFlavor{flavorMixed, flavorSpecial} {
					src := flavorElems(rng, Float32, n, flavor)
					for _, k := range kernels {
						got := as[float32](append([]byte{}, src...))
						k.run(got)
						for i, x := range as[float32](src) {
							if want := k.want(x); math.Float32bits(want) != math.Float32bits(got[i]) {
								t.Fatalf("%s, n=%d %s: element %d (%#x): got %#x, want %#x", k.name, n, flavor, i,
									math.Float32bits(x), math.Float32bits(got[i]), math.Float32bits(want))
							}
						}
					}
				}
			}
		})
	}
}
