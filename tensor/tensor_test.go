package tensor

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// iota64 returns 0, 1, ..., n-1.
func iota64(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i)
	}
	return out
}

// arange returns a contiguous float32 tensor holding 0, 1, ... with the given shape.
func arange(t *testing.T, shape ...int) *Tensor {
	t.Helper()
	n := 1
	for _, s := range shape {
		n *= s
	}
	x, err := FromFloat64s(Float32, iota64(n), shape...)
	require.NoError(t, err)
	return x
}

func TestDevice(t *testing.T) {
	tests := []struct {
		d    Device
		want string
	}{
		{CPU, "cpu"},
		{Device{}, "cpu"},
		{Device{Type: "xpu"}, "xpu:0"},
		{Device{Type: "xpu", Index: 3}, "xpu:3"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tc.d.String())
		if tc.d.Type != "" {
			got, err := ParseDevice(tc.want)
			require.NoError(t, err)
			assert.Equal(t, tc.d, got)
		}
	}
	assert.True(t, CPU.IsCPU())
	assert.False(t, Device{Type: "xpu"}.IsCPU())
	d, err := ParseDevice("XPU")
	require.NoError(t, err)
	assert.Equal(t, Device{Type: "xpu"}, d)
	for _, bad := range []string{"", ":1", "xpu:-1", "xpu:a", "x pu"} {
		_, err := ParseDevice(bad)
		assert.Error(t, err, bad)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		shape       []int
		wantNumel   int
		wantStrides []int
	}{
		{nil, 1, []int{}},
		{[]int{0}, 0, []int{1}},
		{[]int{5}, 5, []int{1}},
		{[]int{2, 3}, 6, []int{3, 1}},
		{[]int{2, 0, 4}, 0, []int{0, 4, 1}},
		{[]int{2, 3, 4}, 24, []int{12, 4, 1}},
	}
	for _, tc := range tests {
		for _, dt := range AllDTypes() {
			x := New(dt, tc.shape...)
			assert.Equal(t, dt, x.DType())
			assert.Equal(t, CPU, x.Device())
			assert.Equal(t, len(tc.shape), x.Dim())
			if tc.shape == nil {
				assert.Equal(t, []int{}, x.Shape())
			} else {
				assert.Equal(t, tc.shape, x.Shape())
			}
			assert.Equal(t, tc.wantStrides, x.Strides())
			assert.Equal(t, tc.wantNumel, x.Numel())
			assert.Equal(t, tc.wantNumel*dt.Size(), x.NBytes())
			assert.True(t, x.IsContiguous())
			assert.Equal(t, make([]byte, x.NBytes()), x.Bytes(), "zeroed")
		}
	}
	assert.Panics(t, func() { New(Invalid, 2) })
	assert.Panics(t, func() { New(Float32, 2, -1) })

	// Shape and Strides return copies.
	x := New(Float32, 2, 3)
	x.Shape()[0] = 99
	x.Strides()[0] = 99
	assert.Equal(t, []int{2, 3}, x.Shape())
	assert.Equal(t, []int{3, 1}, x.Strides())
}

func TestFromBytes(t *testing.T) {
	data := make([]byte, 24)
	x, err := FromBytes(Float32, data, 2, 3)
	require.NoError(t, err)
	x.SetFloat(1.5, 1, 2)
	assert.Equal(t, []byte{0, 0, 0xc0, 0x3f}, data[20:24], "wraps without copying, little-endian")

	x, err = FromBytes(Int64, data)
	require.NoError(t, err)
	assert.Equal(t, []int{3}, x.Shape(), "no shape: 1-D")

	_, err = FromBytes(Float32, data, 2, 2)
	assert.EqualError(t, err, "tensor: FromBytes: shape [2 2] of float32 needs 16 bytes, got 24")
	_, err = FromBytes(Float32, make([]byte, 6))
	assert.ErrorContains(t, err, "not a whole number of float32 elements")
	_, err = FromBytes(Invalid, data)
	assert.Error(t, err)
	_, err = FromBytes(Float32, data, -1, 6)
	assert.ErrorContains(t, err, "negative size -1 in dim 0")

	x, err = FromBytes(Float32, nil, 0)
	require.NoError(t, err)
	assert.Equal(t, 0, x.Numel())
	assert.Equal(t, []byte{}, x.Bytes())
}

