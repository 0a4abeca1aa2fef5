// Package tensor provides gccl's dtypes, reduce ops, reduction kernels and dense host tensors.
//
// # Dtypes and reduce ops
//
// DType names an element type (Float32, BFloat16, Int64, Bool, Float8E4M3FN, ...). String gives
// gccl's name ("bfloat16"), TorchName PyTorch's scalar-type name used in flight-recorder dumps
// ("BFloat16", "Float", "Long"), and ParseDType reads either, plus aliases such as "bf16" and
// "fp32". ReduceOp is one of torch.distributed's ops: SUM, AVG, PRODUCT, MIN, MAX, BAND, BOR, BXOR,
// PREMUL_SUM. CheckReduce says whether an op works on a dtype: bitwise ops need integers or bool,
// and the float8 dtypes are for data movement only.
//
// # Kernels
//
// ReduceInto (dst op= src) and ReduceMany (dst = src0 op src1 op ...) work on raw little-endian
// element bytes, the form in which backends move data. They are deterministic: the same inputs give
// the same bits on every rank, whatever the buffers' alignment. float16 and bfloat16
// are accumulated in float32 and rounded once (round to nearest even); integers wrap around; MIN and
// MAX propagate NaN and are commutative bit for bit. AVG and PREMUL_SUM reduce as SUM; DivideBy and
// Scale do the division and the pre-multiplication. On amd64 they run AVX-512 or AVX2 assembly,
// picked at start-up from the CPU's features, which gives the same bits as the pure-Go kernels
// that run everywhere else; ReduceMany combines all its sources in one pass.
//
// An all-reduce with AVG over the buffers of three ranks, as a backend would run it:
//
//	out := make([]byte, len(rank0))
//	if err := tensor.ReduceMany(tensor.Avg, tensor.BFloat16, out, rank0, rank1, rank2); err != nil {
//		return err
//	}
//	if err := tensor.DivideBy(tensor.BFloat16, out, 3); err != nil {
//		return err
//	}
//
// # Conversions
//
// Float32ToFloat16, Float32ToBFloat16, Float32ToFloat8E4M3FN and Float32ToFloat8E5M2 round to
// nearest even and handle subnormals, infinities and NaNs; their inverses are exact. e4m3fn has no
// infinity: overflow becomes NaN, as in PyTorch.
//
// # Tensors
//
// A Tensor is a row-major, strided, dtype-tagged view of little-endian bytes in host memory, with
// the view operations collectives need to cut buffers up: Narrow, Chunk, Split, SplitSizes,
// Transpose and Reshape share storage with their parent; Contiguous and Clone copy. Bytes hands a
// contiguous tensor's storage to a kernel or a backend; Float, SetFloat and Float64s read and write
// elements of any dtype as float64, which is what tests want:
//
//	x, _ := tensor.FromFloat64s(tensor.Float32, []float64{1, 2, 3, 4, 5, 6}, 2, 3)
//	cols, _ := x.Chunk(3, 1)            // three [2 1] views, strided
//	c := cols[2].Contiguous()            // a packed copy: [3 6]
//	_ = tensor.ReduceInto(tensor.Sum, tensor.Float32, c.Bytes(), c.Bytes())
//	fmt.Println(c.Float64s())            // [6 12]
//
// A device tensor (FromDevicePointer) holds a device pointer and a device (xpu:N) instead of
// host bytes, for the collectives of a backend that moves device memory (xccl): its views work
// by pointer arithmetic and DevicePointer gives the address of its first element, while the
// methods that read or write elements on the host panic, saying to copy it to the host first:
//
//	g, _ := tensor.FromDevicePointer(tensor.BFloat16, tensor.Device{Type: "xpu"}, ptr, 4096)
//	half, _ := g.Narrow(0, 2048, 2048) // half.DevicePointer() == ptr + 4096
//
// # Matrix products
//
// MatMul (like torch.matmul, with batch dims), MatMulInto (BLAS's GEMM: dst = alpha·op(a)·op(b) +
// beta·dst, with optional transposes), Linear and LinearInto (x·wᵀ + bias with w stored [out in],
// like torch.nn.Linear) work on float32 and float64, and on bfloat16 and float16 by converting to
// float32 and rounding the result once. Views whose rows or columns have unit stride (Transpose,
// Narrow) are read in place; MatMulInto and LinearInto on 2-D float32/float64 tensors allocate
// nothing. Single rows (decode steps) run as matrix-vector products.
//
// They run on OpenBLAS, loaded on first use with purego (no cgo): GCCL_BLAS_LIBRARY, else
// libopenblas.so.0 or libopenblas.so, else Debian's /usr/lib/<triplet>/openblas-*/ copies. Without
// it they fall back to gonum's pure-Go BLAS, several times slower; GCCL_BLAS=gonum forces that, and
// BLASBackend says which is in use. OpenBLAS gets GOMAXPROCS threads (the caller's share of the
// cores under gccl run) unless OPENBLAS_NUM_THREADS or OMP_NUM_THREADS is set; SetBLASThreads
// changes it. A linear layer on a decode step:
//
//	y := tensor.New(tensor.Float32, 1, 5632)
//	if err := tensor.LinearInto(y, x, w, nil); err != nil { // x [1 2048], w [5632 2048]
//		return err
//	}
//
// # Neural-network ops
//
// The local compute of a Llama-style decoder, named after torch.nn.functional, on contiguous
// float32 tensors whose last dim is the row: RMSNorm, LayerNorm, Softmax (max-subtracted; with
// MaskCausal for attention scores), SiLU, SwiGLU (silu(gate)·up), Add and Mul (b the same shape as
// a or a suffix of it, broadcast), Embedding (rows of a [vocab hidden] table of any dtype), Argmax,
// rotary position embeddings (Rotary: precomputed cos/sin tables, Llama's "rotate half", applied to
// [heads head_dim] at one position or [... seq heads head_dim] from one), and Attention, one query
// position of grouped-query attention over a [maxSeq kvHeads head_dim] KV cache. Each has an
// ...Into form that allocates nothing and may write in place, for the per-token path:
//
//	if err := tensor.RMSNormInto(h, x, normWeight, 1e-5); err != nil { // h, x [1 2048]
//		return err
//	}
//	_ = rot.Apply(q, pos) // q [32 64], rot from tensor.NewRotary(64, 4096, 10000)
//
// Package tensor/safetensors reads and writes weights in the safetensors format.
//
// Methods panic only on programming errors that indexing would also catch (an index out of range,
// a typed accessor on the wrong dtype, Bytes on a strided view or a device tensor); everything computed from run-time
// sizes returns an error that names the method and the values.
package tensor
