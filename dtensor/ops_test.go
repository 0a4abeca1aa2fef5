package dtensor_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// TestOps: on 1-D meshes of 2 and 3 real processes and a 2x2 mesh, every op on DTensors is run
// for every combination of input placements (S(0), S(1), R and P(sum) per mesh dimension, the
// Partial inputs made of different parts on every rank) on uneven shapes. Where the test's own
// statement of the rule table has an entry for every mesh dimension, the op must succeed with
// those output placements, and Full of its result must match the op on the full tensors; for
// every other combination every rank must get an error wrapping ErrNoRule and
// comm.ErrInvalidArgument that names the op and the input placements.
func TestOps(t *testing.T) {
	if ranktest.Child(t) {
		var tc meshCase
		ranktest.ReadCase(t, &tc)
		opsChild(t, tc)
		return
	}
	cases := []meshCase{
		{Name: "1d_2", Ranks: 2, Shape: []int{2}},
		{Name: "1d_3", Ranks: 3, Shape: []int{3}},
		{Name: "2x2", Ranks: 4, Shape: []int{2, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			start := time.Now()
			res := ranktest.Spawn(t, ranktest.Config{Ranks: tc.Ranks, Timeout: time.Minute, Case: tc,
				Env: []string{"GCCL_TIMEOUT=30s", "GCCL_BACKEND=gloo"}})
			ranktest.AssertExitedZero(t, res)
			t.Logf("%s: %d ranks in %v; rank 0: %s", tc.Name, tc.Ranks, time.Since(start).Round(time.Millisecond), strings.TrimSpace(res[0].Output))
		})
	}
}

// opCase is one op under test: its global inputs, the placements to try for each per mesh
// dimension (nil in the list: the input is absent), the op on DTensors and on full tensors,
// and the rule table as the test states it: per mesh dimension, the inputs' placements joined
// by "," (an absent input is "-") to the output placement.
type opCase struct {
	name   string
	inputs []*tensor.Tensor
	per    [][]dtensor.Placement
	run    func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error)
	ref    func(ts []*tensor.Tensor) (*tensor.Tensor, error)
	rules  map[string]string
	// noNested: the table does not hold when one of these dims of the first input is sharded
	// by two mesh dimensions (such inputs must be refused).
	noNested []int
}

var (
	s0, s1, s2 = dtensor.Shard{Dim: 0}, dtensor.Shard{Dim: 1}, dtensor.Shard{Dim: 2}
	rep        = dtensor.Replicate{}
	psum       = dtensor.Partial{}
	all2       = []dtensor.Placement{s0, s1, rep, psum}
)

func f32(shape ...int) *tensor.Tensor { return globalTensor(tensor.Float32, shape) }

// small is a float32 tensor of values in [-1, 1], for the nonlinear ops.
func small(shape ...int) *tensor.Tensor {
	g := f32(shape...)
	for i, v := range g.Float32s() {
		g.Float32s()[i] = v / 11
	}
	return g
}

