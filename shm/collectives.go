package shm

import (
	"context"
	"fmt"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// Every collective moves data in pieces of at most one slot. A piece is: each rank copies its
// part into its own slot, one sync, then each rank reads what it needs from the others' slots.
// Pieces alternate between a rank's two slots, so no trailing sync is needed: a rank writes a
// slot again only two pieces later, after every member has passed a sync that follows its reads
// of that slot. An op's first sync also checks that every member runs the same op.

// smallAllReduceBytes: at or below, every rank reduces all slots itself (one sync); above, each
// rank reduces its share of every piece and the others copy it (two syncs, n times less
// reading per rank).
var smallAllReduceBytes = 64 << 10

func sameMem(a, b []byte) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }

// srcList is the group's reusable list of one source per rank (under opMu).
func (g *Group) srcList() [][]byte {
	if len(g.srcs) != g.cfg.Size {
		g.srcs = make([][]byte, g.cfg.Size)
	}
	return g.srcs
}

// nextBuf picks the slot buffer for the next piece.
func (g *Group) nextBuf() int {
	b := int(g.piece % 2)
	g.piece++
	return b
}

// enter is a piece's sync: the op's first piece checks the fingerprint. t says what the piece
// reads from the peers (see touch).
func (g *Group) enter(ctx context.Context, op backends.Op, first bool, t touch) error {
	if first {
		return g.beginTouching(ctx, op, t)
	}
	return g.syncTouching(ctx, t)
}

// part is rank p's share [lo, hi) of a piece of n bytes, split element-aligned among size ranks.
func part(n, size, p, es int) (int, int) {
	elems := n / es
	base, extra := elems/size, elems%size
	lo := p*base + min(p, extra)
	hi := lo + base
	if p < extra {
		hi++
	}
	return lo * es, hi * es
}

// pieceSize is the largest piece, element-aligned, when a slot is split in `ways`.
func (g *Group) pieceSize(es, ways int) int {
	return max(es, g.seg.l.slotBytes/ways/es*es)
}

// pieces calls fn for each piece [off, off+len) of total bytes (at least once, for empty ops).
func pieces(total, size int, fn func(off, n int, first bool) error) error {
	first := true
	for off := 0; first || off < total; off += size {
		if err := fn(off, min(size, total-off), first); err != nil {
			return err
		}
		first = false
	}
	return nil
}

// alone runs an op in a one-rank group: the input is the result.
func (g *Group) alone(ctx context.Context, op backends.Op, in, out []byte) error {
	if !sameMem(in, out) {
		copy(out, in)
	}
	return g.begin(ctx, op)
}

// bytesOf is t's bytes, or nil for a tensor this rank does not have (a non-root's output).
func bytesOf(t *tensor.Tensor) []byte {
	if t == nil {
		return nil
	}
	return t.Bytes()
}

// AllReduce: small buffers are reduced by every rank from all slots in rank order; large ones
// are reduce-scattered then all-gathered within each piece. Either way each element is reduced
// in the same order, so every rank gets the same bits.
func (g *Group) AllReduce(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(func() error {
		ib, ob := in.Bytes(), out.Bytes()
		if g.cfg.Size == 1 {
			return g.alone(ctx, op, ib, ob)
		}
		if g.singleCopyFor(g.scLimits.allReduce, len(ob)) {
			return g.allReduceSingleCopy(ctx, op, ib, ob)
		}
		return g.reduce(ctx, op, ib, ob, -1)
	})
}

// exchangeInline is the latency path of the small collectives, one exchange of cache lines:
// each rank writes ib (at most inlineMax bytes, possibly none) into its op span next to the
// op's fingerprint and phase, then waits until every member has done the same, so that one
// cache line per peer carries everything up to headMax bytes, and a second one the rest
// (loaded while the waiter spins when tail is set: this rank reads past headMax). The members'
// payloads are then inline(p, n) until this rank's next op. It does what begin and sync do,
// written out, which measured ~20 ns less per op than calling them.
func (g *Group) exchangeInline(ctx context.Context, op backends.Op, ib []byte, tail bool) error {
	g.opSeq++
	g.phase++
	me := g.seg.line(g.cfg.Rank, g.opSeq)
	copy(me.inline[:], ib)
	fp := opFingerprint(op)
	me.fp = fp
	publish(&me.phase, g.phase)
	wakeSleepers(&me.phase, g.sleepers)
	backends.Posted(ctx)
	if err := g.waitPhase(ctx, g.phase, touch{tail: tail}); err != nil {
		return err
	}
	return g.checkFingerprints(fp)
}

