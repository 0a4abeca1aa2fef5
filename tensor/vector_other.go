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
