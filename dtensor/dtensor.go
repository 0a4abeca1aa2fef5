package dtensor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// DTensor is a tensor distributed over a device mesh: a global shape and dtype, one placement
// per mesh dimension, and this rank's local tensor. It is immutable: Redistribute returns a new
// DTensor and leaves its receiver alone.
type DTensor struct {
	mesh       *mesh.Mesh
	placements []Placement
	shape      []int
	dtype      tensor.DType
	local      *tensor.Tensor
}

// Mesh is the device mesh the tensor is distributed over.
func (d *DTensor) Mesh() *mesh.Mesh { return d.mesh }

// Placements lists the placement on each mesh dimension (a copy).
func (d *DTensor) Placements() []Placement { return slices.Clone(d.placements) }

// Shape is the global shape (a copy).
func (d *DTensor) Shape() []int { return slices.Clone(d.shape) }

// DType is the element type.
func (d *DTensor) DType() tensor.DType { return d.dtype }

// Local is this rank's local tensor (contiguous). It is the DTensor's own storage: read it,
// and write to it only when the DTensor is no longer used.
func (d *DTensor) Local() *tensor.Tensor { return d.local }

// String describes the tensor, e.g. DTensor(float32 [7 5], [S(0), R], local [4 5]).
func (d *DTensor) String() string {
	return fmt.Sprintf("DTensor(%s %v, %s, local %v)", d.dtype, d.shape, formatPlacements(d.placements), d.local.Shape())
}

// coord is this rank's coordinate in the mesh.
func (d *DTensor) coord() []int { return d.mesh.Coordinate() }

// globalRank is this process's rank in the job, for error messages.
func globalRank(m *mesh.Mesh) int { return m.Ranks()[m.Rank()] }

// invalid builds an error wrapping comm.ErrInvalidArgument that names the op and the rank.
func invalid(op string, m *mesh.Mesh, format string, args ...any) error {
	return fmt.Errorf("gccl: dtensor.%s (rank %d): %s: %w", op, globalRank(m), fmt.Sprintf(format, args...), comm.ErrInvalidArgument)
}

// checkOps checks that the reduce op of every Partial placement works on dt.
func checkOps(ps []Placement, dt tensor.DType) error {
	for i, p := range ps {
		if pp, ok := p.(Partial); ok {
			if err := tensor.CheckReduce(pp.Op, dt); err != nil {
				return fmt.Errorf("placement %d, %s, on a %s tensor: %v; use an op that %s supports", i, pp, dt, err, dt)
			}
		}
	}
	return nil
}

// DistributeOptions configure Distribute.
type DistributeOptions struct {
	// Src is the global rank whose tensor is distributed (torch's src_data_rank); default 0.
	// It must be a rank of the mesh.
	Src int
	// LocalIsFull: every rank already holds the same full tensor; each takes its own chunk
	// and nothing is sent.
	LocalIsFull bool
}