type myFloat float32

func TestFromSlice(t *testing.T) {
	tests := []struct {
		name string
		x    *Tensor
		dt   DType
		want []float64
	}{
		{"float32", FromSlice([]float32{1, 2.5}), Float32, []float64{1, 2.5}},
		{"named float32", FromSlice([]myFloat{-1}), Float32, []float64{-1}},
		{"float64", FromSlice([]float64{math.Pi}), Float64, []float64{math.Pi}},
		{"int8", FromSlice([]int8{-128, 127}), Int8, []float64{-128, 127}},
		{"uint8", FromSlice([]uint8{0, 255}), Uint8, []float64{0, 255}},
		{"int32", FromSlice([]int32{-5}), Int32, []float64{-5}},
		{"int64", FromSlice([]int64{1 << 40}), Int64, []float64{1 << 40}},
		{"bool", FromSlice([]bool{true, false, true}), Bool, []float64{1, 0, 1}},
		{"float16 bits", FromFloat16Bits([]uint16{0x3c00, 0xc000}), Float16, []float64{1, -2}},
		{"bfloat16 bits", FromBFloat16Bits([]uint16{0x3f80, 0x4049}), BFloat16, []float64{1, 3.140625}},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.dt, tc.x.DType(), tc.name)
		assert.Equal(t, []int{len(tc.want)}, tc.x.Shape(), tc.name)
		assert.Equal(t, tc.want, tc.x.Float64s(), tc.name)
	}

	s := []int32{1, 2, 3, 4, 5, 6}
	x := FromSlice(s, 2, 3)
	assert.Equal(t, []int{2, 3}, x.Shape())
	s[0] = 100
	assert.Equal(t, 1.0, x.Float(0, 0), "copies")
	assert.Panics(t, func() { FromSlice(s, 4) })
	assert.Equal(t, 0, FromSlice([]float32{}).Numel())
}

func TestFromFloat64s(t *testing.T) {
	vals := []float64{-1.7, 0, 1.5, 300, math.Inf(1), math.NaN()}
	tests := []struct {
		dt   DType
		want []float64
	}{
		{Float32, []float64{float64(float32(-1.7)), 0, 1.5, 300, math.Inf(1), math.NaN()}},
		{Float64, vals},
		{Float16, []float64{float64(Float16ToFloat32(Float32ToFloat16(-1.7))), 0, 1.5, 300, math.Inf(1), math.NaN()}},
		{BFloat16, []float64{-1.703125, 0, 1.5, 300, math.Inf(1), math.NaN()}},
		{Int8, []float64{-1, 0, 1, 44, 0, 0}},
		{Uint8, []float64{255, 0, 1, 44, 0, 0}},
		{Int32, []float64{-1, 0, 1, 300, 0, 0}},
		{Int64, []float64{-1, 0, 1, 300, 0, 0}},
		{Bool, []float64{1, 0, 1, 1, 1, 1}},
		{Float8E4M3FN, []float64{-1.75, 0, 1.5, 288, math.NaN(), math.NaN()}},
		{Float8E5M2, []float64{-1.75, 0, 1.5, 320, math.Inf(1), math.NaN()}},
	}
	for _, tc := range tests {
		x, err := FromFloat64s(tc.dt, vals)
		require.NoError(t, err, tc.dt.String())
		got := x.Float64s()
		for i := range got {
			if math.IsNaN(tc.want[i]) {
				assert.Truef(t, math.IsNaN(got[i]), "%s[%d] = %v, want NaN", tc.dt, i, got[i])
			} else {
				assert.Equalf(t, tc.want[i], got[i], "%s[%d]", tc.dt, i)
			}
		}
	}
	_, err := FromFloat64s(Float32, []float64{1, 2, 3}, 2, 2)
	assert.ErrorContains(t, err, "shape [2 2] has 4 elements but there are 3 values")
	_, err = FromFloat64s(Invalid, nil)
	assert.Error(t, err)
}

