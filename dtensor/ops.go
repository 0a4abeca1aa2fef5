package dtensor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// ErrNoRule is wrapped (together with comm.ErrInvalidArgument) by the error of an op on
// DTensors whose placements it has no sharding rule for. The ops never gather implicitly: the
// caller redistributes an input and calls again.
var ErrNoRule = errors.New("no sharding rule")

// rule is the outcome of an op's sharding rule on one mesh dimension: the output placement, or
// (out nil) a hint saying what to redistribute.
type rule struct {
	out  Placement
	hint string
}

func ok(p Placement) rule        { return rule{out: p} }
func none(hint string) rule      { return rule{hint: hint} }
func (r rule) failed() bool      { return r.out == nil }
func isPartial(p Placement) bool { _, yes := p.(Partial); return yes }

// linearPartial reports whether p is a Partial whose reduction commutes with linear maps (Sum
// and Avg); the other ops (Max, Product, ...) are kept by nothing but Redistribute.
func linearPartial(p Placement) bool {
	pp, yes := p.(Partial)
	return yes && (pp.Op == comm.Sum || pp.Op == comm.Avg)
}

// propagate applies an op's per-mesh-dimension rule to the inputs' placements (ins[k][i] is
// input k's placement on mesh dimension i; a nil ins[k] is an absent optional input, given to
// the rule as nil). The error names every input's placements, the mesh dimension and the hint.
func propagate(ins [][]Placement, f func(i int, ps []Placement) rule) ([]Placement, error) {
	n := 0
	for _, in := range ins {
		n = max(n, len(in))
	}
	out := make([]Placement, n)
	ps := make([]Placement, len(ins))
	for i := range n {
		for k, in := range ins {
			ps[k] = nil
			if in != nil {
				ps[k] = in[i]
			}
		}
		r := f(i, ps)
		if r.failed() {
			return nil, fmt.Errorf("no rule for %s (mesh dimension %d: %s): %s: %w",
				describe(ins), i, describeOne(ps), r.hint, ErrNoRule)
		}
		out[i] = r.out
	}
	return out, nil
}

// inputSep separates the inputs in propagate's errors.
const inputSep = " x "

func describe(ins [][]Placement) string {
	parts := make([]string, 0, len(ins))
	for _, in := range ins {
		if in != nil {
			parts = append(parts, formatPlacements(in))
		}
	}
	return strings.Join(parts, inputSep)
}

func describeOne(ps []Placement) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		if p != nil {
			parts = append(parts, p.String())
		}
	}
	return strings.Join(parts, inputSep)
}

// opError wraps err (a rule's or a shape check's) with the op, the rank and
// comm.ErrInvalidArgument.
func opError(op string, m *mesh.Mesh, err error) error {
	return fmt.Errorf("gccl: dtensor.%s (rank %d): %w: %w", op, globalRank(m), err, comm.ErrInvalidArgument)
}

// checkInputs checks that the inputs (nil entries are absent optional inputs) are DTensors on
// the mesh of the first one.
func checkInputs(op string, names []string, ds ...*DTensor) error {
	if ds[0] == nil {
		return fmt.Errorf("gccl: dtensor.%s: %s is nil: %w", op, names[0], comm.ErrInvalidArgument)
	}
	for k, d := range ds[1:] {
		if d != nil && d.mesh != ds[0].mesh {
			return opError(op, ds[0].mesh, fmt.Errorf("%s is on %s but %s on %s; put both on the same mesh", names[k+1], d.mesh, names[0], ds[0].mesh))
		}
	}
	return nil
}

// result builds the op's output and checks that the local tensor has the shape the layout gives
// this rank (a broken rule would otherwise go unnoticed until a collective hangs).
func result(op string, m *mesh.Mesh, shape []int, ps []Placement, local *tensor.Tensor) (*DTensor, error) {
	want, _ := localShape(shape, m.Shape(), m.Coordinate(), ps, len(ps))
	if !slices.Equal(want, local.Shape()) {
		return nil, fmt.Errorf("gccl: dtensor.%s (rank %d): internal error: local result %v but global %v with %s gives %v",
			op, globalRank(m), local.Shape(), shape, formatPlacements(ps), want)
	}
	return &DTensor{mesh: m, placements: ps, shape: shape, dtype: local.DType(), local: local.Contiguous()}, nil
}

// localError wraps an error of the local op, which, the global shapes and placements being
// the same on every rank, every rank gets.
func localError(op string, m *mesh.Mesh, err error) error {
	return fmt.Errorf("gccl: dtensor.%s (rank %d): local op: %w", op, globalRank(m), err)
}

// ---- elementwise ----

