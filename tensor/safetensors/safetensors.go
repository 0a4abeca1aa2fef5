package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/gccl/gccl/tensor"
)

// MaxHeaderSize is the largest JSON header Read accepts, in bytes: 100 MB, the limit of the
// reference implementation (huggingface/safetensors' MAX_HEADER_SIZE).
const MaxHeaderSize = 100_000_000

// metadataKey is the header key of the free-form string map.
const metadataKey = "__metadata__"

// ErrFormat is wrapped by every error about a file that does not follow the format: a bad header
// length, bad JSON, offsets out of range, overlapping or leaving holes, a shape that does not match
// its byte span, a truncated file.
var ErrFormat = errors.New("safetensors: invalid file")

// ErrUnsupportedDType is wrapped by the error about a tensor whose dtype gccl cannot represent
// (I16, U16, U32, U64, F8_E8M0, F4, F6_*, C64, or an unknown name).
var ErrUnsupportedDType = errors.New("safetensors: unsupported dtype")

// dtypes is every dtype the format and gccl share, in the order errors list them: its name in
// the format, and its rank in the reference writer's sort order (its Dtype enum: BOOL < U8 < I8 <
// F8_E5M2 < F8_E4M3 < F16 < BF16 < I32 < F32 < F64 < I64), which puts the widest elements first.
// The maps below derive from it.
var dtypes = []struct {
	dt   tensor.DType
	name string
	rank int
}{
	{tensor.Bool, "BOOL", 0},
	{tensor.Uint8, "U8", 1},
	{tensor.Int8, "I8", 2},
	{tensor.Int32, "I32", 7},
	{tensor.Int64, "I64", 10},
	{tensor.Float8E4M3FN, "F8_E4M3", 4},
	{tensor.Float8E5M2, "F8_E5M2", 3},
	{tensor.Float16, "F16", 5},
	{tensor.BFloat16, "BF16", 6},
	{tensor.Float32, "F32", 8},
	{tensor.Float64, "F64", 9},
}

var (
	dtypeNames  = map[tensor.DType]string{} // the format's name of each dtype
	dtypeRank   = map[tensor.DType]int{}    // each dtype's rank in the reference writer's order
	dtypeByName = map[string]tensor.DType{} // the dtype of each of the format's names
	// readableDTypes lists the names for errors: "BOOL, U8, ...".
	readableDTypes string
)

func init() {
	names := make([]string, len(dtypes))
	for i, d := range dtypes {
		dtypeNames[d.dt], dtypeRank[d.dt], dtypeByName[d.name] = d.name, d.rank, d.dt
		names[i] = d.name
	}
	readableDTypes = strings.Join(names, ", ")
}

// DTypeName returns the format's name of dt ("F32", "BF16", "BOOL", ...), or false if the format
// has none for it.
func DTypeName(dt tensor.DType) (string, bool) {
	n, ok := dtypeNames[dt]
	return n, ok
}

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType tensor.DType
	Shape []int
	// Begin and End are the tensor's byte range in the data section (after the header), as the
	// header's data_offsets give them.
	Begin, End int64
}

// File is a parsed safetensors file: its header is read and validated, its tensors are read on
// demand from the underlying reader. A File is safe for concurrent use if its reader is (an
// *os.File is).
type File struct {
	// Metadata is the header's "__metadata__" map (nil when absent).
	Metadata map[string]string

	infos   []TensorInfo // in data order
	byName  map[string]int
	r       io.ReaderAt
	dataOff int64
	closer  io.Closer
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
}

// Open opens and validates the safetensors file at path. Close it when done.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		_ = fh.Close()
		return nil, err
	}
	f, err := Read(fh, st.Size())
	if err != nil {
		_ = fh.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.closer = fh
	return f, nil
}

// Close closes the file Open opened; for a File from Read it does nothing.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	c := f.closer
	f.closer = nil
	return c.Close()
}