func TestZeroDim(t *testing.T) {
	x := New(Int64)
	assert.Equal(t, 0, x.Dim())
	assert.Equal(t, 1, x.Numel())
	x.SetFloat(42)
	assert.Equal(t, 42.0, x.Float())
	assert.Equal(t, []float64{42}, x.Float64s())
	assert.Equal(t, "tensor(int64, [])", x.String())

	y, err := FromSlice([]float32{7}).Reshape()
	require.NoError(t, err)
	assert.Equal(t, 0, y.Dim())
	assert.Equal(t, []float32{7}, y.Float32s())

	_, err = x.Narrow(0, 0, 1)
	assert.ErrorContains(t, err, "0-dim")
	_, err = x.Chunk(2, 0)
	assert.Error(t, err)
	c := x.Clone()
	assert.True(t, Equal(x, c))
}

func TestFloatAndSetFloatIndexing(t *testing.T) {
	x := arange(t, 2, 3)
	assert.Equal(t, 5.0, x.Float(1, 2))
	assert.Equal(t, 3.0, x.Float(1, 0))
	x.SetFloat(-1, 0, 1)
	assert.Equal(t, []float64{0, -1, 2, 3, 4, 5}, x.Float64s())

	assert.PanicsWithValue(t, "tensor: Float: index 2 out of range for dim 0 of size 2", func() { x.Float(2, 0) })
	assert.Panics(t, func() { x.Float(0) })
	assert.Panics(t, func() { x.SetFloat(1, 0, -1) })
}

func TestNarrow(t *testing.T) {
	x := arange(t, 4, 3)
	v, err := x.Narrow(0, 1, 2)
	require.NoError(t, err)
	assert.Equal(t, []int{2, 3}, v.Shape())
	assert.True(t, v.IsContiguous())
	assert.Equal(t, []float64{3, 4, 5, 6, 7, 8}, v.Float64s())
	assert.True(t, v.SharesStorage(x))

	w, err := x.Narrow(-1, 1, 2)
	require.NoError(t, err)
	assert.False(t, w.IsContiguous())
	assert.Equal(t, []float64{1, 2, 4, 5, 7, 8, 10, 11}, w.Float64s())
	w.Fill(-1)
	assert.Equal(t, []float64{0, -1, -1, 3, -1, -1, 6, -1, -1, 9, -1, -1}, x.Float64s(), "views write through")

	e, err := x.Narrow(0, 4, 0)
	require.NoError(t, err)
	assert.Equal(t, 0, e.Numel())

	tests := []struct {
		dim, start, length int
		wantErr            string
	}{
		{0, 3, 2, "tensor: Narrow: start 3 + length 2 > size 4 of dim 0"},
		{1, -1, 1, "tensor: Narrow: start -1 is negative"},
		{1, 0, -1, "tensor: Narrow: length -1 is negative"},
		{2, 0, 1, "tensor: Narrow: dim 2 out of range for tensor(float32, [4 3]) (valid: -2 to 1)"},
		{-3, 0, 1, "dim -3 out of range"},
	}
	for _, tc := range tests {
		_, err := x.Narrow(tc.dim, tc.start, tc.length)
		assert.ErrorContains(t, err, tc.wantErr)
	}
}

