package bench

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/gccl/gccl/tensor"
)

// --fresh-input's rewrite stores every line's first word back: the data must not change, at any
// length (a tail shorter than a word included), and a missing input is no input.
func TestRewriteKeepsData(t *testing.T) {
	for _, n := range []int{1, 3, 4, 63, 64, 65, 1000, 4099} {
		tt := tensor.New(tensor.Uint8, n)
		raw := tt.Bytes()
		for i := range raw {
			raw[i] = byte(rand.IntN(256))
		}
		want := bytes.Clone(raw)
		rewrite(tt)
		if !bytes.Equal(raw, want) {
			t.Fatalf("%d bytes: rewrite changed the data", n)
		}
	}
	rewrite(nil)
}
