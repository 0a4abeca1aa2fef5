package dtensor

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
)

// TestRules: the sharding rules of the ops, without processes: the output placements of
// supported combinations, and errors wrapping ErrNoRule that name the placements otherwise.
func TestRules(t *testing.T) {
	type P = []Placement
	S := func(d int) Placement { return Shard{Dim: d} }
	R := Replicate{}
	Psum := Partial{}
	Pavg := Partial{Op: comm.Avg}
	Pmax := Partial{Op: comm.Max}
	cases := []struct {
		name string
		run  func() (P, error)
		want P
		err  string // substring of the error when want is nil
	}{
		// MatMul, a [4 6] · b [6 5]
		{"mm R R", mm(P{R}, P{R}), P{R}, ""},
		{"mm S0 R", mm(P{S(0)}, P{R}), P{S(0)}, ""},
		{"mm R S1", mm(P{R}, P{S(1)}), P{S(1)}, ""},
		{"mm S1 S0", mm(P{S(1)}, P{S(0)}), P{Psum}, ""},
		{"mm P R", mm(P{Psum}, P{R}), P{Psum}, ""},
		{"mm R Pavg", mm(P{R}, P{Pavg}), P{Pavg}, ""},
		{"mm 2d", mm(P{S(0), S(1)}, P{R, S(0)}), P{S(0), Psum}, ""},
		{"mm 2d cols", mm(P{S(1), R}, P{S(0), S(1)}), P{Psum, S(1)}, ""},
		{"mm S0 S0", mm(P{S(0)}, P{S(0)}), nil, "no rule for [S(0)] x [S(0)] (mesh dimension 0: S(0) x S(0)): b's S(0) splits the contraction dim"},
		{"mm S1 R", mm(P{S(1)}, P{R}), nil, "no rule for [S(1)] x [R]"},
		{"mm P P", mm(P{Psum}, P{Psum}), nil, "Partial"},
		{"mm Pmax R", mm(P{Pmax}, P{R}), nil, "no rule for [P(max)] x [R]"},
		{"mm S0 S1", mm(P{S(0)}, P{S(1)}), nil, "redistribute one side first"},
		// batched: a [2 4 6] · b [6 5] or b [2 6 5]
		{"bmm S0 R", bmm(P{S(0)}, P{R}, false), P{S(0)}, ""},
		{"bmm S1 R", bmm(P{S(1)}, P{R}, false), P{S(1)}, ""},
		{"bmm S2 S0", bmm(P{S(2)}, P{S(0)}, false), P{Psum}, ""},
		{"bmm batched S0 S0", bmm(P{S(0)}, P{S(0)}, true), P{S(0)}, ""},
		{"bmm batched S0 R", bmm(P{S(0)}, P{R}, true), nil, "no rule"},
		{"bmm batched S2 S1", bmm(P{S(2)}, P{S(1)}, true), P{Psum}, ""},
		{"bmm batched R S2", bmm(P{R}, P{S(2)}, true), P{S(2)}, ""},
		// Linear: x [4 6], w [5 6], bias [5]
		{"lin R R R", lin(P{R}, P{R}, P{R}), P{R}, ""},
		{"lin S0 R R", lin(P{S(0)}, P{R}, P{R}), P{S(0)}, ""},
		{"lin R S0 S0", lin(P{R}, P{S(0)}, P{S(0)}), P{S(1)}, ""},
		{"lin R S0 nil", lin(P{R}, P{S(0)}, nil), P{S(1)}, ""},
		{"lin S1 S1 R", lin(P{S(1)}, P{S(1)}, P{R}), P{Psum}, ""},
		{"lin P R nil", lin(P{Psum}, P{R}, nil), P{Psum}, ""},
		{"lin R S0 R", lin(P{R}, P{S(0)}, P{R}), nil, "no rule for [R] x [S(0)] x [R]"},
		{"lin S1 R R", lin(P{S(1)}, P{R}, P{R}), nil, "input features"},
		{"lin R R S0", lin(P{R}, P{R}, P{S(0)}), nil, "bias"},
		{"lin S0 S0", lin(P{S(0)}, P{S(0)}, nil), nil, "w's S(0)"},
		// Add / Mul, a [4 6] with b [4 6] or b [6]
		{"add S0 S0", bin(additive, P{S(0)}, P{S(0)}, 2), P{S(0)}, ""},
		{"add S1 S0 bias", bin(additive, P{S(1)}, P{S(0)}, 1), P{S(1)}, ""},
		{"add S0 R bias", bin(additive, P{S(0)}, P{R}, 1), P{S(0)}, ""},
		{"add P P", bin(additive, P{Psum}, P{Psum}, 2), P{Psum}, ""},
		{"add Pavg Pavg", bin(additive, P{Pavg}, P{Pavg}, 2), P{Pavg}, ""},
		{"add P R", bin(additive, P{Psum}, P{R}, 2), nil, "no rule for [P(sum)] x [R]"},
		{"add P Pavg", bin(additive, P{Psum}, P{Pavg}, 2), nil, "no rule"},
		{"add Pmax Pmax", bin(additive, P{Pmax}, P{Pmax}, 2), nil, "no rule"},
		{"add S0 S1", bin(additive, P{S(0)}, P{S(1)}, 2), nil, "redistribute b to S(0)"},
		{"add S0 R", bin(additive, P{S(0)}, P{R}, 2), nil, "redistribute b to S(0)"},
		{"add R S1", bin(additive, P{R}, P{S(1)}, 2), nil, "redistribute a to S(1)"},
		{"add S0 S0 bias", bin(additive, P{S(0)}, P{S(0)}, 1), nil, "broadcast"},
		{"mul P R", bin(multiplicative, P{Psum}, P{R}, 2), P{Psum}, ""},
		{"mul R P", bin(multiplicative, P{R}, P{Psum}, 1), P{Psum}, ""},
		{"mul P P", bin(multiplicative, P{Psum}, P{Psum}, 2), nil, "no rule for [P(sum)] x [P(sum)]"},
		{"mul 2d", bin(multiplicative, P{S(0), Psum}, P{S(0), R}, 2), P{S(0), Psum}, ""},
		{"swiglu S1 S1", bin(nonlinear, P{S(1)}, P{S(1)}, 2), P{S(1)}, ""},
		{"swiglu P P", bin(nonlinear, P{Psum}, P{Psum}, 2), nil, "not linear"},
		// SiLU, Softmax
		{"silu S1", un("SiLU", P{S(1)}, false), P{S(1)}, ""},
		{"silu P", un("SiLU", P{R, Psum}, false), nil, "no rule for [R, P(sum)] (mesh dimension 1: P(sum)): SiLU is not linear"},
		{"softmax S0", un("Softmax", P{S(0), R}, true), P{S(0), R}, ""},
		{"softmax S1", un("Softmax", P{S(1)}, true), nil, "Softmax works along the last dim"},
		// Embedding, table [10 4]
		{"emb S0", emb(P{S(0)}), P{Psum}, ""},
		{"emb S1", emb(P{S(1)}), P{S(1)}, ""},
		{"emb S0 S0", emb(P{S(0), S(0)}), P{Psum, Psum}, ""},
		{"emb R S0", emb(P{R, S(0)}), P{R, Psum}, ""},
		{"emb P", emb(P{Psum}), nil, "Partial table"},
		// Transpose
		{"transpose", func() (P, error) { return transposeRule(P{S(0), S(2), Psum, R}, 0, 2), nil }, P{S(2), S(0), Psum, R}, ""},
		// Reshape on a mesh dimension of 2
		{"reshape merge S0", rs([]int{8, 3}, []int{24}, P{S(0)}, 2), P{S(0)}, ""},
		{"reshape split S0", rs([]int{4, 6}, []int{4, 2, 3}, P{S(0)}, 2), P{S(0)}, ""},
		{"reshape split S1", rs([]int{4, 6}, []int{4, 2, 3}, P{S(1)}, 2), P{S(1)}, ""},
		{"reshape split leading", rs([]int{6, 4}, []int{2, 3, 4}, P{S(0)}, 2), P{S(0)}, ""},
		{"reshape unsqueeze", rs([]int{4, 6}, []int{1, 4, 6}, P{S(1)}, 2), P{S(2)}, ""},
		{"reshape squeeze", rs([]int{1, 4, 6}, []int{4, 6}, P{S(1)}, 2), P{S(0)}, ""},
		{"reshape P", rs([]int{4, 6}, []int{24}, P{Psum}, 2), P{Psum}, ""},
		{"reshape merge S1", rs([]int{4, 6}, []int{24}, P{S(1)}, 2), nil, "no rule for [S(1)] (mesh dimension 0: S(1)): dim 1 is not the leading dim"},
		{"reshape uneven split", rs([]int{6, 4}, []int{2, 3, 4}, P{S(0)}, 4), nil, "do not line up"},
		{"reshape uneven merge", rs([]int{7, 3}, []int{21}, P{S(0)}, 2), nil, "do not line up"},
		{"reshape nested", rs([]int{4, 6}, []int{24}, P{S(0), S(1)}, 2), nil, "both shard"},
		{"reshape 2d ok", rs([]int{4, 6}, []int{4, 2, 3}, P{S(0), S(1)}, 2), P{S(0), S(1)}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.run()
			if tc.want != nil {
				require.NoError(t, err)
				assert.Equal(t, tc.want, got)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrNoRule), "%v does not wrap ErrNoRule", err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

func mm(a, b []Placement) func() ([]Placement, error) {
	return func() ([]Placement, error) {
		_, ps, err := matmulRule([]int{4, 6}, []int{6, 5}, a, b)
		return ps, err
	}
}

func bmm(a, b []Placement, batched bool) func() ([]Placement, error) {
	bShape := []int{6, 5}
	if batched {
		bShape = []int{2, 6, 5}
	}
	return func() ([]Placement, error) {
		_, ps, err := matmulRule([]int{2, 4, 6}, bShape, a, b)
		return ps, err
	}
}

func lin(x, w, bias []Placement) func() ([]Placement, error) {
	return func() ([]Placement, error) {
		var bShape []int
		if bias != nil {
			bShape = []int{5}
		}
		_, ps, err := linearRule([]int{4, 6}, []int{5, 6}, bShape, x, w, bias)
		return ps, err
	}
}

func bin(kind binaryKind, a, b []Placement, rb int) func() ([]Placement, error) {
	return func() ([]Placement, error) { return binaryRule("Op", kind, a, b, 2, rb) }
}

func un(op string, x []Placement, rows bool) func() ([]Placement, error) {
	return func() ([]Placement, error) { return unaryRuleFor(op, x, 2, rows) }
}

func emb(table []Placement) func() ([]Placement, error) {
	return func() ([]Placement, error) { return embeddingRule(table) }
}

func rs(in, out []int, x []Placement, n int) func() ([]Placement, error) {
	meshShape := make([]int, len(x))
	for i := range meshShape {
		meshShape[i] = n
	}
	return func() ([]Placement, error) { return reshapeRule(in, out, x, meshShape) }
}