// inline is the first n bytes member p published with exchangeInline in the current op.
func (g *Group) inline(p, n int) []byte { return g.seg.line(p, g.opSeq).inline[:n] }

// reduceInline reduces an input of at most inlineMax bytes through exchangeInline.
func (g *Group) reduceInline(ctx context.Context, op backends.Op, ib, ob []byte, root int) error {
	reads := root < 0 || g.cfg.Rank == root
	if err := g.exchangeInline(ctx, op, ib, reads && len(ib) > headMax); err != nil || !reads {
		return err
	}
	srcs := g.srcList()
	for p := range srcs {
		srcs[p] = g.inline(p, len(ib))
	}
	return reduceInlined(op, ob, srcs)
}

// reduceInlined reduces the members' inline payloads srcs (rank order) into ob. For float32 SUM,
// tensor.SumFloat32Small (SSE, no checks or dispatch) beats ReduceMany at every inline size: 6-11
// ns against 22-25 alone at 8-64 bytes, and ~40 ns less per op here (an 8-byte all-reduce of 2
// ranks took 0.24 µs with ReduceMany, 0.20 without).
func reduceInlined(op backends.Op, ob []byte, srcs [][]byte) error {
	if op.Reduce == tensor.Sum && op.DType == tensor.Float32 {
		tensor.SumFloat32Small(ob, srcs)
		return nil
	}
	return tensor.ReduceMany(op.Reduce, op.DType, ob, srcs...)
}

// reduce reduces ib over the group into ob on root (every rank when root < 0).
func (g *Group) reduce(ctx context.Context, op backends.Op, ib, ob []byte, root int) error {
	if len(ib) <= inlineMax {
		return g.reduceInline(ctx, op, ib, ob, root)
	}
	n, r, es := g.cfg.Size, g.cfg.Rank, op.DType.Size()
	srcs := g.srcList()
	w := g.writes.begin(writesReduce, len(ib), root <= 0)
	if len(ib) <= min(smallAllReduceBytes, g.seg.l.slotBytes) {
		b := g.nextBuf()
		w.copy(g.seg.slot(r, b), ib)
		if err := g.enterWriting(ctx, op, true, g.touchAllIfReading(b, len(ib), root), &w); err != nil {
			return err
		}
		if root >= 0 && r != root {
			return w.done(len(ib), nil)
		}
		for p := range srcs {
			srcs[p] = g.seg.slot(p, b)[:len(ib)]
		}
		return w.done(len(ib), tensor.ReduceMany(op.Reduce, op.DType, ob, srcs...))
	}
	// Past the caches, our share is reduced into ob, which needs it anyway, and copied from
	// there into the slot (a rooted reduce's other ranks have no ob: theirs goes to the slot).
	shareToOb := w.through && (root < 0 || r == root)
	err := pieces(len(ib), g.pieceSize(es, 1), func(off, pl int, first bool) error {
		b := g.nextBuf()
		mine := g.seg.slot(r, b)
		// The peers read the rest of the piece from our slot; our own share we read from ib.
		lo, hi := part(pl, n, r, es)
		w.copy(mine[:lo], ib[off:off+lo])
		w.copy(mine[hi:pl], ib[off+hi:off+pl])
		if err := g.enterWriting(ctx, op, first, touch{}, &w); err != nil {
			return err
		}
		for p := range srcs {
			srcs[p] = g.seg.slot(p, b)[lo:hi]
		}
		srcs[r] = ib[off+lo : off+hi]
		// Our share, reduced in rank order, into our own slot: only we read it there until the
		// next sync.
		if shareToOb {
			if err := tensor.ReduceMany(op.Reduce, op.DType, ob[off+lo:off+hi], srcs...); err != nil {
				return err
			}
			w.copy(mine[lo:hi], ob[off+lo:off+hi])
		} else if err := tensor.ReduceMany(op.Reduce, op.DType, mine[lo:hi], srcs...); err != nil {
			return err
		}
		if err := g.sync(ctx); err != nil {
			return err
		}
		if root >= 0 && r != root {
			return nil
		}
		for p := 0; p < n; p++ {
			if p == r && shareToOb {
				continue
			}
			plo, phi := part(pl, n, p, es)
			copy(ob[off+plo:off+phi], g.seg.slot(p, b)[plo:phi])
		}
		return nil
	})
	return w.done(len(ib), err)
}