func TestChunkAndSplit(t *testing.T) {
	sizesAlong := func(ts []*Tensor, dim int) []int {
		out := make([]int, len(ts))
		for i, v := range ts {
			out[i] = v.Shape()[dim]
		}
		return out
	}
	tests := []struct {
		name  string
		n     int
		run   func(x *Tensor) ([]*Tensor, error)
		sizes []int
	}{
		// torch.chunk: ceil(n/chunks) per chunk, so possibly fewer chunks.
		{"chunk 5 in 3", 5, func(x *Tensor) ([]*Tensor, error) { return x.Chunk(3, 0) }, []int{2, 2, 1}},
		{"chunk 6 in 4", 6, func(x *Tensor) ([]*Tensor, error) { return x.Chunk(4, 0) }, []int{2, 2, 2}},
		{"chunk 6 in 3", 6, func(x *Tensor) ([]*Tensor, error) { return x.Chunk(3, 0) }, []int{2, 2, 2}},
		{"chunk 2 in 5", 2, func(x *Tensor) ([]*Tensor, error) { return x.Chunk(5, 0) }, []int{1, 1}},
		{"chunk 0 in 3", 0, func(x *Tensor) ([]*Tensor, error) { return x.Chunk(3, 0) }, []int{0, 0, 0}},
		{"chunk 7 in 1", 7, func(x *Tensor) ([]*Tensor, error) { return x.Chunk(1, -1) }, []int{7}},
		// torch.split with an int.
		{"split 5 by 2", 5, func(x *Tensor) ([]*Tensor, error) { return x.Split(2, 0) }, []int{2, 2, 1}},
		{"split 4 by 4", 4, func(x *Tensor) ([]*Tensor, error) { return x.Split(4, 0) }, []int{4}},
		{"split 3 by 10", 3, func(x *Tensor) ([]*Tensor, error) { return x.Split(10, 0) }, []int{3}},
		{"split 0 by 2", 0, func(x *Tensor) ([]*Tensor, error) { return x.Split(2, 0) }, []int{0}},
		{"split 0 by 0", 0, func(x *Tensor) ([]*Tensor, error) { return x.Split(0, 0) }, []int{0}},
		{"split sizes", 6, func(x *Tensor) ([]*Tensor, error) { return x.SplitSizes([]int{1, 0, 5}, 0) }, []int{1, 0, 5}},
	}
	for _, tc := range tests {
		x := arange(t, tc.n)
		parts, err := tc.run(x)
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.sizes, sizesAlong(parts, 0), tc.name)
		var all []float64
		for _, p := range parts {
			all = append(all, p.Float64s()...)
			if p.Numel() > 0 {
				assert.True(t, p.SharesStorage(x), tc.name)
			}
		}
		assert.Equal(t, x.Float64s(), append([]float64{}, all...), tc.name)
	}

	// Along an inner dim the chunks are strided views.
	x := arange(t, 2, 5)
	parts, err := x.Chunk(2, 1)
	require.NoError(t, err)
	require.Len(t, parts, 2)
	assert.Equal(t, []float64{0, 1, 2, 5, 6, 7}, parts[0].Float64s())
	assert.Equal(t, []float64{3, 4, 8, 9}, parts[1].Float64s())
	assert.False(t, parts[0].IsContiguous())
	assert.Equal(t, []int{5, 1}, parts[1].Strides())

	errs := []struct {
		run     func() ([]*Tensor, error)
		wantErr string
	}{
		{func() ([]*Tensor, error) { return x.Chunk(0, 0) }, "tensor: Chunk: chunks must be at least 1, got 0"},
		{func() ([]*Tensor, error) { return x.Chunk(2, 2) }, "tensor: Chunk: dim 2 out of range"},
		{func() ([]*Tensor, error) { return x.Split(-1, 0) }, "tensor: Split: split size -1 is negative"},
		{func() ([]*Tensor, error) { return x.Split(0, 1) }, "split size 0 is only allowed for a dim of size 0"},
		{func() ([]*Tensor, error) { return x.SplitSizes([]int{2, 2}, 1) }, "tensor: SplitSizes: sizes [2 2] add up to 4, but dim 1 has size 5"},
		{func() ([]*Tensor, error) { return x.SplitSizes([]int{6, -1}, 1) }, "sizes[1] = -1 is negative"},
	}
	for _, tc := range errs {
		_, err := tc.run()
		assert.ErrorContains(t, err, tc.wantErr)
	}
}