// unaryRule is the rule of an elementwise op or one along the last dim (lastDim >= 0 is that
// dim): shards and replicas pass through, Partial is an error (the op is not linear), and so is
// a shard of the last dim for a row op.
func unaryRule(op string, lastDim int) func(int, []Placement) rule {
	return func(_ int, ps []Placement) rule {
		p := ps[0]
		switch {
		case isPartial(p):
			return none(fmt.Sprintf("%s is not linear, so it cannot run on the parts of a Partial; redistribute x to Replicate or a Shard first", op))
		case lastDim >= 0 && shardDim(p) == lastDim:
			return none(fmt.Sprintf("%s works along the last dim, which %s splits; redistribute x to shard another dim, or to Replicate", op, p))
		}
		return ok(p)
	}
}

// unaryRuleFor returns the output placements of an elementwise op (rows false) or a row op on
// the last dim of a tensor of rank rank.
func unaryRuleFor(op string, x []Placement, rank int, rows bool) ([]Placement, error) {
	last := -1
	if rows {
		last = rank - 1
	}
	return propagate([][]Placement{x}, unaryRule(op, last))
}

// binaryKind is how a binary elementwise op treats Partial inputs.
type binaryKind int

const (
	additive       binaryKind = iota // P+P is P (same linear op); P+R is not
	multiplicative                   // P*R and R*P are P; P*P is not
	nonlinear                        // no Partial at all
)

// binaryRule propagates placements through a (shape ra) op b (shape rb, a's shape or a suffix of
// it, broadcast over a's leading dims).
func binaryRule(op string, kind binaryKind, a, b []Placement, ra, rb int) ([]Placement, error) {
	off := ra - rb
	return propagate([][]Placement{a, b}, func(_ int, ps []Placement) rule {
		pa, pb := ps[0], ps[1]
		da, db := shardDim(pa), shardDim(pb)
		switch {
		case da >= 0 && da >= off && db == da-off:
			return ok(pa)
		case da >= 0 && da < off && pb == (Replicate{}):
			return ok(pa)
		case pa == (Replicate{}) && pb == (Replicate{}):
			return ok(pa)
		case da >= 0 || db >= 0:
			if da >= off {
				return none(fmt.Sprintf("both sides must shard the same dim; redistribute b to S(%d) (or both to Replicate)", da-off))
			}
			if da >= 0 {
				return none("b has no dim that a's S(" + fmt.Sprint(da) + ") could match (it is broadcast); redistribute b to Replicate")
			}
			if db >= 0 && off+db < ra {
				return none(fmt.Sprintf("both sides must shard the same dim; redistribute a to S(%d) or b to Replicate", off+db))
			}
		}
		// Partials.
		switch kind {
		case additive:
			if linearPartial(pa) && pa == pb {
				return ok(pa)
			}
			if isPartial(pa) && isPartial(pb) {
				return none("the parts of Partials add up only when both are P(sum) or both P(avg); redistribute to Replicate first")
			}
			return none("adding a replicated tensor to every part of a Partial would add it once per rank; redistribute the Partial side to Replicate first")
		case multiplicative:
			if linearPartial(pa) && pb == (Replicate{}) {
				return ok(pa)
			}
			if pa == (Replicate{}) && linearPartial(pb) {
				return ok(pb)
			}
			return none("a product is linear in one Partial factor (P(sum) or P(avg)) times a Replicate, not in two Partials; redistribute one side to Replicate first")
		}
		return none(op + " is not linear, so it cannot run on the parts of a Partial; redistribute to Replicate or a Shard first")
	})
}

func unary(op string, x *DTensor, rows bool, local func(*tensor.Tensor) (*tensor.Tensor, error)) (*DTensor, error) {
	if err := checkInputs(op, []string{"x"}, x); err != nil {
		return nil, err
	}
	ps, err := unaryRuleFor(op, x.placements, len(x.shape), rows)
	if err != nil {
		return nil, opError(op, x.mesh, err)
	}
	out, err := local(x.local)
	if err != nil {
		return nil, localError(op, x.mesh, err)
	}
	return result(op, x.mesh, slices.Clone(x.shape), ps, out)
}

func binary(op string, kind binaryKind, a, b *DTensor, local func(a, b *tensor.Tensor) (*tensor.Tensor, error)) (*DTensor, error) {
	if err := checkInputs(op, []string{"a", "b"}, a, b); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, opError(op, a.mesh, errors.New("b is nil"))
	}
	ra, rb := len(a.shape), len(b.shape)
	if rb > ra || !slices.Equal(b.shape, a.shape[ra-rb:]) {
		return nil, opError(op, a.mesh, fmt.Errorf("b %v does not broadcast to a %v; b must be a's shape or a suffix of it", b.shape, a.shape))
	}
	if kind == nonlinear && ra != rb {
		return nil, opError(op, a.mesh, fmt.Errorf("the two inputs %v and %v differ in shape", a.shape, b.shape))
	}
	ps, err := binaryRule(op, kind, a.placements, b.placements, ra, rb)
	if err != nil {
		return nil, opError(op, a.mesh, err)
	}
	out, err := local(a.local, b.local)
	if err != nil {
		return nil, localError(op, a.mesh, err)
	}
	return result(op, a.mesh, slices.Clone(a.shape), ps, out)
}

