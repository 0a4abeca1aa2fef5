package fsdp

import (
	"context"
	"errors"
	"slices"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

// Shared unsharding. When the ranks of the shard group can map memory together (comm's
// AllocShared: backend shm, every rank on one host), the full parameters of an unsharded group
// live there, once for the host instead of once per rank: an unshard is each rank writing its own
// rows (converted to ParamDType) into a shared slot, between two small collectives, and the full
// parameters are views of the slot. That moves 1/N of the bytes an all-gather and its copy-out
// move (the all-gather copies in and out of shm's segment, and its flat output is copied again
// into the parameters), and it needs no buffer per rank.
//
// The slots are a few (sharedSlots), each as large as the largest group. An unshard takes a free
// one; before writing it, the ranks all-gather the slot each took: if every rank took the same,
// every rank has released it (Reshard) before this collective, so nobody reads it any more, and
// the writes may start; else (a rank holds more groups unsharded than there are slots, or the
// ranks' Reshard calls diverged) every rank falls back to the all-gather. A barrier after the
// writes makes them visible before anyone computes.

// sharedSlots is the number of slots: the group computed with, the one prefetched, and two for
// groups held unsharded across forward and backward (the last layer, say).
const sharedSlots = 4

// sharedUnshard is a Model's shared slots.
type sharedUnshard struct {
	buf    *comm.SharedBuffer
	slot   int    // bytes per slot
	taken  []bool // by this rank
	mine   *tensor.Tensor
	agreed *tensor.Tensor // the slot each rank took, all-gathered
}

// newSharedUnshard lays out every group's full parameters in a slot and allocates the slots on
// the shard group; it returns nil when the ranks cannot share memory (on every rank alike).
func newSharedUnshard(ctx context.Context, md *Model) (*sharedUnshard, error) {
	if md.opts.PrivateUnshard || md.n == 1 {
		return nil, nil
	}
	slot, es := 0, md.paramDT.Size()
	for _, g := range md.groups {
		at := 0
		for _, p := range g.params {
			p.sharedAt = at
			at += (p.shape[0]*p.rowSize*es + 63) / 64 * 64 // each on its own cache lines
		}
		slot = max(slot, at)
	}
	buf, err := md.shardPG.AllocShared(ctx, sharedSlots*slot)
	if errors.Is(err, comm.ErrUnsupported) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &sharedUnshard{buf: buf, slot: slot, taken: make([]bool, sharedSlots),
		mine: tensor.New(tensor.Int64, 1), agreed: tensor.New(tensor.Int64, md.n)}, nil
}

// unshardShared unshards g into a shared slot and returns the full parameters, views of it. It
// returns neither them nor an error when the ranks did not all take the same free slot: the
// caller all-gathers instead.
func (g *Group) unshardShared(ctx context.Context) ([]*tensor.Tensor, error) {
	md, sh := g.model, g.model.shared
	s := slices.Index(sh.taken, false) // -1: none free
	if s >= 0 {
		sh.taken[s] = true
	}
	release := func() {
		if s >= 0 {
			sh.taken[s] = false
		}
	}
	sh.mine.Int64s()[0] = int64(s)
	if err := md.shardPG.AllGather(ctx, sh.agreed, sh.mine); err != nil {
		release()
		return nil, opErr("Unshard", globalRank(md.mesh), err)
	}
	for _, v := range sh.agreed.Int64s() {
		if s < 0 || v != int64(s) {
			release()
			return nil, nil
		}
	}
	// Every rank released slot s before this all-gather: nobody reads it any more.
	dt, es := md.paramDT, md.paramDT.Size()
	base := sh.buf.Bytes()[s*sh.slot : (s+1)*sh.slot]
	full := make([]*tensor.Tensor, len(g.params))
	for i, p := range g.params {
		b := base[p.sharedAt : p.sharedAt+p.shape[0]*p.rowSize*es]
		t, err := tensor.FromBytes(dt, b, p.shape...)
		if err != nil {
			panic(err) // the slot was laid out for this shape
		}
		full[i] = t
		rows, err := t.Narrow(0, p.startRow, p.localRows)
		if err != nil {
			panic(err)
		}
		convertInto(rows, p.local(g.master))
	}
	// Every rank's rows are written once every rank is past this barrier.
	if err := md.shardPG.Barrier(ctx); err != nil {
		release()
		return nil, opErr("Unshard", globalRank(md.mesh), err)
	}
	g.slot = s + 1
	return full, nil
}

// releaseSlot gives back the shared slot holding g's full parameters, if one does.
func (g *Group) releaseSlot() bool {
	if g.slot == 0 {
		return false
	}
	g.model.shared.taken[g.slot-1] = false
	g.slot = 0
	return true
}
