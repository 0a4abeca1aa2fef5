//go:build !amd64 || purego

package tensor

// sumFloat32Small is SumFloat32Small after its checks: the portable loop.
func sumFloat32Small(dst []byte, srcs [][]byte) { sumFloat32SmallGo(dst, srcs) }

// scaleFloat32 multiplies every element of v by r: the portable loop.
func scaleFloat32(v []float32, r float32) { scaleFloat32Go(v, r) }
