package tensor

import (
	"fmt"
	"slices"
)

// matrix is a 2-D tensor as BLAS sees it: row-major storage of stored rows × cols with leading
// dimension ld, starting at element off of data, used transposed when trans is set.
type matrix struct {
	trans bool
	ld    int
	off   int
}

// blasMatrix returns how BLAS can read the 2-D tensor t in place: rows of unit stride (ld is the
// row stride) or, for a transposed view, columns of unit stride (trans is set). It returns false
// when neither holds, or when the storage is not aligned native-endian, and t must be copied.
func blasMatrix(t *Tensor) (matrix, bool) {
	size := t.dtype.Size()
	if !hostLittleEndian || (len(t.data) > 0 && !aligned(t.data[t.offset*size:], size)) {
		return matrix{}, false
	}
	r, c := t.shape[0], t.shape[1]
	s0, s1 := t.strides[0], t.strides[1]
	if c == 1 || s1 == 1 {
		ld := max(1, c)
		if r > 1 {
			ld = s0
		}
		if ld >= max(1, c) {
			return matrix{ld: ld, off: t.offset}, true
		}
	}
	if r == 1 || s0 == 1 {
		ld := max(1, r)
		if c > 1 {
			ld = s1
		}
		if ld >= max(1, r) {
			return matrix{trans: true, ld: ld, off: t.offset}, true
		}
	}
	return matrix{}, false
}

// matmulDTypeOK reports whether dt is a dtype the matmuls accept.
func matmulDTypeOK(dt DType) bool {
	return dt == Float32 || dt == Float64 || dt == Float16 || dt == BFloat16
}

func checkMatmulDTypes(fn string, ts ...*Tensor) error {
	dt := ts[0].dtype
	for _, t := range ts {
		if t == nil {
			continue
		}
		if !t.device.IsCPU() {
			return fmt.Errorf("tensor: %s: %s is on %s; matmul runs on host tensors only", fn, t, t.device)
		}
		if t.dtype != dt {
			return fmt.Errorf("tensor: %s: mixed dtypes %s and %s; convert with To first", fn, dt, t.dtype)
		}
	}
	if !matmulDTypeOK(dt) {
		return fmt.Errorf("tensor: %s: %w: dtype %s (matmul takes float32, float64, and bfloat16 and float16, computed in float32)", fn, ErrUnsupported, dt)
	}
	return nil
}

// MatMulInto computes dst = alpha·op(a)·op(b) + beta·dst for 2-D tensors, where op(x) is x, or
// xᵀ when the matching trans flag is set: op(a) is [M K], op(b) [K N] and dst [M N]. It is BLAS's
// GEMM; with beta 0, dst's old contents are ignored (NaNs too). A Linear layer's weight w, stored
// [out in] like torch.nn.Linear's, is applied to x [M in] by MatMulInto(y, x, w, false, true, 1, 0).
//
// All three must have one dtype: float32 or float64 go straight to BLAS, reading a, b and dst in
// place when each has rows or columns of unit stride (such as a Transpose or Narrow view); other
// strided views are copied first. float32 and float64 with such layouts allocate nothing. bfloat16
// and float16 are converted to float32, multiplied, and rounded once into dst (allocating). dst must
// not overlap a or b.
//
//	y := tensor.New(tensor.Float32, 1, 2048)                      // one decode step
//	err := tensor.MatMulInto(y, x, w, false, true, 1, 0)          // y = x·wᵀ, w [2048 2048]
func MatMulInto(dst, a, b *Tensor, transA, transB bool, alpha, beta float64) error {
	const fn = "MatMulInto"
	if err := checkMatmulDTypes(fn, dst, a, b); err != nil {
		return err
	}
	if len(a.shape) != 2 || len(b.shape) != 2 || len(dst.shape) != 2 {
		return fmt.Errorf("tensor: %s: needs 2-D tensors; got a %v, b %v, dst %v", fn, a.shape, b.shape, dst.shape)
	}
	m, ka := a.shape[0], a.shape[1]
	if transA {
		m, ka = ka, m
	}
	kb, n := b.shape[0], b.shape[1]
	if transB {
		kb, n = n, kb
	}
	if ka != kb {
		return fmt.Errorf("tensor: %s: inner dims differ: op(a) is [%d %d] (a %v, transA %t) but op(b) is [%d %d] (b %v, transB %t)",
			fn, m, ka, a.shape, transA, kb, n, b.shape, transB)
	}
	if dst.shape[0] != m || dst.shape[1] != n {
		return fmt.Errorf("tensor: %s: dst is %v but op(a)·op(b) is [%d %d] (a %v, b %v)", fn, dst.shape, m, n, a.shape, b.shape)
	}
	if dst.Overlaps(a) || dst.Overlaps(b) {
		return fmt.Errorf("tensor: %s: dst %v overlaps an input; write to a separate tensor", fn, dst.shape)
	}
	be := currentBLAS()
	if be.err != nil {
		return be.err
	}
	return gemm(be, dst, a, b, transA, transB, m, n, ka, alpha, beta)
}

