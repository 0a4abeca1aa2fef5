package tensor

import (
	"encoding/binary"
	"unsafe"
)

// hostLittleEndian reports whether the host stores multi-byte values little-endian, as tensor
// storage does. When it does not (or a buffer is misaligned for its element type), the kernels
// work on aligned, byte-swapped copies of small blocks instead of on the buffers themselves.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// blockBytes is the size of the scratch blocks the block-wise kernels work on: small enough to
// stay in L1 cache, large enough that per-block dispatch costs nothing.
const blockBytes = 4096

// alloc returns n zeroed bytes aligned for any element type.
func alloc(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	return asBytes(make([]uint64, (n+7)/8))[:n:n]
}

// aligned reports whether b can be viewed as a slice of size-byte elements: its start is
// size-aligned and the host is little-endian. Empty slices are always viewable.
func aligned(b []byte, size int) bool {
	if size == 1 || len(b) == 0 {
		return true
	}
	// Element sizes are powers of two.
	return hostLittleEndian && uintptr(unsafe.Pointer(unsafe.SliceData(b)))&uintptr(size-1) == 0
}

// as views b as a []T (nil if b holds no whole element). b must be aligned for T (see aligned);
// a partial element at the end is left out.
func as[T any](b []byte) []T {
	var zero T
	n := len(b) / int(unsafe.Sizeof(zero))
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// swapBytes reverses the byte order of each size-byte element of b in place.
func swapBytes(b []byte, size int) {
	for i := 0; i+size <= len(b); i += size {
		e := b[i : i+size]
		for l, r := 0, size-1; l < r; l, r = l+1, r-1 {
			e[l], e[r] = e[r], e[l]
		}
	}
}

// load returns the little-endian elements of src as aligned host-order bytes: src itself when it
// already is, otherwise a copy in scratch (which must be aligned and at least len(src) long).
func load(src []byte, size int, scratch []byte) []byte {
	if aligned(src, size) {
		return src
	}
	s := scratch[:len(src)]
	copy(s, src)
	if !hostLittleEndian {
		swapBytes(s, size)
	}
	return s
}

// store writes host-order elements v back to little-endian dst, unless v is dst itself. It may
// clobber v.
func store(dst, v []byte, size int) {
	if len(v) == 0 || unsafe.SliceData(dst) == unsafe.SliceData(v) {
		return
	}
	if !hostLittleEndian {
		swapBytes(v, size)
	}
	copy(dst, v)
}

// scratchBlock is an aligned block of scratch memory, meant to live on the stack.
type scratchBlock [blockBytes / 8]uint64

func (s *scratchBlock) bytes() []byte { return asBytes(s[:]) }

// asBytes views words as bytes.
func asBytes(words []uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)
}

// inPlace multiplies (divide false) or divides (divide true) the elements of buf by x, with
// scaleNative or divideNative: directly when buf is viewable as aligned host-order elements,
// otherwise block by block through a scratch copy that it writes back.
func inPlace(dt DType, buf []byte, divide bool, x float64) {
	apply := func(b []byte) {
		if divide {
			divideNative(dt, b, x)
		} else {
			scaleNative(dt, b, x)
		}
	}
	size := dt.Size()
	if aligned(buf, size) {
		apply(buf)
		return
	}
	var scratch scratchBlock
	sb := scratch.bytes()
	for off := 0; off < len(buf); off += blockBytes {
		end := min(len(buf), off+blockBytes)
		v := load(buf[off:end], size, sb)
		apply(v)
		store(buf[off:end], v, size)
	}
}
