package shm

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// Point-to-point messages travel through a mailbox per ordered pair of ranks: a ring buffer
// read as a byte stream (a header, then the payload), with a head counter the sender advances
// and a tail counter the receiver advances, and a box of slots for small messages (p2pbox.go).
// Messages longer than the ring stream through it. A receiver matches messages by tag; a
// message with another tag is read into a private queue.
// A sender that finds the ring full drains every incoming ring meanwhile, so ranks sending to
// each other at once (a pair, or a ring of ranks) never deadlock.
//
// A batch's message longer than the ring goes single-copy when its receiver can read the sender's
// memory (probed at setup, published in the receiver's ctrlReads): the sender puts only a header
// with its buffer's address in the ring, and its send is done once the receiver counts the
// message read (mailboxReads). The receiver reads it with process_vm_readv straight into the
// posted receive, or into the queue if none is posted yet. A plain Send streams through the ring:
// when both ranks send at once, each reads the other's message into its queue, and reading it in
// place there was slower than the ring (BENCHMARKS.md, the seventeenth session).

// A message's header in the ring: magic, sequence number (low 32 bits), tag, size and dtype
// (sizeWord), and (single-copy) the sender's address.
const (
	p2pHeader = 32
	p2pMagic  = 0x50325047 // "GP2P"
	p2pRemote = 0x52325047 // "GP2R": a single-copy message, the sender's address at offset 24
)

// p2pMsg is a message read before its receive was posted.
type p2pMsg struct {
	tag   int64
	dtype tensor.DType
	data  []byte
}

// sizeWord packs a message's size (bytes, below 2^56) and dtype into one header word.
func sizeWord(n int, dt tensor.DType) uint64 { return uint64(n) | uint64(dt)<<56 }

// fromSizeWord unpacks sizeWord.
func fromSizeWord(w uint64) (int, tensor.DType) { return int(w & (1<<56 - 1)), tensor.DType(w >> 56) }

// spareMax is the largest queue buffer a mailbox's receive side keeps for the next unexpected
// message.
const spareMax = 16 << 20

// rxState is the receive side of one incoming mailbox.
type rxState struct {
	queued []*p2pMsg
	// spare: a queue buffer handed back by a receive, for the next unexpected message. Ranks
	// that send to each other at once (sendrecv) queue every message longer than the ring, and
	// a fresh buffer each time cost its zeroing and the garbage collector's time.
	spare []byte
	hdr   [p2pHeader]byte
	hdrN  int
	// the message being read: into dst, the buffer of the receive wants[match] of the running
	// op's (match >= 0), or into an unexpected message
	inMsg bool
	tag   int64
	dst   []byte
	got   int
	unexp *p2pMsg
	match int
	// messages taken from this peer (through the box or the ring), box slots read, and box
	// slots handed back
	taken, boxNext, boxFreed uint64
}

// p2pRecv is a posted receive: the next message from its peer with its tag lands in buf, which
// holds elements of dtype.
type p2pRecv struct {
	tag   int64
	dtype tensor.DType
	buf   []byte
	done  bool
}

// p2pSend is a send in progress: its header, then its payload, go into the mailbox to peer; or,
// single-copy (reads not nil), its header only, and it is done once *reads reaches readsWant.
type p2pSend struct {
	peer      int
	hdr       [p2pHeader]byte
	payload   []byte
	sent      int
	reads     *uint64
	readsWant uint64
}

// newSend starts a send of buf to op.Peer: single-copy if remote allows it (a batch's send) and
// sendsRemote says so.
func (g *Group) newSend(op backends.Op, buf *tensor.Tensor, remote bool) p2pSend {
	s := p2pSend{peer: op.Peer, payload: buf.Bytes()}
	binary.LittleEndian.PutUint32(s.hdr[0:], p2pMagic)
	binary.LittleEndian.PutUint64(s.hdr[8:], uint64(op.Tag))
	binary.LittleEndian.PutUint64(s.hdr[16:], sizeWord(len(s.payload), op.DType))
	if remote && g.sendsRemote(op.Peer, len(s.payload)) {
		binary.LittleEndian.PutUint32(s.hdr[0:], p2pRemote)
		binary.LittleEndian.PutUint64(s.hdr[24:], uint64(uintptr(unsafe.Pointer(&s.payload[0]))))
		g.p2p.remoteSent[op.Peer]++
		s.reads, s.readsWant = g.seg.mailboxReads(g.cfg.Rank, op.Peer), g.p2p.remoteSent[op.Peer]
	}
	return s
}