func TestReshape(t *testing.T) {
	x := arange(t, 2, 3, 4)
	tests := []struct {
		shape []int
		want  []int
	}{
		{[]int{24}, []int{24}},
		{[]int{-1}, []int{24}},
		{[]int{4, -1}, []int{4, 6}},
		{[]int{2, -1, 3}, []int{2, 4, 3}},
		{[]int{1, 24, 1}, []int{1, 24, 1}},
	}
	for _, tc := range tests {
		r, err := x.Reshape(tc.shape...)
		require.NoError(t, err, tc.shape)
		assert.Equal(t, tc.want, r.Shape())
		assert.True(t, r.SharesStorage(x), "a contiguous tensor reshapes to a view")
		assert.Equal(t, x.Float64s(), r.Float64s())
	}
	for _, tc := range []struct {
		shape   []int
		wantErr string
	}{
		{[]int{5, -1}, "cannot infer the -1 in shape [5 -1] for the 24 elements"},
		{[]int{-1, -1}, "more than one -1"},
		{[]int{5, 5}, "tensor: Reshape: shape [5 5] has 25 elements, but tensor(float32, [2 3 4]) has 24"},
		{[]int{-2, -12}, "negative size -2"},
		{[]int{0, -1}, "cannot infer"},
	} {
		_, err := x.Reshape(tc.shape...)
		assert.ErrorContains(t, err, tc.wantErr, tc.shape)
	}

	// A non-contiguous tensor reshapes to a copy.
	tr, err := arange(t, 2, 3).Transpose(0, 1)
	require.NoError(t, err)
	r, err := tr.Reshape(6)
	require.NoError(t, err)
	assert.False(t, r.SharesStorage(tr))
	assert.Equal(t, []float64{0, 3, 1, 4, 2, 5}, r.Float64s())

	// Empty tensors reshape freely.
	empty := New(Float32, 0, 4)
	r, err = empty.Reshape(2, 0, 3)
	require.NoError(t, err)
	assert.Equal(t, []int{2, 0, 3}, r.Shape())
}

func TestTransposeAndContiguous(t *testing.T) {
	x := arange(t, 2, 3)
	tr, err := x.Transpose(0, -1)
	require.NoError(t, err)
	assert.Equal(t, []int{3, 2}, tr.Shape())
	assert.Equal(t, []int{1, 3}, tr.Strides())
	assert.False(t, tr.IsContiguous())
	assert.Equal(t, []float64{0, 3, 1, 4, 2, 5}, tr.Float64s())
	assert.Equal(t, 4.0, tr.Float(1, 1))
	assert.Panics(t, func() { tr.Bytes() })
	assert.Panics(t, func() { tr.Float32s() })

	c := tr.Contiguous()
	assert.True(t, c.IsContiguous())
	assert.False(t, c.SharesStorage(x))
	assert.Equal(t, []float32{0, 3, 1, 4, 2, 5}, c.Float32s())
	assert.Same(t, x, x.Contiguous())

	_, err = x.Transpose(0, 2)
	assert.ErrorContains(t, err, "tensor: Transpose: dim 2 out of range")

	// Dims of size 1 do not affect contiguity.
	y := arange(t, 3, 1)
	ty, err := y.Transpose(0, 1)
	require.NoError(t, err)
	assert.True(t, ty.IsContiguous())
}

func TestClone(t *testing.T) {
	x := arange(t, 3, 4)
	v, err := x.Narrow(1, 1, 2)
	require.NoError(t, err)
	c := v.Clone()
	assert.True(t, c.IsContiguous())
	assert.Equal(t, v.Float64s(), c.Float64s())
	c.SetFloat(100, 0, 0)
	assert.Equal(t, 1.0, x.Float(0, 1), "deep copy")
}

