package tp

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/tensor"
)

// Balancer splits the rows of shared layers (ParallelMLP.Share, LMHead.Share) between the ranks
// of their group by the speed each rank showed on the calls before: a rank that loses part of
// its core (to another process, or to the host of a VM) gets fewer rows, instead of making the
// others wait for it at the all-reduce. Each call's compute times ride on its collective, one
// slot per rank, so every rank updates the same split from the same numbers and no rank needs to
// ask. The layers of a model share one Balancer: the split one layer measures serves the next.
// The zero value is ready to use; a Balancer is not safe for concurrent use.
//
// It pays when a rank stays slower for many calls; a rank that loses its core in bursts shorter
// than a layer gains little (see BENCHMARKS.md). The split changes the order of the all-reduce's
// sums, so the outputs vary with it, within float tolerance, from run to run.
type Balancer struct {
	// Smoothing is the weight of the last call in the running shares (0 < s <= 1; 0 means 0.25).
	Smoothing float64

	share []float64 // rank r's fraction of the rows, summing to 1
}

// Shares returns each rank's fraction of the rows now (nil before the first shared call).
func (b *Balancer) Shares() []float64 { return append([]float64(nil), b.share...) }

// minShare is the least fraction of an even split that a rank keeps, so that its speed stays
// measurable and a rank that recovers gets work back.
const minShare = 0.25

// rowGrain is the multiple the split's boundaries fall on (when the rows allow): a boundary that
// moves by a row or two gains nothing measurable.
const rowGrain = 16

// bounds returns the first row of every rank and the end (n+1 numbers) for rows rows over n ranks.
func (b *Balancer) bounds(rows, n int) []int {
	if len(b.share) != n {
		b.share = make([]float64, n)
		for r := range b.share {
			b.share[r] = 1 / float64(n)
		}
	}
	grain := rowGrain
	if rows < n*4*grain {
		grain = 1
	}
	least := max(1, int(minShare*float64(rows)/float64(n))/grain*grain)
	if rows < n*least {
		least = 0
	}
	out := make([]int, n+1)
	sum := 0.0
	for r := range n {
		sum += b.share[r]
		at := int(sum*float64(rows)/float64(grain)+0.5) * grain
		// Every rank keeps its least, before and after.
		out[r+1] = min(max(at, out[r]+least), rows-(n-1-r)*least)
	}
	out[n] = rows
	return out
}

// update moves the shares toward the speeds the ranks showed: rank r did bounds[r+1]-bounds[r]
// rows in micros[r] microseconds.
func (b *Balancer) update(bounds []int, micros []float32) {
	n := len(b.share)
	speed := make([]float64, n)
	total := 0.0
	for r := range n {
		if micros[r] <= 0 || bounds[r+1] == bounds[r] {
			return // nothing to learn from
		}
		speed[r] = float64(bounds[r+1]-bounds[r]) / float64(micros[r])
		total += speed[r]
	}
	alpha := b.Smoothing
	if alpha <= 0 || alpha > 1 {
		alpha = 0.25
	}
	sum := 0.0
	for r := range n {
		b.share[r] = max((1-alpha)*b.share[r]+alpha*speed[r]/total, minShare/float64(n))
		sum += b.share[r]
	}
	for r := range n {
		b.share[r] /= sum
	}
}

// sharedMLP is a ParallelMLP's weights in memory every rank of its group maps: gate's and up's
// rows and down transposed, so that a rank's rows of each are one contiguous block.
type sharedMLP struct {
	buf              *comm.SharedBuffer
	group            *comm.ProcessGroup
	balancer         *Balancer
	gate, up, downT  *tensor.Tensor // [inter hidden] each
	gateBias, upBias *tensor.Tensor // [inter], or nil
}