// Read parses and validates the safetensors file of size bytes in r: an 8-byte little-endian
// header length N (at most MaxHeaderSize), N bytes of a JSON object (each tensor's dtype, shape
// and data_offsets, and an optional "__metadata__" map of strings), then the data section, which
// the tensors must cover exactly, without overlaps or holes. Errors wrap ErrFormat or
// ErrUnsupportedDType. Tensors are read later, by Tensor.
func Read(r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, formatErr("the file is %d bytes, shorter than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if err := readFull(r, lenBuf[:], 0); err != nil {
		return nil, formatErr("reading the header length: %v", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, formatErr("the header length %d is over the limit of %d bytes", n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, formatErr("the header length %d runs past the end of the file (%d bytes after the length); the file is truncated or not safetensors", n, size-8)
	}
	header := make([]byte, n)
	if err := readFull(r, header, 8); err != nil {
		return nil, formatErr("reading the %d-byte header: %v", n, err)
	}
	f, err := parseHeader(header, size-8-int64(n))
	if err != nil {
		return nil, err
	}
	f.r = r
	f.dataOff = 8 + int64(n)
	return f, nil
}

// readFull reads len(b) bytes at off.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	got, err := r.ReadAt(b, off)
	if got == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// rawInfo is one tensor's header entry; pointers tell missing fields apart.
type rawInfo struct {
	DType       *string   `json:"dtype"`
	Shape       *[]uint64 `json:"shape"`
	DataOffsets *[]uint64 `json:"data_offsets"`
}

// parseHeader validates the JSON header against a data section of dataLen bytes.
func parseHeader(header []byte, dataLen int64) (*File, error) {
	if len(header) == 0 || header[0] != '{' {
		return nil, formatErr("the header does not start with '{'")
	}
	if !utf8.Valid(header) {
		return nil, formatErr("the header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, formatErr("bad JSON header: %v", err)
	}
	f := &File{byName: map[string]int{}}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, formatErr("bad JSON header: %v", err)
		}
		name, _ := tok.(string) // object keys are strings
		if seen[name] {
			return nil, formatErr("the header names %q twice", name)
		}
		seen[name] = true
		if name == metadataKey {
			if err := dec.Decode(&f.Metadata); err != nil {
				return nil, formatErr("bad %s (want an object of strings): %v", metadataKey, err)
			}
			continue
		}
		var ri rawInfo
		if err := dec.Decode(&ri); err != nil {
			return nil, formatErr("bad entry for tensor %q: %v", name, err)
		}
		info, err := checkInfo(name, ri)
		if err != nil {
			return nil, err
		}
		f.infos = append(f.infos, info)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, formatErr("bad JSON header: %v", err)
	}
	rest := header[dec.InputOffset():]
	if len(bytes.TrimLeft(rest, " \t\r\n")) != 0 {
		return nil, formatErr("the header has %d bytes after its JSON object that are not padding spaces", len(rest))
	}
	// The data section: tensors in offset order, each starting where the previous one ends, the
	// last ending at the end of the file.
	sort.SliceStable(f.infos, func(i, j int) bool {
		a, b := f.infos[i], f.infos[j]
		return a.Begin < b.Begin || a.Begin == b.Begin && a.End < b.End
	})
	var pos int64
	for i, in := range f.infos {
		f.byName[in.Name] = i
		switch {
		case in.Begin < pos:
			return nil, formatErr("tensor %q at data_offsets [%d, %d] overlaps tensor %q, which ends at %d", in.Name, in.Begin, in.End, f.infos[i-1].Name, pos)
		case in.Begin > pos:
			return nil, formatErr("the data section has a hole: bytes %d to %d belong to no tensor (before %q)", pos, in.Begin, in.Name)
		}
		pos = in.End
	}
	if pos > dataLen {
		return nil, formatErr("the tensors need %d bytes of data but the file holds %d after its header: the file is truncated", pos, dataLen)
	}
	if pos < dataLen {
		return nil, formatErr("the tensors cover %d bytes of data but the file holds %d after its header: %d trailing bytes belong to no tensor", pos, dataLen, dataLen-pos)
	}
	return f, nil
}

// checkInfo validates one tensor's entry on its own.
func checkInfo(name string, ri rawInfo) (TensorInfo, error) {
	if ri.DType == nil || ri.Shape == nil || ri.DataOffsets == nil {
		return TensorInfo{}, formatErr("tensor %q lacks one of dtype, shape and data_offsets", name)
	}
	dt, ok := dtypeByName[*ri.DType]
	if !ok {
		known := "a dtype gccl has no counterpart for"
		if !slices.Contains([]string{"I16", "U16", "U32", "U64", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"}, *ri.DType) {
			known = "an unknown dtype"
		}
		return TensorInfo{}, fmt.Errorf("%w: tensor %q has dtype %q, %s (readable: %s)", ErrUnsupportedDType, name, *ri.DType, known, readableDTypes)
	}
	offs := *ri.DataOffsets
	if len(offs) != 2 {
		return TensorInfo{}, formatErr("tensor %q has %d data_offsets; want [begin, end]", name, len(offs))
	}
	if offs[0] > offs[1] || offs[1] > math.MaxInt64 {
		return TensorInfo{}, formatErr("tensor %q has data_offsets [%d, %d]: out of range", name, offs[0], offs[1])
	}
	shape := make([]int, len(*ri.Shape))
	numel := uint64(1)
	for i, s := range *ri.Shape {
		if s > math.MaxInt {
			return TensorInfo{}, formatErr("tensor %q has shape %v: dim %d is too large", name, *ri.Shape, i)
		}
		hi, lo := bits.Mul64(numel, s)
		if hi != 0 || lo > math.MaxInt64 {
			return TensorInfo{}, formatErr("tensor %q has shape %v: too many elements", name, *ri.Shape)
		}
		numel = lo
		shape[i] = int(s)
	}
	hi, nbytes := bits.Mul64(numel, uint64(dt.Size()))
	if hi != 0 || nbytes != offs[1]-offs[0] {
		return TensorInfo{}, formatErr("tensor %q: shape %v of %s is %d×%d bytes, but its data_offsets [%d, %d] span %d bytes",
			name, shape, *ri.DType, numel, dt.Size(), offs[0], offs[1], offs[1]-offs[0])
	}
	return TensorInfo{Name: name, DType: dt, Shape: shape, Begin: int64(offs[0]), End: int64(offs[1])}, nil
}

// Names returns the tensors' names in the order of their data in the file.
func (f *File) Names() []string {
	out := make([]string, len(f.infos))
	for i, in := range f.infos {
		out[i] = in.Name
	}
	return out
}

// Infos returns every tensor's description, in the order of their data in the file.
func (f *File) Infos() []TensorInfo {
	out := make([]TensorInfo, len(f.infos))
	for i, in := range f.infos {
		in.Shape = slices.Clone(in.Shape)
		out[i] = in
	}
	return out
}

// Info returns the description of the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	in := f.infos[i]
	in.Shape = slices.Clone(in.Shape)
	return in, true
}

// lookup returns the description of the named tensor (sharing its shape), or an error if the file
// has none.
func (f *File) lookup(name string) (TensorInfo, error) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, fmt.Errorf("safetensors: no tensor %q in the file", name)
	}
	return f.infos[i], nil
}

