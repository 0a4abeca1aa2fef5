package tensor

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// Device says where a tensor's storage lives: Type is "cpu" for host memory or a device kind such
// as "xpu", and Index numbers devices of that kind.
type Device struct {
	Type  string
	Index int
}

// CPU is host memory. Every tensor this package creates lives there.
var CPU = Device{Type: "cpu"}

// IsCPU reports whether d is host memory (Type "cpu", or the zero Device).
func (d Device) IsCPU() bool { return d.Type == "" || d.Type == "cpu" }

// String returns "cpu" for host memory and "type:index" otherwise, such as "xpu:0".
func (d Device) String() string {
	if d.IsCPU() && d.Index == 0 {
		return "cpu"
	}
	t := d.Type
	if t == "" {
		t = "cpu"
	}
	return t + ":" + strconv.Itoa(d.Index)
}

// ParseDevice parses a device as String prints it: "cpu", "xpu:1", or "xpu" (meaning "xpu:0").
func ParseDevice(s string) (Device, error) {
	typ, idx, hasIdx := strings.Cut(strings.TrimSpace(s), ":")
	if typ == "" || strings.ContainsAny(typ, " \t") {
		return Device{}, fmt.Errorf("tensor: invalid device %q: want a type and an optional index, such as cpu or xpu:0", s)
	}
	d := Device{Type: strings.ToLower(typ)}
	if hasIdx {
		n, err := strconv.Atoi(idx)
		if err != nil || n < 0 {
			return Device{}, fmt.Errorf("tensor: invalid device %q: the index must be a non-negative integer, such as xpu:0", s)
		}
		d.Index = n
	}
	return d, nil
}

// Tensor is a dense, row-major, strided tensor of one dtype over little-endian element bytes in
// host memory.
//
// Shape and strides are in elements. Views (Narrow, Chunk, Split, SplitSizes, Transpose, and
// Reshape of a contiguous tensor) share their parent's storage: writes through one are seen
// through the other. A Tensor is not safe for concurrent writes; concurrent reads are fine.
// Always create tensors with New, FromBytes, FromSlice, FromFloat64s or the other constructors;
// the zero Tensor is not usable. FromDevicePointer makes a device tensor, which holds a device
// pointer instead of host bytes: only its layout and views are usable on the host.
//
// Float and SetFloat panic on an index out of range, as slice indexing does, and the typed
// accessors (Float32s, ...) and Bytes panic when used on the wrong dtype or a strided view; methods
// that take dims or sizes (Narrow, Chunk, Reshape, ...) return errors. Dims may be negative,
// counting from the end as in PyTorch (-1 is the last dim).
type Tensor struct {
	dtype   DType
	shape   []int
	strides []int // in elements
	offset  int   // in elements, into data
	data    []byte
	device  Device
	// A device tensor (FromDevicePointer) has no data: its storage is devLen bytes of device
	// memory at ptr, and offset counts from ptr.
	ptr    uintptr
	devLen int
	// Derived from the layout, which never changes after construction (see makeTensor): every
	// collective asks for them, so they are computed once.
	numel      int
	contiguous bool
}

// makeTensor builds a tensor with the given layout; shape and strides are taken, not copied.
func makeTensor(dt DType, shape, strides []int, offset int, data []byte, dev Device) *Tensor {
	t := &Tensor{dtype: dt, shape: shape, strides: strides, offset: offset, data: data, device: dev}
	t.numel = numelShape(shape)
	t.contiguous = t.numel == 0 || stridesContiguous(shape, strides)
	return t
}

// stridesContiguous reports whether strides lay shape out row-major without gaps (dims of
// extent 1 may have any stride).
func stridesContiguous(shape, strides []int) bool {
	want := 1
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && strides[i] != want {
			return false
		}
		want *= shape[i]
	}
	return true
}

// Element is the set of Go element types FromSlice accepts, with their dtypes: float32 (Float32),
// float64 (Float64), int8 (Int8), uint8 (Uint8), int32 (Int32), int64 (Int64), bool (Bool). For
// float16 and bfloat16 bits use FromFloat16Bits and FromBFloat16Bits.
type Element interface {
	~float32 | ~float64 | ~int8 | ~uint8 | ~int32 | ~int64 | ~bool
}