// Share moves the MLP's weights, once parallelized, into memory that every rank of its group
// maps (comm.AllocShared: backend shm, every rank on one host), and from then on each call splits
// the intermediate rows between the ranks by b (see Balancer) instead of by the parameters'
// shards: every rank reads the rows it is given in place, whoever's shard they came from. Every
// rank of the group calls it, in the same order relative to its other Share and AllocShared
// calls. Gate's and up's parameters become views of the shared memory; down's keeps its own
// shard (the shared copy is transposed). On one rank, or before Parallelize, it does nothing.
// Groups whose ranks cannot share memory get an error wrapping comm.ErrUnsupported.
func (m *ParallelMLP) Share(ctx context.Context, b *Balancer) error {
	fail := func(err error) error {
		return fmt.Errorf("%s: %w", errorPrefix("ParallelMLP.Share", "", m.Down.Weight), err)
	}
	if b == nil {
		return fail(fmt.Errorf("no Balancer; pass one (shared by the model's MLPs): %w", comm.ErrInvalidArgument))
	}
	if m.shared != nil {
		return fail(fmt.Errorf("the MLP is shared already; share it once: %w", comm.ErrInvalidArgument))
	}
	gDim, g, off, err := m.Gate.Weight.shard()
	if err != nil {
		return fail(err)
	}
	uDim, ug, uOff, err := m.Up.Weight.shard()
	if err != nil {
		return fail(err)
	}
	dDim, dg, dOff, err := m.Down.Weight.shard()
	if err != nil {
		return fail(err)
	}
	if gDim < 0 && uDim < 0 && dDim < 0 {
		return nil // dense, or one rank: nothing to split
	}
	if gDim != 0 || uDim != 0 || dDim != 1 || ug != g || dg != g || uOff != off || dOff != off {
		return fail(fmt.Errorf("gate and up must be Shard(0) (Colwise) and down Shard(1) (Rowwise) over one group; got gate on dim %d, up on %d, down on %d: %w", gDim, uDim, dDim, comm.ErrInvalidArgument))
	}
	gs, us, ds := m.Gate.Weight.Shape(), m.Up.Weight.Shape(), m.Down.Weight.Shape()
	inter, hidden := gs[0], gs[1]
	if us[0] != inter || us[1] != hidden || ds[0] != hidden || ds[1] != inter {
		return fail(fmt.Errorf("gate %v, up %v and down %v do not make an MLP [inter hidden], [inter hidden], [hidden inter]: %w", gs, us, ds, comm.ErrInvalidArgument))
	}
	if (m.Gate.Bias == nil) != (m.Up.Bias == nil) {
		return fail(fmt.Errorf("gate and up must both have a bias or neither: %w", comm.ErrInvalidArgument))
	}
	downT, err := m.Down.Weight.Local().Transpose(0, 1)
	if err != nil {
		return fail(err)
	}
	params := []*Parameter{m.Gate.Weight, m.Up.Weight, nil, m.Gate.Bias, m.Up.Bias}
	locals := []*tensor.Tensor{m.Gate.Weight.Local(), m.Up.Weight.Local(), downT}
	if m.Gate.Bias != nil {
		locals = append(locals, m.Gate.Bias.Local(), m.Up.Bias.Local())
	}
	buf, full, err := shareRows(ctx, g, off, inter, params, locals)
	if err != nil {
		return fail(err)
	}
	m.shared = &sharedMLP{buf: buf, group: g, balancer: b, gate: full[0], up: full[1], downT: full[2]}
	if m.Gate.Bias != nil {
		m.shared.gateBias, m.shared.upBias = full[3], full[4]
	}
	return nil
}

// Close unmaps the shared weights of an MLP that Share moved there; the MLP must not be used
// after. It does nothing for an MLP that is not shared.
func (m *ParallelMLP) Close() {
	if m.shared != nil {
		m.shared.buf.Close()
		m.shared = nil
	}
}

