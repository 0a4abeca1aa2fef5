//go:build !amd64 || purego

package tensor

// sumFloat32Small is SumFloat32Small after its checks: the portable loop.
func sumFloat32Small(dst []byte, srcs [][]byte) { sumFloat32SmallGo(dst, srcs) }