// numelOf returns the number of elements of shape, or an error naming fn if a size is negative or
// the count overflows.
func numelOf(fn string, shape []int) (int, error) {
	n := 1
	for i, s := range shape {
		if s < 0 {
			return 0, fmt.Errorf("tensor: %s: negative size %d in dim %d of shape %v", fn, s, i, shape)
		}
		if s != 0 && n > math.MaxInt/s {
			return 0, fmt.Errorf("tensor: %s: shape %v has too many elements", fn, shape)
		}
		n *= s
	}
	return n, nil
}

// contiguousStrides returns the row-major strides of shape.
func contiguousStrides(shape []int) []int {
	st := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = acc
		acc *= shape[i]
	}
	return st
}

// cloneShape copies a shape, returning a non-nil slice.
func cloneShape(s []int) []int {
	return append(make([]int, 0, len(s)), s...)
}

// newTensor allocates a zeroed contiguous tensor, checking its arguments.
func newTensor(fn string, dt DType, shape []int) (*Tensor, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("tensor: %s: invalid dtype %s", fn, dt)
	}
	n, err := numelOf(fn, shape)
	if err != nil {
		return nil, err
	}
	if n > math.MaxInt/dt.Size() {
		return nil, fmt.Errorf("tensor: %s: shape %v of %s needs too many bytes", fn, shape, dt)
	}
	return makeTensor(dt, cloneShape(shape), contiguousStrides(shape), 0, alloc(n*dt.Size()), CPU), nil
}

// New returns a zeroed, contiguous tensor of dtype dt and the given shape. With no shape it
// returns a 0-dim tensor, which has one element.
//
// New panics if dt is invalid or a size is negative: these are programming errors.
func New(dt DType, shape ...int) *Tensor {
	t, err := newTensor("New", dt, shape)
	if err != nil {
		panic(err)
	}
	return t
}

// FromBytes returns a contiguous tensor over data, which holds little-endian elements of dtype dt:
// it does not copy, so the tensor and the caller share the bytes. len(data) must be exactly the
// shape's element count times dt.Size(). With no shape the tensor is 1-D with len(data)/dt.Size()
// elements.
func FromBytes(dt DType, data []byte, shape ...int) (*Tensor, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("tensor: FromBytes: invalid dtype %s", dt)
	}
	size := dt.Size()
	if len(shape) == 0 {
		if len(data)%size != 0 {
			return nil, fmt.Errorf("tensor: FromBytes: %d bytes are not a whole number of %s elements (%d bytes each)", len(data), dt, size)
		}
		shape = []int{len(data) / size}
	}
	n, err := numelOf("FromBytes", shape)
	if err != nil {
		return nil, err
	}
	if n > math.MaxInt/size || n*size != len(data) {
		return nil, fmt.Errorf("tensor: FromBytes: shape %v of %s needs %d bytes, got %d", shape, dt, n*size, len(data))
	}
	if data == nil {
		data = []byte{}
	}
	return makeTensor(dt, cloneShape(shape), contiguousStrides(shape), 0, data, CPU), nil
}

// FromDevicePointer returns a contiguous tensor over device memory: the elements of dtype dt
// at ptr on dev (such as xpu:0), in the given shape (with no shape, 0-dim: one element). It does
// not copy or check the memory, which must hold the shape's elements for as long as the tensor
// is used; ptr may be 0 only when the shape has no elements.
//
// A device tensor carries its pointer to the collectives of a backend for the device (xccl for
// xpu). The host-only methods, which read or write elements (Bytes, Float32s and the other typed
// accessors, Float, SetFloat, Float64s, Fill, Clone, To, Equal, ...), panic on it: copy it to the
// host first. CopyFrom returns an error. Views work on it as on a host tensor (Narrow, Chunk,
// Split, Transpose, and Reshape of a contiguous tensor), through pointer arithmetic;
// DevicePointer returns the address of a view's first element.
func FromDevicePointer(dt DType, dev Device, ptr uintptr, shape ...int) (*Tensor, error) {
	if dev.IsCPU() {
		return nil, fmt.Errorf("tensor: FromDevicePointer: device %v is the host: use FromBytes for host memory", dev)
	}
	if !dt.Valid() {
		return nil, fmt.Errorf("tensor: FromDevicePointer: invalid dtype %s", dt)
	}
	n, err := numelOf("FromDevicePointer", shape)
	if err != nil {
		return nil, err
	}
	if n > math.MaxInt/dt.Size() {
		return nil, fmt.Errorf("tensor: FromDevicePointer: shape %v of %s needs too many bytes", shape, dt)
	}
	if ptr == 0 && n > 0 {
		return nil, fmt.Errorf("tensor: FromDevicePointer: a NULL pointer for %d elements on %v: pass the address of the device allocation", n, dev)
	}
	t := makeTensor(dt, cloneShape(shape), contiguousStrides(shape), 0, nil, dev)
	t.ptr, t.devLen = ptr, n*dt.Size()
	return t, nil
}

