//go:build !purego

package tensor

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/asmgen -asm reduce_amd64.s -go reduce_kernels_amd64.go

// hasAVX512DQ enables the AVX-512 int64 PRODUCT kernel (VPMULLQ).
var hasAVX512DQ = cpu.X86.HasAVX512DQ

func detectLevel() isaLevel {
	x := &cpu.X86
	switch {
	case !x.HasAVX2 || !x.HasF16C:
		return levelGo
	case x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL:
		return levelAVX512
	}
	return levelAVX2
}

func supportedLevels() []isaLevel {
	var out []isaLevel
	for l := levelGo; l <= detectLevel(); l++ {
		out = append(out, l)
	}
	return out
}

const (
	// avx2VectorBytes is the vector size of the AVX2 kernels, which take whole vectors only.
	avx2VectorBytes = 32
	// stopChunkBytes is how much the Go code computes after a kernel stops early (a NaN where
	// the kernels leave the rules to Go) before it calls the kernel again; at most
	// smallBlockBytes, so that reduceBlocks uses its small scratch.
	stopChunkBytes = smallBlockBytes
	// maxTailSources is the most sources whose AVX2 tail goes through scratch copies on the
	// stack; beyond, the tail is computed in Go.
	maxTailSources = 16
)

// familyFor returns the kernel family that computes op on dt, if there is one.
func familyFor(op ReduceOp, dt DType) (kernelFamily, bool) {
	if op == Avg || op == PreMulSum {
		op = Sum
	}
	if op.isBitwise() && dt.IsInteger() {
		return [...]kernelFamily{BAnd: famBitAnd, BOr: famBitOr, BXor: famBitXor}[op], true
	}
	type pair struct {
		dt DType
		op ReduceOp
	}
	switch (pair{dt, op}) {
	case pair{Float32, Sum}:
		return famF32Add, true
	case pair{Float32, Product}:
		return famF32Mul, true
	case pair{Float32, Min}:
		return famF32Min, true
	case pair{Float32, Max}:
		return famF32Max, true
	case pair{Float64, Sum}:
		return famF64Add, true
	case pair{Float64, Product}:
		return famF64Mul, true
	case pair{Float64, Min}:
		return famF64Min, true
	case pair{Float64, Max}:
		return famF64Max, true
	case pair{BFloat16, Sum}:
		return famBF16Add, true
	case pair{BFloat16, Product}:
		return famBF16Mul, true
	case pair{BFloat16, Min}:
		return famBF16Min, true
	case pair{BFloat16, Max}:
		return famBF16Max, true
	case pair{Float16, Sum}:
		return famF16Add, true
	case pair{Float16, Product}:
		return famF16Mul, true
	case pair{Float16, Min}:
		return famF16Min, true
	case pair{Float16, Max}:
		return famF16Max, true
	case pair{Int8, Sum}, pair{Uint8, Sum}:
		return famI8Add, true
	case pair{Int8, Min}:
		return famI8Min, true
	case pair{Int8, Max}:
		return famI8Max, true
	case pair{Uint8, Min}:
		return famU8Min, true
	case pair{Uint8, Max}:
		return famU8Max, true
	case pair{Int32, Sum}:
		return famI32Add, true
	case pair{Int32, Product}:
		return famI32Mul, true
	case pair{Int32, Min}:
		return famI32Min, true
	case pair{Int32, Max}:
		return famI32Max, true
	case pair{Int64, Sum}:
		return famI64Add, true
	case pair{Int64, Product}:
		return famI64Mul, true
	case pair{Int64, Min}:
		return famI64Min, true
	case pair{Int64, Max}:
		return famI64Max, true
	case pair{Bool, Sum}, pair{Bool, Max}, pair{Bool, BOr}:
		return famBoolOr, true
	case pair{Bool, Product}, pair{Bool, Min}, pair{Bool, BAnd}:
		return famBoolAnd, true
	case pair{Bool, BXor}:
		return famBoolXor, true
	}
	return 0, false
}

