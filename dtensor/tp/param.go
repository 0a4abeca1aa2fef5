package tp

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"time"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// Parameter is a named weight of a module. Until Parallelize it holds the full (dense) tensor
// and the layers that read it compute densely, without communication; Parallelize replaces it
// with a DTensor over the tensor-parallel mesh whose placement tells the layers what to do.
//
// A parameter made by NewParameterFrom holds nothing at first: Parallelize reads only this
// rank's shard from its Source (a file, say), so no rank ever holds the whole model.
type Parameter struct {
	Name  string
	Value *dtensor.DTensor // nil until Parallelize (or set directly from FromLocal)
	full  *tensor.Tensor
	shape []int  // the global shape, for a parameter read from src
	src   Source // reads blocks of the parameter; nil once read

	layout shardLayout // shard's answer for Value, set by Parallelize
}

// errorPrefix is how errors name a layer: "gccl: tp.<layer>", then what (a parameter's name, or
// nothing), then this process's global rank once p is distributed.
func errorPrefix(layer, what string, p *Parameter) string {
	s := "gccl: tp." + layer
	if what != "" {
		s += " " + what
	}
	if p != nil && p.Value != nil {
		m := p.Value.Mesh()
		s += fmt.Sprintf(" (rank %d)", m.Ranks()[m.Rank()])
	}
	return s
}

// Source reads the block of a parameter that starts at offset and has the given shape, both in
// the parameter's global coordinates. safetensors' File.ReadRegion is one (wrapped to convert
// the dtype if needed).
type Source func(offset, shape []int) (*tensor.Tensor, error)

// NewParameter returns a dense parameter holding full (not copied).
func NewParameter(name string, full *tensor.Tensor) *Parameter {
	return &Parameter{Name: name, full: full}
}

// NewParameterFrom returns a parameter of the given global shape whose values src reads when
// they are needed: Parallelize reads this rank's shard only; Load reads the whole tensor, for
// dense use without Parallelize. Until one of them runs, Local returns nil.
func NewParameterFrom(name string, shape []int, src Source) *Parameter {
	return &Parameter{Name: name, shape: slices.Clone(shape), src: src}
}

// Load reads the whole parameter from its Source, for dense use (before or without
// Parallelize). It does nothing for a parameter that holds its values already.
func (p *Parameter) Load() error {
	if p.Value != nil || p.full != nil || p.src == nil {
		return nil
	}
	t, err := p.read(make([]int, len(p.shape)), p.shape)
	if err != nil {
		return err
	}
	p.full, p.src = t, nil
	return nil
}

// read reads a block from src and checks it has the asked shape.
func (p *Parameter) read(offset, shape []int) (*tensor.Tensor, error) {
	t, err := p.src(offset, shape)
	if err != nil {
		return nil, fmt.Errorf("gccl: tp: reading parameter %q (block at %v of shape %v): %w", p.Name, offset, shape, err)
	}
	if t == nil || !slices.Equal(t.Shape(), shape) {
		return nil, fmt.Errorf("gccl: tp: reading parameter %q: the source returned %v for a block of shape %v; a Source must return exactly the block asked for: %w", p.Name, t, shape, comm.ErrInvalidArgument)
	}
	return t, nil
}

// Local returns this rank's part of the parameter: the full tensor before Parallelize, the
// local shard after (nil for a parameter from NewParameterFrom not read yet).
func (p *Parameter) Local() *tensor.Tensor {
	if p.Value != nil {
		return p.Value.Local()
	}
	return p.full
}

// Shape returns the global shape.
func (p *Parameter) Shape() []int {
	switch {
	case p.Value != nil:
		return p.Value.Shape()
	case p.full != nil:
		return p.full.Shape()
	}
	return slices.Clone(p.shape)
}

// shard returns the tensor dim p is sharded on (-1 when dense, replicated or on one rank), the tp group,
// and this rank's offset along that dim. The layers call it on every Forward: Parallelize works
// the answer out once, and it is worked out again only for a Value set some other way.
func (p *Parameter) shard() (dim int, g *comm.ProcessGroup, offset int, err error) {
	if p == nil || p.Value == nil {
		return -1, nil, 0, nil
	}
	l := p.layout
	if l.of != p.Value {
		if l, err = layoutOf(p.Value); err != nil {
			return 0, nil, 0, err
		}
	}
	return l.dim, l.group, l.offset, nil
}

