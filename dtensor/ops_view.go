package dtensor

import (
	"context"
	"fmt"
	"slices"

	"github.com/gccl/gccl/tensor"
)

// embeddingRule propagates the table's placements through a lookup: S(0) (the vocabulary) gives
// P(sum) (each rank looks up the ids in its rows, zeros for the others), S(1) stays S(1), R
// stays R; a Partial table is an error.
func embeddingRule(table []Placement) ([]Placement, error) {
	return propagate([][]Placement{table}, func(_ int, ps []Placement) rule {
		switch p := ps[0]; {
		case shardDim(p) == 0:
			return ok(Partial{})
		case isPartial(p):
			return none("a lookup in a Partial table is not supported; redistribute the table to Replicate or a Shard")
		default:
			return ok(p)
		}
	})
}

// Embedding returns the rows ids of table [vocab hidden], like torch.nn.functional.embedding:
// a [len(ids) hidden] DTensor of the table's dtype. ids are the same on every rank (not
// checked). Rules per mesh dimension of the table: R -> R; S(1) -> S(1); S(0) -> P(sum), the
// vocab-parallel embedding: each rank copies the rows of the ids in its vocabulary range and
// leaves zeros for the others, so that the sum over the mesh dimension is the lookup (redistribute
// to Replicate or to S(0) to finish it). No communication.
func Embedding(ctx context.Context, ids []int, table *DTensor) (*DTensor, error) {
	const op = "Embedding"
	if err := checkInputs(op, []string{"table"}, table); err != nil {
		return nil, err
	}
	if len(table.shape) != 2 {
		return nil, opError(op, table.mesh, fmt.Errorf("table is %v; want [vocab hidden]", table.shape))
	}
	vocab := table.shape[0]
	for i, id := range ids {
		if id < 0 || id >= vocab {
			return nil, opError(op, table.mesh, fmt.Errorf("id %d (position %d) out of range for a vocabulary of %d", id, i, vocab))
		}
	}
	ps, err := embeddingRule(table.placements)
	if err != nil {
		return nil, opError(op, table.mesh, err)
	}
	lshape, off := localShape(table.shape, table.mesh.Shape(), table.mesh.Coordinate(), table.placements, len(ps))
	out := tensor.New(table.dtype, len(ids), lshape[1])
	if err := EmbeddingShardInto(out, ids, table.local, off[0]); err != nil {
		return nil, localError(op, table.mesh, err)
	}
	return result(op, table.mesh, []int{len(ids), table.shape[1]}, ps, out)
}

