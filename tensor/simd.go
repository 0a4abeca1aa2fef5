package tensor

// SIMD reduction kernels.
//
// ReduceInto and ReduceMany first offer their work to reduceSIMD, which runs assembly kernels
// where the CPU and the (op, dtype) pair allow, and otherwise fall back to the pure-Go kernels in
// kernels.go. The pure-Go kernels are the reference: a SIMD kernel gives the same bits for every
// input, NaN payloads included, and leaves to the Go code the rare elements where the reference
// semantics would be awkward in SIMD (see reduce_amd64.s's generator, internal/asmgen).
//
// The paths, chosen once at init by CPU feature (golang.org/x/sys/cpu):
//
//   - levelAVX512BF16 (levelAVX512 plus AVX512_BF16 and AVX512DQ): bfloat16 SUM and PRODUCT
//     round with VCVTNE2PS2BF16; otherwise the same kernels as levelAVX512;
//   - levelAVX512 (amd64 with AVX-512 F, BW and VL, plus AVX2 and F16C): 64-byte vectors, any
//     length (masked loads and stores for the last partial vector);
//   - levelAVX2 (amd64 with AVX2 and F16C): 32-byte vectors; a tail shorter than a vector goes
//     through a zero-padded scratch copy;
//   - levelGo: everything else, including every non-amd64 build and builds with the purego tag.
//
// Kernels exist for SUM (and AVG, PREMUL_SUM, which reduce like it), PRODUCT, MIN and MAX of
// float32, float64, bfloat16 and float16; SUM, MIN and MAX of int8, uint8, int32 and int64;
// PRODUCT of int32, and of int64 with AVX-512DQ; BAND, BOR and BXOR of every integer dtype (byte
// by byte); and the logical ops of bool. Every kernel reduces any number of sources in one pass,
// in source order, so ReduceInto is ReduceMany of (dst, src). The rest (PRODUCT of int8 and uint8,
// and of int64 without AVX-512DQ) stays in pure Go.
//
// bfloat16 and float16 are widened to float32, combined, and rounded once to nearest even,
// exactly as Float32ToBFloat16 and Float32ToFloat16 round: the narrowing code of every level was
// checked against them over all 2^32 float32 bit patterns (TestNarrowingExhaustive with
// GCCL_TENSOR_EXHAUSTIVE=1; by default it checks a structured sample of 4 million). Every float
// SUM and PRODUCT kernel stops before writing a NaN result, leaving that group of elements to the
// Go code, so NaN payloads are the Go code's (which of two NaN operands survives depends on the
// operand order of the scalar instructions the compiler picks, and so on the build, -race for
// one). MIN and MAX of floats stop at a NaN operand in the same way; between numbers they follow
// the package's rules (-0 below +0, commutative bit for bit) without help. levelAVX512BF16 rounds
// bfloat16 with VCVTNE2PS2BF16, which flushes denormals: those kernels also stop at a denormal
// float32 result. Data full of NaNs (or, there, denormals) therefore runs at about Go speed.
//
// Verification (simd_test.go): every kernel at every level the CPU has is compared bit for bit
// with the pure-Go path on random data (NaNs with payloads, ±Inf, ±0, subnormals, integer
// extremes), for lengths 0 to 300 and larger ones, misaligned buffers, 2 to 20 sources, and on
// every float16 and bfloat16 bit pattern; FuzzSIMDMatchesGo does the same on arbitrary bytes.
// The hand-encoded VCVTNE2PS2BF16 (the Go assembler lacks it) is checked against GNU as in
// internal/asmgen's tests.
//
// Besides the generated reductions, vector_amd64.s holds a few hand-written kernels, each with
// its portable loop as fallback and reference (tested bit for bit in kernels_test.go and
// simd_test.go): SumFloat32Small in SSE (every amd64 CPU has it, so no dispatch: it is for the
// shm backend's few-element all-reduces, where dispatch would cost more than the additions),
// float32 scaling and division (Scale, DivideBy, so Avg and PreMulSum) in AVX2, and the
// conversions between float32 and bfloat16 (AVX2) and float16 (F16C) behind To and ConvertFrom
// (tested in convert_fast_test.go).

// isaLevel is an instruction-set level of the reduction kernels.
type isaLevel uint8

// The levels, each a superset of the one before.
const (
	levelGo         isaLevel = iota
	levelAVX2                // AVX2 and F16C
	levelAVX512              // plus AVX-512 F, BW and VL
	levelAVX512BF16          // plus AVX512_BF16 and AVX512DQ: bfloat16 rounding in one instruction
	numLevels
)

func (l isaLevel) String() string {
	switch l {
	case levelGo:
		return "go"
	case levelAVX2:
		return "avx2"
	case levelAVX512:
		return "avx512"
	case levelAVX512BF16:
		return "avx512bf16"
	}
	return "unknown"
}

// simdLevel is the level ReduceInto and ReduceMany use: the best one the CPU supports. Tests and
// benchmarks lower it to run the other paths; nothing else writes it.
var simdLevel = detectLevel()

// simdLevels lists the levels this CPU can run, levelGo first.
var simdLevels = supportedLevels()
