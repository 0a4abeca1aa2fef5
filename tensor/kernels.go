package tensor

import (
	"fmt"
	"math"
	"unsafe"
)

// Reduction kernels on raw little-endian element bytes.
//
// The kernels dispatch on dtype and op once per call (or once per 4 KiB block), then run a typed
// loop. Buffers that are misaligned for their element type, and every buffer on a big-endian host,
// go through aligned scratch copies of small blocks; results are the same either way.
//
// On amd64, ReduceInto and ReduceMany first try the SIMD kernels (simd.go, reduce_amd64.s: AVX-512
// or AVX2, chosen at init), which work on the buffers in place whatever their alignment and give
// the same bits as the pure-Go code here, which stays the fallback on every other platform and the
// reference the SIMD kernels are tested against.

// checkBuf validates that buf holds whole elements of dt.
func checkBuf(fn string, dt DType, buf []byte) error {
	if !dt.Valid() {
		return fmt.Errorf("tensor: %s: %w: invalid dtype %s", fn, ErrUnsupported, dt)
	}
	if len(buf)&(dt.Size()-1) != 0 { // sizes are powers of two
		return fmt.Errorf("tensor: %s: buffer of %d bytes is not a whole number of %s elements (%d bytes each)",
			fn, len(buf), dt, dt.Size())
	}
	return nil
}

// checkPair validates the length of one source against dst; i is the source's index, or -1 for
// ReduceInto's single source.
func checkPair(fn string, dst, src []byte, i int) error {
	if len(src) != len(dst) {
		if i < 0 {
			return fmt.Errorf("tensor: %s: dst has %d bytes but src has %d; they must be the same length", fn, len(dst), len(src))
		}
		return fmt.Errorf("tensor: %s: dst has %d bytes but srcs[%d] has %d; they must be the same length", fn, len(dst), i, len(src))
	}
	return nil
}

// ReduceInto computes dst[i] = dst[i] op src[i] for every element of dtype dt. dst and src hold
// little-endian elements and must have the same length, a whole number of elements. dst and src
// may be the same slice, but must not otherwise overlap.
//
// Avg and PreMulSum reduce like Sum (the caller divides or scales). float16 and bfloat16 elements
// are converted to float32, combined, and rounded once back to nearest even. Integers wrap around
// on overflow. Bool bytes are read as false (0) or true (anything else) and written as 0 or 1:
// SUM and MAX are logical or, PRODUCT and MIN logical and, BAND/BOR/BXOR logical and/or/xor.
// MIN and MAX on floats return NaN if either operand is NaN, prefer -0 (MIN) and +0 (MAX) between
// zeros of both signs, and are commutative bit for bit (see ReduceMany).
//
// It returns an error, and leaves dst alone, if CheckReduce(op, dt) fails or the lengths are
// wrong.
func ReduceInto(op ReduceOp, dt DType, dst, src []byte) error {
	if err := checkReduce(op, dt); err != nil {
		return fmt.Errorf("tensor: ReduceInto: %w", err)
	}
	if err := checkBuf("ReduceInto", dt, dst); err != nil {
		return err
	}
	if err := checkPair("ReduceInto", dst, src, -1); err != nil {
		return err
	}
	if pair := [2][]byte{dst, src}; reduceSIMD(op, dt, dst, pair[:], true) {
		return nil
	}
	reduceIntoGo(op, dt, dst, src)
	return nil
}

// reduceIntoGo is ReduceInto's pure-Go path, after the checks: the reference for the SIMD kernels
// (see simd.go).
func reduceIntoGo(op ReduceOp, dt DType, dst, src []byte) {
	size := dt.Size()
	if aligned(dst, size) && aligned(src, size) {
		if dt.isHalf() {
			combineHalf(op, dt, as[uint16](dst), as[uint16](src))
		} else {
			combine(op, dt, dst, src)
		}
		return
	}
	reduceBlocks(op, dt, dst, [][]byte{dst, src})
}

