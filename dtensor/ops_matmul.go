package dtensor

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gccl/gccl/tensor"
)

// matmulRule propagates placements through a [... M K] · b [K N] (or b [... K N] with a's
// batch dims). It returns the output's shape and placements.
func matmulRule(aShape, bShape []int, a, b []Placement) ([]int, []Placement, error) {
	ra, rb := len(aShape), len(bShape)
	if ra < 2 || rb < 2 {
		return nil, nil, fmt.Errorf("needs tensors of 2 or more dims; got a %v and b %v", aShape, bShape)
	}
	if aShape[ra-1] != bShape[rb-2] {
		return nil, nil, fmt.Errorf("inner dims differ: a %v has %d columns but b %v has %d rows", aShape, aShape[ra-1], bShape, bShape[rb-2])
	}
	if rb > 2 && !slices.Equal(aShape[:ra-2], bShape[:rb-2]) {
		return nil, nil, fmt.Errorf("batch dims differ: a %v, b %v (b may also be 2-D)", aShape, bShape)
	}
	shape := append(slices.Clone(aShape[:ra-1]), bShape[rb-1])
	ps, err := propagate([][]Placement{a, b}, func(_ int, ps []Placement) rule {
		pa, pb := ps[0], ps[1]
		da, db := shardDim(pa), shardDim(pb)
		switch {
		case pa == (Replicate{}) && pb == (Replicate{}):
			return ok(pa)
		case da == ra-2 && pb == (Replicate{}): // rows of a
			return ok(pa)
		case da >= 0 && da < ra-2 && rb == 2 && pb == (Replicate{}): // a batch dim, b shared
			return ok(pa)
		case da >= 0 && da < ra-2 && rb > 2 && db == da: // the same batch dim of both
			return ok(pa)
		case pa == (Replicate{}) && db == rb-1: // columns of b
			return ok(Shard{Dim: ra - 1})
		case da == ra-1 && db == rb-2: // the contraction dim: each rank holds a part of the sum
			return ok(Partial{Op: 0})
		case linearPartial(pa) && pb == (Replicate{}):
			return ok(pa)
		case pa == (Replicate{}) && linearPartial(pb):
			return ok(pb)
		case da == ra-1:
			return none(fmt.Sprintf("a's S(%d) splits the contraction dim; redistribute b to S(%d) (giving P(sum)) or a to Replicate", da, rb-2))
		case db == rb-2:
			return none(fmt.Sprintf("b's S(%d) splits the contraction dim; redistribute a to S(%d) (giving P(sum)) or b to Replicate", db, ra-1))
		case isPartial(pa) || isPartial(pb):
			return none("a product is linear in one Partial factor (P(sum) or P(avg)) times a Replicate only; redistribute the Partial side to Replicate first")
		}
		return none("redistribute one side first (e.g. b to Replicate)")
	})
	return shape, ps, err
}

// MatMul returns the matrix product a · b of DTensors, like torch.matmul: a [... M K], b [K N]
// or b [... K N] with a's batch dims; float32, float64, bfloat16 or float16. The output
// placements follow from the inputs', one mesh dimension at a time:
//
//	a          b          a·b
//	R          R          R
//	S(M)       R          S(M)        rows of a (M is a's dim -2)
//	S(batch)   R          S(batch)    b 2-D
//	S(batch)   S(batch)   S(batch)    b batched like a
//	R          S(N)       S(N)        columns of b
//	S(K)       S(K)       P(sum)      the contraction dim: no communication
//	P          R          P           P(sum) or P(avg)
//	R          P          P
//
// Everything else is an error wrapping ErrNoRule and comm.ErrInvalidArgument that names the
// placements and what to redistribute; MatMul never communicates. Uneven shards are fine.
func MatMul(ctx context.Context, a, b *DTensor) (*DTensor, error) {
	const op = "MatMul"
	if err := checkInputs(op, []string{"a", "b"}, a, b); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, opError(op, a.mesh, errors.New("b is nil"))
	}
	shape, ps, err := matmulRule(a.shape, b.shape, a.placements, b.placements)
	if err != nil {
		return nil, opError(op, a.mesh, err)
	}
	out, err := tensor.MatMul(a.local, b.local)
	if err != nil {
		return nil, localError(op, a.mesh, err)
	}
	return result(op, a.mesh, shape, ps, out)
}