// TestConvertFrom: ConvertFrom gives To's elements in t's dtype, into contiguous and strided
// destinations, from contiguous (the fast path) and strided sources, and CopyFrom's errors.
func TestConvertFrom(t *testing.T) {
	vals := []float64{0, 1.00390625, -2.5, 1e-40, 3.4e38, math.Inf(-1), math.NaN(), 7, 65519, 1e5}
	src, err := FromFloat64s(Float32, vals, 2, 5)
	require.NoError(t, err)
	srcT, err := src.Transpose(0, 1) // [5 2], strided
	require.NoError(t, err)
	for _, dt := range []DType{BFloat16, Float16, Float64, Float32, Int32} {
		for _, s := range []*Tensor{src, srcT} {
			want := s.To(dt)
			dst := New(dt, s.Shape()...)
			require.NoError(t, dst.ConvertFrom(s), dt.String())
			assert.Equal(t, want.Bytes(), dst.Bytes(), "%s from strides %v", dt, s.Strides())
			// Into a strided view: the transposed rows of a larger buffer.
			big := New(dt, 2*s.Shape()[1], s.Shape()[0])
			bt, err := big.Transpose(0, 1)
			require.NoError(t, err)
			v, err := bt.Narrow(1, 0, s.Shape()[1])
			require.NoError(t, err)
			require.NoError(t, v.ConvertFrom(s), dt.String())
			assert.Equal(t, want.Bytes(), v.Contiguous().Bytes(), "%s into a view, from strides %v", dt, s.Strides())
		}
	}
	flat := New(BFloat16, 10)
	require.NoError(t, flat.ConvertFrom(src), "same numel, both contiguous")
	assert.Equal(t, src.To(BFloat16).Bytes(), flat.Bytes())
	assert.ErrorContains(t, New(BFloat16, 7).ConvertFrom(src), "tensor: ConvertFrom: src shape [2 5] (10 elements) does not match")
	assert.ErrorContains(t, New(BFloat16, 10).ConvertFrom(srcT), "only when both are contiguous")
}

func TestCopyFrom(t *testing.T) {
	t.Run("strided src into contiguous dst", func(t *testing.T) {
		tr, err := arange(t, 2, 3).Transpose(0, 1)
		require.NoError(t, err)
		dst := New(Float32, 3, 2)
		require.NoError(t, dst.CopyFrom(tr))
		assert.Equal(t, []float32{0, 3, 1, 4, 2, 5}, dst.Float32s())
	})
	t.Run("into a strided view", func(t *testing.T) {
		x := New(Float32, 2, 4)
		v, err := x.Narrow(1, 1, 2)
		require.NoError(t, err)
		require.NoError(t, v.CopyFrom(FromSlice([]float32{1, 2, 3, 4}, 2, 2)))
		assert.Equal(t, []float32{0, 1, 2, 0, 0, 3, 4, 0}, x.Float32s())
	})
	t.Run("strided to strided, all dtypes", func(t *testing.T) {
		for _, dt := range AllDTypes() {
			src, err := FromFloat64s(dt, []float64{0, 1, 0, 1, 1, 0}, 2, 3)
			require.NoError(t, err)
			srcT, err := src.Transpose(0, 1) // [3 2], strides [1 3]
			require.NoError(t, err)
			dst := New(dt, 4, 3)
			dv, err := dst.Transpose(0, 1) // [3 4], strides [1 3]
			require.NoError(t, err)
			dv, err = dv.Narrow(1, 1, 2) // [3 2], offset 3
			require.NoError(t, err)
			require.NoError(t, dv.CopyFrom(srcT), dt.String())
			assert.Equal(t, srcT.Float64s(), dv.Float64s(), dt.String())
			assert.Equal(t, []float64{0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0}, dst.Float64s(), dt.String()) // rows 1 and 2 are src
		}
	})
	t.Run("same numel, both contiguous", func(t *testing.T) {
		dst := New(Float32, 6)
		require.NoError(t, dst.CopyFrom(arange(t, 2, 3)))
		assert.Equal(t, []float32{0, 1, 2, 3, 4, 5}, dst.Float32s())
	})
	t.Run("overlapping views", func(t *testing.T) {
		x := arange(t, 4, 2)
		xt, err := x.Transpose(0, 1) // [2 4], strided
		require.NoError(t, err)
		a, err := xt.Narrow(1, 0, 2)
		require.NoError(t, err)
		b, err := xt.Narrow(1, 1, 2)
		require.NoError(t, err)
		want := b.Float64s()
		require.NoError(t, a.CopyFrom(b))
		assert.Equal(t, want, a.Float64s())
	})
	t.Run("errors", func(t *testing.T) {
		x := New(Float32, 2, 3)
		assert.EqualError(t, x.CopyFrom(New(Float64, 2, 3)), "tensor: CopyFrom: src is float64 but dst is float32; convert src with To first, or use ConvertFrom")
		assert.ErrorContains(t, x.CopyFrom(New(Float32, 7)), "does not match")
		tr, err := New(Float32, 3, 2).Transpose(0, 1)
		require.NoError(t, err)
		require.NoError(t, x.CopyFrom(tr), "same shape, any strides")
		tr2, err := New(Float32, 2, 3).Transpose(0, 1)
		require.NoError(t, err)
		assert.ErrorContains(t, x.CopyFrom(tr2), "only when both are contiguous")
	})
}

