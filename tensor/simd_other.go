//go:build !amd64 || purego

package tensor

func detectLevel() isaLevel { return levelGo }

func supportedLevels() []isaLevel { return []isaLevel{levelGo} }

// reduceSIMD reports false: there are no SIMD kernels on this platform.
func reduceSIMD(op ReduceOp, dt DType, dst []byte, srcs [][]byte, into bool) bool { return false }
