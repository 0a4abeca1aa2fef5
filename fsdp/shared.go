package fsdp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

// Shared unsharding. When the ranks of the shard group can map memory together (comm's
// AllocShared: backend shm, every rank on one host), the full parameters of an unsharded group
// live there, once for the host instead of once per rank: an unshard is each rank writing its own
// rows (converted to ParamDType) into a shared slot, and the full parameters are views of the
// slot. That moves 1/N of the bytes an all-gather and its copy-out move (the all-gather copies in
// and out of shm's segment, and its flat output is copied again into the parameters), and it
// needs no buffer per rank.
//
// The ranks do not meet for it: they order it with signals in the shared memory (comm's
// SharedBuffer.Signal), so that a rank waits only for what it reads, and usually finds it done.
// The slots are a few (sharedSlots; with Options.NoReshardAfterForward, one per group and two
// more), each as large as the largest group; the k-th shared unshard (k counts Prefetch calls,
// the same sequence on every rank) goes to slot k mod their number. In Prefetch a rank waits
// until every peer has released (Reshard) the slot's previous unshard, that many unshards ago
// (long done, as a rule), writes its rows and signals
// "decided: written" for k, or, if it still holds that previous unshard itself, signals
// "decided: abandoned". Unshard waits until every peer has decided k (Prefetch ran a layer
// earlier: done, as a rule): if every rank wrote, the slot holds the full parameters; if any
// abandoned, every rank sees it and falls back to the all-gather, there and then, alike. A wait
// for a peer's release that lasts slotWait (the ranks' Reshard calls diverged, and the peer
// may need this rank to go on before it releases) abandons too.
//
// Gradients the same way round: a group's unsharded gradient accumulators (Grad) are views of
// this rank's region of a shared gradient slot, laid out as the full parameters. The j-th
// reduction (ReduceGradientsAsync) publishes which region holds this rank's accumulators (a
// signal), and the next call finishes it: it waits for every peer's publication of j (made a
// layer earlier, as a rule), reads its own rows of every rank's accumulators, sums them in rank
// order (the same bits as the reduce-scatter) and signals that it has read them; a wait for the
// reduction (WaitGradients, ShardedGrad, ...) finishes it too. A region's owner reuses it once
// every peer's signal says so (it takes the free region read longest ago). No copy into a flat
// buffer, no copy through shm's segment, and the ranks never meet for it. Where a rank's
// accumulators are private (no free region), every rank reduce-scatters instead, when it
// finishes the reduction.

// sharedSlots is the number of slots (and of gradient regions): the group computed with, the one
// prefetched, and two more so that a slot comes back only once its peers are surely done with
// it. With Options.NoReshardAfterForward, where every group stays unsharded from its forward to
// its backward, there is a slot per group and two more (the full model once per host, which
// the ranks would otherwise hold each).
const sharedSlots = 4

// slotWait bounds a Prefetch's wait for the peers to release a slot, past which it abandons the
// shared unshard (everyone then all-gathers). Peers in step release it layers before; a longer
// wait means that their Reshard calls diverged from this rank's.
const slotWait = time.Second

// The signals of a Model's shared slots (buf), per slot: the latest unshard there this rank
// has decided (decided: its number and group), the latest it wrote its rows for (wrote: the
// number), and the latest it is done reading (released: the number). A peer that decided k but
// whose wrote is not k abandoned k; it cannot have written a later one there while this rank
// holds k. Of its gradient regions (gradBuf): how many shared reductions it has read, and the
// reductions it published, odd and even ones apart (the number, then 1 + the region holding its
// accumulators, 0 for none): a rank publishes j+2 only after it finished j+1, which waited for
// every peer's j+1, published after that peer finished j.
func sigDecided(slot int) int  { return 3 * slot }
func sigWrote(slot int) int    { return 3*slot + 1 }
func sigReleased(slot int) int { return 3*slot + 2 }

const sigGradRead = 0

func sigGradPublished(j uint64) int { return 1 + int(j%2) }

// decision is a decided signal's value: the unshard's number, then its group (the number
// leads, so the value only grows).
func decision(k uint64, group int) uint64 { return k<<32 | uint64(group) }