// forward runs the MLP over the rows the balancer gives this rank, and adds the ranks' products
// with one all-reduce that also carries each rank's compute time.
func (sh *sharedMLP) forward(ctx context.Context, x *tensor.Tensor, down *RowParallelLinear) (*tensor.Tensor, error) {
	fail := func(err error) error {
		return fmt.Errorf("%s: %w", errorPrefix("ParallelMLP", "(shared)", down.Weight), err)
	}
	start := time.Now()
	n, rank := sh.group.Size(), sh.group.Rank()
	inter, hidden := sh.gate.Shape()[0], sh.gate.Shape()[1]
	bounds := sh.balancer.bounds(inter, n)
	lo, rows := bounds[rank], bounds[rank+1]-bounds[rank]
	block := func(t *tensor.Tensor) *tensor.Tensor {
		if t == nil {
			return nil
		}
		v, _ := t.Narrow(0, lo, rows)
		return v
	}
	g, err := tensor.Linear(x, block(sh.gate), block(sh.gateBias))
	if err != nil {
		return nil, fail(err)
	}
	u, err := tensor.Linear(x, block(sh.up), block(sh.upBias))
	if err != nil {
		return nil, fail(err)
	}
	if err := tensor.SwiGLUInto(g, g, u); err != nil {
		return nil, fail(err)
	}
	tokens := x.Numel() / hidden
	out := tensor.New(tensor.Float32, tokens*hidden+n) // the product, then a slot per rank
	y, _ := out.Narrow(0, 0, tokens*hidden)
	y2, _ := y.Reshape(tokens, hidden)
	g2, err := g.Reshape(tokens, rows)
	if err != nil {
		return nil, fail(err)
	}
	if err := tensor.MatMulInto(y2, g2, block(sh.downT), false, false, 1, 0); err != nil {
		return nil, fail(err)
	}
	slots := out.Float32s()[tokens*hidden:]
	slots[rank] = float32(time.Since(start).Seconds() * 1e6)
	if err := down.Stats.allReduce(ctx, sh.group, out); err != nil {
		return nil, fail(err)
	}
	sh.balancer.update(bounds, slots)
	if x.Dim() == 1 {
		y2 = y
	}
	if b := local(down.Bias); b != nil {
		if err := tensor.AddInto(y2, y2, b); err != nil {
			return nil, fail(err)
		}
	}
	if x.Dim() > 2 {
		return y2.Reshape(append(x.Shape()[:x.Dim()-1], hidden)...)
	}
	return y2, nil
}

// shareRows lays out tensors [rows ...] in memory every rank of g maps, and returns them once
// every rank has copied its block of each there: locals[i] (float32), rows off on of the full
// tensor i. params[i], when not nil, is the parameter locals[i] is the shard of: it becomes a
// view of the shared memory, and its private copy goes to the GC.
func shareRows(ctx context.Context, g *comm.ProcessGroup, off, rows int, params []*Parameter, locals []*tensor.Tensor) (*comm.SharedBuffer, []*tensor.Tensor, error) {
	floats, at := 0, make([]int, len(locals))
	for i, l := range locals {
		if l.DType() != tensor.Float32 {
			return nil, nil, fmt.Errorf("a weight is %s; sharing takes float32: %w", l.DType(), comm.ErrUnsupported)
		}
		at[i] = floats
		floats += rows * l.Numel() / max(1, l.Shape()[0])
	}
	buf, err := g.AllocShared(ctx, 4*floats)
	if err != nil {
		return nil, nil, err
	}
	all, err := tensor.FromBytes(tensor.Float32, buf.Bytes(), floats)
	full := make([]*tensor.Tensor, len(locals))
	for i, l := range locals {
		if err != nil {
			break
		}
		shape := append([]int{rows}, l.Shape()[1:]...)
		if full[i], err = all.Narrow(0, at[i], rows*l.Numel()/max(1, l.Shape()[0])); err == nil {
			full[i], err = full[i].Reshape(shape...)
		}
		var block *tensor.Tensor
		if err == nil {
			block, err = full[i].Narrow(0, off, l.Shape()[0])
		}
		if err == nil {
			err = block.CopyFrom(l)
		}
	}
	if err == nil {
		err = g.Barrier(ctx)
	}
	values := make([]*dtensor.DTensor, len(params))
	for i, p := range params {
		if err != nil || p == nil {
			continue
		}
		var view *tensor.Tensor
		if view, err = full[i].Narrow(0, off, locals[i].Shape()[0]); err == nil {
			values[i], err = dtensor.FromLocal(ctx, view, p.Value.Mesh(), p.Value.Placements(), dtensor.FromLocalOptions{GlobalShape: p.Shape()})
		}
	}
	if err != nil {
		buf.Close()
		return nil, nil, err
	}
	for i, d := range values {
		if d == nil {
			continue
		}
		params[i].Value = d
		if l, err := layoutOf(d); err == nil {
			params[i].layout = l
		}
	}
	return buf, full, nil
}