// shardLayout is what shard returns for the DTensor of.
type shardLayout struct {
	of     *dtensor.DTensor
	dim    int
	group  *comm.ProcessGroup
	offset int
}

// layoutOf works out shard's answer for v.
func layoutOf(v *dtensor.DTensor) (shardLayout, error) {
	l := shardLayout{of: v, dim: -1}
	s, ok := v.Placements()[0].(dtensor.Shard)
	if !ok {
		return l, nil
	}
	m := v.Mesh()
	n := m.Shape()[0]
	if n == 1 { // one rank holds everything: compute densely
		return l, nil
	}
	g, err := m.GroupAt(0)
	if err != nil {
		return shardLayout{}, err
	}
	off, _ := dtensor.ChunkRange(v.Shape()[s.Dim], n, m.Coordinate()[0])
	l.dim, l.group, l.offset = s.Dim, g, off
	return l, nil
}

// Module is anything with named parameters: a layer or a whole model. Parameters shared by
// several layers (a tied embedding and LM head) appear once per layer; Parallelize shards each
// once.
type Module interface {
	Parameters() []*Parameter
}

// Style is how Parallelize lays out a parameter over the tensor-parallel mesh.
type Style int

const (
	// Replicate keeps the whole parameter on every rank (norm weights, row-parallel biases).
	Replicate Style = iota
	// Colwise shards a linear layer's weight [out in] (torch's layout) and its bias [out] on
	// out: Shard(0). The output of the layer stays sharded; nothing is communicated.
	Colwise
	// Rowwise shards a weight [out in] on in: Shard(1); a 1-D parameter (the bias) stays
	// replicated and is added once, after the all-reduce.
	Rowwise
	// Vocab shards an embedding table [vocab hidden] on vocab: Shard(0).
	Vocab
)

func (s Style) String() string {
	switch s {
	case Replicate:
		return "replicate"
	case Colwise:
		return "colwise"
	case Rowwise:
		return "rowwise"
	case Vocab:
		return "vocab"
	}
	return fmt.Sprintf("Style(%d)", int(s))
}

// Plan maps parameter-name patterns (path.Match syntax, "*" matches any run of characters
// without a '/', so "layers.*.mlp.gate.weight" matches every layer's) to styles. A parameter no
// pattern matches is replicated; one that patterns of different styles match is an error.
type Plan map[string]Style

// ParallelChecker is implemented by modules with constraints on the tensor-parallel degree
// (attention: tp must divide the head counts). Parallelize calls it before sharding anything.
type ParallelChecker interface {
	CheckParallel(tp int) error
}

// Replicator is implemented by modules some of whose parameters must stay whole at some
// tensor-parallel degrees, whatever the plan says (attention's k and v when tp exceeds the kv
// heads: a kv head cannot be split, so every rank keeps them and uses its own head's rows).
type Replicator interface {
	ReplicatedParameters(tp int) []*Parameter
}

