package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/tensor"
)

// randTensor returns a tensor of dt with random valid elements.
func randTensor(rng *rand.Rand, dt tensor.DType, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	b := t.Bytes()
	if dt == tensor.Bool {
		for i := range b {
			b[i] = byte(rng.IntN(2))
		}
		return t
	}
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return t
}

func roundTrip(t *testing.T, tensors map[string]*tensor.Tensor, meta map[string]string) (*File, []byte) {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, tensors, meta))
	f, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	require.NoError(t, err)
	return f, buf.Bytes()
}

func TestRoundTripEveryDType(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	in := map[string]*tensor.Tensor{}
	for _, dt := range tensor.AllDTypes() {
		if _, ok := DTypeName(dt); !ok {
			continue
		}
		in[dt.String()] = randTensor(rng, dt, 3, 5)
		in[dt.String()+".scalar"] = randTensor(rng, dt)
		in[dt.String()+".empty"] = randTensor(rng, dt, 0, 4)
		in[dt.String()+".odd"] = randTensor(rng, dt, 7)
	}
	strided, err := randTensor(rng, tensor.Float32, 4, 3).Transpose(0, 1)
	require.NoError(t, err)
	in["strided"] = strided
	meta := map[string]string{"format": "pt", "note": "<ünïcode> & \"quotes\""}
	f, raw := roundTrip(t, in, meta)
	assert.Equal(t, meta, f.Metadata)
	assert.Zero(t, (binary.LittleEndian.Uint64(raw)+8)%8, "header padded to 8")
	assert.Len(t, f.Names(), len(in))
	got, err := f.Tensors()
	require.NoError(t, err)
	for name, want := range in {
		require.Contains(t, got, name)
		assert.True(t, tensor.Equal(want, got[name]), name)
		info, ok := f.Info(name)
		require.True(t, ok)
		assert.Equal(t, want.DType(), info.DType)
		assert.Equal(t, want.Shape(), info.Shape)
	}
	// Float8 and 11 dtypes in all: every dtype of the format that gccl has.
	assert.Len(t, dtypeNames, 11)

	// Write, Open, ReadInto.
	path := filepath.Join(t.TempDir(), "m.safetensors")
	require.NoError(t, WriteFile(path, in, nil))
	of, err := Open(path)
	require.NoError(t, err)
	defer of.Close()
	assert.Nil(t, of.Metadata)
	dst := tensor.New(tensor.BFloat16, 15)
	require.NoError(t, of.ReadInto("bfloat16", dst))
	want, _ := in["bfloat16"].Reshape(15)
	assert.True(t, tensor.Equal(want, dst))
	assert.ErrorContains(t, of.ReadInto("bfloat16", tensor.New(tensor.Float16, 15)), "want a contiguous bfloat16")
	_, err = of.Tensor("nope")
	assert.ErrorContains(t, err, `no tensor "nope"`)
}

// reference is a file as Python's safetensors (huggingface/safetensors 0.4) writes it for
//
//	save_file({"weight": torch.tensor([[1., 2.], [3., 4.]]), "ids": torch.tensor([7]),
//	           "mask": torch.tensor([True, False])}, path, metadata={"format": "pt"})
//
// built by hand from the spec: the header length 0xd0 (207 bytes of JSON and 1 space of padding
// to a multiple of 8), the tensors sorted by dtype (I64, F32, BOOL), then their bytes.
var reference = append(append([]byte{
	0xd0, 0, 0, 0, 0, 0, 0, 0},
	`{"__metadata__":{"format":"pt"},"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},`+
		`"weight":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},`+
		`"mask":{"dtype":"BOOL","shape":[2],"data_offsets":[24,26]}} `...),
	7, 0, 0, 0, 0, 0, 0, 0, // ids: int64 7
	0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, // weight: 1, 2
	0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0x40, // 3, 4
	1, 0, // mask
)