func opCases() []opCase {
	ids := []int{3, 0, 9, 5, 5, 7, 1}
	one := func(f func(*tensor.Tensor) (*tensor.Tensor, error)) func([]*tensor.Tensor) (*tensor.Tensor, error) {
		return func(ts []*tensor.Tensor) (*tensor.Tensor, error) { return f(ts[0]) }
	}
	two := func(f func(a, b *tensor.Tensor) (*tensor.Tensor, error)) func([]*tensor.Tensor) (*tensor.Tensor, error) {
		return func(ts []*tensor.Tensor) (*tensor.Tensor, error) { return f(ts[0], ts[1]) }
	}
	elementwise := map[string]string{"S(0),S(0)": "S(0)", "S(1),S(1)": "S(1)", "R,R": "R"}
	addRules := map[string]string{"S(0),S(0)": "S(0)", "S(1),S(1)": "S(1)", "R,R": "R", "P(sum),P(sum)": "P(sum)"}
	mulRules := map[string]string{"S(0),S(0)": "S(0)", "S(1),S(1)": "S(1)", "R,R": "R", "P(sum),R": "P(sum)", "R,P(sum)": "P(sum)"}
	rowOp := map[string]string{"S(0)": "S(0)", "R": "R"}
	return []opCase{
		{name: "MatMul", inputs: []*tensor.Tensor{f32(5, 7), f32(7, 3)}, per: [][]dtensor.Placement{all2, all2},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.MatMul(ctx, ds[0], ds[1])
			},
			ref: two(tensor.MatMul),
			rules: map[string]string{"R,R": "R", "S(0),R": "S(0)", "R,S(1)": "S(1)", "S(1),S(0)": "P(sum)",
				"P(sum),R": "P(sum)", "R,P(sum)": "P(sum)"}},
		{name: "MatMul batched", inputs: []*tensor.Tensor{f32(3, 5, 4), f32(3, 4, 2)},
			per: [][]dtensor.Placement{{s0, s2, rep}, {s0, s1, rep}},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.MatMul(ctx, ds[0], ds[1])
			},
			ref:   two(tensor.MatMul),
			rules: map[string]string{"R,R": "R", "S(0),S(0)": "S(0)", "S(2),S(1)": "P(sum)"}},
		{name: "Linear", inputs: []*tensor.Tensor{f32(5, 7), f32(3, 7), f32(3)},
			per: [][]dtensor.Placement{all2, all2, {rep, s0, nil}},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.Linear(ctx, ds[0], ds[1], ds[2])
			},
			ref: func(ts []*tensor.Tensor) (*tensor.Tensor, error) { return tensor.Linear(ts[0], ts[1], ts[2]) },
			rules: map[string]string{"R,R,R": "R", "R,R,-": "R", "S(0),R,R": "S(0)", "S(0),R,-": "S(0)",
				"R,S(0),S(0)": "S(1)", "R,S(0),-": "S(1)", "S(1),S(1),R": "P(sum)", "S(1),S(1),-": "P(sum)",
				"P(sum),R,R": "P(sum)", "P(sum),R,-": "P(sum)"}},
		{name: "Add", inputs: []*tensor.Tensor{f32(5, 7), f32(5, 7)}, per: [][]dtensor.Placement{all2, all2},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.Add(ctx, ds[0], ds[1])
			},
			ref: two(tensor.Add), rules: addRules},
		{name: "Add bias", inputs: []*tensor.Tensor{f32(5, 7), f32(7)}, per: [][]dtensor.Placement{all2, {s0, rep, psum}},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.Add(ctx, ds[0], ds[1])
			},
			ref: two(tensor.Add), rules: map[string]string{"S(0),R": "S(0)", "S(1),S(0)": "S(1)", "R,R": "R", "P(sum),P(sum)": "P(sum)"}},
		{name: "Mul", inputs: []*tensor.Tensor{f32(5, 7), f32(5, 7)}, per: [][]dtensor.Placement{all2, all2},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.Mul(ctx, ds[0], ds[1])
			},
			ref: two(tensor.Mul), rules: mulRules},
		{name: "SwiGLU", inputs: []*tensor.Tensor{small(5, 7), small(5, 7)}, per: [][]dtensor.Placement{all2, all2},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.SwiGLU(ctx, ds[0], ds[1])
			},
			ref: two(tensor.SwiGLU), rules: elementwise},
		{name: "SiLU", inputs: []*tensor.Tensor{small(5, 7)}, per: [][]dtensor.Placement{all2},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.SiLU(ctx, ds[0])
			},
			ref: one(tensor.SiLU), rules: map[string]string{"S(0)": "S(0)", "S(1)": "S(1)", "R": "R"}},
		{name: "Softmax", inputs: []*tensor.Tensor{small(5, 7)}, per: [][]dtensor.Placement{all2},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.Softmax(ctx, ds[0])
			},
			ref: one(tensor.Softmax), rules: rowOp},
		{name: "RMSNorm", inputs: []*tensor.Tensor{small(5, 7), small(7)}, per: [][]dtensor.Placement{all2, {rep, s0}},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.RMSNorm(ctx, ds[0], ds[1], 1e-6)
			},
			ref:   func(ts []*tensor.Tensor) (*tensor.Tensor, error) { return tensor.RMSNorm(ts[0], ts[1], 1e-6) },
			rules: map[string]string{"S(0),R": "S(0)", "R,R": "R"}},
		{name: "LayerNorm", inputs: []*tensor.Tensor{small(5, 7), small(7), small(7)},
			per: [][]dtensor.Placement{{s0, s1, rep, psum}, {rep, nil}, {rep, s0}},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.LayerNorm(ctx, ds[0], ds[1], ds[2], 1e-5)
			},
			ref:   func(ts []*tensor.Tensor) (*tensor.Tensor, error) { return tensor.LayerNorm(ts[0], ts[1], ts[2], 1e-5) },
			rules: map[string]string{"S(0),R,R": "S(0)", "R,R,R": "R", "S(0),-,R": "S(0)", "R,-,R": "R"}},
		{name: "Embedding", inputs: []*tensor.Tensor{f32(10, 5)}, per: [][]dtensor.Placement{all2},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.Embedding(ctx, ids, ds[0])
			},
			ref:   one(func(t *tensor.Tensor) (*tensor.Tensor, error) { return tensor.Embedding(ids, t) }),
			rules: map[string]string{"S(0)": "P(sum)", "S(1)": "S(1)", "R": "R"}},
		{name: "Transpose", inputs: []*tensor.Tensor{f32(5, 7)}, per: [][]dtensor.Placement{all2},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.Transpose(ctx, ds[0], 0, -1)
			},
			ref:   one(func(t *tensor.Tensor) (*tensor.Tensor, error) { return t.Transpose(0, 1) }),
			rules: map[string]string{"S(0)": "S(1)", "S(1)": "S(0)", "R": "R", "P(sum)": "P(sum)"}},
		{name: "Reshape split", inputs: []*tensor.Tensor{f32(6, 4)}, per: [][]dtensor.Placement{all2}, noNested: []int{1},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.Reshape(ctx, ds[0], 6, 2, 2)
			},
			ref: one(func(t *tensor.Tensor) (*tensor.Tensor, error) { return t.Reshape(6, 2, 2) }),
			// S(1) of 4 over 3 ranks (2, 2, 0) lines up with S(1) of 2 (1, 1, 0) times 2; over 2 too.
			// Nested, [S(1), S(1)] would not (4 -> 2, 2 -> 1, 1 but 2 -> 1, 1 -> 1, 0); [S(0), S(0)]
			// keeps the dim that the reshape leaves alone.
			rules: map[string]string{"S(0)": "S(0)", "S(1)": "S(1)", "R": "R", "P(sum)": "P(sum)"}},
		{name: "View merge", inputs: []*tensor.Tensor{f32(6, 4)}, per: [][]dtensor.Placement{all2}, noNested: []int{0, 1},
			run: func(ctx context.Context, ds []*dtensor.DTensor) (*dtensor.DTensor, error) {
				return dtensor.View(ctx, ds[0], -1)
			},
			ref: one(func(t *tensor.Tensor) (*tensor.Tensor, error) { return t.Reshape(-1) }),
			// S(0) of 6 chunks evenly over 2 and 3 ranks; S(1) would interleave.
			rules: map[string]string{"S(0)": "S(0)", "R": "R", "P(sum)": "P(sum)"}},
	}
}