// Broadcast: the root copies each piece into its slot, the others copy it out; up to inlineMax
// bytes go through the op spans instead (exchangeInline).
func (g *Group) Broadcast(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	return g.run(func() error {
		bb := buf.Bytes()
		if g.cfg.Size == 1 {
			return g.begin(ctx, op)
		}
		if len(bb) <= inlineMax {
			if g.cfg.Rank == op.Root {
				return g.exchangeInline(ctx, op, bb, false)
			}
			if err := g.exchangeInline(ctx, op, nil, len(bb) > headMax); err != nil {
				return err
			}
			copy(bb, g.inline(op.Root, len(bb)))
			return nil
		}
		if g.singleCopyFor(g.scLimits.move, len(bb)) {
			return g.broadcastSingleCopy(ctx, op, bb)
		}
		w := g.writes.begin(writesBroadcast, len(bb), op.Root != 0)
		err := pieces(len(bb), g.pieceSize(op.DType.Size(), 1), func(off, pl int, first bool) error {
			b := g.nextBuf()
			t := touchSlots(b, pl, op.Root) // the others read the root's slot
			if g.cfg.Rank == op.Root {
				w.copy(g.seg.slot(op.Root, b), bb[off:off+pl])
				t = touch{}
			}
			if err := g.enterWriting(ctx, op, first, t, &w); err != nil {
				return err
			}
			if g.cfg.Rank != op.Root {
				copy(bb[off:off+pl], g.seg.slot(op.Root, b))
			}
			return nil
		})
		return w.done(len(bb), err)
	})
}

// Reduce: like AllReduce, with only the root copying results out.
func (g *Group) Reduce(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(func() error {
		ib, ob := bytesOf(in), bytesOf(out)
		if g.cfg.Size == 1 {
			return g.alone(ctx, op, ib, ob)
		}
		return g.reduce(ctx, op, ib, ob, op.Root)
	})
}

// gather copies every rank's in into out (rank order) on root, or on every rank when root < 0.
func (g *Group) gather(ctx context.Context, op backends.Op, ib, ob []byte, root int) error {
	n, r, per := g.cfg.Size, g.cfg.Rank, len(ib)
	reads := root < 0 || r == root // this rank copies out (every rank, or the root)
	if per <= inlineMax {
		if err := g.exchangeInline(ctx, op, ib, reads && per > headMax); err != nil || !reads {
			return err
		}
		for p := 0; p < n; p++ {
			copy(ob[p*per:(p+1)*per], g.inline(p, per))
		}
		return nil
	}
	if g.singleCopyFor(g.scLimits.move, n*per) {
		return g.gatherSingleCopy(ctx, op, ib, ob, root)
	}
	w := g.writes.begin(writesGather, per, root <= 0)
	err := pieces(per, g.pieceSize(op.DType.Size(), 1), func(off, pl int, first bool) error {
		b := g.nextBuf()
		if reads { // its own part goes to the output as it goes to the slot
			w.tee(g.seg.slot(r, b), ob[r*per+off:r*per+off+pl], ib[off:off+pl])
		} else {
			w.copy(g.seg.slot(r, b), ib[off:off+pl])
		}
		if err := g.enterWriting(ctx, op, first, g.touchAllIfReading(b, pl, root), &w); err != nil {
			return err
		}
		if !reads {
			return nil
		}
		for p := 0; p < n; p++ {
			if p != r {
				copy(ob[p*per+off:p*per+off+pl], g.seg.slot(p, b))
			}
		}
		return nil
	})
	return w.done(per, err)
}

// AllGather: every rank copies its part in, then every part out (through the op spans up to
// inlineMax bytes a rank).
func (g *Group) AllGather(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(func() error {
		ib, ob := in.Bytes(), out.Bytes()
		if g.cfg.Size == 1 {
			return g.alone(ctx, op, ib, ob)
		}
		return g.gather(ctx, op, ib, ob, -1)
	})
}