// IsDevice reports whether t lives in device memory (it was made by FromDevicePointer).
func (t *Tensor) IsDevice() bool { return t.data == nil && !t.device.IsCPU() }

// DevicePointer returns the device address of t's first element (the pointer FromDevicePointer
// got, plus the offset of a view). It panics on a host tensor: use Bytes there.
func (t *Tensor) DevicePointer() uintptr {
	if !t.IsDevice() {
		panic(fmt.Sprintf("tensor: DevicePointer on host %s; it has host bytes (Bytes), not a device pointer", t))
	}
	return t.ptr + uintptr(t.offset*t.dtype.Size())
}

// hostOnly panics when a method that reads or writes elements on the host is called on a device
// tensor: a programming error, like Bytes on a strided view.
func (t *Tensor) hostOnly(method string) {
	if t.IsDevice() {
		panic(fmt.Sprintf("tensor: %s on %s: the tensor is in the memory of %v, which the host cannot read or write; copy it to the host first (with the device's API, such as a SYCL memcpy) and use a host tensor", method, t, t.device))
	}
}

// dtypeFor returns the dtype of a FromSlice element type.
func dtypeFor[T Element]() DType {
	switch reflect.TypeFor[T]().Kind() {
	case reflect.Float32:
		return Float32
	case reflect.Float64:
		return Float64
	case reflect.Int8:
		return Int8
	case reflect.Uint8:
		return Uint8
	case reflect.Int32:
		return Int32
	case reflect.Int64:
		return Int64
	case reflect.Bool:
		return Bool
	}
	panic("tensor: unreachable: unknown Element kind")
}

// fromRaw copies n elements of size bytes at p into a new tensor of the given shape (1-D of n
// elements if shape is empty), panicking on a shape mismatch.
func fromRaw(fn string, dt DType, p unsafe.Pointer, n int, shape []int) *Tensor {
	if len(shape) == 0 {
		shape = []int{n}
	}
	t := New(dt, shape...)
	if t.Numel() != n {
		panic(fmt.Sprintf("tensor: %s: shape %v has %d elements but the slice has %d", fn, shape, t.Numel(), n))
	}
	if n > 0 {
		copy(t.data, unsafe.Slice((*byte)(p), n*dt.Size()))
		if !hostLittleEndian {
			swapBytes(t.data, dt.Size())
		}
	}
	return t
}

// FromSlice returns a new contiguous tensor holding a copy of s, with the dtype of T (see
// Element). With no shape the tensor is 1-D of len(s) elements; use Reshape() for a 0-dim tensor.
// It panics if the shape's element count is not len(s).
func FromSlice[T Element](s []T, shape ...int) *Tensor {
	return fromRaw("FromSlice", dtypeFor[T](), unsafe.Pointer(unsafe.SliceData(s)), len(s), shape)
}

// FromFloat16Bits returns a new Float16 tensor holding a copy of bits (IEEE binary16 patterns, as
// Float32ToFloat16 returns). Shapes work as in FromSlice.
func FromFloat16Bits(bits []uint16, shape ...int) *Tensor {
	return fromRaw("FromFloat16Bits", Float16, unsafe.Pointer(unsafe.SliceData(bits)), len(bits), shape)
}

// FromBFloat16Bits returns a new BFloat16 tensor holding a copy of bits (as Float32ToBFloat16
// returns). Shapes work as in FromSlice.
func FromBFloat16Bits(bits []uint16, shape ...int) *Tensor {
	return fromRaw("FromBFloat16Bits", BFloat16, unsafe.Pointer(unsafe.SliceData(bits)), len(bits), shape)
}

// FromFloat64s returns a new contiguous tensor of dtype dt holding vals converted as SetFloat
// converts. With no shape the tensor is 1-D of len(vals) elements.
func FromFloat64s(dt DType, vals []float64, shape ...int) (*Tensor, error) {
	if len(shape) == 0 {
		shape = []int{len(vals)}
	}
	t, err := newTensor("FromFloat64s", dt, shape)
	if err != nil {
		return nil, err
	}
	if t.Numel() != len(vals) {
		return nil, fmt.Errorf("tensor: FromFloat64s: shape %v has %d elements but there are %d values", shape, t.Numel(), len(vals))
	}
	size := dt.Size()
	for i, v := range vals {
		encodeFloat(dt, t.data[i*size:], v)
	}
	return t, nil
}

