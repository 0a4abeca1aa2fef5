//go:build !purego

package tensor

// sumF32SSE is in sum_small_amd64.s.
//
//go:noescape
func sumF32SSE(dst *byte, n int, srcs *[]byte, k int)

// sumFloat32Small is SumFloat32Small after its checks: SSE, four elements an instruction.
func sumFloat32Small(dst []byte, srcs [][]byte) {
	if len(dst) > 0 {
		sumF32SSE(&dst[0], len(dst), &srcs[0], len(srcs))
	}
}
