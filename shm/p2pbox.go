package shm

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// A message of up to boxMax bytes skips the ring: the sender writes it whole into the next slot
// of the mailbox's box, its sequence number last, and the receiver finds it with one look at
// the slot. A message of up to 104 bytes then costs the receiver one or two cache lines from
// the sender's core where the ring costs two in a row (the head, then the data). Every message
// to a peer, through the box or the ring, takes the pair's next sequence number (a ring
// message's is in its header), so the receiver takes them in the order they were sent. A full
// box is never waited for: the message goes through the ring. A receiver between messages
// sleeps on the count of messages sent (mailboxSent), which the sender advances either way.
const (
	boxSlots = 32
	boxSlot  = line
	boxHdr   = 24 // the message's sequence number (published last), tag, and size and dtype (sizeWord)
	boxMax   = boxSlot - boxHdr
)

// boxWrite writes s, not started and at most boxMax bytes long, into the box to its peer as
// message seq, and reports whether the box had a free slot.
func (g *Group) boxWrite(s *p2pSend, seq uint64) bool {
	if !g.boxRoom(s.peer) {
		return false
	}
	n := g.p2p.boxSent[s.peer]
	slot := g.seg.boxSlot(g.cfg.Rank, s.peer, n)
	copy(slot[8:24], s.hdr[8:24]) // tag, size and dtype, as in the ring's header
	copy(slot[boxHdr:], s.payload)
	publish((*uint64)(unsafe.Pointer(&slot[0])), seq)
	g.p2p.boxSent[s.peer] = n + 1
	return true
}

// boxRoom reports whether the box to peer has a free slot. Its reader publishes how far it read
// on a line that only it writes: this rank reads it only when the box looks full.
func (g *Group) boxRoom(peer int) bool {
	if g.p2p.boxSent[peer]-g.p2p.boxTails[peer] < boxSlots {
		return true
	}
	g.p2p.boxTails[peer] = atomic.LoadUint64(g.seg.boxTail(g.cfg.Rank, peer))
	return g.p2p.boxSent[peer]-g.p2p.boxTails[peer] < boxSlots
}

// announce counts message seq to peer sent, for a receiver that sleeps between messages.
func (g *Group) announce(peer int, seq uint64) {
	g.p2p.sent[peer] = seq
	w := g.seg.mailboxSent(g.cfg.Rank, peer)
	publish(w, seq)
	wakeSleepers(w, g.sleepers)
}

// boxTake takes src's next message from the box if it is there (the message after the last one
// taken from src), into the first receive of wants it matches or into the queue, and reports
// whether it took one and whether a receive of wants got it.
func (g *Group) boxTake(src int, wants []p2pRecv) (took, matched bool, err error) {
	rx := &g.p2p.rx[src]
	slot := g.seg.boxSlot(src, g.cfg.Rank, rx.boxNext)
	if atomic.LoadUint64((*uint64)(unsafe.Pointer(&slot[0]))) != rx.taken+1 {
		return false, false, nil
	}
	tag := int64(binary.LittleEndian.Uint64(slot[8:]))
	size, dtype := fromSizeWord(binary.LittleEndian.Uint64(slot[16:]))
	if size > boxMax {
		return false, false, fmt.Errorf("corrupt mailbox from rank %d: a boxed message of %d bytes", src, size)
	}
	rx.taken++
	rx.boxNext++
	data := slot[boxHdr : boxHdr+size]
	if i := rx.matching(tag, wants); i >= 0 {
		if err := p2pMismatch(src, size, dtype, tag, &wants[i]); err != nil {
			return true, false, err
		}
		copy(wants[i].buf, data)
		wants[i].done = true
		return true, true, nil
	}
	m := &p2pMsg{tag: tag, dtype: dtype, data: rx.buffer(len(data))}
	copy(m.data, data)
	rx.queued = append(rx.queued, m)
	return true, false, nil
}

// boxFree hands the box slots read from src back to it.
func (g *Group) boxFree(src int) {
	if rx := &g.p2p.rx[src]; rx.boxFreed != rx.boxNext {
		publish(g.seg.boxTail(src, g.cfg.Rank), rx.boxNext)
		rx.boxFreed = rx.boxNext
	}
}