// encodeFloat writes v, converted to dt, as little-endian bytes at the start of b.
func encodeFloat(dt DType, b []byte, v float64) {
	le := binary.LittleEndian
	switch dt {
	case Float32:
		le.PutUint32(b, math.Float32bits(float32(v)))
	case Float64:
		le.PutUint64(b, math.Float64bits(v))
	case Float16:
		le.PutUint16(b, float64ToFloat16(v))
	case BFloat16:
		le.PutUint16(b, float64ToBFloat16(v))
	case Int8, Uint8:
		b[0] = byte(truncWrap(v))
	case Int32:
		le.PutUint32(b, uint32(truncWrap(v)))
	case Int64:
		le.PutUint64(b, uint64(truncWrap(v)))
	case Bool:
		b[0] = b2u(v != 0)
	case Float8E4M3FN:
		b[0] = float64ToFloat8E4M3FN(v)
	case Float8E5M2:
		b[0] = float64ToFloat8E5M2(v)
	}
}

// decodeFloat reads the little-endian element of dtype dt at the start of b as a float64.
func decodeFloat(dt DType, b []byte) float64 {
	le := binary.LittleEndian
	switch dt {
	case Float32:
		return float64(math.Float32frombits(le.Uint32(b)))
	case Float64:
		return math.Float64frombits(le.Uint64(b))
	case Float16:
		return float64(Float16ToFloat32(le.Uint16(b)))
	case BFloat16:
		return float64(BFloat16ToFloat32(le.Uint16(b)))
	case Int8:
		return float64(int8(b[0]))
	case Uint8:
		return float64(b[0])
	case Int32:
		return float64(int32(le.Uint32(b)))
	case Int64:
		return float64(int64(le.Uint64(b)))
	case Bool:
		return float64(b2u(b[0] != 0))
	case Float8E4M3FN:
		return float64(Float8E4M3FNToFloat32(b[0]))
	case Float8E5M2:
		return float64(Float8E5M2ToFloat32(b[0]))
	}
	return math.NaN()
}

// decodeInt reads the little-endian element of an integer or bool dtype at the start of b.
func decodeInt(dt DType, b []byte) int64 {
	le := binary.LittleEndian
	switch dt {
	case Int8:
		return int64(int8(b[0]))
	case Uint8:
		return int64(b[0])
	case Int32:
		return int64(int32(le.Uint32(b)))
	case Int64:
		return int64(le.Uint64(b))
	case Bool:
		return int64(b2u(b[0] != 0))
	}
	return 0
}

// encodeInt writes v, wrapped to an integer dtype (or v != 0 for bool), at the start of b.
func encodeInt(dt DType, b []byte, v int64) {
	le := binary.LittleEndian
	switch dt {
	case Int8, Uint8:
		b[0] = byte(v)
	case Int32:
		le.PutUint32(b, uint32(v))
	case Int64:
		le.PutUint64(b, uint64(v))
	case Bool:
		b[0] = b2u(v != 0)
	}
}

// DType returns the tensor's element type.
func (t *Tensor) DType() DType { return t.dtype }

// Device returns where the tensor's storage lives.
func (t *Tensor) Device() Device { return t.device }

// Shape returns a copy of the tensor's sizes, one per dim; empty for a 0-dim tensor.
func (t *Tensor) Shape() []int { return cloneShape(t.shape) }

// Strides returns a copy of the tensor's strides, in elements.
func (t *Tensor) Strides() []int { return cloneShape(t.strides) }

// Dim returns the number of dims.
func (t *Tensor) Dim() int { return len(t.shape) }

// Size returns the size of dim d (0 <= d < Dim()), like torch's t.size(d), without the copy
// Shape makes.
func (t *Tensor) Size(d int) int { return t.shape[d] }

// Numel returns the number of elements: the product of the shape, 1 for a 0-dim tensor.
func (t *Tensor) Numel() int { return t.numel }

// NBytes returns the size of the elements in bytes: Numel times the dtype's size.
func (t *Tensor) NBytes() int { return t.Numel() * t.dtype.Size() }

// IsContiguous reports whether the elements lie in row-major order without gaps, so that Bytes
// can return them. As in PyTorch, strides of dims of size 1 do not matter, and a tensor without
// elements is contiguous.
func (t *Tensor) IsContiguous() bool { return t.contiguous }