// Distribute distributes the full tensor t over m with the given placements, like torch's
// distribute_tensor. Every rank of m calls it with a tensor of the same shape and dtype; by
// default only the contents of rank opts.Src's t matter, and they are scattered (along sharded
// mesh dimensions) or broadcast (along the others), one mesh dimension after another, over
// each dimension's group. With opts.LocalIsFull every rank takes its own chunk of its own t
// and nothing is sent. On a Partial mesh dimension, the rank at coordinate 0 holds the value
// and the others the identity of the op (see Redistribute). t is not modified.
func Distribute(ctx context.Context, t *tensor.Tensor, m *mesh.Mesh, placements []Placement, opts DistributeOptions) (*DTensor, error) {
	const op = "Distribute"
	if t == nil {
		return nil, invalid(op, m, "the tensor is nil; pass the full tensor (of the same shape on every rank)")
	}
	ps, err := normalizePlacements(placements, m.NDim(), t.Dim())
	if err != nil {
		return nil, invalid(op, m, "%v", err)
	}
	if err := checkOps(ps, t.DType()); err != nil {
		return nil, invalid(op, m, "%v", err)
	}
	full := &DTensor{mesh: m, placements: replicated(m.NDim()), shape: t.Shape(), dtype: t.DType(), local: t.Contiguous()}
	if opts.LocalIsFull {
		d, err := full.redistribute(ctx, op, ps)
		if err == nil && d == full { // all Replicate: do not share t's storage
			d = &DTensor{mesh: m, placements: ps, shape: t.Shape(), dtype: t.DType(), local: t.Clone()}
		}
		return d, err
	}
	srcIdx := slices.Index(m.Ranks(), opts.Src)
	if srcIdx < 0 {
		return nil, invalid(op, m, "Src %d is not a rank of %s (its ranks are %v); pass one of them", opts.Src, m, m.Ranks())
	}
	srcCoord := unravel(srcIdx, m.Shape())
	coord := m.Coordinate()
	meshShape := m.Shape()
	cur := t.Contiguous()
	for i, p := range ps {
		g, err := m.GroupAt(i)
		if err != nil {
			return nil, err
		}
		root, n, me := srcCoord[i], meshShape[i], coord[i]
		if dim := shardDim(p); dim >= 0 {
			// Scatter chunks padded to the chunk size, then drop the padding.
			size := chunkSize(cur.Shape()[dim], n)
			blockShape := withDim(cur.Shape(), dim, size)
			out := tensor.New(cur.DType(), blockShape...)
			if out.Numel() > 0 {
				var in *tensor.Tensor
				if me == root {
					if in, err = padChunks(cur, dim, n); err != nil {
						return nil, err
					}
				}
				if err := g.Scatter(ctx, out, in, root); err != nil {
					return nil, fmt.Errorf("gccl: dtensor.%s: scatter along mesh dimension %d (%s): %w", op, i, p, err)
				}
			}
			_, l := ChunkRange(cur.Shape()[dim], n, me)
			if cur, err = narrowClone(out, dim, 0, l); err != nil {
				return nil, err
			}
			continue
		}
		cur = cur.Clone()
		if cur.Numel() > 0 {
			if err := g.Broadcast(ctx, cur, root); err != nil {
				return nil, fmt.Errorf("gccl: dtensor.%s: broadcast along mesh dimension %d (%s): %w", op, i, p, err)
			}
		}
	}
	for i, p := range ps {
		if pp, ok := p.(Partial); ok {
			if cur, err = toPartial(cur, pp.Op, coord[i]); err != nil {
				return nil, invalid(op, m, "%v", err)
			}
		}
	}
	return &DTensor{mesh: m, placements: ps, shape: t.Shape(), dtype: t.DType(), local: cur}, nil
}

// FromLocalOptions configure FromLocal.
type FromLocalOptions struct {
	// GlobalShape is the global shape. Default: the local shape times the mesh size along
	// each sharded dimension, which is right only for even sharding; pass it for uneven
	// layouts.
	GlobalShape []int
	// Check verifies, with a gather of every rank's shapes, dtype and placements across the
	// mesh, that the ranks agree and that every local shape is the one the layout gives it;
	// on a mismatch every rank returns the same error. Without Check only this rank's shape
	// is checked (when GlobalShape is set), without communication.
	Check bool
}

// FromLocal builds a DTensor from every rank's local shard, like torch's DTensor.from_local
// (with run_check). The DTensor takes local (made contiguous) as its storage. ctx is used only
// with opts.Check, which makes FromLocal collective over the mesh.
func FromLocal(ctx context.Context, local *tensor.Tensor, m *mesh.Mesh, placements []Placement, opts FromLocalOptions) (*DTensor, error) {
	const op = "FromLocal"
	if local == nil {
		return nil, invalid(op, m, "the local tensor is nil; pass this rank's shard")
	}
	ps, err := normalizePlacements(placements, m.NDim(), local.Dim())
	if err != nil {
		return nil, invalid(op, m, "%v", err)
	}
	global := opts.GlobalShape
	problem := ""
	if global == nil {
		global = local.Shape()
		for i, p := range ps {
			if d := shardDim(p); d >= 0 {
				global[d] *= m.Shape()[i]
			}
		}
	} else {
		global = slices.Clone(global)
		if len(global) != local.Dim() {
			problem = fmt.Sprintf("GlobalShape %v has %d dimensions but the local tensor %v has %d; pass a global shape of the local tensor's rank",
				global, len(global), local.Shape(), local.Dim())
		} else if slices.ContainsFunc(global, func(n int) bool { return n < 0 }) {
			problem = fmt.Sprintf("GlobalShape %v has a negative size", global)
		} else if want, _ := localShape(global, m.Shape(), m.Coordinate(), ps, len(ps)); !slices.Equal(want, local.Shape()) {
			problem = fmt.Sprintf("the local tensor has shape %v but global shape %v with placements %s gives rank %d (mesh coordinate %v) %v; pass that rank's torch.chunk shard",
				local.Shape(), global, formatPlacements(ps), globalRank(m), m.Coordinate(), want)
		}
	}
	if problem == "" {
		if err := checkOps(ps, local.DType()); err != nil {
			problem = err.Error()
		}
	}
	if opts.Check {
		if err := checkAcrossMesh(ctx, m, localInfo{
			Rank: globalRank(m), Coord: m.Coordinate(), DType: local.DType().String(), Local: local.Shape(),
			Global: global, Placements: formatPlacements(ps), Problem: problem,
		}); err != nil {
			return nil, err
		}
	} else if problem != "" {
		return nil, invalid(op, m, "%s", problem)
	}
	return &DTensor{mesh: m, placements: ps, shape: global, dtype: local.DType(), local: local.Contiguous()}, nil
}