func formatPs(ps []dtensor.Placement) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// combos lists every placement list of ndim mesh dimensions drawn from per (a nil in per
// stands for the absent input, listed once as nil).
func combos(per []dtensor.Placement, ndim int) [][]dtensor.Placement {
	var present []dtensor.Placement
	absent := false
	for _, p := range per {
		if p == nil {
			absent = true
		} else {
			present = append(present, p)
		}
	}
	sets := [][]dtensor.Placement{{}}
	for range ndim {
		var next [][]dtensor.Placement
		for _, s := range sets {
			for _, p := range present {
				next = append(next, append(append([]dtensor.Placement(nil), s...), p))
			}
		}
		sets = next
	}
	if absent {
		sets = append(sets, nil)
	}
	return sets
}

// makeInput distributes g with placements ps; on a Partial mesh dimension of size n the rank at
// coordinate 0 holds its value minus (n-1)·h and the others h, for another tensor h, so that
// the parts differ and sum to the value exactly (for these small integers).
func makeInput(t *testing.T, ctx context.Context, m *mesh.Mesh, g *tensor.Tensor, ps []dtensor.Placement) *dtensor.DTensor {
	base := make([]dtensor.Placement, len(ps))
	partial := false
	for i, p := range ps {
		base[i] = p
		if _, ok := p.(dtensor.Partial); ok {
			base[i], partial = rep, true
		}
	}
	d, err := dtensor.Distribute(ctx, g, m, base, dtensor.DistributeOptions{LocalIsFull: true})
	require.NoError(t, err)
	if !partial {
		return d
	}
	hg := g.Clone()
	for i, v := range hg.Float32s() {
		hg.Float32s()[i] = float32((i*5+1)%7-3) + v*0
	}
	h, err := dtensor.Distribute(ctx, hg, m, base, dtensor.DistributeOptions{LocalIsFull: true})
	require.NoError(t, err)
	local := d.Local().Clone()
	ls, hs := local.Float32s(), h.Local().Float32s()
	coord := m.Coordinate()
	for i, p := range ps {
		if _, ok := p.(dtensor.Partial); !ok {
			continue
		}
		n := float32(m.Shape()[i])
		for j := range ls {
			if coord[i] == 0 {
				ls[j] -= (n - 1) * hs[j]
			} else {
				ls[j] = hs[j]
			}
		}
	}
	out, err := dtensor.FromLocal(ctx, local, m, ps, dtensor.FromLocalOptions{GlobalShape: g.Shape()})
	require.NoError(t, err)
	return out
}