// Contiguous returns t itself if it is contiguous, and otherwise a contiguous copy (see Clone).
func (t *Tensor) Contiguous() *Tensor {
	if t.IsContiguous() {
		return t
	}
	return t.Clone()
}

// Clone returns a contiguous deep copy of t, with standard row-major strides.
func (t *Tensor) Clone() *Tensor {
	t.hostOnly("Clone")
	out := New(t.dtype, t.shape...)
	out.device = t.device
	copyElems(out, t)
	return out
}

// Bytes returns the little-endian element bytes of a contiguous tensor, aliasing its storage: len
// is NBytes, and writes through the slice change the tensor.
//
// Bytes panics if t is not contiguous: calling it on a strided view is a programming error; call
// Contiguous first, or check IsContiguous.
func (t *Tensor) Bytes() []byte {
	if t.data == nil {
		t.hostOnly("Bytes")
	}
	if !t.contiguous {
		panic(fmt.Sprintf("tensor: Bytes on non-contiguous %s (strides %v); call Contiguous first", t, t.strides))
	}
	if t.numel == 0 {
		return []byte{}
	}
	size := t.dtype.Size()
	lo := t.offset * size
	hi := lo + t.numel*size
	return t.data[lo:hi:hi]
}

// CopyFrom copies the elements of src into t. They must have the same dtype, and either the same
// shape (any strides) or, if both are contiguous, the same number of elements (the elements are
// copied in row-major order). It copies correctly even when src and t overlap in memory.
func (t *Tensor) CopyFrom(src *Tensor) error {
	if src.dtype != t.dtype && !t.IsDevice() && !src.IsDevice() {
		return fmt.Errorf("tensor: CopyFrom: src is %s but dst is %s; convert src with To first, or use ConvertFrom", src.dtype, t.dtype)
	}
	if err := t.checkCopy("CopyFrom", src); err != nil {
		return err
	}
	if !slices.Equal(src.shape, t.shape) || t.IsContiguous() && src.IsContiguous() {
		copy(t.Bytes(), src.Bytes())
		return nil
	}
	if t.SharesStorage(src) {
		src = src.Clone()
	}
	copyElems(t, src)
	return nil
}

// ConvertFrom copies the elements of src into t converting them to t's dtype, with To's results
// (torch's copy_ across dtypes); with the same dtype it is CopyFrom. The shapes follow CopyFrom's
// rule. Contiguous float32 <-> bfloat16, float16, float64 take To's typed loops (SIMD for the
// 16-bit formats), without To's allocation.
func (t *Tensor) ConvertFrom(src *Tensor) error {
	if src.dtype == t.dtype {
		return t.CopyFrom(src)
	}
	if err := t.checkCopy("ConvertFrom", src); err != nil {
		return err
	}
	if t.IsContiguous() && src.IsContiguous() && !t.SharesStorage(src) && convertFloats(t.dtype, t.Bytes(), src.dtype, src.Bytes()) {
		return nil
	}
	return t.CopyFrom(src.To(t.dtype))
}

// checkCopy is CopyFrom's and ConvertFrom's check of src against t (op names the caller): both on
// the host, and either of the same shape or both contiguous with as many elements.
func (t *Tensor) checkCopy(op string, src *Tensor) error {
	for _, x := range []*Tensor{t, src} {
		if x.IsDevice() {
			return fmt.Errorf("tensor: %s: %s is in the memory of %v, which the host cannot copy: use the device's API (such as a SYCL memcpy)", op, x, x.device)
		}
	}
	if slices.Equal(src.shape, t.shape) {
		return nil
	}
	if src.Numel() != t.Numel() {
		return fmt.Errorf("tensor: %s: src shape %v (%d elements) does not match dst shape %v (%d elements)",
			op, src.shape, src.Numel(), t.shape, t.Numel())
	}
	if !t.IsContiguous() || !src.IsContiguous() {
		return fmt.Errorf("tensor: %s: src shape %v differs from dst shape %v, which is allowed only when both are contiguous; Reshape one of them first",
			op, src.shape, t.shape)
	}
	return nil
}

// innermost returns the length and stride of a shape's last dim (1 and 1 for a 0-dim shape).
func innermost(shape, strides []int) (n, stride int) {
	if len(shape) == 0 {
		return 1, 1
	}
	return shape[len(shape)-1], strides[len(strides)-1]
}