// gemm runs a checked product: dst [m n] = alpha·op(a)·op(b) + beta·dst, op(a) [m k].
func gemm(be *blasBackend, dst, a, b *Tensor, transA, transB bool, m, n, k int, alpha, beta float64) error {
	if m == 0 || n == 0 {
		return nil
	}
	if dst.dtype == Float16 || dst.dtype == BFloat16 {
		c := dst.To(Float32)
		if err := gemm(be, c, a.To(Float32), b.To(Float32), transA, transB, m, n, k, alpha, beta); err != nil {
			return err
		}
		return dst.CopyFrom(c.To(dst.dtype))
	}
	if k == 0 { // no products: dst = beta·dst
		scaleInPlace(dst, beta)
		return nil
	}
	ma, ok := blasMatrix(a)
	if !ok {
		a = a.Clone()
		ma, _ = blasMatrix(a)
	}
	mb, ok := blasMatrix(b)
	if !ok {
		b = b.Clone()
		mb, _ = blasMatrix(b)
	}
	mc, ok := blasMatrix(dst)
	if !ok || mc.trans {
		// dst is not row-major with unit inner stride: compute into a packed copy and copy back.
		c := dst.Clone()
		if err := gemm(be, c, a, b, transA, transB, m, n, k, alpha, beta); err != nil {
			return err
		}
		return dst.CopyFrom(c)
	}
	tA, tB := transA != ma.trans, transB != mb.trans
	switch dst.dtype {
	case Float32:
		be.sgemm(tA, tB, m, n, k, float32(alpha), floats[float32](a, ma.off), ma.ld, floats[float32](b, mb.off), mb.ld,
			float32(beta), floats[float32](dst, mc.off), mc.ld)
	case Float64:
		be.dgemm(tA, tB, m, n, k, alpha, floats[float64](a, ma.off), ma.ld, floats[float64](b, mb.off), mb.ld,
			beta, floats[float64](dst, mc.off), mc.ld)
	}
	return nil
}

// floats views t's storage from element off to its end as []T (the tensor's dtype is T's).
func floats[T float32 | float64](t *Tensor, off int) []T {
	return as[T](t.data[off*t.dtype.Size():])
}

// scaleInPlace sets every element of t to beta·t (to 0 when beta is 0, NaNs included).
func scaleInPlace(t *Tensor, beta float64) {
	size := t.dtype.Size()
	t.forEachElem(func(off int) {
		v := 0.0
		if beta != 0 {
			v = beta * decodeFloat(t.dtype, t.data[off:])
		}
		encodeFloat(t.dtype, t.data[off:off+size], v)
	})
}

