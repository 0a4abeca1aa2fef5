//go:build !purego

package tensor

import "unsafe"

// Hand-written vector kernels (vector_amd64.s), outside the generated reduction families of
// reduce_amd64.s.

//go:noescape
func sumF32SSE(dst *byte, n int, srcs *[]byte, k int)

//go:noescape
func scaleF32AVX2(v *float32, n int, r float32)

//go:noescape
func divF32F64AVX2(v *float32, n int, x float64)

//go:noescape
func mulF32F64AVX2(v *float32, n int, x float64)

//go:noescape
func bf16FromF32AVX2(dst *uint16, src *float32, n int)

//go:noescape
func f32FromBF16AVX2(dst *uint32, src *uint16, n int)

//go:noescape
func f16FromF32AVX2(dst *uint16, src *float32, n int)

//go:noescape
func f32FromF16AVX2(dst *float32, src *uint16, n int)

//go:noescape
func copyNTAVX2(dst, src *byte, n int)

// copyNonTemporal is CopyNonTemporal after its checks: the bytes from dst's first 32-byte
// boundary to its last whole 64-byte block with non-temporal stores when the CPU has AVX2, the
// rest (and everything on other CPUs) with copy.
func copyNonTemporal(dst, src []byte) {
	head := int(-uintptr(unsafe.Pointer(unsafe.SliceData(dst))) & 31)
	if simdLevel < levelAVX2 || len(dst) < head+64 {
		copy(dst, src)
		return
	}
	copy(dst[:head], src[:head])
	body := (len(dst) - head) &^ 63
	copyNTAVX2(&dst[head], &src[head], body)
	copy(dst[head+body:], src[head+body:])
}

// sumFloat32Small is SumFloat32Small after its checks: SSE, four elements an instruction.
func sumFloat32Small(dst []byte, srcs [][]byte) {
	if len(dst) > 0 {
		sumF32SSE(&dst[0], len(dst), &srcs[0], len(srcs))
	}
}

// scaleFloat32 multiplies every element of v by r, which is not a NaN: AVX2 when the CPU has it
// (simdLevel), else the portable loop; the same bits either way.
func scaleFloat32(v []float32, r float32) {
	if simdLevel >= levelAVX2 && len(v) > 0 {
		scaleF32AVX2(&v[0], len(v), r)
		return
	}
	scaleFloat32Go(v, r)
}

// divideFloat32 sets every element of v to float32(float64(v[i]) / d): AVX2 when the CPU has
// it, else the portable loop; the same bits either way.
func divideFloat32(v []float32, d float64) {
	if simdLevel >= levelAVX2 && len(v) > 0 {
		divF32F64AVX2(&v[0], len(v), d)
		return
	}
	divideFloat32Go(v, d)
}

// scaleFloat32By64 sets every element of v to float32(float64(v[i]) * f), f not a NaN: AVX2
// when the CPU has it, else the portable loop; the same bits either way.
func scaleFloat32By64(v []float32, f float64) {
	if simdLevel >= levelAVX2 && len(v) > 0 {
		mulF32F64AVX2(&v[0], len(v), f)
		return
	}
	scaleFloat32By64Go(v, f)
}

// The float conversions (To's fast path): the SIMD kernel on the longest prefix it takes (a
// multiple of its block of elements) when the CPU has AVX2 (which levelAVX2 pairs with F16C),
// the portable loop on the rest; the same bits either way. len(d) == len(s).

func toBFloat16(d []uint16, s []float32) { convertSIMD(d, s, 16, bf16FromF32AVX2, toBFloat16Go) }

func fromBFloat16(d []uint32, s []uint16) { convertSIMD(d, s, 8, f32FromBF16AVX2, fromBFloat16Go) }

func toFloat16(d []uint16, s []float32) { convertSIMD(d, s, 8, f16FromF32AVX2, toFloat16Go) }

func fromFloat16(d []float32, s []uint16) { convertSIMD(d, s, 8, f32FromF16AVX2, fromFloat16Go) }

// convertSIMD runs kernel on the first len(s)/block*block elements when the CPU has AVX2, and
// portable on the others.
func convertSIMD[D, S any](d []D, s []S, block int, kernel func(*D, *S, int), portable func([]D, []S)) {
	if n := len(s) / block * block; simdLevel >= levelAVX2 && n > 0 {
		kernel(&d[0], &s[0], n)
		d, s = d[n:], s[n:]
	}
	portable(d, s)
}