// forEachRow calls fn with the element offsets, in two tensors of the same shape, of the start of
// each innermost row, in row-major order. It does not call fn if the shape has no elements.
func forEachRow(shape, sa []int, oa int, sb []int, ob int, fn func(oa, ob int)) {
	for _, s := range shape {
		if s == 0 {
			return
		}
	}
	nd := len(shape)
	if nd <= 1 {
		fn(oa, ob)
		return
	}
	idx := make([]int, nd-1)
	for {
		fn(oa, ob)
		d := nd - 2
		for ; d >= 0; d-- {
			idx[d]++
			oa += sa[d]
			ob += sb[d]
			if idx[d] < shape[d] {
				break
			}
			oa -= sa[d] * shape[d]
			ob -= sb[d] * shape[d]
			idx[d] = 0
		}
		if d < 0 {
			return
		}
	}
}

// forEachElem calls fn with the byte offset into t.data of each element, in row-major order.
func (t *Tensor) forEachElem(fn func(off int)) {
	t.hostOnly("reading elements")
	size := t.dtype.Size()
	n, st := innermost(t.shape, t.strides)
	forEachRow(t.shape, t.strides, t.offset, t.strides, t.offset, func(o, _ int) {
		for j := 0; j < n; j++ {
			fn((o + j*st) * size)
		}
	})
}

// copyElems copies src's elements into dst; they have the same dtype and shape and do not overlap
// (unless both are contiguous).
func copyElems(dst, src *Tensor) {
	if dst.IsContiguous() && src.IsContiguous() {
		copy(dst.Bytes(), src.Bytes())
		return
	}
	size := dst.dtype.Size()
	n, ds := innermost(dst.shape, dst.strides)
	_, ss := innermost(src.shape, src.strides)
	forEachRow(dst.shape, dst.strides, dst.offset, src.strides, src.offset, func(od, os int) {
		if ds == 1 && ss == 1 {
			copy(dst.data[od*size:(od+n)*size], src.data[os*size:(os+n)*size])
			return
		}
		for j := 0; j < n; j++ {
			d := (od + j*ds) * size
			s := (os + j*ss) * size
			copy(dst.data[d:d+size], src.data[s:s+size])
		}
	})
}

// SharesStorage reports whether t and o use overlapping memory, as views of one tensor do (unless
// their storage is empty).
func (t *Tensor) SharesStorage(o *Tensor) bool {
	if t.IsDevice() || o.IsDevice() {
		return t.device == o.device && t.devLen > 0 && o.devLen > 0 &&
			t.ptr < o.ptr+uintptr(o.devLen) && o.ptr < t.ptr+uintptr(t.devLen)
	}
	if len(t.data) == 0 || len(o.data) == 0 {
		return false
	}
	a0 := uintptr(unsafe.Pointer(unsafe.SliceData(t.data)))
	b0 := uintptr(unsafe.Pointer(unsafe.SliceData(o.data)))
	return a0 < b0+uintptr(len(o.data)) && b0 < a0+uintptr(len(t.data))
}

// Overlaps reports whether t and o may have elements in common: whether the memory spans of their
// elements, from the lowest element's first byte to the highest element's last byte, intersect.
// Unlike SharesStorage, it is false for disjoint views of one buffer, such as two Narrow slices
// along dim 0. It is exact when both tensors are contiguous; for strided views it is conservative:
// interleaved views, such as two column chunks of one matrix, are reported as overlapping though
// they share no element. Tensors without elements overlap nothing, and neither do tensors on
// different devices (device tensors compare their device addresses).
func (t *Tensor) Overlaps(o *Tensor) bool {
	a0, a1, ok := t.span()
	if !ok || t.device != o.device {
		return false
	}
	b0, b1, ok := o.span()
	return ok && a0 < b1 && b0 < a1
}

// span returns the address range [lo, hi) covering all of t's elements, or false if t has none.
func (t *Tensor) span() (lo, hi uintptr, ok bool) {
	if t.Numel() == 0 || (len(t.data) == 0 && t.ptr == 0) {
		return 0, 0, false
	}
	minOff, maxOff := t.offset, t.offset
	for d, n := range t.shape {
		if ext := t.strides[d] * (n - 1); ext < 0 {
			minOff += ext
		} else {
			maxOff += ext
		}
	}
	size := t.dtype.Size()
	base := t.ptr
	if t.data != nil {
		base = uintptr(unsafe.Pointer(unsafe.SliceData(t.data)))
	}
	return base + uintptr(minOff*size), base + uintptr((maxOff+1)*size), true
}

