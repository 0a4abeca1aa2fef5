//go:build !purego

package tensor

// Hand-written vector kernels (vector_amd64.s), outside the generated reduction families of
// reduce_amd64.s.

//go:noescape
func sumF32SSE(dst *byte, n int, srcs *[]byte, k int)

//go:noescape
func scaleF32AVX2(v *float32, n int, r float32)

//go:noescape
func divF32F64AVX2(v *float32, n int, d float64)

//go:noescape
func mulF32F64AVX2(v *float32, n int, f float64)

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