// ReduceMany computes dst = srcs[0] op srcs[1] op ... op srcs[n-1] element by element, combining
// strictly in that order, so that the result is the same bit for bit on every call, whatever the
// buffers' alignment (only the payloads of NaNs made by arithmetic may differ between CPU
// architectures).
// All buffers must have the same length, a whole number of dtype dt elements, and there must be
// at least one source. dst may be the same slice as any source (typically srcs[0]) but must not
// otherwise overlap one.
//
// float16 and bfloat16 are accumulated in float32 across all sources and rounded once at the end,
// so summing many small values loses far less than repeated ReduceInto calls would. The other
// semantics are those of ReduceInto. The MIN and MAX of floats are commutative bit for bit: a NaN
// operand wins over a number (the NaN with the larger bit pattern wins if both are NaN), and
// between -0 and +0, MIN picks -0 and MAX picks +0.
//
// The work is done in 4 KiB blocks, each combined across all sources while it stays in cache.
func ReduceMany(op ReduceOp, dt DType, dst []byte, srcs ...[]byte) error {
	if err := checkReduce(op, dt); err != nil {
		return fmt.Errorf("tensor: ReduceMany: %w", err)
	}
	if err := checkBuf("ReduceMany", dt, dst); err != nil {
		return err
	}
	if len(srcs) == 0 {
		return fmt.Errorf("tensor: ReduceMany: no sources; pass at least one")
	}
	for i, s := range srcs {
		if err := checkPair("ReduceMany", dst, s, i); err != nil {
			return err
		}
	}
	if len(srcs) == 1 {
		copy(dst, srcs[0])
		return nil
	}
	if reduceSIMD(op, dt, dst, srcs, false) {
		return nil
	}
	reduceBlocks(op, dt, dst, srcs)
	return nil
}

// CopyNonTemporal copies min(len(dst), len(src)) bytes from src to dst and returns that count,
// as copy does, but on amd64 with AVX2 stores them with non-temporal stores, past this core's
// caches: for a large buffer that another core reads next (memory the ranks of a host share),
// where an ordinary copy first reads every destination line into this core's cache (taking it
// from the other core's) only to overwrite it. With the source and destination out of cache, as
// between a training step's layers, it copies 512 KiB in about half an ordinary copy's time on
// the machines this was measured on; for data this core reads again soon, copy is better.
// Overlapping slices are copied with copy.
func CopyNonTemporal(dst, src []byte) int {
	n := min(len(dst), len(src))
	if n == 0 {
		return 0
	}
	dst, src = dst[:n], src[:n]
	d, s := uintptr(unsafe.Pointer(&dst[0])), uintptr(unsafe.Pointer(&src[0]))
	if d < s+uintptr(n) && s < d+uintptr(n) {
		return copy(dst, src)
	}
	copyNonTemporal(dst, src)
	return n
}

// SumFloat32Small sets dst to the float32 sum srcs[0] + srcs[1] + ..., element by element, added
// in that order: the bits ReduceMany(Sum, Float32, dst, srcs...) gives, but that where NaNs meet
// either may come out (which one depends on the operand order of the machine's addition; one
// binary always picks the same, so ranks still agree bit for bit). It is for the few elements of
// a latency path (the shm backend's inline all-reduce), where ReduceMany's checks and kernel
// dispatch cost more than the additions: on amd64 it is SSE, four elements an instruction, with
// no dispatch. It checks only what memory safety needs: there must be at least one source, each
// at least as long as dst rounded down to a multiple of 4 bytes (else it panics, as an index out
// of range would); the last len(dst)%4 bytes of dst are left alone. dst may be one of the
// sources; any alignment.
func SumFloat32Small(dst []byte, srcs [][]byte) {
	n := len(dst) &^ 3
	_ = srcs[0]
	for _, s := range srcs {
		if len(s) < n {
			panic("tensor: SumFloat32Small: a source is shorter than dst")
		}
	}
	sumFloat32Small(dst[:n], srcs)
}