// EmbeddingShardInto is the local lookup of a vocab-parallel embedding: shard holds the rows
// [lo, lo+rows) of a table [vocab hidden], and for every ids[i] in that range it copies the
// shard's row ids[i]-lo into row i of dst [len(ids) hidden]; the other rows of dst are left as
// they are (zero in a new tensor), so that the sum over the ranks holding the other rows is the
// lookup. ids outside the vocabulary are not reported: the caller checks them. Embedding uses it
// for a table sharded on vocab, and so does tp.VocabParallelEmbedding.
func EmbeddingShardInto(dst *tensor.Tensor, ids []int, shard *tensor.Tensor, lo int) error {
	hi := lo + shard.Size(0)
	for i, id := range ids {
		if id < lo || id >= hi {
			continue
		}
		row, err := dst.Narrow(0, i, 1)
		if err == nil {
			err = tensor.EmbeddingInto(row, []int{id - lo}, shard)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// transposeRule swaps shards of d0 and d1; everything else passes through.
func transposeRule(x []Placement, d0, d1 int) []Placement {
	out := slices.Clone(x)
	for i, p := range out {
		switch shardDim(p) {
		case d0:
			out[i] = Shard{Dim: d1}
		case d1:
			out[i] = Shard{Dim: d0}
		}
	}
	return out
}

// Transpose returns x with dims d0 and d1 swapped (negative dims count from the end). Every
// placement carries over, a shard of d0 becoming a shard of d1 and the other way round. The
// local result is a contiguous copy. No communication.
func Transpose(ctx context.Context, x *DTensor, d0, d1 int) (*DTensor, error) {
	const op = "Transpose"
	if err := checkInputs(op, []string{"x"}, x); err != nil {
		return nil, err
	}
	r := len(x.shape)
	a, b := d0, d1
	if a < 0 {
		a += r
	}
	if b < 0 {
		b += r
	}
	if a < 0 || a >= r || b < 0 || b >= r {
		return nil, opError(op, x.mesh, fmt.Errorf("dims %d and %d out of range for a %d-d tensor", d0, d1, r))
	}
	local, err := x.local.Transpose(a, b)
	if err != nil {
		return nil, localError(op, x.mesh, err)
	}
	shape := slices.Clone(x.shape)
	shape[a], shape[b] = shape[b], shape[a]
	return result(op, x.mesh, shape, transposeRule(x.placements, a, b), local.Contiguous())
}

// dimGroup is a run of input dims [in0, in1) whose elements are the output dims [out0, out1).
type dimGroup struct{ in0, in1, out0, out1 int }

// reshapeGroups splits a reshape of in into out into the smallest runs of dims with equal
// products.
func reshapeGroups(in, out []int) ([]dimGroup, bool) {
	var gs []dimGroup
	i, j := 0, 0
	for i < len(in) || j < len(out) {
		g := dimGroup{in0: i, out0: j}
		pin, pout := 1, 1
		if i < len(in) {
			pin *= in[i]
			i++
		}
		if j < len(out) {
			pout *= out[j]
			j++
		}
		for pin != pout {
			switch {
			case pin < pout && i < len(in):
				pin *= in[i]
				i++
			case j < len(out):
				pout *= out[j]
				j++
			case i < len(in):
				pin *= in[i]
				i++
			default:
				return nil, false
			}
		}
		// Trailing size-1 dims join the last group.
		for i == len(in) && j < len(out) && out[j] == 1 {
			j++
		}
		for j == len(out) && i < len(in) && in[i] == 1 {
			i++
		}
		g.in1, g.out1 = i, j
		gs = append(gs, g)
	}
	return gs, true
}

func product(s []int) int {
	n := 1
	for _, v := range s {
		n *= v
	}
	return n
}

// reshapeRule propagates placements through a reshape of in to out (sizes resolved). A shard
// survives when its dim leads its group of dims (only size-1 dims before it), no other mesh
// dimension shards a dim of that group, and every rank's chunk of the dim, times the group's
// inner size, is the chunk of the group's leading output dim (true when the mesh size divides
// the dim). Replicate and Partial pass through.
func reshapeRule(in, out []int, x []Placement, meshShape []int) ([]Placement, error) {
	gs, good := reshapeGroups(in, out)
	if !good {
		return nil, fmt.Errorf("cannot reshape %v to %v", in, out)
	}
	groupOf := func(d int) dimGroup {
		for _, g := range gs {
			if d >= g.in0 && d < g.in1 {
				return g
			}
		}
		return dimGroup{}
	}
	return propagate([][]Placement{x}, func(i int, ps []Placement) rule {
		d := shardDim(ps[0])
		if d < 0 {
			return ok(ps[0])
		}
		g := groupOf(d)
		if g.in1-g.in0 == 1 && g.out1-g.out0 == 1 { // the dim is kept as it is
			return ok(Shard{Dim: g.out0})
		}
		for k, p := range x {
			if e := shardDim(p); k != i && e >= g.in0 && e < g.in1 {
				return none(fmt.Sprintf("mesh dimensions %d and %d both shard dims %d-%d of %v, which the reshape merges or splits; redistribute one of them to Replicate", min(i, k), max(i, k), g.in0, g.in1-1, in))
			}
		}
		if product(in[g.in0:d]) != 1 {
			return none(fmt.Sprintf("dim %d is not the leading dim of the dims %d-%d of %v that the reshape to %v merges or splits; redistribute x to shard dim %d or to Replicate", d, g.in0, g.in1-1, in, out, g.in0))
		}
		od := g.out0
		for od < g.out1-1 && out[od] == 1 {
			od++
		}
		innerIn, innerOut := product(in[d+1:g.in1]), product(out[od+1:g.out1])
		n := meshShape[i]
		for c := range n {
			s0, l0 := ChunkRange(in[d], n, c)
			s1, l1 := ChunkRange(out[od], n, c)
			if s0*innerIn != s1*innerOut || l0*innerIn != l1*innerOut {
				return none(fmt.Sprintf("the %d chunks of dim %d (size %d) do not line up with the chunks of dim %d (size %d) of %v; redistribute x to Replicate (or use sizes the mesh divides)", n, d, in[d], od, out[od], out))
			}
		}
		return ok(Shard{Dim: od})
	})
}

// resolveShape fills in one -1 of shape from n elements.
func resolveShape(shape []int, n int) ([]int, error) {
	out := slices.Clone(shape)
	infer := -1
	known := 1
	for i, s := range shape {
		switch {
		case s == -1 && infer < 0:
			infer = i
		case s < 0:
			return nil, fmt.Errorf("bad size %d in shape %v", s, shape)
		default:
			known *= s
		}
	}
	if infer >= 0 {
		if known == 0 || n%known != 0 {
			return nil, fmt.Errorf("cannot infer the -1 in shape %v for %d elements", shape, n)
		}
		out[infer] = n / known
	} else if known != n {
		return nil, fmt.Errorf("shape %v has %d elements but x has %d", shape, known, n)
	}
	return out, nil
}

// Reshape returns x with the given global shape (one size may be -1), as a contiguous copy.
// Replicate and Partial carry over; a Shard survives when the sharded dim leads its group of
// merged or split dims, no other mesh dimension shards that group, and the chunks line up
// (always when the mesh dimension's size divides the sharded dim): [S(0)] of [8 3] reshaped to
// [24] is [S(0)], of [4 6] to [4 2 3] stays [S(0)], and [S(1)] of [4 6] to [24] is an error
// (the chunks would interleave). No communication.
func Reshape(ctx context.Context, x *DTensor, shape ...int) (*DTensor, error) {
	return reshape("Reshape", x, shape, true)
}

// View is Reshape whose local result shares x's local storage (like torch's view).
func View(ctx context.Context, x *DTensor, shape ...int) (*DTensor, error) {
	return reshape("View", x, shape, false)
}

func reshape(op string, x *DTensor, shape []int, clone bool) (*DTensor, error) {
	if err := checkInputs(op, []string{"x"}, x); err != nil {
		return nil, err
	}
	out, err := resolveShape(shape, product(x.shape))
	if err != nil {
		return nil, opError(op, x.mesh, err)
	}
	ps, err := reshapeRule(x.shape, out, x.placements, x.mesh.Shape())
	if err != nil {
		return nil, opError(op, x.mesh, err)
	}
	lshape, _ := localShape(out, x.mesh.Shape(), x.mesh.Coordinate(), ps, len(ps))
	local, err := x.local.Reshape(lshape...)
	if err != nil {
		return nil, localError(op, x.mesh, err)
	}
	if clone {
		local = local.Clone()
	}
	return result(op, x.mesh, out, ps, local)
}