// Tensor reads the named tensor into a new contiguous tensor.Tensor.
func (f *File) Tensor(name string) (*tensor.Tensor, error) {
	in, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	t := tensor.New(in.DType, in.Shape...)
	if err := f.readInto(in, t.Bytes()); err != nil {
		return nil, err
	}
	return t, nil
}

// ReadInto reads the named tensor into dst, a contiguous tensor of its dtype and element count
// (any shape), without allocating.
func (f *File) ReadInto(name string, dst *tensor.Tensor) error {
	in, err := f.lookup(name)
	if err != nil {
		return err
	}
	if dst.DType() != in.DType || !dst.IsContiguous() || int64(dst.NBytes()) != in.End-in.Begin {
		return fmt.Errorf("safetensors: ReadInto %q: dst is %s (contiguous %v); want a contiguous %s with the %d elements of shape %v",
			name, dst, dst.IsContiguous(), in.DType, (in.End-in.Begin)/int64(in.DType.Size()), in.Shape)
	}
	return f.readInto(in, dst.Bytes())
}

// ReadRegion reads the block of the named tensor that starts at offset and has the given shape
// (one entry of each per dim) into a new contiguous tensor of the tensor's dtype: a rank's shard
// of a weight, without reading the rest. The block is read in contiguous runs: one read when it
// spans every dim after its first narrowed one (a row shard), one read per row when it narrows
// the last dim (a column shard).
func (f *File) ReadRegion(name string, offset, shape []int) (*tensor.Tensor, error) {
	in, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	full := in.Shape
	if len(offset) != len(full) || len(shape) != len(full) {
		return nil, fmt.Errorf("safetensors: ReadRegion %q: offset %v and shape %v must have one entry per dim of the tensor's shape %v", name, offset, shape, full)
	}
	for d := range full {
		if offset[d] < 0 || shape[d] < 0 || offset[d]+shape[d] > full[d] {
			return nil, fmt.Errorf("safetensors: ReadRegion %q: the block at %v of shape %v leaves the tensor's shape %v in dim %d", name, offset, shape, full, d)
		}
	}
	t := tensor.New(in.DType, shape...)
	if t.Numel() == 0 {
		return t, nil
	}
	// Byte strides of the stored tensor; the run is the block's innermost contiguous part.
	size := in.DType.Size()
	strides := make([]int64, len(full))
	stride := int64(size)
	for d := len(full) - 1; d >= 0; d-- {
		strides[d] = stride
		stride *= int64(full[d])
	}
	inner := len(full) - 1 // the first dim of the run: every dim after it is whole
	for inner >= 0 && shape[inner] == full[inner] {
		inner--
	}
	if inner < 0 {
		inner = 0
	}
	run := int64(shape[inner]) * strides[inner]
	b := t.Bytes()
	idx := make([]int, inner) // index within the block of the dims before the run
	for pos := int64(0); pos < int64(len(b)); pos += run {
		at := in.Begin + int64(offset[inner])*strides[inner]
		for d, k := range idx {
			at += int64(offset[d]+k) * strides[d]
		}
		part := TensorInfo{Name: in.Name, DType: in.DType, Begin: at}
		if err := f.readInto(part, b[pos:pos+run]); err != nil {
			return nil, err
		}
		for d := inner - 1; d >= 0; d-- { // next index, last dim fastest
			if idx[d]++; idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return t, nil
}

func (f *File) readInto(in TensorInfo, b []byte) error {
	if err := readFull(f.r, b, f.dataOff+in.Begin); err != nil {
		return fmt.Errorf("%w: reading tensor %q (%d bytes at %d): %v; the file is truncated or changed since it was opened",
			ErrFormat, in.Name, len(b), f.dataOff+in.Begin, err)
	}
	if in.DType == tensor.Bool {
		for i, v := range b {
			if v > 1 {
				return formatErr("tensor %q is BOOL but its byte %d is %d; want 0 or 1", in.Name, i, v)
			}
		}
	}
	return nil
}

// Tensors reads every tensor of the file.
func (f *File) Tensors() (map[string]*tensor.Tensor, error) {
	out := make(map[string]*tensor.Tensor, len(f.infos))
	for _, in := range f.infos {
		t, err := f.Tensor(in.Name)
		if err != nil {
			return nil, err
		}
		out[in.Name] = t
	}
	return out, nil
}

// Write writes tensors and metadata (nil for none) to w as a safetensors file, laid out as the
// reference implementation (huggingface/safetensors) lays it out, byte for byte for ASCII names:
// the tensors sorted by dtype, widest first, then by name; the JSON header compact, "__metadata__"
// first (keys sorted), and padded with spaces to a multiple of 8 bytes. Tensors may be strided
// views (they are written packed) and of any dtype with a format name (not the Invalid dtype).
func Write(w io.Writer, tensors map[string]*tensor.Tensor, metadata map[string]string) error {
	names := make([]string, 0, len(tensors))
	for name, t := range tensors {
		if name == metadataKey {
			return fmt.Errorf("safetensors: Write: %q cannot name a tensor", metadataKey)
		}
		if t == nil {
			return fmt.Errorf("safetensors: Write: tensor %q is nil", name)
		}
		if _, ok := dtypeNames[t.DType()]; !ok {
			return fmt.Errorf("%w: Write: tensor %q is %s, which the format cannot store", ErrUnsupportedDType, name, t.DType())
		}
		if !t.Device().IsCPU() {
			return fmt.Errorf("safetensors: Write: tensor %q is on %s; copy it to the host first", name, t.Device())
		}
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := tensors[names[i]], tensors[names[j]]
		if ra, rb := dtypeRank[a.DType()], dtypeRank[b.DType()]; ra != rb {
			return ra > rb
		}
		return names[i] < names[j]
	})
	var h bytes.Buffer
	h.WriteByte('{')
	if len(metadata) > 0 {
		h.WriteString(`"` + metadataKey + `":{`)
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				h.WriteByte(',')
			}
			writeJSONString(&h, k)
			h.WriteByte(':')
			writeJSONString(&h, metadata[k])
		}
		h.WriteByte('}')
	}
	var off int64
	for i, name := range names {
		t := tensors[name]
		if i > 0 || len(metadata) > 0 {
			h.WriteByte(',')
		}
		writeJSONString(&h, name)
		shape := make([]string, t.Dim())
		for d, s := range t.Shape() {
			shape[d] = fmt.Sprint(s)
		}
		fmt.Fprintf(&h, `:{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}`, dtypeNames[t.DType()], strings.Join(shape, ","), off, off+int64(t.NBytes()))
		off += int64(t.NBytes())
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(h.Len()))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := w.Write(h.Bytes()); err != nil {
		return err
	}
	for _, name := range names {
		if _, err := w.Write(tensors[name].Contiguous().Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// writeJSONString writes s as a JSON string, escaping as serde_json does (", \ and control
// characters; not <, > or &).
func writeJSONString(b *bytes.Buffer, s string) {
	var tmp bytes.Buffer
	enc := json.NewEncoder(&tmp)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	b.Write(bytes.TrimSuffix(tmp.Bytes(), []byte("\n")))
}

// WriteFile writes tensors and metadata to a new file at path (see Write).
func WriteFile(path string, tensors map[string]*tensor.Tensor, metadata map[string]string) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(fh, tensors, metadata); err != nil {
		_ = fh.Close()
		return err
	}
	return fh.Close()
}