// sharedHead is an LM head's weight in memory every rank of its group maps.
type sharedHead struct {
	buf      *comm.SharedBuffer
	group    *comm.ProcessGroup
	balancer *Balancer
	weight   *tensor.Tensor // [vocab hidden]
}

// Share moves the head's weight, once parallelized, into memory that every rank of its group
// maps, as ParallelMLP.Share does, and from then on Argmax splits the vocabulary's rows between
// the ranks by b. The parameter becomes a view of the shared memory (a tied embedding reads it
// there too). On one rank, or before Parallelize, it does nothing.
func (h *LMHead) Share(ctx context.Context, b *Balancer) error {
	fail := func(err error) error { return fmt.Errorf("%s: %w", errorPrefix("LMHead.Share", "", h.Weight), err) }
	if b == nil {
		return fail(fmt.Errorf("no Balancer; pass one: %w", comm.ErrInvalidArgument))
	}
	if h.shared != nil {
		return fail(fmt.Errorf("the head is shared already; share it once: %w", comm.ErrInvalidArgument))
	}
	dim, g, off, err := h.Weight.shard()
	if err != nil {
		return fail(err)
	}
	if dim < 0 {
		return nil
	}
	if dim != 0 {
		return fail(fmt.Errorf("weight is sharded on dim %d; want Shard(0) (style Colwise or Vocab): %w", dim, comm.ErrInvalidArgument))
	}
	buf, full, err := shareRows(ctx, g, off, h.Weight.Shape()[0], []*Parameter{h.Weight}, []*tensor.Tensor{h.Weight.Local()})
	if err != nil {
		return fail(err)
	}
	h.shared = &sharedHead{buf: buf, group: g, balancer: b, weight: full[0]}
	return nil
}

// Close unmaps the weight of a head that Share moved to shared memory; the head (and a tied
// embedding) must not be used after. It does nothing for a head that is not shared.
func (h *LMHead) Close() {
	if h.shared != nil {
		h.shared.buf.Close()
		h.shared = nil
	}
}

// argmax picks the greedy token over the rows the balancer gives this rank, with one
// all-gather of (value, index, compute time) per rank.
func (sh *sharedHead) argmax(ctx context.Context, x *tensor.Tensor) (int, error) {
	fail := func(err error) error {
		return fmt.Errorf("gccl: tp.LMHead (shared) (rank %d): %w", sh.group.GlobalRank(sh.group.Rank()), err)
	}
	start := time.Now()
	n, rank := sh.group.Size(), sh.group.Rank()
	bounds := sh.balancer.bounds(sh.weight.Shape()[0], n)
	w, err := sh.weight.Narrow(0, bounds[rank], bounds[rank+1]-bounds[rank])
	if err != nil {
		return 0, fail(err)
	}
	logits, err := tensor.Linear(x, w, nil)
	if err != nil {
		return 0, fail(err)
	}
	in := []float64{math.Inf(-1), -1, 0}
	if logits.Numel() > 0 {
		idx, err := tensor.Argmax(logits)
		if err != nil {
			return 0, fail(err)
		}
		in[0], in[1] = float64(logits.Float32s()[idx[0]]), float64(bounds[rank]+idx[0])
	}
	in[2] = time.Since(start).Seconds() * 1e6
	out := tensor.New(tensor.Float64, 3*n)
	if err := sh.group.AllGather(ctx, out, tensor.FromSlice(in)); err != nil {
		return 0, fail(err)
	}
	got := out.F64s()
	micros := make([]float32, n)
	pairs := make([]float64, 0, 2*n)
	for r := range n {
		pairs = append(pairs, got[3*r], got[3*r+1])
		micros[r] = float32(got[3*r+2])
	}
	sh.balancer.update(bounds, micros)
	return pickBest(pairs), nil
}