// sumFloat32SmallGo is SumFloat32Small's portable loop (after its checks), the fallback and the
// reference its SSE version is tested against.
func sumFloat32SmallGo(dst []byte, srcs [][]byte) {
	first, rest := srcs[0], srcs[1:]
	for off := 0; off+4 <= len(dst); off += 4 {
		acc := f32At(first, off)
		for _, s := range rest {
			acc += f32At(s, off)
		}
		_ = dst[off+3]
		*(*float32)(unsafe.Pointer(&dst[off])) = acc
	}
}

// scaleFloat32Go is scaleFloat32's portable loop, the fallback and the reference its SIMD
// version is tested against.
func scaleFloat32Go(v []float32, r float32) {
	for i := range v {
		v[i] *= r
	}
}

// divideFloat32Go is divideFloat32's portable loop, the fallback and the reference.
func divideFloat32Go(v []float32, d float64) {
	for i := range v {
		v[i] = float32(float64(v[i]) / d)
	}
}

// scaleFloat32By64Go is scaleFloat32By64's portable loop, the fallback and the reference.
func scaleFloat32By64Go(v []float32, f float64) {
	for i := range v {
		v[i] = float32(float64(v[i]) * f)
	}
}

// f32At is the float32 at byte offset off of b (any alignment; off+4 <= len(b), checked).
func f32At(b []byte, off int) float32 {
	_ = b[off+3]
	return *(*float32)(unsafe.Pointer(&b[off]))
}

// smallBlockBytes is the block size reduceBlocks uses for buffers of at most that size, so that
// small messages do not pay for clearing 12 KiB of stack scratch.
const smallBlockBytes = 256

// reduceBlocks computes dst = srcs[0] op srcs[1] op ... block by block, in an accumulator on the
// stack: float32 for the 16-bit floats, the dtype itself otherwise.
func reduceBlocks(op ReduceOp, dt DType, dst []byte, srcs [][]byte) {
	if len(dst) <= smallBlockBytes {
		var acc, tmp, raw [smallBlockBytes / 8]uint64
		reduceBlocksWith(op, dt, dst, srcs, asBytes(acc[:]), asBytes(tmp[:]), asBytes(raw[:]))
		return
	}
	var acc, tmp, raw scratchBlock
	reduceBlocksWith(op, dt, dst, srcs, acc.bytes(), tmp.bytes(), raw.bytes())
}

// reduceBlocksWith is reduceBlocks with aligned scratch buffers of equal size, a multiple of 8.
func reduceBlocksWith(op ReduceOp, dt DType, dst []byte, srcs [][]byte, acc, tmp, raw []byte) {
	size := dt.Size()
	if dt.isHalf() {
		per := len(acc) / 4 // elements per block: the accumulator holds float32
		n := len(dst) / 2
		for start := 0; start < n; start += per {
			end := min(n, start+per)
			b0, b1 := start*2, end*2
			a := as[float32](acc[:(end-start)*4])
			decodeHalf(dt, a, as[uint16](load(srcs[0][b0:b1], 2, raw)))
			for _, s := range srcs[1:] {
				x := as[uint16](load(s[b0:b1], 2, raw))
				if !accumulateHalf(op, dt, a, x) {
					t := as[float32](tmp[:(end-start)*4])
					decodeHalf(dt, t, x)
					combineF32(op, a, t)
				}
			}
			out := dst[b0:b1]
			if aligned(out, 2) {
				encodeHalf(dt, as[uint16](out), a)
			} else {
				w := raw[:len(out)]
				encodeHalf(dt, as[uint16](w), a)
				store(out, w, 2)
			}
		}
		return
	}
	n := len(dst)
	for b0 := 0; b0 < n; b0 += len(acc) {
		b1 := min(n, b0+len(acc))
		a := acc[:b1-b0]
		copy(a, srcs[0][b0:b1])
		if !hostLittleEndian {
			swapBytes(a, size)
		}
		for _, s := range srcs[1:] {
			combine(op, dt, a, load(s[b0:b1], size, tmp))
		}
		store(dst[b0:b1], a, size)
	}
}

// decodeHalf converts 16-bit floats of dtype dt to float32.
func decodeHalf(dt DType, dst []float32, src []uint16) {
	dst = dst[:len(src)]
	if dt == BFloat16 {
		for i, h := range src {
			dst[i] = math.Float32frombits(uint32(h) << 16)
		}
		return
	}
	for i, h := range src {
		dst[i] = Float16ToFloat32(h)
	}
}

