package safetensors

import (
	"bytes"
	"testing"

	"github.com/gccl/gccl/tensor"
)

// FuzzRead feeds arbitrary bytes to Read: it must return an error or a File whose tensors all
// read (BOOL bytes aside), and whatever reads must write and read back identically. The seed
// corpus is in testdata/fuzz/FuzzRead.
func FuzzRead(f *testing.F) {
	f.Add(reference)
	f.Add(file(`{"a":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,4]},"__metadata__":{"x":"y"}}  `, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		got := map[string]*tensor.Tensor{}
		for _, name := range sf.Names() {
			tt, err := sf.Tensor(name)
			if err != nil {
				if info, _ := sf.Info(name); info.DType != tensor.Bool {
					t.Fatalf("tensor %q of a valid file does not read: %v", name, err)
				}
				continue
			}
			got[name] = tt
		}
		var buf bytes.Buffer
		if err := Write(&buf, got, sf.Metadata); err != nil {
			t.Fatalf("Write of what Read returned: %v", err)
		}
		back, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatalf("Read of what Write wrote: %v", err)
		}
		for name, want := range got {
			tt, err := back.Tensor(name)
			if err != nil || !tensor.Equal(want, tt) {
				t.Fatalf("tensor %q changed in a round trip (%v)", name, err)
			}
		}
	})
}