func opsChild(t *testing.T, tc meshCase) {
	ctx := context.Background()
	_, m := childMesh(ctx, t, tc.Shape)
	ndim := len(tc.Shape)
	var summary []string
	for _, oc := range opCases() {
		start := time.Now()
		sets := make([][][]dtensor.Placement, len(oc.inputs))
		for k := range oc.inputs {
			sets[k] = combos(oc.per[k], ndim)
		}
		idx := make([]int, len(oc.inputs))
		passed, refused := 0, 0
		for {
			ps := make([][]dtensor.Placement, len(idx))
			ds := make([]*dtensor.DTensor, len(idx))
			var names []string
			for k, i := range idx {
				ps[k] = sets[k][i]
				if ps[k] != nil {
					ds[k] = makeInput(t, ctx, m, oc.inputs[k], ps[k])
					names = append(names, formatPs(ps[k]))
				}
			}
			what := fmt.Sprintf("%s %s at %v", oc.name, strings.Join(names, " x "), m.Coordinate())
			// The rule table's output, if it has an entry for every mesh dimension.
			var expect []dtensor.Placement
			for i := range ndim {
				key := make([]string, len(ps))
				for k := range ps {
					key[k] = "-"
					if ps[k] != nil {
						key[k] = ps[k][i].String()
					}
				}
				out, found := oc.rules[strings.Join(key, ",")]
				if !found {
					expect = nil
					break
				}
				expect = append(expect, parsePlacement(out))
			}
			if nested(ps[0], oc.noNested) {
				expect = nil
			}
			globals := make([]*tensor.Tensor, len(ps))
			for k := range ps {
				if ps[k] != nil {
					globals[k] = oc.inputs[k]
				}
			}
			want, err := oc.ref(globals)
			require.NoError(t, err, what)
			r, err := oc.run(ctx, ds)
			if expect == nil {
				require.Error(t, err, "%s: want an error, got %v", what, r)
				require.True(t, errors.Is(err, dtensor.ErrNoRule) && errors.Is(err, comm.ErrInvalidArgument), "%s: %v", what, err)
				require.Contains(t, err.Error(), "dtensor."+strings.Fields(oc.name)[0], what)
				require.Contains(t, err.Error(), "no rule for ", what)
				refused++
			} else {
				require.NoError(t, err, what)
				require.Equal(t, expect, r.Placements(), what)
				require.Equal(t, want.Shape(), r.Shape(), what)
				full, err := r.Full(ctx)
				require.NoError(t, err, what)
				require.True(t, tensor.AllClose(want, full, 1e-5, 1e-5), "%s: got %v, want %v", what, full, want)
				passed++
			}
			// Next combination.
			k := len(idx) - 1
			for ; k >= 0; k-- {
				idx[k]++
				if idx[k] < len(sets[k]) {
					break
				}
				idx[k] = 0
			}
			if k < 0 {
				break
			}
		}
		require.Positive(t, passed, oc.name)
		summary = append(summary, fmt.Sprintf("%s %d/%d in %v", oc.name, passed, passed+refused, time.Since(start).Round(time.Millisecond)))
	}
	fmt.Println(strings.Join(summary, "; "))
}

