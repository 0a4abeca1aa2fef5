package gloo

import (
	"context"
	"math/bits"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// Thresholds, picked by measurement (see BENCHMARKS.md).
var (
	// smallAllReduceBytes: at or below, all-reduce by recursive doubling (log2(n) exchanges of
	// the whole buffer); above, a pipelined ring (reduce-scatter then all-gather).
	smallAllReduceBytes = 256 << 10
	// smallGatherBytes: at or below, all-gather and reduce-scatter exchange directly with every
	// peer in one step; above, by ring.
	smallGatherBytes = 64 << 10
	// segmentBytes: large transfers are cut into segments so that reducing or forwarding one
	// segment overlaps with the transfer of the next.
	segmentBytes = 512 << 10
)

func sameMem(a, b []byte) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }

func (g *Group) reduceInto(op backends.Op, dst, src []byte) error {
	return tensor.ReduceInto(op.Reduce, op.DType, dst, src)
}

// segments cuts n bytes into pieces of at most segmentBytes, aligned to the element size.
func segments(n, elem int) [][2]int {
	seg := segmentBytes / elem * elem
	if n <= seg {
		return [][2]int{{0, n}}
	}
	out := make([][2]int, 0, (n+seg-1)/seg)
	for off := 0; off < n; off += seg {
		out = append(out, [2]int{off, min(off+seg, n)})
	}
	return out
}

// sendSegments posts buf to peer as segments of step.
func (g *Group) sendSegments(op backends.Op, step, peer int, buf []byte) []*sendReq {
	segs := segments(len(buf), op.DType.Size())
	out := make([]*sendReq, len(segs))
	for i, s := range segs {
		out[i] = g.eng.send(peer, collectiveHeader(op, step<<16|i, s[1]-s[0]), buf[s[0]:s[1]])
	}
	return out
}

// postSegments posts receives of step's segments from peer into buf.
func (g *Group) postSegments(op backends.Op, step, peer int, buf []byte) ([]*recvReq, [][2]int, error) {
	segs := segments(len(buf), op.DType.Size())
	reqs := make([]*recvReq, len(segs))
	for i, s := range segs {
		r, err := g.eng.recv(peer, collectiveHeader(op, step<<16|i, s[1]-s[0]), buf[s[0]:s[1]])
		if err != nil {
			return nil, nil, err
		}
		reqs[i] = r
	}
	return reqs, segs, nil
}

