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
// ranks' Reshard calls diverged) every rank falls back to the all-gather. After its writes a
// rank advances its signal (comm.SharedBuffer.Signal) and goes on; Unshard waits for every
// peer's signal, usually long given: Prefetch wrote a layer earlier. The ranks' shared unshards
// are the same ones (the all-gathers decide alike everywhere), so the n-th one's signal is n on
// every rank.
//
// Gradients the same way round: a group's unsharded gradient accumulators (Grad) are views of
// this rank's region of a shared gradient slot, laid out as the full parameters, and a reduction
// all-gathers the slot each rank used, reads its own rows of every rank's accumulators, sums
// them in rank order (the same bits as the reduce-scatter) and signals that it has read them.
// A region's owner reuses it once every peer's signal says so (usually long done: a region
// comes back sharedSlots reductions later). No copy into a flat buffer, no copy through shm's
// segment, and the ranks meet once per unshard and once per reduction, not twice. A rank whose
// accumulators are private (no free slot) makes every rank reduce-scatter instead.

// sharedSlots is the number of slots: the group computed with, the one prefetched, and two for
// groups held unsharded across forward and backward (the last layer, say).
const sharedSlots = 4

// sharedMemory is a Model's shared slots, for full parameters and for gradients.
type sharedMemory struct {
	buf   *comm.SharedBuffer
	slot  int     // bytes per slot
	taken slotSet // by this rank
	// The gradient slots: slot i's region for rank r at (i*n + r)*gradSlot.
	gradBuf   *comm.SharedBuffer
	gradSlot  int
	gradTaken slotSet // this rank's regions
	// Signal 0 of buf counts this rank's shared unshards written; signal 0 of gradBuf its shared
	// reductions read. A gradient region may be rewritten once every peer's has reached
	// readAt for it.
	written, reduced uint64
	readAt           []uint64
	// The slot this rank took and, all-gathered, the one each rank took.
	mine, agreed *tensor.Tensor
}

// slotSet says which of a set of slots this rank holds.
type slotSet []bool

// take marks the first free slot taken and returns it, or -1 when none is free.
func (s slotSet) take() int {
	i := slices.Index(s, false)
	if i >= 0 {
		s[i] = true
	}
	return i
}

// agree all-gathers over the shard group the slot this rank took (-1: none) and returns the one
// each rank took.
func (sh *sharedMemory) agree(ctx context.Context, md *Model, slot int) ([]int64, error) {
	sh.mine.Int64s()[0] = int64(slot)
	if err := md.shardPG.AllGather(ctx, sh.agreed, sh.mine); err != nil {
		return nil, err
	}
	return sh.agreed.Int64s(), nil
}

// newSharedMemory lays out every group's full parameters in a slot and allocates the slots on
// the shard group; it returns nil when the ranks cannot share memory (on every rank alike).
func newSharedMemory(ctx context.Context, md *Model) (*sharedMemory, error) {
	if md.opts.NoSharedMemory || md.n == 1 {
		return nil, nil
	}
	slot, gradSlot := 0, 0
	for _, g := range md.groups {
		at, gat := 0, 0
		for _, p := range g.params {
			p.sharedAt, p.gradAt = at, gat
			// Each on its own cache lines.
			at += (p.shape[0]*p.rowSize*md.paramDT.Size() + 63) / 64 * 64
			gat += (p.shape[0]*p.rowSize*md.reduceDT.Size() + 63) / 64 * 64
		}
		slot, gradSlot = max(slot, at), max(gradSlot, gat)
	}
	buf, err := md.shardPG.AllocShared(ctx, sharedSlots*slot)
	if errors.Is(err, comm.ErrUnsupported) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	gradBuf, err := md.shardPG.AllocShared(ctx, sharedSlots*md.n*gradSlot)
	if err != nil {
		buf.Close()
		return nil, err
	}
	return &sharedMemory{buf: buf, slot: slot, taken: make(slotSet, sharedSlots),
		gradBuf: gradBuf, gradSlot: gradSlot, gradTaken: make(slotSet, sharedSlots), readAt: make([]uint64, sharedSlots),
		mine: tensor.New(tensor.Int64, 1), agreed: tensor.New(tensor.Int64, md.n)}, nil
}

// close unmaps the slots.
func (sh *sharedMemory) close() {
	sh.buf.Close()
	sh.gradBuf.Close()
}

// gradRegion is rank r's region of gradient slot i.
func (sh *sharedMemory) gradRegion(i, r, n int) []byte {
	at := (i*n + r) * sh.gradSlot
	return sh.gradBuf.Bytes()[at : at+sh.gradSlot]
}