// Gather: like AllGather, with only the root copying out.
func (g *Group) Gather(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(func() error {
		ib, ob := bytesOf(in), bytesOf(out)
		if g.cfg.Size == 1 {
			return g.alone(ctx, op, ib, ob)
		}
		return g.gather(ctx, op, ib, ob, op.Root)
	})
}

// Scatter: the root copies every other rank's part into a region of its slot, and its own
// straight to its output; each other rank copies its region out. Up to inlineMax bytes in all,
// the root's op span carries them (exchangeInline).
func (g *Group) Scatter(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(func() error {
		ib, ob := bytesOf(in), bytesOf(out)
		n, r, per := g.cfg.Size, g.cfg.Rank, len(ob)
		if g.cfg.Size == 1 {
			return g.alone(ctx, op, ib, ob)
		}
		if n*per <= inlineMax {
			var mine []byte // the root publishes every part, the others nothing
			if r == op.Root {
				mine = ib
			}
			if err := g.exchangeInline(ctx, op, mine, (r+1)*per > headMax); err != nil {
				return err
			}
			copy(ob, g.inline(op.Root, n*per)[r*per:])
			return nil
		}
		q := g.pieceSize(op.DType.Size(), n)
		return pieces(per, q, func(off, pl int, first bool) error {
			b := g.nextBuf()
			t := touchRegion(b, r*q, pl, op.Root)
			src := g.seg.slot(op.Root, b)[r*q : r*q+pl]
			if r == op.Root { // the others' parts into the slot, ours straight across
				slot := g.seg.slot(r, b)
				for p := 0; p < n; p++ {
					if p != r {
						copy(slot[p*q:p*q+pl], ib[p*per+off:p*per+off+pl])
					}
				}
				t, src = touch{}, ib[r*per+off:r*per+off+pl]
			}
			if err := g.enter(ctx, op, first, t); err != nil {
				return err
			}
			copy(ob[off:off+pl], src)
			return nil
		})
	})
}

// ReduceScatter: every rank copies its block for each other rank into a region of its slot; each
// rank reduces its region from every slot (its own block from its input), in rank order. An
// input of up to inlineMax bytes goes through the op spans instead (exchangeInline).
func (g *Group) ReduceScatter(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(func() error {
		ib, ob := in.Bytes(), out.Bytes()
		n, r, per := g.cfg.Size, g.cfg.Rank, len(ob)
		if g.cfg.Size == 1 {
			return g.alone(ctx, op, ib, ob)
		}
		srcs := g.srcList()
		if len(ib) <= inlineMax {
			if err := g.exchangeInline(ctx, op, ib, (r+1)*per > headMax); err != nil {
				return err
			}
			for p := range srcs {
				srcs[p] = g.inline(p, len(ib))[r*per : (r+1)*per]
			}
			return reduceInlined(op, ob, srcs)
		}
		q := g.pieceSize(op.DType.Size(), n)
		w := g.writes.begin(writesReduceScatter, len(ib), true)
		err := pieces(per, q, func(off, pl int, first bool) error {
			b := g.nextBuf()
			slot := g.seg.slot(r, b)
			for p := 0; p < n; p++ {
				if p != r { // our own block we reduce from ib
					w.copy(slot[p*q:p*q+pl], ib[p*per+off:p*per+off+pl])
				}
			}
			if err := g.enterWriting(ctx, op, first, touchRegion(b, r*q, pl, -1), &w); err != nil {
				return err
			}
			for p := range srcs {
				srcs[p] = g.seg.slot(p, b)[r*q : r*q+pl]
			}
			// In place, ob is exactly our block of ib: dst is then srcs[r] itself.
			srcs[r] = ib[r*per+off : r*per+off+pl]
			return tensor.ReduceMany(op.Reduce, op.DType, ob[off:off+pl], srcs...)
		})
		return w.done(len(ib), err)
	})
}