// MatMul returns the matrix product of a and b, like torch.matmul for tensors of 2 or more dims:
// a [M K] · b [K N] is [M N]. Leading (batch) dims are allowed: a [... M K] with a 2-D b applies b
// to every matrix of a (one GEMM over the rows of all of them), and a [... M K] with b [... K N]
// multiplies matrix by matrix when both have the same batch dims. The result is a new contiguous
// tensor of the inputs' dtype (float32, float64, bfloat16 or float16; see MatMulInto).
//
//	a, _ := tensor.FromFloat64s(tensor.Float32, []float64{1, 2, 3, 4}, 2, 2)
//	c, err := tensor.MatMul(a, a) // [[7 10] [15 22]]
func MatMul(a, b *Tensor) (*Tensor, error) {
	const fn = "MatMul"
	if err := checkMatmulDTypes(fn, a, b); err != nil {
		return nil, err
	}
	if len(a.shape) < 2 || len(b.shape) < 2 {
		return nil, fmt.Errorf("tensor: %s: needs tensors of 2 or more dims; got a %v and b %v", fn, a.shape, b.shape)
	}
	ra, rb := len(a.shape), len(b.shape)
	m, k, kb, n := a.shape[ra-2], a.shape[ra-1], b.shape[rb-2], b.shape[rb-1]
	if k != kb {
		return nil, fmt.Errorf("tensor: %s: inner dims differ: a %v has %d columns but b %v has %d rows", fn, a.shape, k, b.shape, kb)
	}
	be := currentBLAS()
	if be.err != nil {
		return nil, be.err
	}
	switch {
	case rb == 2:
		outShape := append(cloneShape(a.shape[:ra-1]), n)
		out := New(a.dtype, outShape...)
		a2 := a
		if ra > 2 {
			a2 = flattenRows(a)
		}
		rows := a2.shape[0]
		return out, gemm(be, out.view2D(0, rows, n), a2, b, false, false, rows, n, k, 1, 0)
	case slices.Equal(a.shape[:ra-2], b.shape[:rb-2]):
		outShape := append(cloneShape(a.shape[:ra-1]), n)
		out := New(a.dtype, outShape...)
		a, b = a.Contiguous(), b.Contiguous()
		for i := range numelShape(a.shape[:ra-2]) {
			av := a.view2DAt(a.offset+i*m*k, m, k)
			bv := b.view2DAt(b.offset+i*k*n, k, n)
			if err := gemm(be, out.view2D(i*m*n, m, n), av, bv, false, false, m, n, k, 1, 0); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("tensor: %s: batch dims differ: a %v, b %v (b may also be 2-D)", fn, a.shape, b.shape)
	}
}

// numelShape returns the number of elements of shape s.
func numelShape(s []int) int {
	n := 1
	for _, x := range s {
		n *= x
	}
	return n
}

// view2D returns rows×cols of contiguous t starting at element off (relative to t's offset).
func (t *Tensor) view2D(off, rows, cols int) *Tensor {
	return t.view2DAt(t.offset+off, rows, cols)
}

// view2DAt returns a packed rows×cols view of t's storage starting at absolute element off.
func (t *Tensor) view2DAt(off, rows, cols int) *Tensor {
	return t.view([]int{rows, cols}, []int{cols, 1}, off)
}

// flattenRows views t [... R C] as [(...·R) C], copying it first if it is not contiguous.
func flattenRows(t *Tensor) *Tensor {
	t = t.Contiguous()
	last := len(t.shape) - 1
	return t.view2DAt(t.offset, numelShape(t.shape[:last]), t.shape[last])
}

// Linear returns x·wᵀ + bias, like torch.nn.functional.linear: x is [... in], w [out in] (the
// layout of torch.nn.Linear's weight), bias [out] or nil; the result is [... out], contiguous.
//
//	y, err := tensor.Linear(x, w, b) // x [tokens 2048], w [5632 2048], b [5632]: y [tokens 5632]
func Linear(x, w, bias *Tensor) (*Tensor, error) {
	if len(x.shape) < 1 {
		return nil, fmt.Errorf("tensor: Linear: x must have at least 1 dim; got %v", x.shape)
	}
	if len(w.shape) != 2 {
		return nil, fmt.Errorf("tensor: Linear: w must be [out in]; got %v", w.shape)
	}
	outShape := append(cloneShape(x.shape[:len(x.shape)-1]), w.shape[0])
	if !matmulDTypeOK(x.dtype) {
		return nil, checkMatmulDTypes("Linear", x)
	}
	dst := New(x.dtype, outShape...)
	if err := linearInto("Linear", dst, x, w, bias); err != nil {
		return nil, err
	}
	return dst, nil
}

// LinearInto computes dst = x·wᵀ + bias (bias may be nil) into dst [... out], for x [... in] with
// the same leading dims and w [out in]. For float32 and float64 with 2-D x and dst whose rows have
// unit stride it allocates nothing: the hot path of a linear layer. (Leading dims are flattened
// into rows, which costs a small view allocation.)
func LinearInto(dst, x, w, bias *Tensor) error {
	return linearInto("LinearInto", dst, x, w, bias)
}

func linearInto(fn string, dst, x, w, bias *Tensor) error {
	if err := checkMatmulDTypes(fn, dst, x, w, bias); err != nil {
		return err
	}
	if len(w.shape) != 2 {
		return fmt.Errorf("tensor: %s: w must be [out in]; got %v", fn, w.shape)
	}
	out, in := w.shape[0], w.shape[1]
	if len(x.shape) < 1 || x.shape[len(x.shape)-1] != in {
		return fmt.Errorf("tensor: %s: x %v does not end in w's in-features %d (w %v)", fn, x.shape, in, w.shape)
	}
	if len(dst.shape) != len(x.shape) || !slices.Equal(dst.shape[:len(dst.shape)-1], x.shape[:len(x.shape)-1]) || dst.shape[len(dst.shape)-1] != out {
		return fmt.Errorf("tensor: %s: dst is %v but x %v · w %vᵀ is %v", fn, dst.shape, x.shape, w.shape,
			append(cloneShape(x.shape[:len(x.shape)-1]), out))
	}
	if bias != nil && (len(bias.shape) != 1 || bias.shape[0] != out) {
		return fmt.Errorf("tensor: %s: bias must be [%d] for w %v; got %v", fn, out, w.shape, bias.shape)
	}
	if dst.Overlaps(x) || dst.Overlaps(w) || (bias != nil && dst.Overlaps(bias)) {
		return fmt.Errorf("tensor: %s: dst %v overlaps an input; write to a separate tensor", fn, dst.shape)
	}
	be := currentBLAS()
	if be.err != nil {
		return be.err
	}
	x2, d2 := x, dst
	if len(x.shape) != 2 {
		x2 = flattenRows(x)
		if !dst.contiguous {
			c := dst.Clone()
			if err := linearInto(fn, c, x, w, bias); err != nil {
				return err
			}
			return dst.CopyFrom(c)
		}
		d2 = dst.view2DAt(dst.offset, x2.shape[0], out)
	}
	beta := 0.0
	if bias != nil {
		beta = 1
		broadcastRows(d2, bias)
	}
	return gemm(be, d2, x2, w, false, true, x2.shape[0], out, in, 1, beta)
}

// broadcastRows copies the 1-D v into every row of the 2-D d.
func broadcastRows(d, v *Tensor) {
	rows := d.shape[0]
	if rows == 0 || d.shape[1] == 0 {
		return
	}
	if d.contiguous && v.contiguous {
		src := v.Bytes()
		db := d.Bytes()
		for r := range rows {
			copy(db[r*len(src):], src)
		}
		return
	}
	size := d.dtype.Size()
	for r := range rows {
		for c := range d.shape[1] {
			off := (d.offset + r*d.strides[0] + c*d.strides[1]) * size
			encodeFloat(d.dtype, d.data[off:off+size], v.Float(c))
		}
	}
}