// sharedGrads makes g's unsharded gradient accumulators views of a free gradient region of this
// rank (zeroed), or returns false when none is free. It waits for the peers to have read the
// region's last gradients.
func (g *Group) sharedGrads(ctx context.Context) (bool, error) {
	md, sh := g.model, g.model.shared
	i := sh.gradTaken.take()
	if i < 0 {
		return false, nil
	}
	if err := sh.waitPeers(ctx, md, sh.gradBuf, sh.readAt[i]); err != nil {
		sh.gradTaken[i] = false
		return false, err
	}
	region := sh.gradRegion(i, md.rank, md.n)
	clear(region)
	g.grads = make([]*tensor.Tensor, len(g.params))
	es := md.reduceDT.Size()
	for j, p := range g.params {
		t, err := tensor.FromBytes(md.reduceDT, region[p.gradAt:p.gradAt+p.shape[0]*p.rowSize*es], p.shape...)
		if err != nil {
			panic(err) // the region was laid out for this shape
		}
		g.grads[j] = t
	}
	g.gradSlot = i + 1
	return true, nil
}

// waitPeers waits until every peer's signal 0 in buf has reached v.
func (sh *sharedMemory) waitPeers(ctx context.Context, md *Model, buf *comm.SharedBuffer, v uint64) error {
	for q := range md.n {
		if q == md.rank {
			continue
		}
		if err := buf.WaitSignal(ctx, q, 0, v); err != nil {
			return err
		}
	}
	return nil
}

// dropGrads lets go of g's unsharded gradient accumulators: back to their shared region or to
// the pool.
func (g *Group) dropGrads() {
	if g.gradSlot != 0 {
		g.model.shared.gradTaken[g.gradSlot-1] = false
		g.gradSlot = 0
	} else {
		g.model.pool.put(g.grads...)
	}
	g.grads = nil
}

// reduceShared sums every rank's rows of this rank's shard of g's gradients into out (g.size
// elements of ReduceDType, zero in the padding), reading the accumulators in place. It returns
// false (and no error) when some rank's accumulators are not shared: the caller reduce-scatters.
func (g *Group) reduceShared(ctx context.Context, out *tensor.Tensor) (bool, error) {
	md, sh := g.model, g.model.shared
	slots, err := sh.agree(ctx, md, g.gradSlot-1)
	if err != nil {
		return false, err
	}
	if slices.Contains(slots, -1) {
		return false, nil
	}
	es := md.reduceDT.Size()
	dst := out.Bytes()
	srcs := make([][]byte, md.n)
	for _, p := range g.params {
		lo, hi := p.startRow*p.rowSize*es, (p.startRow+p.localRows)*p.rowSize*es
		for q := range md.n {
			region := sh.gradRegion(int(slots[q]), q, md.n)
			srcs[q] = region[p.gradAt+lo : p.gradAt+hi]
		}
		if hi > lo {
			if err := tensor.ReduceMany(tensor.Sum, md.reduceDT, dst[p.offset*es:p.offset*es+hi-lo], srcs...); err != nil {
				return false, err
			}
		}
	}
	// Every region's owner reuses it once every rank has said it read it.
	sh.reduced++
	if err := sh.gradBuf.Signal(0, sh.reduced); err != nil {
		return false, err
	}
	sh.readAt[g.gradSlot-1] = sh.reduced
	g.dropGrads()
	return true, nil
}

// unshardShared unshards g into a shared slot and returns the full parameters, views of it. It
// returns neither them nor an error when the ranks did not all take the same free slot: the
// caller all-gathers instead.
func (g *Group) unshardShared(ctx context.Context) ([]*tensor.Tensor, error) {
	md, sh := g.model, g.model.shared
	s := sh.taken.take()
	release := func() {
		if s >= 0 {
			sh.taken[s] = false
		}
	}
	slots, err := sh.agree(ctx, md, s)
	if err != nil {
		release()
		return nil, opErr("Unshard", globalRank(md.mesh), err)
	}
	if s < 0 || slices.ContainsFunc(slots, func(v int64) bool { return v != int64(s) }) {
		release()
		return nil, nil
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
		if local := p.local(g.master); dt == masterDT {
			// The peers read these rows next, from memory: store them past this core's
			// caches (about half an ordinary copy's time here, see BENCHMARKS.md).
			tensor.CopyNonTemporal(rows.Bytes(), local.Bytes())
		} else {
			convertInto(rows, local)
		}
	}
	// Unshard waits for every peer's signal (waitWritten).
	sh.written++
	if err := sh.buf.Signal(0, sh.written); err != nil {
		release()
		return nil, opErr("Unshard", globalRank(md.mesh), err)
	}
	g.slot, g.written = s+1, sh.written
	return full, nil
}

// waitWritten waits until every peer has written its rows of the shared slot g's full
// parameters are in (if they are in one).
func (g *Group) waitWritten(ctx context.Context) error {
	if g.slot == 0 {
		return nil
	}
	md := g.model
	if err := md.shared.waitPeers(ctx, md, md.shared.buf, g.written); err != nil {
		return opErr("Unshard", globalRank(md.mesh), err)
	}
	return nil
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