// sharedMemory is a Model's shared slots, for full parameters and for gradients.
type sharedMemory struct {
	buf   *comm.SharedBuffer
	slot  int    // bytes per slot
	taken []bool // the slots this rank holds
	// unshards counts this rank's shared unshards (Prefetch); last[s] is the latest one to slot s.
	unshards uint64
	last     []uint64
	// The gradient slots: slot i's region for rank r at (i*n + r)*gradSlot.
	gradBuf   *comm.SharedBuffer
	gradSlot  int
	gradTaken []bool // this rank's regions it holds
	// reductions counts this rank's ReduceGradientsAsync calls, reduced the shared ones it has
	// read; a gradient region may be rewritten once every peer's sigGradRead has reached
	// readAt for it.
	reductions, reduced uint64
	readAt              []uint64
}

// pendingReduction is a reduction published, which finishPending finishes.
type pendingReduction struct {
	ctx context.Context
	g   *Group
	acc gradAccs
	j   uint64
}

// sharedUnshard is a shared unshard that Prefetch started and Unshard settles.
type sharedUnshard struct {
	k       uint64
	slot    int
	written bool // by this rank
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
	slots := sharedSlots
	if md.opts.NoReshardAfterForward {
		// Bounded by the signals a slot needs (beyond, unshards fall back in turn).
		slots = max(slots, min(len(md.groups)+2, comm.SharedSignals/3))
	}
	buf, err := md.shardPG.AllocShared(ctx, slots*slot)
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
	return &sharedMemory{buf: buf, slot: slot, taken: make([]bool, slots),
		last:    make([]uint64, slots),
		gradBuf: gradBuf, gradSlot: gradSlot, gradTaken: make([]bool, sharedSlots), readAt: make([]uint64, sharedSlots)}, nil
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

// sharedGrads returns unsharded gradient accumulators for g, views of a free gradient region
// of this rank (zeroed): the one the peers finished reading longest ago, once they have. It
// returns none when no region is free.
func (g *Group) sharedGrads(ctx context.Context) (gradAccs, error) {
	md, sh := g.model, g.model.shared
	i := -1
	for r, taken := range sh.gradTaken {
		if !taken && (i < 0 || sh.readAt[r] < sh.readAt[i]) {
			i = r
		}
	}
	if i < 0 {
		return gradAccs{}, nil
	}
	if err := md.waitPeers(ctx, sh.gradBuf, sigGradRead, sh.readAt[i]); err != nil {
		return gradAccs{}, err
	}
	sh.gradTaken[i] = true
	region := sh.gradRegion(i, md.rank, md.n)
	clear(region)
	a := gradAccs{grads: make([]*tensor.Tensor, len(g.params)), slot: i + 1}
	es := md.reduceDT.Size()
	for j, p := range g.params {
		t, err := tensor.FromBytes(md.reduceDT, region[p.gradAt:p.gradAt+p.shape[0]*p.rowSize*es], p.shape...)
		if err != nil {
			panic(err) // the region was laid out for this shape
		}
		a.grads[j] = t
	}
	return a, nil
}

// waitPeers waits until every peer's signal sig in buf has reached v.
func (md *Model) waitPeers(ctx context.Context, buf *comm.SharedBuffer, sig int, v uint64) error {
	for q := range md.n {
		if q == md.rank {
			continue
		}
		if err := buf.WaitSignal(ctx, q, sig, v); err != nil {
			return err
		}
	}
	return nil
}

// dropGrads lets go of unsharded gradient accumulators: back to their shared region or to the
// pool.
func (md *Model) dropGrads(a gradAccs) {
	if a.slot != 0 {
		md.shared.gradTaken[a.slot-1] = false
	} else {
		md.pool.put(a.grads...)
	}
}

// publishReduction tells the peers where g's accumulators a are (in which region, if any), for
// the reduction finishPending finishes.
func (md *Model) publishReduction(ctx context.Context, g *Group, a gradAccs) {
	sh := md.shared
	sh.reductions++
	j := sh.reductions
	if err := sh.gradBuf.Signal(sigGradPublished(j), j<<8|uint64(a.slot)); err != nil {
		md.reduceErr = errors.Join(md.reduceErr, opErr("ReduceGradients", globalRank(md.mesh), err))
		md.dropGrads(a)
		return
	}
	md.pending = &pendingReduction{ctx: ctx, g: g, acc: a, j: j}
}

// finishPending finishes the published reduction, if any: it waits for every peer's
// publication of it and reduces (Group.reduce), in place where every rank's accumulators are
// shared, else by a reduce-scatter (every rank alike: each sees every publication).
func (md *Model) finishPending() {
	p := md.pending
	if p == nil {
		return
	}
	md.pending = nil
	sh := md.shared
	fail := func(err error) {
		md.dropGrads(p.acc)
		md.reduceErr = errors.Join(md.reduceErr, err)
	}
	slots := make([]int64, md.n)
	for q := range md.n {
		v := uint64(p.acc.slot)
		if q != md.rank {
			if err := sh.gradBuf.WaitSignal(p.ctx, q, sigGradPublished(p.j), p.j<<8); err != nil {
				fail(opErr("ReduceGradients", globalRank(md.mesh),
					fmt.Errorf("waiting for rank %d of the shard group to reduce group %d (%s), this rank's reduction %d (every rank must reduce the same groups in the same order): %w",
						q, p.g.index, slices.Clone(p.g.Names()), p.j, err)))
				return
			}
			v, _ = sh.gradBuf.Signalled(q, sigGradPublished(p.j))
			if v>>8 != p.j {
				// Only a rank that runs more reductions than this one gets here.
				fail(errorf("ReduceGradients", globalRank(md.mesh),
					"rank %d of the shard group published reduction %d while this rank finishes reduction %d (of group %d): call ReduceGradients for the same groups in the same order on every rank",
					q, v>>8, p.j, p.g.index))
				return
			}
		}
		slots[q] = int64(v&0xff) - 1
	}
	p.g.reduce(p.ctx, p.acc, slots)
}

// sumShared sums every rank's rows of this rank's shard of g's gradients into out (g.size
// elements of ReduceDType; it zeroes the padding), reading the accumulators in place (rank q's
// in its region slots[q]), signals that it has read them and lets go of a, this rank's.
func (g *Group) sumShared(a gradAccs, slots []int64, out *tensor.Tensor) error {
	md, sh := g.model, g.model.shared
	es := md.reduceDT.Size()
	dst := out.Bytes()
	srcs := make([][]byte, md.n)
	for _, p := range g.params {
		lo, hi := p.startRow*p.rowSize*es, (p.startRow+p.localRows)*p.rowSize*es
		for q := range md.n {
			region := sh.gradRegion(int(slots[q]), q, md.n)
			srcs[q] = region[p.gradAt+lo : p.gradAt+hi]
		}
		at := p.offset * es
		if hi > lo {
			if err := tensor.ReduceMany(tensor.Sum, md.reduceDT, dst[at:at+hi-lo], srcs...); err != nil {
				return err
			}
		}
		clear(dst[at+hi-lo : at+p.chunkRows*p.rowSize*es])
	}
	// Every region's owner reuses it once every rank has said it read it.
	sh.reduced++
	sh.readAt[a.slot-1] = sh.reduced
	md.dropGrads(a)
	return sh.gradBuf.Signal(sigGradRead, sh.reduced)
}

// unshardShared starts the next shared unshard, with g, in Prefetch (see the top of the file):
// it writes this rank's rows into the unshard's slot once the peers are done with the slot, or
// abandons it, and signals which. Unshard settles it (settleShared).
func (g *Group) unshardShared(ctx context.Context) *fetch {
	md, sh := g.model, g.model.shared
	sh.unshards++
	k := sh.unshards
	s := int(k % uint64(len(sh.taken)))
	prev := sh.last[s]
	sh.last[s] = k
	f := &fetch{done: make(chan struct{}), shared: &sharedUnshard{k: k, slot: s}}
	close(f.done)
	fail := func(err error) *fetch {
		f.err = opErr("Unshard", globalRank(md.mesh), err)
		return f
	}
	if sh.taken[s] {
		// This rank still holds the slot's previous unshard: it abandons this one, and tells
		// that it is done with it when it releases the slot (releaseSlot).
		if err := sh.buf.Signal(sigDecided(s), decision(k, g.index)); err != nil {
			return fail(err)
		}
		return f
	}
	free, err := sh.waitReleased(ctx, md, s, prev, k)
	if err != nil {
		return fail(fmt.Errorf("waiting for the shard group to release shared slot %d, for group %d (%s): %w", s, g.index, slices.Clone(g.Names()), err))
	}
	if free {
		sh.taken[s] = true
		f.full = g.writeRows(s)
		f.shared.written = true
		g.slot = s + 1
		md.account(g.fullBytes())
		err = sh.buf.Signal(sigWrote(s), k)
	} else {
		// Abandoned: this rank will not read the slot for k.
		err = sh.buf.Signal(sigReleased(s), k)
	}
	if err == nil {
		err = sh.buf.Signal(sigDecided(s), decision(k, g.index))
	}
	if err != nil {
		return fail(err)
	}
	return f
}

// waitReleased waits until every peer is done with slot s's unshard prev (its sigReleased has
// reached prev), and reports true; or false once a peer has abandoned unshard k, or after
// slotWait.
func (sh *sharedMemory) waitReleased(ctx context.Context, md *Model, s int, prev, k uint64) (bool, error) {
	released := func(q int) bool {
		rel, _ := sh.buf.Signalled(q, sigReleased(s))
		return rel >= prev
	}
	waiting := false
	for q := range md.n {
		waiting = waiting || q != md.rank && !released(q)
	}
	if !waiting {
		return true, nil // as a rule: the slot's last unshard was layers ago
	}
	wctx, cancel := context.WithTimeout(ctx, slotWait)
	defer cancel()
	for q := range md.n {
		if q == md.rank {
			continue
		}
		gaveUp := false
		err := sh.buf.WaitUntil(wctx, q, func() bool {
			if released(q) {
				return true
			}
			gaveUp = sh.abandoned(q, s, k)
			return gaveUp
		})
		switch {
		case err != nil && ctx.Err() == nil && errors.Is(err, comm.ErrTimeout):
			return false, nil // slotWait passed
		case err != nil:
			return false, err
		case gaveUp:
			return false, nil
		}
	}
	return true, nil
}

// abandoned reports whether peer q has decided unshard k, to slot s, without writing its rows.
// (Had it written them, it could not have written a later unshard's there yet: that waits for
// this rank to release k, which it has not even decided.)
func (sh *sharedMemory) abandoned(q, s int, k uint64) bool {
	d, _ := sh.buf.Signalled(q, sigDecided(s))
	w, _ := sh.buf.Signalled(q, sigWrote(s))
	return d>>32 >= k && w != k
}

// writeRows writes this rank's rows of g's parameters into slot s and returns the full
// parameters, views of the slot.
func (g *Group) writeRows(s int) []*tensor.Tensor {
	md, sh := g.model, g.model.shared
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
	return full
}

// settleShared waits until every peer has decided f's shared unshard and reports whether all
// wrote their rows (f.full then holds the full parameters). If one abandoned it (this rank, say),
// this rank lets go of the slot and the caller all-gathers, as every rank does.
func (g *Group) settleShared(ctx context.Context, f *fetch) (bool, error) {
	md, sh, u := g.model, g.model.shared, f.shared
	drop := func() {
		if g.releaseSlot() {
			md.account(-g.fullBytes())
		}
	}
	if !u.written {
		return false, nil
	}
	// This rank holds the slot for k: no peer writes a later unshard there before it lets go,
	// so a peer's wrote signal says whether it wrote k.
	for q := range md.n {
		if q == md.rank {
			continue
		}
		if err := sh.buf.WaitSignal(ctx, q, sigDecided(u.slot), decision(u.k, 0)); err != nil {
			drop()
			return false, opErr("Unshard", globalRank(md.mesh),
				fmt.Errorf("waiting for rank %d of the shard group to write its rows of group %d (%s), this rank's shared unshard %d (every rank must prefetch or unshard the same groups in the same order): %w",
					q, g.index, slices.Clone(g.Names()), u.k, err))
		}
		if sh.abandoned(q, u.slot, u.k) {
			drop()
			return false, nil
		}
		// Its decided signal may have moved on to a later unshard it abandoned at once; if it
		// has not, it names the group.
		if d, _ := sh.buf.Signalled(q, sigDecided(u.slot)); d>>32 == u.k && int(d&(1<<32-1)) != g.index {
			drop()
			return false, errorf("Unshard", globalRank(md.mesh), "rank %d of the shard group ran shared unshard %d with group %d, this rank with group %d (%s): call Prefetch and Unshard for the same groups in the same order on every rank",
				q, u.k, int(d&(1<<32-1)), g.index, slices.Clone(g.Names()))
		}
	}
	return true, nil
}

// releaseSlot gives back the shared slot holding g's full parameters, if one does, and tells the
// peers that this rank is done with every unshard there so far.
func (g *Group) releaseSlot() bool {
	if g.slot == 0 {
		return false
	}
	sh, s := g.model.shared, g.slot-1
	sh.taken[s] = false
	g.slot = 0
	// It fails only on a closed buffer (the Model is closed).
	_ = sh.buf.Signal(sigReleased(s), sh.last[s])
	return true
}