// land waits for each posted segment in order and calls each(i, lo, hi) as it lands.
func (g *Group) land(ctx context.Context, reqs []*recvReq, segs [][2]int, each func(i, lo, hi int) error) error {
	for i, r := range reqs {
		if err := g.eng.wait(ctx, g, func() bool { return r.done }); err != nil {
			return err
		}
		if each != nil {
			if err := each(i, segs[i][0], segs[i][1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// recvSegments posts receives of step's segments from peer into buf, and calls each(lo, hi) as
// each segment lands, in order.
func (g *Group) recvSegments(ctx context.Context, op backends.Op, step, peer int, buf []byte, each func(lo, hi int) error) error {
	reqs, segs, err := g.postSegments(op, step, peer, buf)
	if err != nil {
		return err
	}
	return g.land(ctx, reqs, segs, func(_, lo, hi int) error {
		if each == nil {
			return nil
		}
		return each(lo, hi)
	})
}

// sendSegment posts segment i of step (bytes [lo, hi) of buf) to peer.
func (g *Group) sendSegment(op backends.Op, step, i, peer int, seg []byte) *sendReq {
	return g.eng.send(peer, collectiveHeader(op, step<<16|i, len(seg)), seg)
}

// AllReduce: recursive doubling for small buffers; for large ones, recursive halving and
// doubling when the group size is a power of two (4 or more), else a pipelined ring. Every rank
// ends with bitwise the same result: each combination is commutative and, in the ring, each
// chunk is reduced once and then copied.
func (g *Group) AllReduce(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(op, func() error {
		ib, ob := in.Bytes(), out.Bytes()
		if !sameMem(ib, ob) {
			copy(ob, ib)
		}
		if g.cfg.Size == 1 {
			return nil
		}
		if len(ob) <= smallAllReduceBytes || op.Count < g.cfg.Size {
			return g.allReduceDoubling(ctx, op, ob)
		}
		n := g.cfg.Size
		if n >= 4 && n&(n-1) == 0 {
			return g.allReduceHalvingDoubling(ctx, op, ob)
		}
		bounds := chunkBounds(op.Count, g.cfg.Size, op.DType.Size())
		if err := g.ringReduceScatter(ctx, op, ob, bounds, ob[bounds[g.cfg.Rank]:bounds[g.cfg.Rank+1]], 0); err != nil {
			return err
		}
		return g.ringAllGather(ctx, op, ob, bounds, 1)
	})
}

// chunkBounds splits count elements into n nearly equal chunks; returns n+1 byte offsets.
func chunkBounds(count, n, elem int) []int {
	b := make([]int, n+1)
	base, extra := count/n, count%n
	for i := 0; i < n; i++ {
		c := base
		if i < extra {
			c++
		}
		b[i+1] = b[i] + c*elem
	}
	return b
}

// equalBounds is n chunks of size bytes each.
func equalBounds(n, size int) []int {
	b := make([]int, n+1)
	for i := range b {
		b[i] = i * size
	}
	return b
}

func (g *Group) allReduceDoubling(ctx context.Context, op backends.Op, buf []byte) error {
	n, r := g.cfg.Size, g.cfg.Rank
	p := 1 << (bits.Len(uint(n)) - 1) // largest power of two <= n
	rem := n - p
	logp := bits.Len(uint(p)) - 1
	tmp := g.tmp(len(buf))
	newRank := r - rem
	if r < 2*rem {
		if r%2 == 0 {
			if err := g.exchange(ctx, op, 0, r+1, buf, -1, nil); err != nil {
				return err
			}
			newRank = -1
		} else {
			if err := g.exchange(ctx, op, 0, -1, nil, r-1, tmp); err != nil {
				return err
			}
			if err := g.reduceInto(op, buf, tmp); err != nil {
				return err
			}
			newRank = r / 2
		}
	}
	if newRank >= 0 {
		for i := 0; i < logp; i++ {
			np := newRank ^ (1 << i)
			peer := np + rem
			if np < rem {
				peer = np*2 + 1
			}
			if err := g.exchange(ctx, op, 1+i, peer, buf, peer, tmp); err != nil {
				return err
			}
			if err := g.reduceInto(op, buf, tmp); err != nil {
				return err
			}
		}
	}
	if r < 2*rem {
		if r%2 == 0 {
			return g.exchange(ctx, op, 1+logp, -1, nil, r+1, buf)
		}
		return g.exchange(ctx, op, 1+logp, r-1, buf, -1, nil)
	}
	return nil
}

// allReduceHalvingDoubling is Rabenseifner's all-reduce for a power-of-two group: a
// reduce-scatter by recursive halving (each step trades half of the range still held with the
// partner at distance n/2, n/4, ...), then an all-gather by recursive doubling. It moves the same
// bytes as the ring in 2*log2(n) dependent steps instead of 2*(n-1), which matters when ranks
// share cores and every step waits for a peer to be scheduled. Each chunk is reduced by one rank
// only, so every rank ends with the same bits.
func (g *Group) allReduceHalvingDoubling(ctx context.Context, op backends.Op, buf []byte) error {
	n, r := g.cfg.Size, g.cfg.Rank
	b := chunkBounds(op.Count, n, op.DType.Size())
	type stage struct {
		partner                int
		keepLo, keepHi, giveLo int
		giveHi                 int
	}
	// Plan both halves, then post every receive before sending anything: a partner that runs
	// ahead then lands its data in place instead of in the unexpected queue. This is safe: a
	// partner sends step k+1 only after our step-k data reached it.
	var halving []stage
	lo, hi := 0, n
	for mask := n / 2; mask >= 1; mask /= 2 {
		mid := (lo + hi) / 2
		st := stage{partner: r ^ mask, keepLo: lo, keepHi: mid, giveLo: mid, giveHi: hi}
		if r&mask != 0 {
			st = stage{partner: r ^ mask, keepLo: mid, keepHi: hi, giveLo: lo, giveHi: mid}
		}
		halving = append(halving, st)
		lo, hi = st.keepLo, st.keepHi
	}
	type gather struct{ partner, lo, hi, plo, phi int }
	var doubling []gather
	for mask := 1; mask < n; mask *= 2 {
		size := hi - lo
		plo := hi
		if r&mask != 0 {
			plo = lo - size
		}
		doubling = append(doubling, gather{partner: r ^ mask, lo: lo, hi: hi, plo: plo, phi: plo + size})
		lo, hi = min(lo, plo), max(hi, plo+size)
	}
	total := 0
	for _, st := range halving {
		total += b[st.keepHi] - b[st.keepLo]
	}
	scratch := g.tmp(total)
	type posted struct {
		reqs []*recvReq
		segs [][2]int
		buf  []byte
	}
	rs := make([]posted, len(halving))
	off := 0
	for k, st := range halving {
		p := &rs[k]
		p.buf = scratch[off : off+b[st.keepHi]-b[st.keepLo]]
		off += len(p.buf)
		var err error
		if p.reqs, p.segs, err = g.postSegments(op, 2<<8|k, st.partner, p.buf); err != nil {
			return err
		}
	}
	ag := make([]posted, len(doubling))
	for k, d := range doubling {
		p := &ag[k]
		p.buf = buf[b[d.plo]:b[d.phi]]
		var err error
		if p.reqs, p.segs, err = g.postSegments(op, 3<<8|k, d.partner, p.buf); err != nil {
			return err
		}
	}
	var sends []*sendReq
	for k, st := range halving {
		sends = append(sends, g.sendSegments(op, 2<<8|k, st.partner, buf[b[st.giveLo]:b[st.giveHi]])...)
		keep, tmp := buf[b[st.keepLo]:b[st.keepHi]], rs[k].buf
		err := g.land(ctx, rs[k].reqs, rs[k].segs, func(_, l, h int) error {
			return g.reduceInto(op, keep[l:h], tmp[l:h])
		})
		if err != nil {
			return err
		}
	}
	for k, d := range doubling {
		sends = append(sends, g.sendSegments(op, 3<<8|k, d.partner, buf[b[d.lo]:b[d.hi]])...)
		if err := g.land(ctx, ag[k].reqs, ag[k].segs, nil); err != nil {
			return err
		}
	}
	return g.waitAll(ctx, sends, nil)
}

// ringReduceScatter reduces chunk i (src[bounds[i]:bounds[i+1]]) over all ranks and leaves
// chunk `rank` in dst. src is not modified unless dst aliases its own chunk. Every step's
// receives are posted up front, each in its own scratch region, and each segment is reduced and
// forwarded to the next rank as soon as it lands, so consecutive steps overlap.
func (g *Group) ringReduceScatter(ctx context.Context, op backends.Op, src []byte, bounds []int, dst []byte, phase int) error {
	n, r := g.cfg.Size, g.cfg.Rank
	next, prev := (r+1)%n, (r-1+n)%n
	chunk := func(i int) []byte {
		i = ((i % n) + n) % n
		return src[bounds[i]:bounds[i+1]]
	}
	// Step s receives the partial result of chunk r-2-s.
	total := 0
	for s := 0; s <= n-2; s++ {
		total += len(chunk(r - 2 - s))
	}
	scratch := g.tmp(total)
	bufs := make([][]byte, n-1)
	reqs := make([][]*recvReq, n-1)
	segs := make([][][2]int, n-1)
	off := 0
	for s := 0; s <= n-2; s++ {
		bufs[s] = scratch[off : off+len(chunk(r-2-s))]
		off += len(bufs[s])
		var err error
		if reqs[s], segs[s], err = g.postSegments(op, phase<<8|s, prev, bufs[s]); err != nil {
			return err
		}
	}
	sends := g.sendSegments(op, phase<<8, next, chunk(r-1))
	for s := 0; s <= n-2; s++ {
		c, rb := chunk(r-2-s), bufs[s]
		err := g.land(ctx, reqs[s], segs[s], func(i, lo, hi int) error {
			if err := g.reduceInto(op, rb[lo:hi], c[lo:hi]); err != nil {
				return err
			}
			if s < n-2 {
				sends = append(sends, g.sendSegment(op, phase<<8|(s+1), i, next, rb[lo:hi]))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := g.waitAll(ctx, sends, nil); err != nil {
		return err
	}
	copy(dst, bufs[n-2])
	return nil
}

// ringAllGather: rank r holds chunk r of buf; afterwards every rank holds every chunk. Every
// step's receive is posted up front, straight into its chunk, and each segment is forwarded to
// the next rank as soon as it lands.
func (g *Group) ringAllGather(ctx context.Context, op backends.Op, buf []byte, bounds []int, phase int) error {
	n, r := g.cfg.Size, g.cfg.Rank
	next, prev := (r+1)%n, (r-1+n)%n
	chunk := func(i int) []byte {
		i = ((i % n) + n) % n
		return buf[bounds[i]:bounds[i+1]]
	}
	reqs := make([][]*recvReq, n-1)
	segs := make([][][2]int, n-1)
	for s := 0; s <= n-2; s++ {
		var err error
		if reqs[s], segs[s], err = g.postSegments(op, phase<<8|s, prev, chunk(r-s-1)); err != nil {
			return err
		}
	}
	sends := g.sendSegments(op, phase<<8, next, chunk(r))
	for s := 0; s <= n-2; s++ {
		c := chunk(r - s - 1)
		err := g.land(ctx, reqs[s], segs[s], func(i, lo, hi int) error {
			if s < n-2 {
				sends = append(sends, g.sendSegment(op, phase<<8|(s+1), i, next, c[lo:hi]))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return g.waitAll(ctx, sends, nil)
}

// Broadcast: pipelined binomial tree; each segment is forwarded to the children as it lands.
func (g *Group) Broadcast(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	return g.run(op, func() error {
		n := g.cfg.Size
		if n == 1 {
			return nil
		}
		b := buf.Bytes()
		vr := (g.cfg.Rank - op.Root + n) % n
		abs := func(v int) int { return (v + op.Root) % n }
		mask := 1
		parent := -1
		for mask < n {
			if vr&mask != 0 {
				parent = abs(vr - mask)
				break
			}
			mask <<= 1
		}
		var children []int // (rank, step)
		for m := mask >> 1; m > 0; m >>= 1 {
			if vr+m < n {
				children = append(children, abs(vr+m), bits.Len(uint(m))-1)
			}
		}
		var sends []*sendReq
		forward := func(lo, hi int) error {
			for i := 0; i < len(children); i += 2 {
				step := children[i+1]<<16 | lo/max(1, segmentBytes/op.DType.Size()*op.DType.Size())
				sends = append(sends, g.eng.send(children[i], collectiveHeader(op, step, hi-lo), b[lo:hi]))
			}
			return nil
		}
		if parent >= 0 {
			if err := g.recvSegments(ctx, op, bits.Len(uint(mask))-1, parent, b, forward); err != nil {
				return err
			}
		} else {
			for _, s := range segments(len(b), op.DType.Size()) {
				_ = forward(s[0], s[1])
			}
		}
		return g.waitAll(ctx, sends, nil)
	})
}

// Reduce: binomial tree towards the root; children's contributions are reduced as they land.
func (g *Group) Reduce(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(op, func() error {
		n, r := g.cfg.Size, g.cfg.Rank
		ib := in.Bytes()
		var acc []byte
		if r == op.Root {
			acc = out.Bytes()
			if !sameMem(acc, ib) {
				copy(acc, ib)
			}
		}
		if n == 1 {
			return nil
		}
		scratch := g.tmp(2 * len(ib))
		if acc == nil {
			acc = scratch[:len(ib)]
			copy(acc, ib)
		}
		recvBuf := scratch[len(ib):]
		vr := (r - op.Root + n) % n
		abs := func(v int) int { return (v + op.Root) % n }
		for mask := 1; mask < n; mask <<= 1 {
			step := bits.Len(uint(mask)) - 1
			if vr&mask != 0 {
				return g.waitAll(ctx, g.sendSegments(op, step, abs(vr-mask), acc), nil)
			}
			if vr+mask < n {
				err := g.recvSegments(ctx, op, step, abs(vr+mask), recvBuf, func(lo, hi int) error {
					return g.reduceInto(op, acc[lo:hi], recvBuf[lo:hi])
				})
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// AllGather: one direct exchange with every peer for small buffers, a pipelined ring for large.
func (g *Group) AllGather(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(op, func() error {
		n, r := g.cfg.Size, g.cfg.Rank
		ib, ob := in.Bytes(), out.Bytes()
		per := len(ib)
		if dst := ob[r*per : (r+1)*per]; !sameMem(dst, ib) {
			copy(dst, ib)
		}
		if n == 1 {
			return nil
		}
		if len(ob) > smallGatherBytes {
			return g.ringAllGather(ctx, op, ob, equalBounds(n, per), 0)
		}
		return g.exchangeAll(ctx, op,
			func(int) []byte { return ib },
			func(from int) []byte { return ob[from*per : (from+1)*per] })
	})
}

// exchangeAll sends sendTo(p) to and receives recvFrom(p) from every peer p at once, in one
// step, visiting peers in the order r+1, r+2, ... so that ranks do not all hit the same one.
func (g *Group) exchangeAll(ctx context.Context, op backends.Op, sendTo, recvFrom func(peer int) []byte) error {
	n, r := g.cfg.Size, g.cfg.Rank
	sends := make([]*sendReq, 0, n-1)
	recvs := make([]*recvReq, 0, n-1)
	for s := 1; s < n; s++ {
		to, from := (r+s)%n, (r-s+n)%n
		sb := sendTo(to)
		sends = append(sends, g.eng.send(to, collectiveHeader(op, 0, len(sb)), sb))
		rb := recvFrom(from)
		rr, err := g.eng.recv(from, collectiveHeader(op, 0, len(rb)), rb)
		if err != nil {
			return err
		}
		recvs = append(recvs, rr)
	}
	return g.waitAll(ctx, sends, recvs)
}

// Gather: every rank sends to the root directly.
func (g *Group) Gather(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(op, func() error {
		n, r := g.cfg.Size, g.cfg.Rank
		ib := in.Bytes()
		per := len(ib)
		if r != op.Root {
			return g.waitAll(ctx, g.sendSegments(op, 0, op.Root, ib), nil)
		}
		ob := out.Bytes()
		if dst := ob[r*per : (r+1)*per]; !sameMem(dst, ib) {
			copy(dst, ib)
		}
		var recvs []*recvReq
		for p := 0; p < n; p++ {
			if p == r {
				continue
			}
			buf := ob[p*per : (p+1)*per]
			for i, s := range segments(per, op.DType.Size()) {
				rr, err := g.eng.recv(p, collectiveHeader(op, i, s[1]-s[0]), buf[s[0]:s[1]])
				if err != nil {
					return err
				}
				recvs = append(recvs, rr)
			}
		}
		return g.waitAll(ctx, nil, recvs)
	})
}

// Scatter: the root sends each rank its slot directly.
func (g *Group) Scatter(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(op, func() error {
		n, r := g.cfg.Size, g.cfg.Rank
		ob := out.Bytes()
		per := len(ob)
		if r != op.Root {
			return g.recvSegments(ctx, op, 0, op.Root, ob, nil)
		}
		ib := in.Bytes()
		if src := ib[r*per : (r+1)*per]; !sameMem(src, ob) {
			copy(ob, src)
		}
		var sends []*sendReq
		for s := 1; s < n; s++ {
			p := (r + s) % n
			sends = append(sends, g.sendSegments(op, 0, p, ib[p*per:(p+1)*per])...)
		}
		return g.waitAll(ctx, sends, nil)
	})
}

// ReduceScatter: direct exchange and a reduction in rank order for small buffers, pipelined ring
// for large ones.
func (g *Group) ReduceScatter(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(op, func() error {
		n, r := g.cfg.Size, g.cfg.Rank
		ib, ob := in.Bytes(), out.Bytes()
		per := len(ob)
		if n == 1 {
			if !sameMem(ob, ib) {
				copy(ob, ib)
			}
			return nil
		}
		if len(ib) > smallGatherBytes {
			return g.ringReduceScatter(ctx, op, ib, equalBounds(n, per), ob, 0)
		}
		// Direct: receive every peer's slot r, then reduce in rank order.
		slots := g.tmp(n * per)
		copy(slots[r*per:(r+1)*per], ib[r*per:(r+1)*per])
		err := g.exchangeAll(ctx, op,
			func(to int) []byte { return ib[to*per : (to+1)*per] },
			func(from int) []byte { return slots[from*per : (from+1)*per] })
		if err != nil {
			return err
		}
		for p := 1; p < n; p++ {
			if err := g.reduceInto(op, slots[:per], slots[p*per:(p+1)*per]); err != nil {
				return err
			}
		}
		copy(ob, slots[:per])
		return nil
	})
}

// AllToAll: every pair exchanges its blocks directly; all transfers are in flight at once.
func (g *Group) AllToAll(ctx context.Context, op backends.Op, in, out *tensor.Tensor, inSplits, outSplits []int) error {
	return g.run(op, func() error {
		r := g.cfg.Rank
		es := op.DType.Size()
		ib, ob := in.Bytes(), out.Bytes()
		inOff, outOff := offsets(inSplits, es), offsets(outSplits, es)
		own := ib[inOff[r]:inOff[r+1]]
		if dst := ob[outOff[r]:outOff[r+1]]; !sameMem(dst, own) {
			copy(dst, own)
		}
		return g.exchangeAll(ctx, op,
			func(to int) []byte { return ib[inOff[to]:inOff[to+1]] },
			func(from int) []byte { return ob[outOff[from]:outOff[from+1]] })
	})
}

func offsets(splits []int, es int) []int {
	o := make([]int, len(splits)+1)
	for i, s := range splits {
		o[i+1] = o[i] + s*es
	}
	return o
}

// Barrier: dissemination, ceil(log2(n)) rounds of empty messages.
func (g *Group) Barrier(ctx context.Context, op backends.Op) error {
	return g.run(op, func() error {
		n, r := g.cfg.Size, g.cfg.Rank
		for k, step := 1, 0; k < n; k, step = k<<1, step+1 {
			if err := g.exchange(ctx, op, step, (r+k)%n, nil, (r-k+n)%n, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// Send writes a tagged message to the peer; it returns once buf may be reused.
func (g *Group) Send(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	return g.run(op, func() error {
		return g.waitAll(ctx, []*sendReq{g.postSend(op, buf)}, nil)
	})
}

// postSend queues a tagged message to op.Peer in the engine.
func (g *Group) postSend(op backends.Op, buf *tensor.Tensor) *sendReq {
	h := header{Kind: msgP2P, Op: backends.OpSend, DType: op.DType, Tag: int64(op.Tag), Count: int64(op.Count)}
	return g.eng.send(op.Peer, h, buf.Bytes())
}

// postRecv posts a receive of the next message from op.Peer with op.Tag into buf.
func (g *Group) postRecv(op backends.Op, buf *tensor.Tensor) (*recvReq, error) {
	return g.eng.recv(op.Peer, header{Kind: msgP2P, Tag: int64(op.Tag), DType: op.DType}, buf.Bytes())
}

// Recv receives the next message from the peer with the op's tag.
func (g *Group) Recv(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	return g.run(op, func() error {
		r, err := g.postRecv(op, buf)
		if err != nil {
			return err
		}
		return g.waitAll(ctx, nil, []*recvReq{r})
	})
}

// SendRecv posts every send and receive of ops, then moves them all together
// (backends.BatchSendRecver): a message lands in its receive's buffer as it arrives, and sends
// to one peer, or receives from one, keep their order.
func (g *Group) SendRecv(ctx context.Context, ops []backends.P2P) error {
	largest := 0
	for _, p := range ops {
		largest = max(largest, p.Buf.NBytes())
	}
	run := backends.Op{Kind: backends.OpSendRecvBatch, DType: tensor.Uint8, Count: largest}
	if len(ops) > 0 {
		run.Seq = ops[0].Op.Seq
	}
	return g.run(run, func() error {
		var sends []*sendReq
		var recvs []*recvReq
		for _, p := range ops {
			if p.Op.Kind == backends.OpSend {
				sends = append(sends, g.postSend(p.Op, p.Buf))
				continue
			}
			r, err := g.postRecv(p.Op, p.Buf)
			if err != nil {
				return err
			}
			recvs = append(recvs, r)
		}
		return g.waitAll(ctx, sends, recvs)
	})
}
