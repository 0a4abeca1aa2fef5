package dtensor

import (
	"context"
	"fmt"
	"slices"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

// redistribute moves d to the (normalized) target placements. The plan:
//
//  1. The mesh dimensions that change, plus every later mesh dimension that shards a tensor
//     dimension one of them shards (before or after): nested chunks must be undone from the
//     innermost out and redone from the outermost in.
//  2. From the last mesh dimension to the first: a dimension whose change is safe to make
//     directly (no other mesh dimension shards its tensor dims, except earlier ones that do
//     not change) takes it in one step: S->R all-gather, P->R all-reduce, P->S reduce-scatter,
//     S(i)->S(j) all-to-all, R->S local chunk, R->P local. Any other goes to Replicate
//     (all-gather or all-reduce).
//  3. From the first mesh dimension to the last: each dimension still not at its target is now
//     Replicate and takes its target with a local step (R->S chunk, R->P).
func (d *DTensor) redistribute(ctx context.Context, op string, target []Placement) (*DTensor, error) {
	if err := checkOps(target, d.dtype); err != nil {
		return nil, invalid(op, d.mesh, "%v", err)
	}
	if slices.Equal(d.placements, target) {
		return d, nil
	}
	n := len(target)
	cur := slices.Clone(d.placements)
	touched := make([]bool, n)
	for i := range n {
		touched[i] = cur[i] != target[i]
	}
	involves := func(i, dim int) bool { return shardDim(cur[i]) == dim || shardDim(target[i]) == dim }
	for grew := true; grew; {
		grew = false
		for i := range n {
			if !touched[i] {
				continue
			}
			for _, dim := range []int{shardDim(cur[i]), shardDim(target[i])} {
				for j := i + 1; dim >= 0 && j < n; j++ {
					if !touched[j] && involves(j, dim) {
						touched[j], grew = true, true
					}
				}
			}
		}
	}
	direct := func(i int) bool {
		if !directStep(cur[i], target[i]) {
			return false
		}
		for _, dim := range []int{shardDim(cur[i]), shardDim(target[i])} {
			for j := 0; dim >= 0 && j < n; j++ {
				if j != i && involves(j, dim) && (j > i || touched[j]) {
					return false
				}
			}
		}
		return true
	}
	s := &stepper{d: d, op: op, local: d.local, coord: d.coord(), meshShape: d.mesh.Shape()}
	for i := n - 1; i >= 0; i-- {
		if !touched[i] || cur[i] == target[i] && shardDim(cur[i]) < 0 {
			continue
		}
		to := target[i]
		if cur[i] == target[i] || !direct(i) {
			to = Replicate{}
		}
		if err := s.step(ctx, i, cur, to); err != nil {
			return nil, err
		}
		cur[i] = to
	}
	for i := range n {
		if cur[i] == target[i] {
			continue
		}
		if err := s.step(ctx, i, cur, target[i]); err != nil {
			return nil, err
		}
		cur[i] = target[i]
	}
	return &DTensor{mesh: d.mesh, placements: target, shape: slices.Clone(d.shape), dtype: d.dtype, local: s.local}, nil
}

// directStep reports whether from->to is one of the six one-step transitions.
func directStep(from, to Placement) bool {
	switch from.(type) {
	case Shard:
		_, ok := to.(Replicate)
		_, ok2 := to.(Shard)
		return ok || ok2
	case Partial:
		_, ok := to.(Partial)
		return !ok
	case Replicate:
		return true
	}
	return false
}

// stepper holds the local tensor while redistribute changes one mesh dimension at a time.
type stepper struct {
	d         *DTensor
	op        string
	local     *tensor.Tensor
	coord     []int
	meshShape []int
}

// step changes mesh dimension i from cur[i] to to, with the other dimensions as in cur.
func (s *stepper) step(ctx context.Context, i int, cur []Placement, to Placement) error {
	from := cur[i]
	m := s.d.mesh
	n, me := s.meshShape[i], s.coord[i]
	// The shape at this mesh dimension's level: the global shape chunked by the mesh
	// dimensions before it.
	level, _ := localShape(s.d.shape, s.meshShape, s.coord, cur, i)
	g, err := m.GroupAt(i)
	if err != nil {
		return err
	}
	fail := func(what string, err error) error {
		return fmt.Errorf("gccl: dtensor.%s (rank %d): %s -> %s on mesh dimension %d (%s): %s: %w",
			s.op, globalRank(m), from, to, i, m.Names()[i], what, err)
	}
	var out *tensor.Tensor
	switch f := from.(type) {
	case Shard:
		switch t := to.(type) {
		case Replicate: // all-gather
			out, err = allGather(ctx, g, s.local, f.Dim, level[f.Dim], n)
			if err != nil {
				return fail("all-gather", err)
			}
		case Shard: // all-to-all
			out, err = allToAll(ctx, g, s.local, f.Dim, t.Dim, level[f.Dim], n, me)
			if err != nil {
				return fail("all-to-all", err)
			}
		default:
			return fail("planning", fmt.Errorf("no one-step transition (a bug in dtensor)"))
		}
	case Partial:
		switch t := to.(type) {
		case Replicate: // all-reduce
			out = s.local.Clone()
			if out.Numel() > 0 {
				if err := g.AllReduce(ctx, out, f.Op); err != nil {
					return fail("all-reduce", err)
				}
			}
		case Shard: // reduce-scatter
			out, err = reduceScatter(ctx, g, s.local, t.Dim, f.Op, n, me)
			if err != nil {
				return fail("reduce-scatter", err)
			}
		default:
			return fail("planning", fmt.Errorf("no one-step transition (a bug in dtensor)"))
		}
	case Replicate:
		switch t := to.(type) {
		case Shard: // local chunk
			start, l := ChunkRange(s.local.Shape()[t.Dim], n, me)
			if out, err = narrowClone(s.local, t.Dim, start, l); err != nil {
				return fail("chunk", err)
			}
		case Partial:
			if out, err = toPartial(s.local, t.Op, me); err != nil {
				return fail("partition", err)
			}
		case Replicate:
			out = s.local
		}
	}
	s.local = out
	return nil
}

// chunkSize is torch.chunk's chunk size: ceil(n/m).
func chunkSize(n, m int) int { return (n + m - 1) / m }

func withDim(shape []int, dim, n int) []int {
	s := slices.Clone(shape)
	s[dim] = n
	return s
}

// narrowClone is a packed copy of t's elements start to start+length-1 along dim.
func narrowClone(t *tensor.Tensor, dim, start, length int) (*tensor.Tensor, error) {
	v, err := t.Narrow(dim, start, length)
	if err != nil {
		return nil, err
	}
	return v.Clone(), nil
}

// slot is block r of a tensor stacked along a leading dimension, without that dimension.
func slot(stacked *tensor.Tensor, r int) *tensor.Tensor {
	v, err := stacked.Narrow(0, r, 1)
	if err != nil {
		panic(err)
	}
	v, err = v.Reshape(stacked.Shape()[1:]...)
	if err != nil {
		panic(err)
	}
	return v
}

// copyInto copies src into the region of dst that starts at start along dim and at 0 along
// the other dims (dst is as large as src or larger along every dim).
func copyInto(dst *tensor.Tensor, dim, start int, src *tensor.Tensor) error {
	if src.Numel() == 0 {
		return nil
	}
	v := dst
	for k, n := range src.Shape() {
		from := 0
		if k == dim {
			from = start
		}
		var err error
		if v, err = v.Narrow(k, from, n); err != nil {
			return err
		}
	}
	return v.CopyFrom(src)
}

// padChunks stacks t's n torch.chunk chunks along dim, each padded with zeros to the chunk size,
// into a tensor of shape [n, ...t's shape with dim = chunk size].
func padChunks(t *tensor.Tensor, dim, n int) (*tensor.Tensor, error) {
	full := t.Shape()[dim]
	size := chunkSize(full, n)
	out := tensor.New(t.DType(), append([]int{n}, withDim(t.Shape(), dim, size)...)...)
	for r := range n {
		start, l := ChunkRange(full, n, r)
		if l == 0 {
			continue
		}
		src, err := t.Narrow(dim, start, l)
		if err != nil {
			return nil, err
		}
		if err := copyInto(slot(out, r), dim, 0, src); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// unpadChunks is padChunks's inverse: it concatenates the stacked padded chunks of a
// dimension of size full along dim, dropping the padding.
func unpadChunks(stacked *tensor.Tensor, dim, full, n int) (*tensor.Tensor, error) {
	out := tensor.New(stacked.DType(), withDim(stacked.Shape()[1:], dim, full)...)
	for r := range n {
		start, l := ChunkRange(full, n, r)
		if l == 0 {
			continue
		}
		src, err := slot(stacked, r).Narrow(dim, 0, l)
		if err != nil {
			return nil, err
		}
		if err := copyInto(out, dim, start, src); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// allGather gathers the shards along dim of a dimension of size full from the group's n ranks.
func allGather(ctx context.Context, g *comm.ProcessGroup, local *tensor.Tensor, dim, full, n int) (*tensor.Tensor, error) {
	in := tensor.New(local.DType(), withDim(local.Shape(), dim, chunkSize(full, n))...)
	if err := copyInto(in, dim, 0, local); err != nil {
		return nil, err
	}
	out := tensor.New(local.DType(), append([]int{n}, in.Shape()...)...)
	if in.Numel() > 0 {
		if err := g.AllGather(ctx, out, in); err != nil {
			return nil, err
		}
	}
	return unpadChunks(out, dim, full, n)
}

// reduceScatter reduces local across the group with op and keeps this rank's chunk along dim.
func reduceScatter(ctx context.Context, g *comm.ProcessGroup, local *tensor.Tensor, dim int, op comm.ReduceOp, n, me int) (*tensor.Tensor, error) {
	in, err := padChunks(local, dim, n)
	if err != nil {
		return nil, err
	}
	out := tensor.New(local.DType(), in.Shape()[1:]...)
	if out.Numel() > 0 {
		if err := g.ReduceScatter(ctx, out, in, op); err != nil {
			return nil, err
		}
	}
	_, l := ChunkRange(local.Shape()[dim], n, me)
	return narrowClone(out, dim, 0, l)
}

// allToAll turns a shard along from (of a dimension of size full) into a shard along to.
func allToAll(ctx context.Context, g *comm.ProcessGroup, local *tensor.Tensor, from, to, full, n, me int) (*tensor.Tensor, error) {
	toFull := local.Shape()[to]
	block := withDim(withDim(local.Shape(), from, chunkSize(full, n)), to, chunkSize(toFull, n))
	in := tensor.New(local.DType(), append([]int{n}, block...)...)
	for r := range n {
		start, l := ChunkRange(toFull, n, r)
		if l == 0 {
			continue
		}
		src, err := local.Narrow(to, start, l)
		if err != nil {
			return nil, err
		}
		if err := copyInto(slot(in, r), to, 0, src); err != nil {
			return nil, err
		}
	}
	out := tensor.New(local.DType(), in.Shape()...)
	if in.Numel() > 0 {
		if err := g.AllToAll(ctx, out, in); err != nil {
			return nil, err
		}
	}
	_, mine := ChunkRange(toFull, n, me)
	res := tensor.New(local.DType(), withDim(withDim(local.Shape(), from, full), to, mine)...)
	for r := range n {
		start, l := ChunkRange(full, n, r)
		if l == 0 || mine == 0 {
			continue
		}
		src, err := slot(out, r).Narrow(from, 0, l)
		if err != nil {
			return nil, err
		}
		if src, err = src.Narrow(to, 0, mine); err != nil {
			return nil, err
		}
		if err := copyInto(res, from, start, src); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// toPartial turns a replicated value into this rank's part of a Partial with op across a mesh
// dimension where this rank is at coordinate me: the rank at 0 keeps the value, the others
// hold op's identity (zeros for Sum and BXor, ones for Product); for ops where reducing equal
// values gives the value back (Avg, Min, Max, BAnd, BOr) every rank keeps it. Torch divides
// by the group size for Sum instead; gccl's way is exact for integers.
func toPartial(t *tensor.Tensor, op comm.ReduceOp, me int) (*tensor.Tensor, error) {
	out := t.Clone()
	switch op {
	case comm.Sum, comm.BXor:
		if me != 0 {
			out.Fill(0)
		}
	case comm.Product:
		if me != 0 {
			out.Fill(1)
		}
	case comm.Avg, comm.Min, comm.Max, comm.BAnd, comm.BOr:
	default:
		return nil, fmt.Errorf("Replicate -> Partial(%s) is not supported; use Sum, Avg, Product, Min, Max, BAnd, BOr or BXor", op)
	}
	return out, nil
}
