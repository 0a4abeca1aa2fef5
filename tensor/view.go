package tensor

import (
	"fmt"
	"math"
)

// Views: tensors sharing their parent's storage with another shape, strides or offset.

// view returns a tensor over t's storage with the given layout.
func (t *Tensor) view(shape, strides []int, offset int) *Tensor {
	v := makeTensor(t.dtype, shape, strides, offset, t.data, t.device)
	v.ptr, v.devLen = t.ptr, t.devLen
	return v
}

// normDim resolves dim, which may count from the end when negative, against t's dims.
func (t *Tensor) normDim(method string, dim int) (int, error) {
	nd := len(t.shape)
	d := dim
	if d < 0 {
		d += nd
	}
	if d < 0 || d >= nd {
		if nd == 0 {
			return 0, fmt.Errorf("tensor: %s: dim %d out of range: %s is 0-dim and has no dims", method, dim, t)
		}
		return 0, fmt.Errorf("tensor: %s: dim %d out of range for %s (valid: %d to %d)", method, dim, t, -nd, nd-1)
	}
	return d, nil
}

// Narrow returns a view of the elements start to start+length-1 along dim, like torch.narrow.
func (t *Tensor) Narrow(dim, start, length int) (*Tensor, error) {
	d, err := t.normDim("Narrow", dim)
	if err != nil {
		return nil, err
	}
	return t.narrow("Narrow", d, start, length)
}

func (t *Tensor) narrow(method string, d, start, length int) (*Tensor, error) {
	size := t.shape[d]
	switch {
	case start < 0:
		return nil, fmt.Errorf("tensor: %s: start %d is negative", method, start)
	case length < 0:
		return nil, fmt.Errorf("tensor: %s: length %d is negative", method, length)
	case start > size-length:
		return nil, fmt.Errorf("tensor: %s: start %d + length %d > size %d of dim %d", method, start, length, size, d)
	}
	shape := cloneShape(t.shape)
	shape[d] = length
	return t.view(shape, cloneShape(t.strides), t.offset+start*t.strides[d]), nil
}

// Chunk splits t into at most chunks views along dim, like torch.chunk: each has
// ceil(size/chunks) elements along dim except the last, which may be smaller, so there may be
// fewer than chunks of them (6 elements in 4 chunks give 3 chunks of 2). A dim of size 0 gives
// chunks empty views.
func (t *Tensor) Chunk(chunks, dim int) ([]*Tensor, error) {
	if chunks < 1 {
		return nil, fmt.Errorf("tensor: Chunk: chunks must be at least 1, got %d", chunks)
	}
	d, err := t.normDim("Chunk", dim)
	if err != nil {
		return nil, err
	}
	n := t.shape[d]
	if n == 0 {
		return t.splitSizes("Chunk", make([]int, chunks), d)
	}
	return t.split("Chunk", (n+chunks-1)/chunks, d)
}

// Split splits t into views of size elements along dim, like torch.split with an int: the last
// view holds the remainder and may be smaller. A dim of size 0 gives one empty view. size may be
// 0 only if the dim's size is 0.
func (t *Tensor) Split(size, dim int) ([]*Tensor, error) {
	d, err := t.normDim("Split", dim)
	if err != nil {
		return nil, err
	}
	return t.split("Split", size, d)
}

func (t *Tensor) split(method string, size, d int) ([]*Tensor, error) {
	n := t.shape[d]
	switch {
	case size < 0:
		return nil, fmt.Errorf("tensor: %s: split size %d is negative", method, size)
	case size == 0 && n != 0:
		return nil, fmt.Errorf("tensor: %s: split size 0 is only allowed for a dim of size 0, but dim %d has size %d", method, d, n)
	}
	count := 1
	if size > 0 {
		count = max((n+size-1)/size, 1)
	}
	sizes := make([]int, count)
	for i := range sizes {
		sizes[i] = size
	}
	sizes[count-1] = n - size*(count-1)
	return t.splitSizes(method, sizes, d)
}

// SplitSizes splits t into views along dim with the given sizes, like torch.split with a list.
// The sizes must be non-negative and add up to the size of dim.
func (t *Tensor) SplitSizes(sizes []int, dim int) ([]*Tensor, error) {
	d, err := t.normDim("SplitSizes", dim)
	if err != nil {
		return nil, err
	}
	total := 0
	for i, s := range sizes {
		if s < 0 {
			return nil, fmt.Errorf("tensor: SplitSizes: sizes[%d] = %d is negative", i, s)
		}
		total += s
	}
	if total != t.shape[d] {
		return nil, fmt.Errorf("tensor: SplitSizes: sizes %v add up to %d, but dim %d has size %d", sizes, total, d, t.shape[d])
	}
	return t.splitSizes("SplitSizes", sizes, d)
}

// splitSizes returns the views for sizes, which are valid for dim d.
func (t *Tensor) splitSizes(method string, sizes []int, d int) ([]*Tensor, error) {
	out := make([]*Tensor, len(sizes))
	start := 0
	for i, s := range sizes {
		v, err := t.narrow(method, d, start, s)
		if err != nil {
			return nil, err
		}
		out[i] = v
		start += s
	}
	return out, nil
}

// Reshape returns a tensor with t's elements, in row-major order, and the given shape: a view if t
// is contiguous, otherwise a contiguous copy. One size may be -1, inferred from the others. With
// no sizes it returns a 0-dim tensor, which needs t to have exactly one element.
func (t *Tensor) Reshape(shape ...int) (*Tensor, error) {
	newShape := cloneShape(shape)
	infer := -1
	known := 1
	for i, s := range shape {
		switch {
		case s == -1 && infer >= 0:
			return nil, fmt.Errorf("tensor: Reshape: shape %v has more than one -1", shape)
		case s == -1:
			infer = i
		case s < 0:
			return nil, fmt.Errorf("tensor: Reshape: negative size %d in dim %d of shape %v", s, i, shape)
		default:
			if s != 0 && known > math.MaxInt/s {
				return nil, fmt.Errorf("tensor: Reshape: shape %v has too many elements", shape)
			}
			known *= s
		}
	}
	n := t.Numel()
	if infer >= 0 {
		if known == 0 || n%known != 0 {
			return nil, fmt.Errorf("tensor: Reshape: cannot infer the -1 in shape %v for the %d elements of %s", shape, n, t)
		}
		newShape[infer] = n / known
	} else if known != n {
		return nil, fmt.Errorf("tensor: Reshape: shape %v has %d elements, but %s has %d", shape, known, t, n)
	}
	if !t.IsContiguous() && t.IsDevice() {
		return nil, fmt.Errorf("tensor: Reshape: %s is a strided view of device memory, which Reshape would have to copy: reshape a contiguous device tensor, or copy it on the device first", t)
	}
	src := t.Contiguous()
	return src.view(newShape, contiguousStrides(newShape), src.offset), nil
}

// Transpose returns a view of t with dims d0 and d1 swapped, like torch.transpose.
func (t *Tensor) Transpose(d0, d1 int) (*Tensor, error) {
	a, err := t.normDim("Transpose", d0)
	if err != nil {
		return nil, err
	}
	b, err := t.normDim("Transpose", d1)
	if err != nil {
		return nil, err
	}
	shape, strides := cloneShape(t.shape), cloneShape(t.strides)
	shape[a], shape[b] = shape[b], shape[a]
	strides[a], strides[b] = strides[b], strides[a]
	return t.view(shape, strides, t.offset), nil
}