func TestSharesStorage(t *testing.T) {
	buf := make([]byte, 32)
	a, err := FromBytes(Float32, buf[:16])
	require.NoError(t, err)
	b, err := FromBytes(Float32, buf[16:])
	require.NoError(t, err)
	c, err := FromBytes(Float32, buf[8:24])
	require.NoError(t, err)
	assert.False(t, a.SharesStorage(b))
	assert.True(t, a.SharesStorage(c))
	assert.True(t, c.SharesStorage(b))
	assert.False(t, a.SharesStorage(a.Clone()))
	assert.False(t, New(Float32, 0).SharesStorage(New(Float32, 0)))
}

func TestOverlaps(t *testing.T) {
	must := func(v *Tensor, err error) *Tensor {
		t.Helper()
		require.NoError(t, err)
		return v
	}
	base := arange(t, 4, 3)
	rows01 := must(base.Narrow(0, 0, 2))
	rows23 := must(base.Narrow(0, 2, 2))
	rows12 := must(base.Narrow(0, 1, 2))
	cols, err := base.Chunk(3, 1)
	require.NoError(t, err)
	tests := []struct {
		name string
		a, b *Tensor
		want bool
	}{
		{"itself", base, base, true},
		{"disjoint row blocks", rows01, rows23, false},
		{"overlapping row blocks", rows01, rows12, true},
		{"a view and its parent", rows23, base, true},
		{"interleaved columns (conservative)", cols[0], cols[1], true},
		{"a transposed view", must(base.Transpose(0, 1)), rows23, true},
		{"different buffers", base, base.Clone(), false},
		{"empty view", must(base.Narrow(0, 1, 0)), base, false},
		{"last row and the column before it", must(base.Narrow(0, 3, 1)), must(cols[0].Narrow(0, 0, 3)), false},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tc.a.Overlaps(tc.b), tc.name)
		assert.Equal(t, tc.want, tc.b.Overlaps(tc.a), tc.name+" (swapped)")
	}
	assert.True(t, rows01.SharesStorage(rows23), "disjoint views still share storage")
}

func TestFill(t *testing.T) {
	for _, dt := range AllDTypes() {
		x := New(dt, 3, 5)
		x.Fill(1)
		for _, v := range x.Float64s() {
			require.Equal(t, 1.0, v, dt.String())
		}
	}
	x := New(Int32, 1000)
	x.Fill(-7)
	for _, v := range x.Int32s() {
		require.Equal(t, int32(-7), v)
	}
	New(Float32, 0).Fill(1) // no elements: no panic
}

func TestTo(t *testing.T) {
	x := FromSlice([]int64{math.MaxInt64, -1, 300})
	assert.Equal(t, []int8{-1, -1, 44}, x.To(Int8).Int8s(), "integer to integer wraps exactly")
	assert.Equal(t, []bool{true, true, true}, x.To(Bool).Bools())
	f := FromSlice([]float32{1.5, -2.7, 1e6}).To(BFloat16)
	assert.Equal(t, BFloat16, f.DType())
	assert.Equal(t, []float64{1.5, -2.703125, 999424}, f.Float64s())
	assert.Equal(t, []int32{1, -2, 1000000}, FromSlice([]float32{1.5, -2.7, 1e6}).To(Int32).Int32s())
	assert.Equal(t, []uint8{0x3c, 0xc0}, FromSlice([]float64{1, -2}).To(Float8E5M2).Uint8s())
}

