package shm

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// Point-to-point messages travel through a mailbox per ordered pair of ranks: a ring buffer
// read as a byte stream (a header, then the payload), with a head counter the sender advances
// and a tail counter the receiver advances. Messages longer than the ring stream through it. A
// receiver matches messages by tag; a message with another tag is read into a private queue.
// A sender that finds the ring full drains every incoming ring meanwhile, so ranks sending to
// each other at once (a pair, or a ring of ranks) never deadlock.

const (
	p2pHeader = 32
	p2pMagic  = 0x50325047 // "GP2P"
)

// p2pMsg is a message read before its receive was posted.
type p2pMsg struct {
	tag  int64
	data []byte
}

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
	// the message being read: into dst (a posted receive) or into an unexpected message
	inMsg   bool
	tag     int64
	dst     []byte
	got     int
	unexp   *p2pMsg
	matched bool
}

type p2pState struct {
	rx []rxState
	// tails[p]: the tail of the mailbox to p as this rank last read it (it only grows)
	tails []uint64
}

func (s *p2pState) init(n int) { s.rx, s.tails = make([]rxState, n), make([]uint64, n) }

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

// ringWrite copies as much of b as fits into the mailbox src->dst and returns how much.
func (g *Group) ringWrite(dst int, b []byte) int {
	head, tail, data := g.seg.mailbox(g.cfg.Rank, dst)
	h := atomic.LoadUint64(head)
	n := min(g.room(dst, len(b), h, tail, len(data)), len(b))
	if n <= 0 {
		return 0
	}
	pos := int(h % uint64(len(data)))
	k := copy(data[pos:], b[:n])
	copy(data, b[k:n])
	atomic.StoreUint64(head, h+uint64(n))
	wakeSleepers(head, g.sleepers)
	return n
}

// ringRead copies up to len(b) bytes from the mailbox src->this rank and returns how many.
func (g *Group) ringRead(src int, b []byte) int {
	head, tail, data := g.seg.mailbox(src, g.cfg.Rank)
	h, t := atomic.LoadUint64(head), atomic.LoadUint64(tail)
	n := min(int(h-t), len(b))
	if n <= 0 {
		return 0
	}
	pos := int(t % uint64(len(data)))
	k := copy(b[:n], data[pos:])
	copy(b[k:n], data)
	atomic.StoreUint64(tail, t+uint64(n))
	wakeSleepers(tail, g.sleepers)
	return n
}

// ringData sleeps until the mailbox src->this rank holds a byte this rank has not read: its
// head passes the tail, which only this rank moves.
func (g *Group) ringData(src int) sleeper {
	head, tail, _ := g.seg.mailbox(src, g.cfg.Rank)
	return sleeper{word: head, phase: atomic.LoadUint64(tail) + 1, sleepers: g.seg.sleepers(src)}
}

// ringSpace sleeps until the mailbox this rank->dst has a free byte: its tail passes the head,
// which only this rank moves, less the ring's length.
func (g *Group) ringSpace(dst int) sleeper {
	head, tail, data := g.seg.mailbox(g.cfg.Rank, dst)
	return sleeper{word: tail, phase: atomic.LoadUint64(head) - uint64(len(data)) + 1, sleepers: g.seg.sleepers(dst)}
}