// Add returns a + b (float32). b has a's global shape or a suffix of it (broadcast over a's
// leading dims, like a bias). Rules per mesh dimension: S(d)+S(d) and R+R keep their placement;
// S(d) of a broadcast dim + R is S(d); P(sum)+P(sum) is P(sum) (likewise P(avg)). P+R and
// mismatched shards are errors wrapping ErrNoRule. No communication.
func Add(ctx context.Context, a, b *DTensor) (*DTensor, error) {
	return binary("Add", additive, a, b, tensor.Add)
}

// Mul returns a * b (float32), with b broadcast as in Add. Rules per mesh dimension: as Add for
// shards and replicas; P*R and R*P are P (Sum or Avg: the product is linear in one factor);
// P*P is an error. No communication.
func Mul(ctx context.Context, a, b *DTensor) (*DTensor, error) {
	return binary("Mul", multiplicative, a, b, tensor.Mul)
}

// SiLU returns x·sigmoid(x) elementwise (float32). Shards and replicas pass through; a Partial
// is an error (SiLU is not linear). No communication.
func SiLU(ctx context.Context, x *DTensor) (*DTensor, error) {
	return unary("SiLU", x, false, tensor.SiLU)
}

// SwiGLU returns silu(gate)·up elementwise (float32): gate and up have the same shape and the
// same placements, none Partial. No communication.
func SwiGLU(ctx context.Context, gate, up *DTensor) (*DTensor, error) {
	return binary("SwiGLU", nonlinear, gate, up, tensor.SwiGLU)
}

// Softmax returns the softmax of x over its last dim (float32). Allowed when no mesh dimension
// shards the last dim and none is Partial; other shards and replicas pass through. No
// communication.
func Softmax(ctx context.Context, x *DTensor) (*DTensor, error) {
	return unary("Softmax", x, true, tensor.Softmax)
}

// replicatedParam checks that a parameter of a row op (a norm's weight or bias) is replicated on
// every mesh dimension.
func replicatedParam(name string, p *DTensor) error {
	if p == nil {
		return nil
	}
	for i, pl := range p.placements {
		if pl != (Replicate{}) {
			return fmt.Errorf("no rule for %s %s (mesh dimension %d): the norm's parameters must be Replicate on every mesh dimension; redistribute %s to Replicate: %w",
				name, formatPlacements(p.placements), i, name, ErrNoRule)
		}
	}
	return nil
}

func localOrNil(d *DTensor) *tensor.Tensor {
	if d == nil {
		return nil
	}
	return d.local
}

// RMSNorm returns x / sqrt(mean(x², last dim) + eps) · weight (float32). x may be sharded on
// any dim but the last, and not Partial; weight [n] must be replicated. No communication.
func RMSNorm(ctx context.Context, x, weight *DTensor, eps float64) (*DTensor, error) {
	const op = "RMSNorm"
	if err := checkInputs(op, []string{"x", "weight"}, x, weight); err != nil {
		return nil, err
	}
	if err := replicatedParam("weight", weight); err != nil {
		return nil, opError(op, x.mesh, err)
	}
	return unary(op, x, true, func(t *tensor.Tensor) (*tensor.Tensor, error) {
		return tensor.RMSNorm(t, localOrNil(weight), eps)
	})
}

// LayerNorm returns (x - mean) / sqrt(var + eps) · weight + bias over the last dim (float32);
// weight and bias may be nil. The rules are RMSNorm's: x not sharded on the last dim and not
// Partial, weight and bias replicated. No communication.
func LayerNorm(ctx context.Context, x, weight, bias *DTensor, eps float64) (*DTensor, error) {
	const op = "LayerNorm"
	if err := checkInputs(op, []string{"x", "weight", "bias"}, x, weight, bias); err != nil {
		return nil, err
	}
	if err := errors.Join(replicatedParam("weight", weight), replicatedParam("bias", bias)); err != nil {
		return nil, opError(op, x.mesh, err)
	}
	return unary(op, x, true, func(t *tensor.Tensor) (*tensor.Tensor, error) {
		return tensor.LayerNorm(t, localOrNil(weight), localOrNil(bias), eps)
	})
}