func TestReferenceLayout(t *testing.T) {
	f, err := Read(bytes.NewReader(reference), int64(len(reference)))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"format": "pt"}, f.Metadata)
	assert.Equal(t, []string{"ids", "weight", "mask"}, f.Names())
	w, err := f.Tensor("weight")
	require.NoError(t, err)
	assert.Equal(t, []int{2, 2}, w.Shape())
	assert.Equal(t, []float32{1, 2, 3, 4}, w.Float32s())
	ids, err := f.Tensor("ids")
	require.NoError(t, err)
	assert.Equal(t, []int64{7}, ids.Int64s())
	m, err := f.Tensor("mask")
	require.NoError(t, err)
	assert.Equal(t, []bool{true, false}, m.Bools())

	// Write gives the same bytes.
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, map[string]*tensor.Tensor{
		"weight": tensor.FromSlice([]float32{1, 2, 3, 4}, 2, 2),
		"ids":    tensor.FromSlice([]int64{7}, 1),
		"mask":   tensor.FromSlice([]bool{true, false}, 2),
	}, map[string]string{"format": "pt"}))
	assert.Equal(t, reference, buf.Bytes())
}

// file builds a file from a header string and n data bytes.
func file(header string, n int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, n)...)
}

func TestBadInput(t *testing.T) {
	withLen := func(n uint64, rest string) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
	}
	cases := []struct {
		name string
		data []byte
		want string
		err  error
	}{
		{"empty", nil, "shorter than the 8-byte header length", ErrFormat},
		{"header past the end", withLen(100, `{}`), "header length 100 runs past the end of the file (2 bytes", ErrFormat},
		{"header over the limit", withLen(MaxHeaderSize+1, `{}`), "over the limit of 100000000", ErrFormat},
		{"huge header length", withLen(1<<63, `{}`), "over the limit", ErrFormat},
		{"not an object", file(`[1,2]   `, 0), "does not start with '{'", ErrFormat},
		{"bad JSON", file(`{"a":{"dtype":"F32",`, 0), "bad entry for tensor \"a\"", ErrFormat},
		{"unterminated", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}`, 4), "bad JSON header", ErrFormat},
		{"trailing junk", file(`{}  x`, 0), "not padding spaces", ErrFormat},
		{"invalid UTF-8", file("{\"\xff\":1}", 0), "not valid UTF-8", ErrFormat},
		{"duplicate name", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2), `names "a" twice`, ErrFormat},
		{"bad metadata", file(`{"__metadata__":{"k":1}}`, 0), "bad __metadata__", ErrFormat},
		{"missing field", file(`{"a":{"dtype":"F32","shape":[1]}}`, 4), "lacks one of dtype, shape and data_offsets", ErrFormat},
		{"wrong dtype", file(`{"a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}}`, 4), `dtype "I16", a dtype gccl has no counterpart for`, ErrUnsupportedDType},
		{"unknown dtype", file(`{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}`, 4), `"F33", an unknown dtype`, ErrUnsupportedDType},
		{"negative dim", file(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), "bad entry", ErrFormat},
		{"three offsets", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 4), "3 data_offsets", ErrFormat},
		{"reversed offsets", file(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4), "out of range", ErrFormat},
		{"shape vs span", file(`{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}`, 20), "is 6×4 bytes, but its data_offsets [0, 20] span 20 bytes", ErrFormat},
		{"shape overflow", file(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4), "too many elements", ErrFormat},
		{"overlap", file(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, 4), `overlaps tensor "a"`, ErrFormat},
		{"hole", file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}`, 5), "hole: bytes 2 to 3", ErrFormat},
		{"offsets past the end", file(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8), "need 16 bytes of data but the file holds 8", ErrFormat},
		{"trailing data", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 6), "2 trailing bytes", ErrFormat},
		{"truncated reference", reference[:len(reference)-1], "the file is truncated", ErrFormat},
		{"truncated in the header", reference[:100], "runs past the end of the file", ErrFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(c.data), int64(len(c.data)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.True(t, errors.Is(err, c.err), "%v does not wrap %v", err, c.err)
		})
	}

	// A bool byte other than 0 or 1 fails when the tensor is read.
	b := file(`{"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}`, 2)
	b[len(b)-1] = 2
	f, err := Read(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	_, err = f.Tensor("m")
	assert.ErrorContains(t, err, "byte 1 is 2; want 0 or 1")

	// A file that shrinks after Open: the tensor read fails, naming it.
	path := filepath.Join(t.TempDir(), "shrink.safetensors")
	require.NoError(t, os.WriteFile(path, reference, 0o600))
	of, err := Open(path)
	require.NoError(t, err)
	defer of.Close()
	require.NoError(t, os.Truncate(path, int64(len(reference)-4)))
	_, err = of.Tensor("weight")
	assert.ErrorIs(t, err, ErrFormat)
	assert.ErrorContains(t, err, `reading tensor "weight"`)

	// Write refuses what the format cannot hold.
	err = Write(&bytes.Buffer{}, map[string]*tensor.Tensor{"__metadata__": tensor.New(tensor.Float32, 1)}, nil)
	assert.ErrorContains(t, err, "cannot name a tensor")
	_, err = Open(filepath.Join(t.TempDir(), "missing"))
	assert.True(t, errors.Is(err, os.ErrNotExist))
	_, err = Open(writeTemp(t, file(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8)))
	assert.ErrorContains(t, err, "truncated")
	assert.True(t, strings.HasSuffix(strings.SplitN(err.Error(), ":", 2)[0], ".safetensors"), "the error names the path: %v", err)
}

func writeTemp(t *testing.T, b []byte) string {
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}

// countingReader counts the reads and bytes read through it.
type countingReader struct {
	r            *bytes.Reader
	reads, bytes int
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	c.bytes += len(p)
	return c.r.ReadAt(p, off)
}

// TestReadRegion: random blocks of 1-, 2- and 3-D tensors of several dtypes equal the same block
// cut from the whole tensor; a row block is one read and a column block one read per row, of
// exactly the block's bytes; blocks outside the tensor are errors naming it.
func TestReadRegion(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	shapes := [][]int{{11}, {6, 9}, {4, 5, 6}}
	in := map[string]*tensor.Tensor{}
	for _, dt := range []tensor.DType{tensor.Float32, tensor.BFloat16, tensor.Int64, tensor.Bool} {
		for _, s := range shapes {
			in[fmt.Sprintf("%s%v", dt, s)] = randTensor(rng, dt, s...)
		}
	}
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, in, nil))
	cr := &countingReader{r: bytes.NewReader(buf.Bytes())}
	f, err := Read(cr, int64(buf.Len()))
	require.NoError(t, err)
	for name, want := range in {
		full := want.Shape()
		for range 20 {
			off, shape := make([]int, len(full)), make([]int, len(full))
			block := want
			for d, n := range full {
				off[d] = rng.IntN(n + 1)
				shape[d] = rng.IntN(n - off[d] + 1)
				block, err = block.Narrow(d, off[d], shape[d])
				require.NoError(t, err)
			}
			got, err := f.ReadRegion(name, off, shape)
			require.NoError(t, err, "%s at %v shape %v", name, off, shape)
			assert.Equal(t, shape, got.Shape())
			assert.True(t, tensor.Equal(block.Contiguous(), got), "%s at %v shape %v", name, off, shape)
		}
	}

	// A row shard of a [6 9] float32 matrix: one read of its bytes; a column shard: one per row.
	name := "float32[6 9]"
	cr.reads, cr.bytes = 0, 0
	_, err = f.ReadRegion(name, []int{2, 0}, []int{3, 9})
	require.NoError(t, err)
	assert.Equal(t, 1, cr.reads)
	assert.Equal(t, 3*9*4, cr.bytes)
	cr.reads, cr.bytes = 0, 0
	_, err = f.ReadRegion(name, []int{0, 3}, []int{6, 4})
	require.NoError(t, err)
	assert.Equal(t, 6, cr.reads)
	assert.Equal(t, 6*4*4, cr.bytes)

	for _, c := range []struct{ off, shape []int }{{[]int{0}, []int{6}}, {[]int{5, 0}, []int{2, 9}}, {[]int{-1, 0}, []int{1, 1}}, {[]int{0, 0}, []int{1, -1}}} {
		_, err := f.ReadRegion(name, c.off, c.shape)
		require.Error(t, err, "%v %v", c.off, c.shape)
		assert.Contains(t, err.Error(), name)
	}
	_, err = f.ReadRegion("nope", []int{0}, []int{1})
	assert.ErrorContains(t, err, `no tensor "nope"`)

	// A file cut short: the block's read fails with ErrFormat, naming the tensor.
	short := buf.Bytes()[:buf.Len()-8]
	g, err := Read(bytes.NewReader(short), int64(buf.Len()))
	require.NoError(t, err)
	last := g.Infos()[len(g.Infos())-1]
	_, err = g.ReadRegion(last.Name, make([]int, len(last.Shape)), last.Shape)
	assert.ErrorIs(t, err, ErrFormat)
}