// encodeHalf rounds float32 values to 16-bit floats of dtype dt.
func encodeHalf(dt DType, dst []uint16, src []float32) {
	dst = dst[:len(src)]
	if dt == BFloat16 {
		for i, f := range src {
			dst[i] = Float32ToBFloat16(f)
		}
		return
	}
	for i, f := range src {
		b := math.Float32bits(f)
		h, ok := float32ToFloat16Fast(b)
		if !ok {
			h = float32ToFloat16Slow(b)
		}
		dst[i] = h
	}
}

// combineHalf computes d op= s on 16-bit floats in a single pass: in float32 with one rounding, or,
// for MIN and MAX, on the bit patterns.
func combineHalf(op ReduceOp, dt DType, d, s []uint16) {
	s = s[:len(d)]
	switch {
	case op == Min || op == Max:
		// The result is one of the operands, and the bit patterns order like float32 does:
		// no conversion needed.
		inf := uint16(0x7c00)
		if dt == BFloat16 {
			inf = 0x7f80
		}
		minMax16(d, s, op == Min, inf)
	case op == Product && dt == BFloat16:
		for i := range d {
			d[i] = Float32ToBFloat16(BFloat16ToFloat32(d[i]) * BFloat16ToFloat32(s[i]))
		}
	case op == Product:
		for i := range d {
			b := math.Float32bits(Float16ToFloat32(d[i]) * Float16ToFloat32(s[i]))
			h, ok := float32ToFloat16Fast(b)
			if !ok {
				h = float32ToFloat16Slow(b)
			}
			d[i] = h
		}
	case dt == BFloat16: // SUM, AVG, PREMUL_SUM
		for i := range d {
			d[i] = Float32ToBFloat16(BFloat16ToFloat32(d[i]) + BFloat16ToFloat32(s[i]))
		}
	default:
		for i := range d {
			b := math.Float32bits(Float16ToFloat32(d[i]) + Float16ToFloat32(s[i]))
			h, ok := float32ToFloat16Fast(b)
			if !ok {
				h = float32ToFloat16Slow(b)
			}
			d[i] = h
		}
	}
}

// accumulateHalf computes acc op= s, converting s to float32, in a single pass, for the ops that
// have such a loop (SUM, AVG, PREMUL_SUM, PRODUCT). It returns false for the others.
func accumulateHalf(op ReduceOp, dt DType, acc []float32, s []uint16) bool {
	s = s[:len(acc)]
	switch {
	case op == Product && dt == BFloat16:
		for i, h := range s {
			acc[i] *= BFloat16ToFloat32(h)
		}
	case op == Product:
		for i, h := range s {
			acc[i] *= Float16ToFloat32(h)
		}
	case op != Sum && op != Avg && op != PreMulSum:
		return false
	case dt == BFloat16:
		for i, h := range s {
			acc[i] += BFloat16ToFloat32(h)
		}
	default:
		for i, h := range s {
			acc[i] += Float16ToFloat32(h)
		}
	}
	return true
}

// combine computes d op= s on aligned host-order elements of a dtype other than the 16-bit floats.
// op and dt must have passed checkReduce.
func combine(op ReduceOp, dt DType, d, s []byte) {
	switch dt {
	case Float32:
		combineF32(op, as[float32](d), as[float32](s))
	case Float64:
		combineF64(op, as[float64](d), as[float64](s))
	case Int8:
		combineInt(op, as[int8](d), as[int8](s))
	case Uint8:
		combineInt(op, d, s)
	case Int32:
		combineInt(op, as[int32](d), as[int32](s))
	case Int64:
		combineInt(op, as[int64](d), as[int64](s))
	case Bool:
		combineBool(op, d, s)
	}
}

type number interface {
	~int8 | ~uint8 | ~int32 | ~int64 | ~float32 | ~float64
}

type integer interface {
	~int8 | ~uint8 | ~int32 | ~int64
}

