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
	case !x.HasAVX512F || !x.HasAVX512BW || !x.HasAVX512VL:
		return levelAVX2
	case x.HasAVX512BF16 && x.HasAVX512DQ:
		return levelAVX512BF16
	}
	return levelAVX512
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
	// stack (beyond, the tail is computed in Go), and the most for which computing elements in Go
	// after a kernel stopped allocates nothing.
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

// noKernel marks a missing entry of kernelTable.
const noKernel = kernelFamily(255)

// kernelTable holds, for each level, dtype and op, the kernel family to run, or noKernel.
var kernelTable = func() (t [numLevels][numDTypes][numReduceOps]kernelFamily) {
	for lv := range t {
		for dt := range t[lv] {
			for op := range t[lv][dt] {
				t[lv][dt][op] = kernelFor(isaLevel(lv), ReduceOp(op), DType(dt))
			}
		}
	}
	return t
}()

// kernelFor returns the family of the kernel for op on dt at level lv, or noKernel.
func kernelFor(lv isaLevel, op ReduceOp, dt DType) kernelFamily {
	f, ok := familyFor(op, dt)
	if lv >= levelAVX512BF16 {
		switch f {
		case famBF16Add:
			f = famBF16AddBF16
		case famBF16Mul:
			f = famBF16MulBF16
		}
	}
	switch {
	case !ok || lv == levelGo || checkReduce(op, dt) != nil:
		return noKernel
	case lv == levelAVX2 && !familyHasAVX2[f]:
		return noKernel
	case f == famI64Mul && !hasAVX512DQ:
		return noKernel
	}
	return f
}

// reduceSIMD computes dst = srcs[0] op srcs[1] op ... (at least two sources, all as long as dst,
// checked by the caller) with the SIMD kernels of the current level, and reports whether it
// did; if not, dst is untouched. into says the caller is ReduceInto (srcs is dst, src), whose
// pure-Go path the kernels must then match, rather than ReduceMany's (the two may give different
// NaN payloads for float16 and bfloat16 SUM and PRODUCT).
func reduceSIMD(op ReduceOp, dt DType, dst []byte, srcs [][]byte, into bool) bool {
	lv := simdLevel
	if len(dst) == 0 || lv >= numLevels {
		return false
	}
	f := kernelTable[lv][dt][op] // op and dt passed checkReduce: in range
	if f == noKernel {
		return false
	}
	size := int(familyElemSize[f])
	n := len(dst) / size
	whole := n
	if lv == levelAVX2 {
		whole = n &^ (avx2VectorBytes/size - 1)
	}
	if whole > 0 {
		if done := callKernel(lv, f, &dst[0], &srcs[0], len(srcs), 0, whole); done < whole {
			resumeKernel(lv, f, op, dt, dst, srcs, into, size, done, whole)
		}
	}
	if whole < n {
		reduceTailAVX2(f, op, dt, dst, srcs, into, size, whole*size)
	}
	return true
}

// resumeKernel finishes elements [from, to) (of size bytes) after the kernel stopped at from: it
// computes a few elements in Go, runs the kernel on the rest, and so on.
func resumeKernel(lv isaLevel, f kernelFamily, op ReduceOp, dt DType, dst []byte, srcs [][]byte, into bool, size, from, to int) {
	for from < to {
		end := min(to, from+stopChunkBytes/size)
		reduceRangeGo(op, dt, dst, srcs, into, from*size, end*size)
		from = end
		if from < to {
			off := from * size
			from += callKernel(lv, f, &dst[off], &srcs[0], len(srcs), off, to-from)
		}
	}
}

// reduceTailAVX2 computes bytes [lo, len(dst)) of the result, less than a vector, with the AVX2
// kernel on zero-padded copies on the stack: one per source, one for the result. Go clears them on
// every call, so few sources get a small scratch. (The copies stay in this function: handing the
// arrays to a helper that stores pointers to one in the other would move them to the heap.)
func reduceTailAVX2(f kernelFamily, op ReduceOp, dt DType, dst []byte, srcs [][]byte, into bool, size, lo int) {
	k, v := len(srcs), avx2VectorBytes/size
	ok := false
	switch {
	case k <= 4:
		var buf [4 + 1][avx2VectorBytes]byte
		var hdr [4][]byte
		for j, s := range srcs {
			copy(buf[j][:], s[lo:])
			hdr[j] = buf[j][:]
		}
		if ok = callKernel(levelAVX2, f, &buf[k][0], &hdr[0], k, 0, v) == v; ok {
			copy(dst[lo:], buf[k][:])
		}
	case k <= maxTailSources:
		var buf [maxTailSources + 1][avx2VectorBytes]byte
		var hdr [maxTailSources][]byte
		for j, s := range srcs {
			copy(buf[j][:], s[lo:])
			hdr[j] = buf[j][:]
		}
		if ok = callKernel(levelAVX2, f, &buf[k][0], &hdr[0], k, 0, v) == v; ok {
			copy(dst[lo:], buf[k][:])
		}
	}
	if !ok {
		reduceRangeGo(op, dt, dst, srcs, into, lo, len(dst))
	}
}

// reduceRangeGo computes bytes [lo, hi) of the result in pure Go, with ReduceInto's code (into)
// or ReduceMany's.
func reduceRangeGo(op ReduceOp, dt DType, dst []byte, srcs [][]byte, into bool, lo, hi int) {
	if into {
		reduceIntoGo(op, dt, dst[lo:hi], srcs[1][lo:hi])
		return
	}
	var buf [maxTailSources][]byte
	sub := buf[:0]
	if len(srcs) > len(buf) {
		sub = make([][]byte, 0, len(srcs))
	}
	for _, s := range srcs {
		sub = append(sub, s[lo:hi])
	}
	reduceBlocks(op, dt, dst[lo:hi], sub)
}
