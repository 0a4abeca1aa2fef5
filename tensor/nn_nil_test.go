package tensor

import "testing"

// TestNNOpsRefuseBadInputBeforeAllocating: nil or non-float32 inputs are errors, not panics.
func TestNNOpsRefuseBadInputBeforeAllocating(t *testing.T) {
	i32 := New(Int32, 4)
	w := New(Float32, 4)
	calls := map[string]func(x *Tensor) error{
		"RMSNorm":   func(x *Tensor) error { _, err := RMSNorm(x, w, 1e-5); return err },
		"LayerNorm": func(x *Tensor) error { _, err := LayerNorm(x, w, nil, 1e-5); return err },
		"Softmax":   func(x *Tensor) error { _, err := Softmax(x); return err },
		"SiLU":      func(x *Tensor) error { _, err := SiLU(x); return err },
		"SwiGLU":    func(x *Tensor) error { _, err := SwiGLU(x, w); return err },
		"Add":       func(x *Tensor) error { _, err := Add(x, w); return err },
		"Mul":       func(x *Tensor) error { _, err := Mul(x, w); return err },
	}
	for name, call := range calls {
		for _, x := range []*Tensor{nil, i32} {
			if err := call(x); err == nil {
				t.Errorf("%s(%v): want an error", name, x)
			}
		}
	}
}