func combineF32(op ReduceOp, d, s []float32) {
	switch op {
	case Sum, Avg, PreMulSum:
		addSlice(d, s)
	case Product:
		mulSlice(d, s)
	case Min:
		minF32Slice(d, s)
	case Max:
		maxF32Slice(d, s)
	}
}

func combineF64(op ReduceOp, d, s []float64) {
	switch op {
	case Sum, Avg, PreMulSum:
		addSlice(d, s)
	case Product:
		mulSlice(d, s)
	case Min:
		minF64Slice(d, s)
	case Max:
		maxF64Slice(d, s)
	}
}

func combineInt[T integer](op ReduceOp, d, s []T) {
	s = s[:len(d)]
	switch op {
	case Sum, Avg, PreMulSum:
		addSlice(d, s)
	case Product:
		mulSlice(d, s)
	case Min:
		for i := range d {
			d[i] = min(d[i], s[i])
		}
	case Max:
		for i := range d {
			d[i] = max(d[i], s[i])
		}
	case BAnd:
		for i := range d {
			d[i] &= s[i]
		}
	case BOr:
		for i := range d {
			d[i] |= s[i]
		}
	case BXor:
		for i := range d {
			d[i] ^= s[i]
		}
	}
}

// b2u returns 1 for true and 0 for false.
func b2u(b bool) uint8 {
	var u uint8
	if b {
		u = 1
	}
	return u
}

func combineBool(op ReduceOp, d, s []byte) {
	s = s[:len(d)]
	switch op {
	case Sum, Max, BOr:
		for i := range d {
			d[i] = b2u(d[i]|s[i] != 0)
		}
	case Product, Min, BAnd:
		for i := range d {
			d[i] = b2u(d[i] != 0 && s[i] != 0)
		}
	case BXor:
		for i := range d {
			d[i] = b2u(d[i] != 0) ^ b2u(s[i] != 0)
		}
	}
}

func addSlice[T number](d, s []T) {
	s = s[:len(d)]
	i := 0
	for ; i+4 <= len(d); i += 4 {
		dd, ss := d[i:i+4:i+4], s[i:i+4:i+4]
		dd[0] += ss[0]
		dd[1] += ss[1]
		dd[2] += ss[2]
		dd[3] += ss[3]
	}
	for ; i < len(d); i++ {
		d[i] += s[i]
	}
}

func mulSlice[T number](d, s []T) {
	s = s[:len(d)]
	for i := range d {
		d[i] *= s[i]
	}
}

// Float MIN and MAX compare order keys, integers that sort like the floats and put -0 just below
// +0, and select without branches; NaNs, which are rare, take a branch to nanPick.

// orderKey32 maps float32 bits to an int32 with the same order for numbers: negative floats get
// their magnitude bits flipped.
func orderKey32(b uint32) int32 { return int32(b) ^ int32(uint32(int32(b)>>31)>>1) }

func orderKey64(b uint64) int64 { return int64(b) ^ int64(uint64(int64(b)>>63)>>1) }

// nanPick32 picks the result of MIN or MAX when a or b is NaN: the NaN, or of two NaNs the one
// with the larger bit pattern, so that the choice does not depend on the order of the operands.
func nanPick32(a, b uint32) uint32 {
	aNaN, bNaN := a&0x7fffffff > 0x7f800000, b&0x7fffffff > 0x7f800000
	switch {
	case aNaN && bNaN:
		return max(a, b)
	case aNaN:
		return a
	}
	return b
}

func nanPick64(a, b uint64) uint64 {
	const inf = 0x7ff0000000000000
	aNaN, bNaN := a&^(1<<63) > inf, b&^(1<<63) > inf
	switch {
	case aNaN && bNaN:
		return max(a, b)
	case aNaN:
		return a
	}
	return b
}

func minF32Slice(d, s []float32) {
	du, su := unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(d))), len(d)), unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(s))), len(s))
	minMax32(du, su, true)
}

func maxF32Slice(d, s []float32) {
	du, su := unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(d))), len(d)), unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(s))), len(s))
	minMax32(du, su, false)
}