// localInfo is what FromLocal's check gathers from every rank.
type localInfo struct {
	Rank       int
	Coord      []int
	DType      string
	Local      []int
	Global     []int
	Placements string
	Problem    string // what this rank found wrong on its own
}

// checkAcrossMesh gathers every rank's localInfo (one AllGatherObject per mesh dimension, each
// over the union gathered so far) and returns the same error on every rank when they disagree.
func checkAcrossMesh(ctx context.Context, m *mesh.Mesh, mine localInfo) error {
	all := []localInfo{mine}
	for i := range m.NDim() {
		g, err := m.GroupAt(i)
		if err != nil {
			return err
		}
		parts, err := comm.AllGatherObject(ctx, g, all)
		if err != nil {
			return fmt.Errorf("gccl: dtensor.FromLocal (rank %d): gathering the ranks' shapes for Check: %w", mine.Rank, err)
		}
		all = slices.Concat(parts...)
	}
	slices.SortFunc(all, func(a, b localInfo) int { return a.Rank - b.Rank })
	ref := all[0]
	var errs []string
	for _, o := range all {
		switch {
		case o.Problem != "":
			errs = append(errs, fmt.Sprintf("rank %d: %s", o.Rank, o.Problem))
		case o.DType != ref.DType || o.Placements != ref.Placements || !slices.Equal(o.Global, ref.Global):
			errs = append(errs, fmt.Sprintf("rank %d has dtype %s, global shape %v and placements %s but rank %d dtype %s, global shape %v and placements %s; pass the same dtype, global shape and placements on every rank",
				o.Rank, o.DType, o.Global, o.Placements, ref.Rank, ref.DType, ref.Global, ref.Placements))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("gccl: dtensor.FromLocal (rank %d): Check found ranks that disagree: %s: %w", mine.Rank, strings.Join(errs, "; "), comm.ErrInvalidArgument)
	}
	return nil
}

// Full gathers the whole tensor on every rank (reducing Partial dimensions): the local tensor
// of the DTensor redistributed to Replicate on every mesh dimension. Collective over the mesh.
func (d *DTensor) Full(ctx context.Context) (*tensor.Tensor, error) {
	r, err := d.redistribute(ctx, "Full", replicated(d.mesh.NDim()))
	if err != nil {
		return nil, err
	}
	if r == d {
		return d.local.Clone(), nil
	}
	return r.local, nil
}

// Redistribute returns the tensor laid out with the target placements, leaving d alone.
// Collective over the mesh: every rank calls it with the same placements. See the package
// documentation for the transitions and the order in which mesh dimensions change.
func (d *DTensor) Redistribute(ctx context.Context, placements []Placement) (*DTensor, error) {
	ps, err := normalizePlacements(placements, d.mesh.NDim(), len(d.shape))
	if err != nil {
		return nil, invalid("Redistribute", d.mesh, "%v", err)
	}
	return d.redistribute(ctx, "Redistribute", ps)
}

func replicated(n int) []Placement {
	ps := make([]Placement, n)
	for i := range ps {
		ps[i] = Replicate{}
	}
	return ps
}

// unravel is the row-major coordinate of index idx in a mesh of the given shape.
func unravel(idx int, shape []int) []int {
	c := make([]int, len(shape))
	for i := len(shape) - 1; i >= 0; i-- {
		c[i] = idx % shape[i]
		idx /= shape[i]
	}
	return c
}
