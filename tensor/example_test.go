package tensor_test

import (
	"fmt"

	"github.com/gccl/gccl/tensor"
)

func ExampleReduceInto() {
	dst := tensor.FromSlice([]float32{1, 2, 3})
	src := tensor.FromSlice([]float32{10, 20, 30})
	if err := tensor.ReduceInto(tensor.Sum, tensor.Float32, dst.Bytes(), src.Bytes()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(dst.Float32s())
	// Output: [11 22 33]
}

// An AVG all-reduce over three ranks' bfloat16 buffers: reduce as SUM, then divide.
func ExampleReduceMany() {
	var ranks [][]byte
	for _, vals := range [][]float64{{1, 2}, {2, 4}, {6, 9}} {
		x, err := tensor.FromFloat64s(tensor.BFloat16, vals)
		if err != nil {
			fmt.Println(err)
			return
		}
		ranks = append(ranks, x.Bytes())
	}
	out := tensor.New(tensor.BFloat16, 2)
	if err := tensor.ReduceMany(tensor.Avg, tensor.BFloat16, out.Bytes(), ranks...); err != nil {
		fmt.Println(err)
		return
	}
	if err := tensor.DivideBy(tensor.BFloat16, out.Bytes(), len(ranks)); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out, out.Float64s())
	// Output: tensor(bfloat16, [2]) [3 5]
}

func ExampleCheckReduce() {
	fmt.Println(tensor.CheckReduce(tensor.Max, tensor.BFloat16))
	fmt.Println(tensor.CheckReduce(tensor.BAnd, tensor.Float32))
	fmt.Println(tensor.CheckReduce(tensor.Sum, tensor.Float8E4M3FN))
	// Output:
	// <nil>
	// tensor: BAND on float32: unsupported: bitwise ops need an integer or bool dtype; use SUM/MIN/MAX for floats, or reinterpret the bits as an integer dtype
	// tensor: SUM on float8_e4m3fn: unsupported: float8 dtypes are for data movement only; convert to bfloat16 or float32 before reducing
}

func ExampleParseDType() {
	for _, s := range []string{"bf16", "Float", "torch.int64", "e4m3"} {
		dt, err := tensor.ParseDType(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(s, "->", dt, dt.TorchName(), dt.Size())
	}
	// Output:
	// bf16 -> bfloat16 BFloat16 2
	// Float -> float32 Float 4
	// torch.int64 -> int64 Long 8
	// e4m3 -> float8_e4m3fn Float8_e4m3fn 1
}

func ExampleFloat32ToBFloat16() {
	for _, f := range []float32{1, 3.14159, 1e-40} {
		b := tensor.Float32ToBFloat16(f)
		fmt.Printf("%v -> %#04x -> %v\n", f, b, tensor.BFloat16ToFloat32(b))
	}
	// Output:
	// 1 -> 0x3f80 -> 1
	// 3.14159 -> 0x4049 -> 3.140625
	// 1e-40 -> 0x0001 -> 9.1835e-41
}

// Cutting a [2 3] tensor into column chunks, as a scatter along dim 1 would.
func ExampleTensor_Chunk() {
	x, err := tensor.FromFloat64s(tensor.Float32, []float64{1, 2, 3, 4, 5, 6}, 2, 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	cols, err := x.Chunk(2, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range cols {
		fmt.Println(c, c.IsContiguous(), c.Float64s())
	}
	packed := cols[0].Contiguous()
	fmt.Println(packed.IsContiguous(), packed.Float32s())
	// Output:
	// tensor(float32, [2 2]) false [1 2 4 5]
	// tensor(float32, [2 1]) false [3 6]
	// true [1 2 4 5]
}

func ExampleTensor_Narrow() {
	x := tensor.FromSlice([]int64{0, 1, 2, 3, 4, 5})
	v, err := x.Narrow(0, 2, 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	v.Fill(-1) // writes through to x
	fmt.Println(x.Int64s())
	_, err = x.Narrow(0, 5, 3)
	fmt.Println(err)
	// Output:
	// [0 1 -1 -1 -1 5]
	// tensor: Narrow: start 5 + length 3 > size 6 of dim 0
}

func ExampleMatMul() {
	a := tensor.FromSlice([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := tensor.FromSlice([]float32{1, 0, 0, 1, 1, 1}, 3, 2)
	c, err := tensor.MatMul(a, b) // [2 3]·[3 2] = [2 2], through OpenBLAS or gonum (tensor.BLASBackend())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c, c.Float32s())
	_, err = tensor.MatMul(a, a)
	fmt.Println(err)
	// Output:
	// tensor(float32, [2 2]) [4 5 10 11]
	// tensor: MatMul: inner dims differ: a [2 3] has 3 columns but b [2 3] has 2 rows
}

func ExampleLinear() {
	// A linear layer with 3 inputs and 2 outputs, its weight stored [out in] like torch.nn.Linear's.
	w := tensor.FromSlice([]float32{1, 1, 1, 0, 1, 0}, 2, 3)
	bias := tensor.FromSlice([]float32{10, 20})
	x := tensor.FromSlice([]float32{1, 2, 3, 4, 5, 6}, 2, 3) // two tokens
	y, err := tensor.Linear(x, w, bias)                      // x·wᵀ + bias
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(y.Float32s())
	// The same into a preallocated output: no allocation on the decode path.
	out := tensor.New(tensor.Float32, 2, 2)
	if err := tensor.LinearInto(out, x, w, bias); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.Float32s())
	// Output:
	// [16 22 25 25]
	// [16 22 25 25]
}