// orderKey16 is orderKey32 for float16 and bfloat16 bits.
func orderKey16(b uint16) int16 { return int16(b) ^ int16(uint16(int16(b)>>15)>>1) }

// nanPick16 is nanPick32 for float16 and bfloat16 bits; inf is the format's infinity.
func nanPick16(a, b, inf uint16) uint16 {
	aNaN, bNaN := a&0x7fff > inf, b&0x7fff > inf
	switch {
	case aNaN && bNaN:
		return max(a, b)
	case aNaN:
		return a
	}
	return b
}

// minMax16 computes MIN (isMin) or MAX of float16 or bfloat16 bit patterns, whose infinity is inf.
// The result is the same as converting to float32, taking MIN or MAX there, and converting back.
func minMax16(d, s []uint16, isMin bool, inf uint16) {
	s = s[:len(d)]
	for i, a := range d {
		b := s[i]
		r := a
		if ka, kb := orderKey16(a), orderKey16(b); (isMin && kb < ka) || (!isMin && kb > ka) {
			r = b
		}
		if max(a&0x7fff, b&0x7fff) > inf {
			r = nanPick16(a, b, inf)
		}
		d[i] = r
	}
}

// minMax32 computes MIN (isMin) or MAX of float32 bit patterns.
func minMax32(d, s []uint32, isMin bool) {
	s = s[:len(d)]
	if isMin {
		for i, a := range d {
			b := s[i]
			r := a
			if orderKey32(b) < orderKey32(a) {
				r = b
			}
			if max(a&0x7fffffff, b&0x7fffffff) > 0x7f800000 {
				r = nanPick32(a, b)
			}
			d[i] = r
		}
		return
	}
	for i, a := range d {
		b := s[i]
		r := a
		if orderKey32(b) > orderKey32(a) {
			r = b
		}
		if max(a&0x7fffffff, b&0x7fffffff) > 0x7f800000 {
			r = nanPick32(a, b)
		}
		d[i] = r
	}
}

func minF64Slice(d, s []float64) {
	du, su := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(d))), len(d)), unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(s))), len(s))
	minMax64(du, su, true)
}

func maxF64Slice(d, s []float64) {
	du, su := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(d))), len(d)), unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(s))), len(s))
	minMax64(du, su, false)
}

// minMax64 computes MIN (isMin) or MAX of float64 bit patterns.
func minMax64(d, s []uint64, isMin bool) {
	s = s[:len(d)]
	if isMin {
		for i, a := range d {
			b := s[i]
			r := a
			if orderKey64(b) < orderKey64(a) {
				r = b
			}
			if max(a&^(1<<63), b&^(1<<63)) > 0x7ff0000000000000 {
				r = nanPick64(a, b)
			}
			d[i] = r
		}
		return
	}
	for i, a := range d {
		b := s[i]
		r := a
		if orderKey64(b) > orderKey64(a) {
			r = b
		}
		if max(a&^(1<<63), b&^(1<<63)) > 0x7ff0000000000000 {
			r = nanPick64(a, b)
		}
		d[i] = r
	}
}

// Scale multiplies every element of buf, little-endian elements of dtype dt, by factor: it is the
// pre-multiplication of PREMUL_SUM.
//
// Floats: the product is computed in float64 and rounded once to dt. Integers: the product is
// computed in float64, truncated toward zero and wrapped to dt like an integer overflow; factor must
// be finite. Bool and the float8 dtypes are an error (wrapping ErrUnsupported), as is a buffer that
// is not a whole number of elements; buf is then left alone.
func Scale(dt DType, buf []byte, factor float64) error {
	if err := checkBuf("Scale", dt, buf); err != nil {
		return err
	}
	switch {
	case dt == Bool || dt.isFloat8():
		return fmt.Errorf("tensor: Scale: %w: cannot scale %s elements; convert to a float dtype first", ErrUnsupported, dt)
	case dt.IsInteger() && (math.IsNaN(factor) || math.IsInf(factor, 0)):
		return fmt.Errorf("tensor: Scale: factor %v is not finite, which has no meaning for %s elements", factor, dt)
	}
	inPlace(dt, buf, false, factor)
	return nil
}