func (s *p2pSend) done() bool {
	if s.reads != nil {
		return s.sent == p2pHeader && atomic.LoadUint64(s.reads) >= s.readsWant
	}
	return s.sent == p2pHeader+len(s.payload)
}

// sendSleeper sleeps until s can move: room in the ring, or its single-copy message read.
func (g *Group) sendSleeper(s *p2pSend) sleeper {
	if s.reads != nil && s.sent == p2pHeader {
		return sleeper{word: s.reads, phase: s.readsWant, sleepers: g.seg.sleepers(s.peer)}
	}
	return g.ringSpace(s.peer)
}

type p2pState struct {
	rx []rxState
	// tails[p]: the tail of the mailbox to p as this rank last read it (it only grows)
	tails []uint64
	batch p2pBatch // the running SendRecv's, kept for its buffers
	// remoteSent[p]: single-copy messages this rank has sent to p; remoteMin: the size from
	// which a message goes single-copy (0: never)
	remoteSent []uint64
	remoteMin  int
	// by peer: messages sent (the last one's sequence number), box slots written, and box slots
	// the peer had read when this rank last looked
	sent, boxSent, boxTails []uint64
}

// init sets up the p2p state of a group of n with mailboxes of mailboxBytes. A batch's messages
// that do not fit a mailbox go single-copy where they can (those that fit are written whole, and
// their send returns before the receiver takes them, which programs may rely on);
// GCCL_SHM_P2P_SINGLE_COPY_BYTES sets another size from which they do (0: never).
func (s *p2pState) init(n, mailboxBytes int) {
	s.rx, s.tails, s.remoteSent = make([]rxState, n), make([]uint64, n), make([]uint64, n)
	s.sent, s.boxSent, s.boxTails = make([]uint64, n), make([]uint64, n), make([]uint64, n)
	s.remoteMin = mailboxBytes - p2pHeader + 1
	if v, err := strconv.Atoi(os.Getenv("GCCL_SHM_P2P_SINGLE_COPY_BYTES")); err == nil && v >= 0 {
		s.remoteMin = v
	}
}

// sendsRemote reports whether a message of n bytes to peer goes single-copy.
func (g *Group) sendsRemote(peer, n int) bool {
	least := g.p2p.remoteMin
	return least > 0 && n >= least && g.cfg.Rank < 64 &&
		atomic.LoadUint64(g.seg.ctrl(peer, ctrlReads))&(1<<g.cfg.Rank) != 0
}

// room returns the free bytes of the mailbox to dst, whose head is h, counted from the tail as
// this rank last read it, and reads the tail again only when that leaves less than need: the
// tail is on a line the receiver writes, so reading it moves the line between the cores.
func (g *Group) room(dst, need int, h uint64, tail *uint64, size int) int {
	if free := size - int(h-g.p2p.tails[dst]); free >= need {
		return free
	}
	g.p2p.tails[dst] = atomic.LoadUint64(tail)
	return size - int(h-g.p2p.tails[dst])
}

// ringWrite copies as much of parts, in order, as fits into the mailbox to dst, publishes it at
// once (a message's header and payload with one move of the head), and returns how much.
func (g *Group) ringWrite(dst int, parts ...[]byte) int {
	head, tail, data := g.seg.mailbox(g.cfg.Rank, dst)
	h := atomic.LoadUint64(head)
	want := 0
	for _, b := range parts {
		want += len(b)
	}
	free, n := g.room(dst, want, h, tail, len(data)), 0
	for _, b := range parts {
		k := min(free-n, len(b))
		if k <= 0 {
			break
		}
		pos := int((h + uint64(n)) % uint64(len(data)))
		c := copy(data[pos:], b[:k])
		copy(data, b[c:k])
		n += k
	}
	if n == 0 {
		return 0
	}
	atomic.StoreUint64(head, h+uint64(n))
	wakeSleepers(head, g.sleepers)
	return n
}

// ringReader reads the mailbox from src to this rank: it looks at the head once and reads what
// was there, looks again only when that is used up, and hands what it read back to the sender
// (moves the tail) only then or at free. So a message whose header and payload came together
// costs the receiver one look at the head and one move of the tail.
type ringReader struct {
	head, tail *uint64
	data       []byte
	h, t, t0   uint64 // the head as last seen, the bytes read up to, the tail as last moved
}