func parsePlacement(s string) dtensor.Placement {
	switch s {
	case "R":
		return rep
	case "P(sum)":
		return psum
	}
	var d int
	if _, err := fmt.Sscanf(s, "S(%d)", &d); err != nil {
		panic(s)
	}
	return dtensor.Shard{Dim: d}
}

// nested reports whether one of dims is sharded by two mesh dimensions in ps.
func nested(ps []dtensor.Placement, dims []int) bool {
	seen := map[int]bool{}
	for _, p := range ps {
		if s, ok := p.(dtensor.Shard); ok && slices.Contains(dims, s.Dim) {
			if seen[s.Dim] {
				return true
			}
			seen[s.Dim] = true
		}
	}
	return false
}

// TestOpsBadInput: on a one-rank mesh, bad arguments are errors wrapping
// comm.ErrInvalidArgument that name the op: nil inputs, inputs on different meshes, shapes that
// do not fit, ids out of range, dims out of range.
func TestOpsBadInput(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	require.NoError(t, err)
	defer pg.Close()
	m1, err := mesh.New(ctx, pg, []int{1}, []string{"tp"}, mesh.Options{})
	require.NoError(t, err)
	defer m1.Close()
	m2, err := mesh.New(ctx, pg, []int{1}, []string{"dp"}, mesh.Options{})
	require.NoError(t, err)
	defer m2.Close()
	R := []dtensor.Placement{rep}
	mk := func(m *mesh.Mesh, shape ...int) *dtensor.DTensor {
		d, err := dtensor.Distribute(ctx, f32(shape...), m, R, dtensor.DistributeOptions{LocalIsFull: true})
		require.NoError(t, err)
		return d
	}
	a, b, other := mk(m1, 2, 3), mk(m1, 3, 4), mk(m2, 3, 4)
	cases := []struct {
		op  string
		err error
	}{
		{"MatMul", func() error { _, err := dtensor.MatMul(ctx, nil, b); return err }()},
		{"MatMul", func() error { _, err := dtensor.MatMul(ctx, a, nil); return err }()},
		{"MatMul", func() error { _, err := dtensor.MatMul(ctx, a, other); return err }()},
		{"MatMul", func() error { _, err := dtensor.MatMul(ctx, a, a); return err }()},
		{"Linear", func() error { _, err := dtensor.Linear(ctx, a, b, nil); return err }()},
		{"Add", func() error { _, err := dtensor.Add(ctx, a, b); return err }()},
		{"SwiGLU", func() error { _, err := dtensor.SwiGLU(ctx, a, mk(m1, 3)); return err }()},
		{"Embedding", func() error { _, err := dtensor.Embedding(ctx, []int{0, 3}, b); return err }()},
		{"Embedding", func() error { _, err := dtensor.Embedding(ctx, []int{0}, mk(m1, 3)); return err }()},
		{"Transpose", func() error { _, err := dtensor.Transpose(ctx, a, 0, 2); return err }()},
		{"Reshape", func() error { _, err := dtensor.Reshape(ctx, a, 4, -1); return err }()},
		{"View", func() error { _, err := dtensor.View(ctx, a, 5); return err }()},
	}
	for i, tc := range cases {
		require.Error(t, tc.err, "case %d", i)
		assert.ErrorIs(t, tc.err, comm.ErrInvalidArgument, "case %d", i)
		assert.Contains(t, tc.err.Error(), "dtensor."+tc.op, "case %d", i)
	}
}