// Parallelize shards model's parameters over the 1-D mesh m (a mesh's tensor-parallel
// dimension, from m.Dim("tp")) per plan. Every rank holds the same full weights before
// (generated from the same seed or read from the same file) and keeps its own shard, or reads
// just its shard from the parameter's Source (NewParameterFrom); nothing is sent. It is
// collective only in that every rank must call it with the same plan.
func Parallelize(ctx context.Context, model Module, m *mesh.Mesh, plan Plan) error {
	where := "gccl: tp.Parallelize"
	if m != nil {
		where += fmt.Sprintf(" (rank %d)", m.Ranks()[m.Rank()])
	}
	if m == nil || m.NDim() != 1 {
		return fmt.Errorf("%s: want a 1-D mesh (the tensor-parallel dimension, such as m.Dim(\"tp\")); got %v: %w", where, m, comm.ErrInvalidArgument)
	}
	n := m.Shape()[0]
	if c, ok := model.(ParallelChecker); ok {
		if err := c.CheckParallel(n); err != nil {
			return fmt.Errorf("%s: %w: %w", where, err, comm.ErrInvalidArgument)
		}
	}
	replicated := map[*Parameter]bool{}
	if r, ok := model.(Replicator); ok {
		for _, p := range r.ReplicatedParameters(n) {
			replicated[p] = true
		}
	}
	patterns := make([]string, 0, len(plan))
	for pat := range plan {
		if _, err := path.Match(pat, ""); err != nil {
			return fmt.Errorf("%s: bad pattern %q: %v: %w", where, pat, err, comm.ErrInvalidArgument)
		}
		patterns = append(patterns, pat)
	}
	sort.Strings(patterns)
	params := model.Parameters()
	done := make(map[*Parameter]bool, len(params))
	type todo struct {
		p  *Parameter
		ps []dtensor.Placement
	}
	var work []todo
	for _, p := range params {
		if done[p] {
			continue
		}
		done[p] = true
		if p.Value != nil {
			return fmt.Errorf("%s: parameter %q is already distributed; parallelize a model once: %w", where, p.Name, comm.ErrInvalidArgument)
		}
		style, matched := Replicate, ""
		for _, pat := range patterns {
			if ok, _ := path.Match(pat, p.Name); !ok {
				continue
			}
			if matched != "" && plan[pat] != style {
				return fmt.Errorf("%s: parameter %q matches %q (%s) and %q (%s); make the plan unambiguous: %w", where,
					p.Name, matched, style, pat, plan[pat], comm.ErrInvalidArgument)
			}
			style, matched = plan[pat], pat
		}
		var pl dtensor.Placement = dtensor.Replicate{}
		shape := p.Shape()
		dims := len(shape)
		switch {
		case replicated[p]:
		case style == Colwise || style == Vocab:
			if dims < 1 || (style == Vocab && dims != 2) {
				return fmt.Errorf("%s: parameter %q %v cannot be %s-sharded: %w", where, p.Name, shape, style, comm.ErrInvalidArgument)
			}
			pl = dtensor.Shard{Dim: 0}
		case style == Rowwise && dims == 2:
			pl = dtensor.Shard{Dim: 1}
		case style == Rowwise && dims == 1: // bias: added once after the all-reduce
		case style == Rowwise:
			return fmt.Errorf("%s: parameter %q %v cannot be rowwise-sharded (want [out in] or a bias): %w", where, p.Name, shape, comm.ErrInvalidArgument)
		}
		work = append(work, todo{p, []dtensor.Placement{pl}})
	}
	for _, w := range work {
		d, err := shardOf(ctx, w.p, m, w.ps)
		if err != nil {
			return fmt.Errorf("%s: parameter %q: %w", where, w.p.Name, err)
		}
		w.p.Value, w.p.full, w.p.src = d, nil, nil
		if l, err := layoutOf(d); err == nil { // on error, shard reports it at Forward
			w.p.layout = l
		}
	}
	return nil
}

// shardOf returns p laid out over m by ps: cut from the full tensor, or read from p's source
// (this rank's block only).
func shardOf(ctx context.Context, p *Parameter, m *mesh.Mesh, ps []dtensor.Placement) (*dtensor.DTensor, error) {
	if p.full != nil {
		return dtensor.Distribute(ctx, p.full, m, ps, dtensor.DistributeOptions{LocalIsFull: true})
	}
	if p.src == nil {
		return nil, fmt.Errorf("it holds no tensor and no source; make it with NewParameter or NewParameterFrom: %w", comm.ErrInvalidArgument)
	}
	shape, offset, err := dtensor.LocalShape(p.shape, m.Shape(), m.Coordinate(), ps)
	if err != nil {
		return nil, err
	}
	local, err := p.read(offset, shape)
	if err != nil {
		return nil, err
	}
	return dtensor.FromLocal(ctx, local, m, ps, dtensor.FromLocalOptions{GlobalShape: p.shape})
}

// Stats counts the all-reduces the layers run and the time spent in them. Layers that share a
// *Stats add to it; a nil *Stats counts nothing.
type Stats struct {
	AllReduces    int
	AllReduceTime time.Duration
}

func (s *Stats) allReduce(ctx context.Context, g *comm.ProcessGroup, t *tensor.Tensor) error {
	if s == nil {
		return g.AllReduce(ctx, t, comm.Sum)
	}
	start := time.Now()
	err := g.AllReduce(ctx, t, comm.Sum)
	s.AllReduceTime += time.Since(start)
	s.AllReduces++
	return err
}

// collect gathers the parameters of several modules, in order.
func collect(ms ...Module) []*Parameter {
	var out []*Parameter
	for _, m := range ms {
		if m != nil {
			out = slices.Concat(out, m.Parameters())
		}
	}
	return out
}
