//go:build !amd64 || purego

package tensor

// sumFloat32Small is SumFloat32Small after its checks: the portable loop.
func sumFloat32Small(dst []byte, srcs [][]byte) { sumFloat32SmallGo(dst, srcs) }

// scaleFloat32 multiplies every element of v by r: the portable loop.
func scaleFloat32(v []float32, r float32) { scaleFloat32Go(v, r) }

// divideFloat32 sets every element of v to float32(float64(v[i]) / d): the portable loop.
func divideFloat32(v []float32, d float64) { divideFloat32Go(v, d) }

// scaleFloat32By64 sets every element of v to float32(float64(v[i]) * f): the portable loop.
func scaleFloat32By64(v []float32, f float64) { scaleFloat32By64Go(v, f) }

// toBFloat16 sets d[i] to To's bfloat16 of s[i]: the portable loop.
func toBFloat16(d []uint16, s []float32) { toBFloat16Go(d, s) }

// fromBFloat16 sets d[i] to To's float32 bits of the bfloat16 s[i]: the portable loop.
func fromBFloat16(d []uint32, s []uint16) { fromBFloat16Go(d, s) }

// toFloat16 sets d[i] to To's float16 of s[i]: the portable loop.
func toFloat16(d []uint16, s []float32) { toFloat16Go(d, s) }

// fromFloat16 sets d[i] to To's float32 of the float16 s[i]: the portable loop.
func fromFloat16(d []float32, s []uint16) { fromFloat16Go(d, s) }

// copyNonTemporal is CopyNonTemporal after its checks: copy.
func copyNonTemporal(dst, src []byte) { copy(dst, src) }