func (g *Group) ringReader(src int) ringReader {
	head, tail, data := g.seg.mailbox(src, g.cfg.Rank)
	t := atomic.LoadUint64(tail)
	return ringReader{head: head, tail: tail, data: data, h: atomic.LoadUint64(head), t: t, t0: t}
}

// read copies up to len(b) bytes and returns how many.
func (r *ringReader) read(g *Group, b []byte) int {
	if r.h == r.t {
		r.free(g)
		r.h = atomic.LoadUint64(r.head)
	}
	n := min(int(r.h-r.t), len(b))
	if n <= 0 {
		return 0
	}
	pos := int(r.t % uint64(len(r.data)))
	k := copy(b[:n], r.data[pos:])
	copy(b[k:n], r.data)
	r.t += uint64(n)
	return n
}

// free hands the bytes read so far back to the sender.
func (r *ringReader) free(g *Group) {
	if r.t != r.t0 {
		atomic.StoreUint64(r.tail, r.t)
		wakeSleepers(r.tail, g.sleepers)
		r.t0 = r.t
	}
}

// ringData sleeps until src sends this rank more: between messages, until src counts the next
// message sent (through the box or the ring); inside a message, until the mailbox's head passes
// the tail, which only this rank moves.
func (g *Group) ringData(src int) sleeper {
	if rx := &g.p2p.rx[src]; !rx.inMsg && rx.hdrN == 0 {
		return sleeper{word: g.seg.mailboxSent(src, g.cfg.Rank), phase: rx.taken + 1, sleepers: g.seg.sleepers(src)}
	}
	head, tail, _ := g.seg.mailbox(src, g.cfg.Rank)
	return sleeper{word: head, phase: atomic.LoadUint64(tail) + 1, sleepers: g.seg.sleepers(src)}
}

// ringSpace sleeps until the mailbox this rank->dst has a free byte: its tail passes the head,
// which only this rank moves, less the ring's length.
func (g *Group) ringSpace(dst int) sleeper {
	head, tail, data := g.seg.mailbox(g.cfg.Rank, dst)
	return sleeper{word: tail, phase: atomic.LoadUint64(head) - uint64(len(data)) + 1, sleepers: g.seg.sleepers(dst)}
}

// pull reads what src's mailbox holds, in the order src sent it (box and ring). A message lands
// in the buffer of the first receive of wants (receives from src) not done that has its tag,
// unless an older message with that tag waits in the queue; any other message goes to the
// queue. It returns once nothing is left, or once every receive of wants is done (if there is
// one), and reports whether bytes moved.
func (g *Group) pull(src int, wants []p2pRecv) (bool, error) {
	// Not deferred: pull runs on every turn of a wait, and a function with as many returns as
	// pullFrom cannot have its defers inlined.
	r := g.ringReader(src)
	moved, err := g.pullFrom(&r, src, wants)
	r.free(g)
	g.boxFree(src)
	return moved, err
}

// pullFrom is pull's loop, reading the ring through r.
func (g *Group) pullFrom(r *ringReader, src int, wants []p2pRecv) (bool, error) {
	rx := &g.p2p.rx[src]
	moved := false
	for {
		if !rx.inMsg && rx.hdrN == 0 {
			took, matched, err := g.boxTake(src, wants)
			if err != nil {
				return true, err
			}
			if took {
				moved = true
				if matched && allDone(wants) {
					return moved, nil
				}
				continue
			}
		}
		if !rx.inMsg {
			k := r.read(g, rx.hdr[rx.hdrN:])
			if k == 0 {
				return moved, nil
			}
			moved = true
			rx.hdrN += k
			if rx.hdrN < p2pHeader {
				continue
			}
			rx.hdrN = 0
			magic := binary.LittleEndian.Uint32(rx.hdr[0:])
			if magic != p2pMagic && magic != p2pRemote {
				return moved, fmt.Errorf("corrupt mailbox from rank %d", src)
			}
			// The messages src sent before this one went through the box, and are there now.
			for seq := binary.LittleEndian.Uint32(rx.hdr[4:]); uint32(rx.taken+1) != seq; {
				took, _, err := g.boxTake(src, wants)
				if err != nil {
					return moved, err
				}
				if !took {
					return moved, fmt.Errorf("corrupt mailbox from rank %d: message %d is in the ring but %d is not in the box", src, seq, uint32(rx.taken+1))
				}
			}
			rx.taken++
			tag := int64(binary.LittleEndian.Uint64(rx.hdr[8:]))
			size, dtype := fromSizeWord(binary.LittleEndian.Uint64(rx.hdr[16:]))
			rx.inMsg, rx.tag, rx.got, rx.match = true, tag, 0, rx.matching(tag, wants)
			if rx.match >= 0 {
				if err := p2pMismatch(src, size, dtype, tag, &wants[rx.match]); err != nil {
					return moved, err
				}
				rx.dst, rx.unexp = wants[rx.match].buf, nil
			} else {
				rx.unexp = &p2pMsg{tag: tag, dtype: dtype, data: rx.buffer(size)}
				rx.dst = rx.unexp.data
			}
			if magic == p2pRemote {
				if err := g.readMessage(src, rx.dst); err != nil {
					return moved, err
				}
				rx.got = len(rx.dst)
			}
		}
		if rx.got < len(rx.dst) {
			k := r.read(g, rx.dst[rx.got:])
			if k == 0 {
				return moved, nil
			}
			moved = true
			rx.got += k
			if rx.got < len(rx.dst) {
				continue
			}
		}
		rx.inMsg = false
		if rx.match >= 0 {
			wants[rx.match].done = true
			if allDone(wants) {
				return moved, nil
			}
			continue
		}
		rx.queued = append(rx.queued, rx.unexp)
		rx.unexp = nil
	}
}

