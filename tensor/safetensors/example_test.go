package safetensors_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/gccl/gccl/tensor"
	"github.com/gccl/gccl/tensor/safetensors"
)

func Example() {
	var buf bytes.Buffer
	err := safetensors.Write(&buf, map[string]*tensor.Tensor{
		"norm.weight": tensor.FromSlice([]float32{1, 1, 1, 1}),
		"embed":       tensor.FromSlice([]float32{0.5, -0.5, 1, 2, 3, 4}, 3, 2).To(tensor.BFloat16),
	}, map[string]string{"format": "pt"})
	if err != nil {
		log.Fatal(err)
	}
	f, err := safetensors.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		log.Fatal(err)
	}
	for _, info := range f.Infos() {
		fmt.Println(info.Name, info.DType, info.Shape, info.Begin, info.End)
	}
	emb, err := f.Tensor("embed")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(emb.Float64s())

	// A truncated file is refused before any tensor is read.
	_, err = safetensors.Read(bytes.NewReader(buf.Bytes()[:buf.Len()-1]), int64(buf.Len()-1))
	fmt.Println(err)
	// Output:
	// norm.weight float32 [4] 0 16
	// embed bfloat16 [3 2] 16 28
	// [0.5 -0.5 1 2 3 4]
	// safetensors: invalid file: the tensors need 28 bytes of data but the file holds 27 after its header: the file is truncated
}