// elemOffset returns the byte offset into t.data of the element at idx, panicking if idx does not
// address an element.
func (t *Tensor) elemOffset(method string, idx []int) int {
	t.hostOnly(method)
	if len(idx) != len(t.shape) {
		panic(fmt.Sprintf("tensor: %s: %d indices for %s, which has %d dims", method, len(idx), t, len(t.shape)))
	}
	off := t.offset
	for d, i := range idx {
		if i < 0 || i >= t.shape[d] {
			panic(fmt.Sprintf("tensor: %s: index %d out of range for dim %d of size %d", method, i, d, t.shape[d]))
		}
		off += i * t.strides[d]
	}
	return off * t.dtype.Size()
}

// Float returns the element at idx (one index per dim; none for a 0-dim tensor) as a float64,
// whatever the dtype: bool reads as 0 or 1, float16/bfloat16/float8 exactly. It panics if idx is
// out of range.
func (t *Tensor) Float(idx ...int) float64 {
	return decodeFloat(t.dtype, t.data[t.elemOffset("Float", idx):])
}

// SetFloat stores v, converted to the dtype, at idx. Conversions: floats round to nearest even (to
// ±Inf on overflow, or NaN for float8_e4m3fn); integers truncate toward zero and wrap around
// (NaN and ±Inf give 0); bool is v != 0. It panics if idx is out of range.
func (t *Tensor) SetFloat(v float64, idx ...int) {
	encodeFloat(t.dtype, t.data[t.elemOffset("SetFloat", idx):], v)
}

// Float64s returns all elements in row-major order, converted to float64 as Float does.
func (t *Tensor) Float64s() []float64 {
	t.hostOnly("Float64s")
	out := make([]float64, 0, t.Numel())
	t.forEachElem(func(off int) {
		out = append(out, decodeFloat(t.dtype, t.data[off:]))
	})
	return out
}

// Fill sets every element to v, converted as SetFloat converts. For a view, only the view's
// elements change.
func (t *Tensor) Fill(v float64) {
	t.hostOnly("Fill")
	size := t.dtype.Size()
	var elem [8]byte
	encodeFloat(t.dtype, elem[:], v)
	if t.IsContiguous() {
		b := t.Bytes()
		if len(b) == 0 {
			return
		}
		copy(b, elem[:size])
		for filled := size; filled < len(b); filled *= 2 {
			copy(b[filled:], b[:filled])
		}
		return
	}
	t.forEachElem(func(off int) {
		copy(t.data[off:off+size], elem[:size])
	})
}

// To returns a new contiguous tensor with t's elements converted to dtype dt: as SetFloat converts,
// except that integer-to-integer conversions wrap exactly (without going through float64). With dt
// equal to t's dtype it is Clone.
func (t *Tensor) To(dt DType) *Tensor {
	if dt == t.dtype {
		return t.Clone()
	}
	t.hostOnly("To")
	out := New(dt, t.shape...)
	out.device = t.device
	if t.contiguous && convertFloats(dt, out.data, t.dtype, t.Bytes()) {
		return out
	}
	intToInt := (t.dtype.IsInteger() || t.dtype == Bool) && (dt.IsInteger() || dt == Bool)
	size := dt.Size()
	i := 0
	t.forEachElem(func(off int) {
		if intToInt {
			encodeInt(dt, out.data[i*size:], decodeInt(t.dtype, t.data[off:]))
		} else {
			encodeFloat(dt, out.data[i*size:], decodeFloat(t.dtype, t.data[off:]))
		}
		i++
	})
	return out
}

// String returns a short description, such as "tensor(float32, [2 3])"; tensors off the host add
// their device: "tensor(bfloat16, [4], xpu:0)". It does not print the elements.
func (t *Tensor) String() string {
	if t == nil {
		return "tensor(nil)"
	}
	if t.device.IsCPU() {
		return fmt.Sprintf("tensor(%s, %v)", t.dtype, t.shape)
	}
	return fmt.Sprintf("tensor(%s, %v, %s)", t.dtype, t.shape, t.device)
}