// readMessage reads src's single-copy message (its header is in rx.hdr) into dst, and counts it
// read, which lets src's send finish. A sender that aborted meanwhile may have returned, and its
// buffer hold something else by now: then the read fails with src's abort.
func (g *Group) readMessage(src int, dst []byte) error {
	addr := uintptr(binary.LittleEndian.Uint64(g.p2p.rx[src].hdr[24:]))
	if err := readRemote(g.pids[src], addr, dst); err != nil {
		return g.remoteErr(src, err)
	}
	if w := atomic.LoadUint64(g.seg.ctrl(src, ctrlAbort)); w != 0 {
		return g.peerAbort(src, w)
	}
	reads := g.seg.mailboxReads(src, g.cfg.Rank)
	atomic.AddUint64(reads, 1)
	wakeSleepers(reads, g.sleepers)
	return nil
}

// takeQueued fills, from the messages queued from src, the receives of wants (from src) not
// done whose tag has one: each the oldest left with its tag.
func (g *Group) takeQueued(src int, wants []p2pRecv) error {
	rx := &g.p2p.rx[src]
	for i := range wants {
		w := &wants[i]
		if w.done || len(rx.queued) == 0 {
			continue
		}
		for j, m := range rx.queued {
			if m.tag != w.tag {
				continue
			}
			if err := p2pMismatch(src, len(m.data), m.dtype, m.tag, w); err != nil {
				return err
			}
			copy(w.buf, m.data)
			rx.queued = append(rx.queued[:j], rx.queued[j+1:]...)
			rx.recycle(m.data)
			w.done = true
			break
		}
	}
	return nil
}

// p2pMismatch is the error for a message from src (size bytes of dtype, with tag) that receive w
// matched by tag but cannot take: another size or dtype.
func p2pMismatch(src, size int, dtype tensor.DType, tag int64, w *p2pRecv) error {
	if size == len(w.buf) && dtype == w.dtype {
		return nil
	}
	return fmt.Errorf("%w: rank %d sent %d bytes of %s with tag %d, this rank receives %d bytes of %s: post a receive of the size and dtype sent",
		backends.ErrMismatch, src, size, dtype, tag, len(w.buf), w.dtype)
}

func allDone(wants []p2pRecv) bool {
	for i := range wants {
		if !wants[i].done {
			return false
		}
	}
	return true
}

// push writes as much of s as the mailbox to its peer takes (all of it into the box, if it is
// small and the box has room), and reports whether bytes moved.
func (g *Group) push(s *p2pSend) bool {
	moved := false
	end := p2pHeader + len(s.payload)
	if s.reads != nil {
		end = p2pHeader
	}
	if s.sent == 0 {
		seq := g.p2p.sent[s.peer] + 1
		if s.reads == nil && len(s.payload) <= boxMax && g.boxWrite(s, seq) {
			s.sent = end
			g.announce(s.peer, seq)
			return true
		}
		binary.LittleEndian.PutUint32(s.hdr[4:], uint32(seq))
	}
	for s.sent < end {
		var k int
		if s.sent < p2pHeader {
			var payload []byte // with the header, when it fits: one move of the head
			if s.reads == nil {
				payload = s.payload
			}
			k = g.ringWrite(s.peer, s.hdr[s.sent:], payload)
		} else {
			k = g.ringWrite(s.peer, s.payload[s.sent-p2pHeader:])
		}
		if k == 0 {
			break
		}
		if s.sent == 0 {
			g.announce(s.peer, g.p2p.sent[s.peer]+1)
		}
		s.sent += k
		moved = true
	}
	return moved
}