// scaleNative multiplies aligned host-order elements by factor, as Scale documents.
func scaleNative(dt DType, b []byte, factor float64) {
	switch dt {
	case Float32:
		v := as[float32](b)
		if r := float32(factor); float64(r) == factor {
			// x·r is exact in float64 (24-bit significands), so rounding it to float32 is
			// rounding once, as float32 multiplication does.
			scaleFloat32(v, r)
			return
		}
		if !math.IsNaN(factor) {
			scaleFloat32By64(v, factor)
			return
		}
		for i := range v {
			v[i] = float32(float64(v[i]) * factor)
		}
	case Float64:
		v := as[float64](b)
		for i := range v {
			v[i] *= factor
		}
	case Float16:
		v := as[uint16](b)
		for i := range v {
			v[i] = float64ToFloat16(float64(Float16ToFloat32(v[i])) * factor)
		}
	case BFloat16:
		v := as[uint16](b)
		for i := range v {
			v[i] = float64ToBFloat16(float64(BFloat16ToFloat32(v[i])) * factor)
		}
	case Int8:
		scaleInt(as[int8](b), factor)
	case Uint8:
		scaleInt(b, factor)
	case Int32:
		scaleInt(as[int32](b), factor)
	case Int64:
		scaleInt(as[int64](b), factor)
	}
}

func scaleInt[T integer](v []T, factor float64) {
	for i := range v {
		v[i] = T(truncWrap(float64(v[i]) * factor))
	}
}

// DivideBy divides every element of buf, little-endian elements of dtype dt, by n: it is the final
// step of AVG. n must be at least 1.
//
// Floats are divided exactly and rounded once to dt (correctly rounded). Integers use truncating
// division (toward zero). Bool and the float8 dtypes are an error (wrapping ErrUnsupported), as is
// a buffer that is not a whole number of elements; buf is then left alone.
func DivideBy(dt DType, buf []byte, n int) error {
	if err := checkBuf("DivideBy", dt, buf); err != nil {
		return err
	}
	switch {
	case dt == Bool || dt.isFloat8():
		return fmt.Errorf("tensor: DivideBy: %w: cannot divide %s elements; use an integer or float dtype", ErrUnsupported, dt)
	case n < 1:
		return fmt.Errorf("tensor: DivideBy: divisor %d must be at least 1", n)
	}
	inPlace(dt, buf, true, float64(n))
	return nil
}

// divideNative divides aligned host-order elements by n, an integer at least 1, as DivideBy
// documents.
func divideNative(dt DType, b []byte, fn float64) {
	n := int64(fn) // exact: DivideBy passed an int, and counts of ranks are far below 2^53
	switch dt {
	case Float32:
		v := as[float32](b)
		if n&(n-1) == 0 { // 2, 4, 8 ranks: 1/n is exact, and x·(1/n) is the one rounding of x/n
			scaleFloat32(v, float32(1/fn))
			return
		}
		// float64 has more than twice float32's precision, so rounding the float64 quotient
		// again to float32 gives the correctly rounded quotient.
		divideFloat32(v, fn)
	case Float64:
		v := as[float64](b)
		if n&(n-1) == 0 {
			r := 1 / fn
			for i := range v {
				v[i] *= r
			}
			return
		}
		for i := range v {
			v[i] /= fn
		}
	case Float16:
		v := as[uint16](b)
		for i := range v {
			v[i] = float64ToFloat16(float64(Float16ToFloat32(v[i])) / fn)
		}
	case BFloat16:
		v := as[uint16](b)
		for i := range v {
			v[i] = float64ToBFloat16(float64(BFloat16ToFloat32(v[i])) / fn)
		}
	case Int8:
		divInt(as[int8](b), n)
	case Uint8:
		divInt(b, n)
	case Int32:
		divInt(as[int32](b), n)
	case Int64:
		divInt(as[int64](b), n)
	}
}

func divInt[T integer](v []T, n int64) {
	for i := range v {
		v[i] = T(int64(v[i]) / n)
	}
}