// viewAs returns the elements of a contiguous tensor of one of dtypes as a []T aliasing its
// storage, panicking on misuse.
func viewAs[T any](t *Tensor, method string, dtypes ...DType) []T {
	t.hostOnly(method)
	if !slices.Contains(dtypes, t.dtype) {
		panic(fmt.Sprintf("tensor: %s on %s: wrong dtype; want %v", method, t, dtypes))
	}
	if !t.IsContiguous() {
		panic(fmt.Sprintf("tensor: %s on non-contiguous %s (strides %v); call Contiguous first", method, t, t.strides))
	}
	b := t.Bytes()
	if len(b) == 0 {
		return []T{}
	}
	if !aligned(b, t.dtype.Size()) {
		panic(fmt.Sprintf("tensor: %s on %s: storage is not aligned for %s elements (or the host is big-endian); use Float64s or Clone", method, t, t.dtype))
	}
	return as[T](b)
}

// The typed accessors return the elements of a contiguous tensor as a slice of the matching Go
// type that aliases the tensor's storage: writes through the slice change the tensor. They panic if
// the dtype does not match, if t is not contiguous, or if its storage (from FromBytes) is not
// aligned for the element type.

// Float32s returns the elements of a contiguous Float32 tensor, aliasing its storage.
func (t *Tensor) Float32s() []float32 { return viewAs[float32](t, "Float32s", Float32) }

// F64s returns the elements of a contiguous Float64 tensor, aliasing its storage. (Float64s is the
// copying conversion of any dtype.)
func (t *Tensor) F64s() []float64 { return viewAs[float64](t, "F64s", Float64) }

// Int8s returns the elements of a contiguous Int8 tensor, aliasing its storage.
func (t *Tensor) Int8s() []int8 { return viewAs[int8](t, "Int8s", Int8) }

// Uint8s returns the elements of a contiguous Uint8 tensor, or the bit patterns of a float8 one,
// aliasing its storage.
func (t *Tensor) Uint8s() []uint8 {
	return viewAs[uint8](t, "Uint8s", Uint8, Float8E4M3FN, Float8E5M2)
}

// Int32s returns the elements of a contiguous Int32 tensor, aliasing its storage.
func (t *Tensor) Int32s() []int32 { return viewAs[int32](t, "Int32s", Int32) }

// Int64s returns the elements of a contiguous Int64 tensor, aliasing its storage.
func (t *Tensor) Int64s() []int64 { return viewAs[int64](t, "Int64s", Int64) }

// Bools returns the elements of a contiguous Bool tensor, aliasing its storage. Every byte must
// be 0 or 1, as this package always writes them; other bytes (from FromBytes) are not valid Go
// bools.
func (t *Tensor) Bools() []bool { return viewAs[bool](t, "Bools", Bool) }

// Uint16s returns the bit patterns of a contiguous Float16 or BFloat16 tensor, aliasing its
// storage; convert them with Float16ToFloat32 or BFloat16ToFloat32.
func (t *Tensor) Uint16s() []uint16 { return viewAs[uint16](t, "Uint16s", Float16, BFloat16) }

// Equal reports whether a and b have the same dtype, the same shape and the same element bytes
// (so a NaN equals a NaN with the same bits, and -0 does not equal +0). Strides may differ.
func Equal(a, b *Tensor) bool {
	a.hostOnly("Equal")
	b.hostOnly("Equal")
	if a.dtype != b.dtype || !slices.Equal(a.shape, b.shape) {
		return false
	}
	if a.IsContiguous() && b.IsContiguous() {
		return bytes.Equal(a.Bytes(), b.Bytes())
	}
	size := a.dtype.Size()
	n, ast := innermost(a.shape, a.strides)
	_, bst := innermost(b.shape, b.strides)
	equal := true
	forEachRow(a.shape, a.strides, a.offset, b.strides, b.offset, func(oa, ob int) {
		for j := 0; j < n && equal; j++ {
			x := (oa + j*ast) * size
			y := (ob + j*bst) * size
			equal = bytes.Equal(a.data[x:x+size], b.data[y:y+size])
		}
	})
	return equal
}

// AllClose reports whether a and b have the same shape and every pair of elements, read as
// float64, satisfies |a-b| <= atol + rtol*|b|, like torch.allclose. Equal infinities are close;
// NaNs are never close. The dtypes may differ.
func AllClose(a, b *Tensor, rtol, atol float64) bool {
	if !slices.Equal(a.shape, b.shape) {
		return false
	}
	av, bv := a.Float64s(), b.Float64s()
	for i, x := range av {
		y := bv[i]
		if x == y {
			continue
		}
		if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(x, 0) || math.IsInf(y, 0) {
			return false
		}
		if math.Abs(x-y) > atol+rtol*math.Abs(y) {
			return false
		}
	}
	return true
}