// p2pLate is what a send's or receive's peer failed to do when it timed out.
const p2pLate = "did not take part: check that it posts the matching send or receive"

// SendFits reports whether the mailbox to peer has room for a message of nbytes, in its box or
// its ring: Send then writes it all at once (backends.EagerSender). Only this rank fills the
// mailbox, and no op runs meanwhile, so the room can only grow before the Send.
func (g *Group) SendFits(peer, nbytes int) bool {
	if peer < 0 || peer >= g.cfg.Size || peer == g.cfg.Rank {
		return false
	}
	if nbytes <= boxMax && g.boxRoom(peer) {
		return true
	}
	head, tail, data := g.seg.mailbox(g.cfg.Rank, peer)
	need := p2pHeader + nbytes
	return need <= g.room(peer, need, atomic.LoadUint64(head), tail, len(data))
}

// SendsWaitForReceiver: a Send that finds the mailbox full waits for its receiver to drain it,
// which the receiver does only in a send or receive of its own (backends.PacedSender).
func (g *Group) SendsWaitForReceiver() bool { return true }

// Send streams a header and buf into the mailbox to op.Peer.
func (g *Group) Send(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	return g.run(func() error {
		send := g.newSend(op, buf, false)
		// A sender waits for the ring to drain (while it drains its own incoming rings, which
		// only its sleep's 1 ms cap wakes it for).
		return g.waitPeer(ctx, op.Peer, g.ringSpace, p2pLate, func() (bool, bool, error) {
			moved := g.push(&send)
			if send.done() {
				return moved, true, nil
			}
			// The ring is full. Its reader may itself be stuck sending (to us, or around a ring
			// of ranks back to us): drain every incoming mailbox meanwhile.
			for p := range g.p2p.rx {
				if p == g.cfg.Rank {
					continue
				}
				drained, err := g.pull(p, nil)
				if err != nil {
					return moved, false, err
				}
				moved = moved || drained
			}
			return moved, false, nil
		})
	})
}

// Recv receives into buf the next message from op.Peer with op.Tag: the oldest queued one, else
// the next one in the stream.
func (g *Group) Recv(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	return g.run(func() error {
		want := [1]p2pRecv{{tag: int64(op.Tag), dtype: op.DType, buf: buf.Bytes()}}
		if err := g.takeQueued(op.Peer, want[:]); err != nil || want[0].done {
			return err
		}
		return g.waitPeer(ctx, op.Peer, g.ringData, p2pLate, func() (bool, bool, error) {
			moved, err := g.pull(op.Peer, want[:])
			if err == nil && !want[0].done {
				err = g.takeQueued(op.Peer, want[:]) // a message with this tag may have completed into the queue
			}
			return moved, want[0].done, err
		})
	})
}

// p2pBatch is a SendRecv's state: its sends in order, and its receives by peer.
type p2pBatch struct {
	sends   []p2pSend
	recvs   [][]p2pRecv // by peer
	blocked []bool      // by peer: a send to it waits for room (in the current step)
	pending []int       // scratch for pendingPeers
}