// pull reads what src's mailbox holds. A message whose tag is wantTag lands in want (if want is
// not nil and not yet filled); any other goes to the queue. It reports whether bytes moved and
// whether want was filled.
func (g *Group) pull(src int, wantTag int64, want []byte, wantDone *bool) (bool, error) {
	rx := &g.p2p.rx[src]
	moved := false
	for {
		if !rx.inMsg {
			k := g.ringRead(src, rx.hdr[rx.hdrN:])
			if k == 0 {
				return moved, nil
			}
			moved = true
			rx.hdrN += k
			if rx.hdrN < p2pHeader {
				continue
			}
			rx.hdrN = 0
			if binary.LittleEndian.Uint32(rx.hdr[0:]) != p2pMagic {
				return moved, fmt.Errorf("corrupt mailbox from rank %d", src)
			}
			tag := int64(binary.LittleEndian.Uint64(rx.hdr[8:]))
			size := int(binary.LittleEndian.Uint64(rx.hdr[16:]))
			rx.inMsg, rx.tag, rx.got = true, tag, 0
			if want != nil && !*wantDone && tag == wantTag && !rx.hasQueued(tag) {
				if size != len(want) {
					return moved, fmt.Errorf("%w: rank %d sent %d bytes with tag %d, this rank receives %d bytes (sizes or dtypes differ)",
						backends.ErrMismatch, src, size, tag, len(want))
				}
				rx.dst, rx.matched, rx.unexp = want, true, nil
			} else {
				rx.unexp = &p2pMsg{tag: tag, data: rx.buffer(size)}
				rx.dst, rx.matched = rx.unexp.data, false
			}
		}
		if rx.got < len(rx.dst) {
			k := g.ringRead(src, rx.dst[rx.got:])
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
		if rx.matched {
			*wantDone = true
			return moved, nil
		}
		rx.queued = append(rx.queued, rx.unexp)
		rx.unexp = nil
	}
}

// p2pLate is what a send's or receive's peer failed to do when it timed out.
const p2pLate = "did not take part: check that it posts the matching send or receive"

// SendFits reports whether the mailbox to peer has room for a message of nbytes: Send then
// writes it all at once (backends.EagerSender). Only this rank fills the mailbox, and no op runs
// meanwhile, so the room can only grow before the Send.
func (g *Group) SendFits(peer, nbytes int) bool {
	if peer < 0 || peer >= g.cfg.Size || peer == g.cfg.Rank {
		return false
	}
	head, tail, data := g.seg.mailbox(g.cfg.Rank, peer)
	need := p2pHeader + nbytes
	return need <= g.room(peer, need, atomic.LoadUint64(head), tail, len(data))
}

// Send streams a header and buf into the mailbox to op.Peer.
func (g *Group) Send(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	return g.run(func() error {
		var hdr [p2pHeader]byte
		payload := buf.Bytes()
		binary.LittleEndian.PutUint32(hdr[0:], p2pMagic)
		binary.LittleEndian.PutUint64(hdr[8:], uint64(op.Tag))
		binary.LittleEndian.PutUint64(hdr[16:], uint64(len(payload)))
		binary.LittleEndian.PutUint32(hdr[24:], uint32(op.DType))
		sent := 0
		total := p2pHeader + len(payload)
		// A sender waits for the ring to drain (while it drains its own incoming rings, which
		// only its sleep's 1 ms cap wakes it for).
		return g.waitPeer(ctx, op.Peer, g.ringSpace, p2pLate, func() (bool, bool, error) {
			moved := false
			for sent < total {
				var k int
				if sent < p2pHeader {
					k = g.ringWrite(op.Peer, hdr[sent:])
				} else {
					k = g.ringWrite(op.Peer, payload[sent-p2pHeader:])
				}
				if k == 0 {
					break
				}
				sent += k
				moved = true
			}
			if sent == total {
				return moved, true, nil
			}
			// The ring is full. Its reader may itself be stuck sending (to us, or around a ring
			// of ranks back to us): drain every incoming mailbox meanwhile.
			for p := range g.p2p.rx {
				if p == g.cfg.Rank {
					continue
				}
				drained, err := g.pull(p, 0, nil, nil)
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
		b := buf.Bytes()
		rx := &g.p2p.rx[op.Peer]
		tag := int64(op.Tag)
		done := false
		take := func() error {
			for i, m := range rx.queued {
				if m.tag != tag {
					continue
				}
				if len(m.data) != len(b) {
					return fmt.Errorf("%w: rank %d sent %d bytes with tag %d, this rank receives %d bytes (sizes or dtypes differ)",
						backends.ErrMismatch, op.Peer, len(m.data), tag, len(b))
				}
				copy(b, m.data)
				rx.queued = append(rx.queued[:i], rx.queued[i+1:]...)
				rx.recycle(m.data)
				done = true
				return nil
			}
			return nil
		}
		if err := take(); err != nil || done {
			return err
		}
		return g.waitPeer(ctx, op.Peer, g.ringData, p2pLate, func() (bool, bool, error) {
			moved, err := g.pull(op.Peer, tag, b, &done)
			if err == nil && !done {
				err = take() // a message with this tag may have completed into the queue
			}
			return moved, done, err
		})
	})
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

func (rx *rxState) hasQueued(tag int64) bool {
	for _, m := range rx.queued {
		if m.tag == tag {
			return true
		}
	}
	return false
}
