package fsdp

import (
	"context"
	"slices"

	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/tensor"
)

// Prefetch starts unsharding the group and returns at once: the all-gather is issued now (so
// every rank issues it in the same order relative to its other collectives on the group) and runs
// on the group's worker, and a goroutine copies the result into the full parameters, while the
// caller computes. Unshard waits for it. Prefetching an unsharded or prefetching group does
// nothing. Like every collective, every rank of the shard group prefetches the same groups in
// the same order. Where the shard group shares memory (shared.go), Prefetch writes this rank's
// rows into shared memory before it returns, and Unshard waits for the peers' rows.
func (g *Group) Prefetch(ctx context.Context) {
	if g.full != nil || g.fetch != nil {
		return
	}
	if g.model.shared != nil {
		g.fetch = g.unshardShared(ctx)
		return
	}
	g.fetch = g.allGather(ctx)
}

// allGather issues the all-gather of the group's flat shard and returns the fetch that copies
// it into the full parameters once it is done.
func (g *Group) allGather(ctx context.Context) *fetch {
	md := g.model
	in := g.master
	var extra int64
	var converted *tensor.Tensor
	if md.paramDT != masterDT {
		converted = md.pool.tensor(md.paramDT, false, g.size)
		convertInto(converted, g.master)
		in = converted
		extra += int64(in.NBytes())
	}
	out := md.pool.tensor(md.paramDT, false, md.n*g.size)
	fullBytes := g.fullBytes()
	extra += int64(out.NBytes()) + fullBytes
	md.account(extra)
	w := md.shardPG.AllGatherAsync(out, in)
	f := &fetch{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		if err := w.Wait(ctx); err != nil {
			// The buffers are not given back: the all-gather may still be writing them.
			md.pool.forget(out, converted)
			f.err = opErr("Unshard", globalRank(md.mesh), err)
			md.account(-extra)
			return
		}
		f.full = g.copyOut(out, md.paramDT)
		md.pool.put(out, converted)
		// The all-gather buffer (and the converted send buffer) are dropped here.
		md.account(-(extra - fullBytes))
	}()
	return f
}

// copyOut builds the full parameters from the all-gather output (of dtype dt): rank r's slot
// holds, for each parameter, its padded shard, whose first rows are rank r's torch.chunk; the
// chunks in rank order are the parameter's rows.
func (g *Group) copyOut(all *tensor.Tensor, dt tensor.DType) []*tensor.Tensor {
	es := dt.Size()
	src := all.Bytes()
	full := make([]*tensor.Tensor, len(g.params))
	for i, p := range g.params {
		t := g.model.pool.tensor(dt, false, p.shape...) // every row is written below
		dst := t.Bytes()
		g.eachChunk(p, es, func(fullAt, flatAt, n int) {
			copy(dst[fullAt:fullAt+n], src[flatAt:flatAt+n])
		})
		full[i] = t
	}
	return full
}

// eachChunk calls f once per rank r of the shard group with where r's torch.chunk of p stands,
// in bytes (elements of es bytes): at fullAt in p's full tensor, and at flatAt in a buffer of
// the ranks' flat shards in rank order (an all-gather's output, a reduce-scatter's input),
// n bytes long. copyOut copies out of the flat buffer, ReduceGradientsAsync into it.
func (g *Group) eachChunk(p *param, es int, f func(fullAt, flatAt, n int)) {
	row := p.rowSize * es
	for r := range g.model.n {
		start, rows := dtensor.ChunkRange(p.shape[0], g.model.n, r)
		f(start*row, (r*g.size+p.offset)*es, rows*row)
	}
}

// Unshard makes the group's full parameters available (Param): one all-gather of the group's flat
// shard over the shard group, or the wait for the one Prefetch issued. Collective over the shard
// group; a no-op when the group is already unsharded.
func (g *Group) Unshard(ctx context.Context) error {
	if g.full != nil {
		return nil
	}
	if err := g.fetchErr; err != nil {
		g.fetchErr = nil
		return err
	}
	g.Prefetch(ctx)
	f := g.fetch
	g.fetch = nil
	if f.shared != nil && f.err == nil {
		all, err := g.settleShared(ctx, f)
		if err != nil {
			return err
		}
		if !all {
			// Some rank abandoned the shared unshard: every rank all-gathers, here.
			f = g.allGather(ctx)
		}
	}
	<-f.done
	if f.err != nil {
		return f.err
	}
	g.full = f.full
	return nil
}

// Reshard frees the group's full parameters (waiting first for a prefetch in flight; if that
// failed, the next Unshard returns its error). The full tensors handed out by Param must not be
// used after it: their memory serves the next Unshard.
func (g *Group) Reshard() {
	if f := g.fetch; f != nil {
		<-f.done
		g.fetch = nil
		if f.err != nil {
			g.fetchErr = f.err
		} else {
			g.full = f.full
		}
	}
	if g.full == nil {
		return
	}
	if !g.releaseSlot() {
		g.model.pool.put(g.full...)
	}
	g.full = nil
	g.model.account(-g.fullBytes())
}

// fullBytes is the size of the group's full parameters, in MixedPrecision.ParamDType: what an
// unshard adds to the byte count and Reshard takes off.
func (g *Group) fullBytes() int64 {
	var n int64
	for _, p := range g.params {
		n += int64(p.shape[0] * p.rowSize * g.model.paramDT.Size())
	}
	return n
}

// AfterForward is called by the model after the group's forward: it reshards, unless
// Options.NoReshardAfterForward keeps the full parameters for the backward pass.
func (g *Group) AfterForward() {
	if !g.model.opts.NoReshardAfterForward {
		g.Reshard()
	}
}

// IsUnsharded reports whether the group's full parameters are available.
func (g *Group) IsUnsharded() bool { return g.full != nil }

// Param is the named parameter's full value, in MixedPrecision.ParamDType, between Unshard and
// Reshard. Do not write to it: the optimizer updates the master shards, and the ranks of a host
// may share this memory (see Options.NoSharedMemory).
func (g *Group) Param(name string) (*tensor.Tensor, error) {
	p, err := g.param("Param", name)
	if err != nil {
		return nil, err
	}
	if g.full == nil {
		return nil, errorf("Param", globalRank(g.model.mesh), "group %d (%s) is sharded; call Unshard before reading %q",
			g.index, slices.Clone(g.Names()), name)
	}
	return g.full[p.index], nil
}

// convertInto copies src's elements into dst (both contiguous, with as many elements), converting
// the dtype as tensor's To does (SIMD between float32 and the 16-bit formats). Its callers check
// the shapes first, so an error is a bug in fsdp.
func convertInto(dst, src *tensor.Tensor) {
	if err := dst.ConvertFrom(src); err != nil {
		panic("fsdp: internal error: " + err.Error())
	}
}