func TestTypedAccessors(t *testing.T) {
	f := FromSlice([]float32{1, 2})
	f.Float32s()[1] = 5
	assert.Equal(t, 5.0, f.Float(1), "aliases storage")
	assert.Equal(t, []float64{3}, FromSlice([]float64{3}).F64s())
	assert.Equal(t, []int8{-3}, FromSlice([]int8{-3}).Int8s())
	assert.Equal(t, []uint8{3}, FromSlice([]uint8{3}).Uint8s())
	assert.Equal(t, []int32{3}, FromSlice([]int32{3}).Int32s())
	assert.Equal(t, []int64{3}, FromSlice([]int64{3}).Int64s())
	assert.Equal(t, []bool{true, false}, FromSlice([]bool{true, false}).Bools())
	assert.Equal(t, []uint16{0x3c00}, FromFloat16Bits([]uint16{0x3c00}).Uint16s())
	assert.Equal(t, []uint16{0x3f80}, FromBFloat16Bits([]uint16{0x3f80}).Uint16s())
	assert.Equal(t, []float32{}, New(Float32, 0).Float32s())

	assert.PanicsWithValue(t, "tensor: Int32s on tensor(float32, [2]): wrong dtype; want [int32]", func() { f.Int32s() })
	assert.Panics(t, func() { New(Float64, 1).Float32s() })
	assert.Panics(t, func() { New(Float32, 1).Uint16s() })

	buf := alloc(16) // 8-aligned, so buf[1:9] is not
	mis, err := FromBytes(Float64, buf[1:9])
	require.NoError(t, err)
	assert.Panics(t, func() { mis.F64s() }, "misaligned storage")
	assert.Equal(t, []float64{0}, mis.Float64s(), "the copying accessor works on any storage")
}

func TestEqualAndAllClose(t *testing.T) {
	a := arange(t, 2, 3)
	b := arange(t, 2, 3)
	assert.True(t, Equal(a, b))
	b.SetFloat(7, 1, 1)
	assert.False(t, Equal(a, b))
	assert.False(t, Equal(a, New(Float32, 3, 2)))
	assert.False(t, Equal(a, a.To(Float64)))

	at, err := a.Transpose(0, 1)
	require.NoError(t, err)
	assert.True(t, Equal(at, at.Contiguous()), "strides may differ")
	assert.False(t, Equal(at, a))

	negZero, err := FromFloat64s(Float32, []float64{math.Copysign(0, -1)})
	require.NoError(t, err)
	zero := New(Float32, 1)
	assert.False(t, Equal(negZero, zero), "bitwise")
	assert.True(t, AllClose(negZero, zero, 0, 0))

	x := FromSlice([]float64{1, 100, math.Inf(1)})
	y := FromSlice([]float64{1.001, 100.05, math.Inf(1)})
	assert.True(t, AllClose(x, y, 1e-3, 1e-5))
	assert.False(t, AllClose(x, y, 1e-4, 1e-5))
	assert.True(t, AllClose(x, x.To(Float32), 1e-6, 0), "dtypes may differ")
	nan := FromSlice([]float64{math.NaN()})
	assert.False(t, AllClose(nan, nan, 1, 1))
	assert.False(t, AllClose(FromSlice([]float64{math.Inf(1)}), FromSlice([]float64{math.Inf(-1)}), 1, 1))
	assert.False(t, AllClose(x, New(Float64, 2), 1, 1))
}

func TestString(t *testing.T) {
	assert.Equal(t, "tensor(float32, [2 3])", New(Float32, 2, 3).String())
	x := New(BFloat16, 4)
	x.device = Device{Type: "xpu", Index: 0}
	assert.Equal(t, "tensor(bfloat16, [4], xpu:0)", x.String())
}

// Size is each dim's extent, as Shape lists them, views included.
func TestSize(t *testing.T) {
	x := New(Float32, 2, 3, 4)
	for d, n := range x.Shape() {
		assert.Equal(t, n, x.Size(d))
	}
	v, err := x.Transpose(0, 2)
	require.NoError(t, err)
	assert.Equal(t, []int{4, 3, 2}, []int{v.Size(0), v.Size(1), v.Size(2)})
	assert.Panics(t, func() { x.Size(3) })
}