// AllToAll: every rank copies a piece of its block for each other rank into a region of its
// slot; each rank copies its region out of every other slot, and its own block straight across.
// The number of pieces follows the largest block any rank sends or receives, learned at the
// first sync. A tiny one goes through the op spans instead: a rank whose n blocks of its
// largest fit inline (inlineMax bytes) writes them there, before the first sync, and when n
// blocks of the largest of any rank fit, every rank has, and each reads its blocks there: one
// exchange of cache lines.
func (g *Group) AllToAll(ctx context.Context, op backends.Op, in, out *tensor.Tensor, inSplits, outSplits []int) error {
	return g.run(func() error {
		n, r, es := g.cfg.Size, g.cfg.Rank, op.DType.Size()
		ib, ob := in.Bytes(), out.Bytes()
		inOff, outOff := offsets(inSplits, es), offsets(outSplits, es)
		if g.cfg.Size == 1 {
			return g.alone(ctx, op, ib, ob)
		}
		largest := 0
		for p := 0; p < n; p++ {
			largest = max(largest, inOff[p+1]-inOff[p], outOff[p+1]-outOff[p])
		}
		q := g.pieceSize(es, n)
		clip := func(lo, hi, off int) (int, int) { // bytes [off, off+q) of block [lo, hi)
			a := min(lo+off, hi)
			return a, min(a+q, hi)
		}
		// Our block for ourselves goes straight to the output, not through the slots (all-to-all
		// never runs in place).
		copy(ob[outOff[r]:outOff[r+1]], ib[inOff[r]:inOff[r+1]])
		if n*largest <= inlineMax {
			spans := g.seg.line(r, g.opSeq+1).inline[:] // the next op's, which beginExtra starts
			for p := range n {
				copy(spans[p*largest:], ib[inOff[p]:inOff[p+1]])
			}
		}
		for k := 0; ; k++ {
			off := k * q
			b := g.nextBuf()
			slot := g.seg.slot(r, b)
			for p := 0; p < n; p++ {
				if p != r {
					lo, hi := clip(inOff[p], inOff[p+1], off)
					copy(slot[p*q:], ib[lo:hi])
				}
			}
			if k == 0 {
				all, err := g.beginExtra(ctx, op, opExtra{MaxBlock: int64(largest), Addr: splitCheck(r, inSplits, outSplits)})
				if err != nil {
					return err
				}
				var check uint64
				for _, e := range all {
					largest = max(largest, int(e.MaxBlock))
					check += e.Addr
				}
				if check != 0 {
					return fmt.Errorf("%w: the ranks' split sizes disagree: rank a's inSplits[b] must equal rank b's outSplits[a] for every pair", backends.ErrMismatch)
				}
				if n*largest <= inlineMax {
					for p, e := range all {
						if p != r {
							at := r * int(e.MaxBlock)
							copy(ob[outOff[p]:outOff[p+1]], g.inline(p, inlineMax)[at:])
						}
					}
					return nil
				}
			} else if err := g.sync(ctx); err != nil {
				return err
			}
			for p := 0; p < n; p++ {
				if p != r {
					lo, hi := clip(outOff[p], outOff[p+1], off)
					copy(ob[lo:hi], g.seg.slot(p, b)[r*q:r*q+hi-lo])
				}
			}
			if off+q >= largest {
				return nil
			}
		}
	})
}

// splitCheck is rank r's part of a sum over the group that is 0 when the ranks' splits agree:
// a hash of every block it sends (from r to p, inSplits[p] elements), less a hash of every
// block it expects (from p to r, outSplits[p]). Each block is added by its sender and taken
// away by its receiver, so any block whose two sides differ leaves the sum non-zero (but for a
// chance of 2^-64).
func splitCheck(r int, inSplits, outSplits []int) uint64 {
	var sum uint64
	for p := range inSplits {
		sum += blockHash(r, p, inSplits[p]) - blockHash(p, r, outSplits[p])
	}
	return sum
}

// blockHash mixes a block's sender, receiver and size.
func blockHash(from, to, n int) uint64 {
	return mix64(uint64(n) + mix64(uint64(to)+mix64(uint64(from))))
}

// mix64 is splitmix64's finalizer, a bijection that spreads every input bit over the output.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func offsets(splits []int, es int) []int {
	o := make([]int, len(splits)+1)
	for i, s := range splits {
		o[i+1] = o[i] + s*es
	}
	return o
}

// Barrier: one sync.
func (g *Group) Barrier(ctx context.Context, op backends.Op) error {
	return g.run(func() error { return g.begin(ctx, op) })
}