// kernelFor returns the family of the kernel for op on dt at level lv, if there is one.
func kernelFor(lv isaLevel, op ReduceOp, dt DType) (kernelFamily, bool) {
	f, ok := familyFor(op, dt)
	switch {
	case !ok || lv == levelGo:
		return 0, false
	case lv == levelAVX2 && !familyHasAVX2[f]:
		return 0, false
	case f == famI64Mul && !hasAVX512DQ:
		return 0, false
	}
	return f, true
}

// reduceSIMD computes dst = srcs[0] op srcs[1] op ... (at least two sources, all as long as dst,
// checked by the caller) with the SIMD kernels of the current level, and reports whether it
// did; if not, dst is untouched. into says the caller is ReduceInto (srcs is dst, src), whose
// pure-Go path the kernels must then match, rather than ReduceMany's (the two may give different
// NaN payloads for float16 and bfloat16 SUM and PRODUCT).
func reduceSIMD(op ReduceOp, dt DType, dst []byte, srcs [][]byte, into bool) bool {
	lv := simdLevel
	if len(dst) == 0 {
		return false
	}
	f, ok := kernelFor(lv, op, dt)
	if !ok {
		return false
	}
	size := int(familyElemSize[f])
	n := len(dst) / size
	whole := n
	if lv == levelAVX2 {
		whole = n &^ (avx2VectorBytes/size - 1)
	}
	runKernel(lv, f, op, dt, dst, srcs, into, size, 0, whole)
	if whole < n {
		reduceTailAVX2(f, op, dt, dst, srcs, into, size, whole*size)
	}
	return true
}

// runKernel runs the kernel on elements [from, to) of size bytes, and computes in Go the elements
// where it stops early.
func runKernel(lv isaLevel, f kernelFamily, op ReduceOp, dt DType, dst []byte, srcs [][]byte, into bool, size, from, to int) {
	for from < to {
		off := from * size
		from += callKernel(lv, f, &dst[off], &srcs[0], len(srcs), off, to-from)
		if from < to {
			end := min(to, from+stopChunkBytes/size)
			reduceRangeGo(op, dt, dst, srcs, into, from*size, end*size)
			from = end
		}
	}
}

// reduceTailAVX2 computes bytes [lo, len(dst)) of the result, less than a vector, with the AVX2
// kernel on zero-padded copies.
func reduceTailAVX2(f kernelFamily, op ReduceOp, dt DType, dst []byte, srcs [][]byte, into bool, size, lo int) {
	k := len(srcs)
	if k > maxTailSources {
		reduceRangeGo(op, dt, dst, srcs, into, lo, len(dst))
		return
	}
	var buf [maxTailSources + 1][avx2VectorBytes]byte
	var hdr [maxTailSources][]byte
	for j, s := range srcs {
		copy(buf[j][:], s[lo:])
		hdr[j] = buf[j][:]
	}
	out := buf[k][:]
	if v := avx2VectorBytes / size; callKernel(levelAVX2, f, &out[0], &hdr[0], k, 0, v) == v {
		copy(dst[lo:], out)
		return
	}
	reduceRangeGo(op, dt, dst, srcs, into, lo, len(dst))
}

// reduceRangeGo computes bytes [lo, hi) of the result in pure Go, with ReduceInto's code (into)
// or ReduceMany's.
func reduceRangeGo(op ReduceOp, dt DType, dst []byte, srcs [][]byte, into bool, lo, hi int) {
	if into {
		reduceIntoGo(op, dt, dst[lo:hi], srcs[1][lo:hi])
		return
	}
	var buf [8][]byte
	sub := buf[:0]
	if len(srcs) > len(buf) {
		sub = make([][]byte, 0, len(srcs))
	}
	for _, s := range srcs {
		sub = append(sub, s[lo:hi])
	}
	reduceBlocks(op, dt, dst[lo:hi], sub)
}
