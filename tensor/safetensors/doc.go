// Package safetensors reads and writes the safetensors file format (Hugging Face's format for
// model weights): an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the tensors' little-endian bytes, packed without gaps.
//
// It sits under tensor because it only converts between files and tensor.Tensor values, and
// imports nothing else of gccl; the examples and model loaders above it use it.
//
// Read (or Open) parses and validates the header before any tensor is read: the header length
// against the file size and the 100 MB limit, the JSON, each tensor's dtype (BOOL, U8, I8, I32,
// I64, F8_E4M3, F8_E5M2, F16, BF16, F32, F64), its shape against its byte span, and that the
// tensors cover the data section exactly, with no overlap, hole or missing bytes. Errors wrap
// ErrFormat, or ErrUnsupportedDType for a dtype gccl has no counterpart for (I16, U64, ...).
// Tensors are then read one at a time, on demand:
//
//	f, err := safetensors.Open("model.safetensors")
//	if err != nil {
//		return err // e.g. safetensors: invalid file: the tensors need 4096 bytes of data but the file holds 1000 ...: the file is truncated
//	}
//	defer f.Close()
//	for _, info := range f.Infos() {
//		fmt.Println(info.Name, info.DType, info.Shape)
//	}
//	w, err := f.Tensor("model.embed_tokens.weight") // a contiguous tensor.Tensor
//
// Write produces the reference implementation's layout byte for byte (for ASCII names and
// metadata), so files round-trip with Python's safetensors.
package safetensors