// linearRule propagates placements through x [... in] · wᵀ (w [out in]) + bias [out] (bias
// nil when absent).
func linearRule(xShape, wShape, biasShape []int, x, w, bias []Placement) ([]int, []Placement, error) {
	rx := len(xShape)
	if rx < 1 || len(wShape) != 2 {
		return nil, nil, fmt.Errorf("x must have at least 1 dim and w be [out in]; got x %v, w %v", xShape, wShape)
	}
	if xShape[rx-1] != wShape[1] {
		return nil, nil, fmt.Errorf("x %v has %d features but w %v takes %d", xShape, xShape[rx-1], wShape, wShape[1])
	}
	if bias != nil && !slices.Equal(biasShape, wShape[:1]) {
		return nil, nil, fmt.Errorf("bias is %v; want [%d]", biasShape, wShape[0])
	}
	shape := append(slices.Clone(xShape[:rx-1]), wShape[0])
	ps, err := propagate([][]Placement{x, w, bias}, func(_ int, ps []Placement) rule {
		px, pw, pb := ps[0], ps[1], ps[2]
		dx, dw := shardDim(px), shardDim(pw)
		biasR := pb == nil || pb == (Replicate{})
		switch {
		case px == (Replicate{}) && pw == (Replicate{}) && biasR:
			return ok(px)
		case dx >= 0 && dx < rx-1 && pw == (Replicate{}) && biasR: // rows of x
			return ok(px)
		case px == (Replicate{}) && dw == 0 && (pb == nil || shardDim(pb) == 0): // column-parallel
			return ok(Shard{Dim: rx - 1})
		case dx == rx-1 && dw == 1 && biasR: // row-parallel: parts of the sum
			return ok(Partial{})
		case linearPartial(px) && pw == (Replicate{}) && biasR:
			return ok(px)
		case dw == 0:
			return none("w's S(0) splits the output features; x must be Replicate and bias S(0) or absent")
		case dx == rx-1 || dw == 1:
			return none(fmt.Sprintf("the input features must be split alike: x S(%d) with w S(1) (giving P(sum)); redistribute the other side", rx-1))
		case pb != nil && !biasR:
			return none("bias must be Replicate, or S(0) along with w's S(0); redistribute bias")
		case isPartial(pw):
			return none("a Partial weight is not supported; redistribute w to Replicate or a Shard")
		}
		return none("redistribute one side first (e.g. w to Replicate)")
	})
	return shape, ps, err
}

// Linear returns x·wᵀ + bias, like torch.nn.functional.linear: x [... in], w [out in], bias
// [out] or nil. Rules per mesh dimension (x, w, bias -> output):
//
//	R        R      R      -> R
//	S(row)   R      R      -> S(row)       row is any dim of x but the last
//	R        S(0)   S(0)   -> S(last)      column-parallel (torch's ColwiseParallel)
//	S(last)  S(1)   R      -> P(sum)       row-parallel: no communication
//	P        R      R      -> P            P(sum) or P(avg)
//
// (bias may be absent wherever it is listed.) When the output is Partial, the bias is added on
// the ranks at coordinate 0 of every P(sum) mesh dimension only, so that the reduction adds it
// once. Other combinations are errors wrapping ErrNoRule; Linear never communicates.
func Linear(ctx context.Context, x, w, bias *DTensor) (*DTensor, error) {
	const op = "Linear"
	if err := checkInputs(op, []string{"x", "w", "bias"}, x, w, bias); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, opError(op, x.mesh, errors.New("w is nil"))
	}
	var bShape []int
	var bPs []Placement
	if bias != nil {
		bShape, bPs = bias.shape, bias.placements
	}
	shape, ps, err := linearRule(x.shape, w.shape, bShape, x.placements, w.placements, bPs)
	if err != nil {
		return nil, opError(op, x.mesh, err)
	}
	b := localOrNil(bias)
	coord := x.mesh.Coordinate()
	for i, p := range ps {
		if p == (Partial{Op: 0}) && coord[i] != 0 {
			b = nil
		}
	}
	out, err := tensor.Linear(x.local, w.local, b)
	if err != nil {
		return nil, localError(op, x.mesh, err)
	}
	return result(op, x.mesh, shape, ps, out)
}