// SendRecv runs the sends and receives of ops at once (backends.BatchSendRecver): each step
// writes every send as far as its mailbox takes (sends to one peer in order; only a header for a
// single-copy message) and reads every incoming message that a receive waits for straight into
// the receive's buffer. When a send waits for room, or for its message to be read, it reads
// every incoming mailbox, as Send does.
func (g *Group) SendRecv(ctx context.Context, ops []backends.P2P) error {
	return g.run(func() error {
		b := &g.p2p.batch
		b.reset(g.cfg.Size)
		for _, p := range ops {
			if p.Op.Kind == backends.OpSend {
				b.sends = append(b.sends, g.newSend(p.Op, p.Buf, true))
			} else {
				b.recvs[p.Op.Peer] = append(b.recvs[p.Op.Peer], p2pRecv{tag: int64(p.Op.Tag), dtype: p.Op.DType, buf: p.Buf.Bytes()})
			}
		}
		defer b.release()
		// Wait on the first op not done (for room to its peer, or data from it) while every
		// step moves them all; then on the next.
		for {
			send, recv := b.first()
			var err error
			switch {
			case send != nil:
				sleepOn := func(int) sleeper { return g.sendSleeper(send) }
				err = g.waitPeers(ctx, send.peer, b.pendingPeers, sleepOn, p2pLate, func() (bool, bool, error) {
					moved, err := g.stepBatch(b)
					return moved, send.done(), err
				})
			case recv.peer >= 0:
				err = g.waitPeers(ctx, recv.peer, b.pendingPeers, g.ringData, p2pLate, func() (bool, bool, error) {
					moved, err := g.stepBatch(b)
					return moved, b.recvs[recv.peer][recv.i].done, err
				})
			default:
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
}

func (b *p2pBatch) reset(n int) {
	b.sends = b.sends[:0]
	if len(b.recvs) != n {
		b.recvs, b.blocked = make([][]p2pRecv, n), make([]bool, n)
	}
	for p := range b.recvs {
		b.recvs[p] = b.recvs[p][:0]
	}
}

// release drops the batch's references to the caller's buffers.
func (b *p2pBatch) release() {
	clear(b.sends)
	for p := range b.recvs {
		clear(b.recvs[p])
	}
}

// pendingPeers lists the peers of the batch's ops that are not done: a wait checks that they
// are alive (a peer whose ops are done may have finished and exited).
func (b *p2pBatch) pendingPeers() []int {
	b.pending = b.pending[:0]
	for i := range b.sends {
		if s := &b.sends[i]; !s.done() && !slices.Contains(b.pending, s.peer) {
			b.pending = append(b.pending, s.peer)
		}
	}
	for p, rs := range b.recvs {
		if !allDone(rs) && !slices.Contains(b.pending, p) {
			b.pending = append(b.pending, p)
		}
	}
	return b.pending
}

// recvAt is where a receive of a batch is: b.recvs[peer][i] (peer -1: none).
type recvAt struct{ peer, i int }

// first returns the batch's first op not done, sends first: a send, or a receive's place; nil
// and peer -1 when every op is done.
func (b *p2pBatch) first() (*p2pSend, recvAt) {
	for i := range b.sends {
		if s := &b.sends[i]; !s.done() {
			return s, recvAt{-1, 0}
		}
	}
	for p, rs := range b.recvs {
		for i := range rs {
			if !rs[i].done {
				return nil, recvAt{p, i}
			}
		}
	}
	return nil, recvAt{-1, 0}
}

// stepBatch moves every op of b as far as it can go now, and reports whether bytes moved.
func (g *Group) stepBatch(b *p2pBatch) (bool, error) {
	moved, full := false, false
	clear(b.blocked)
	for i := range b.sends {
		s := &b.sends[i]
		if s.done() || b.blocked[s.peer] {
			continue
		}
		moved = g.push(s) || moved
		if !s.done() {
			b.blocked[s.peer], full = true, true
		}
	}
	for p, rs := range b.recvs {
		if p == g.cfg.Rank || (!full && allDone(rs)) {
			continue
		}
		if err := g.takeQueued(p, rs); err != nil {
			return moved, err
		}
		pulled, err := g.pull(p, rs)
		if err != nil {
			return moved, err
		}
		moved = moved || pulled
		if err := g.takeQueued(p, rs); err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// buffer returns a queue buffer of size bytes: the spare one if it is large enough.
func (rx *rxState) buffer(size int) []byte {
	if cap(rx.spare) >= size {
		b := rx.spare[:size]
		rx.spare = nil
		return b
	}
	return make([]byte, size)
}

// recycle keeps b, a queue buffer whose message was received, as the spare if it is larger
// than the spare (up to spareMax).
func (rx *rxState) recycle(b []byte) {
	if cap(b) > cap(rx.spare) && cap(b) <= spareMax {
		rx.spare = b
	}
}

// matching returns the receive of wants that a message with tag is for: the first not done
// with the tag, unless an older message with the tag waits in the queue (-1: none).
func (rx *rxState) matching(tag int64, wants []p2pRecv) int {
	if len(wants) == 0 || rx.hasQueued(tag) {
		return -1
	}
	for i := range wants {
		if !wants[i].done && wants[i].tag == tag {
			return i
		}
	}
	return -1
}

func (rx *rxState) hasQueued(tag int64) bool {
	for _, m := range rx.queued {
		if m.tag == tag {
			return true
		}
	}
	return false
}
