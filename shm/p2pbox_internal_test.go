package shm

import (
	"bytes"
	"testing"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// boxTestSend pushes message i (size bytes of value i, tag 5) from rank 0 to rank 1 and checks
// that it went all at once.
func boxTestSend(t *testing.T, sender *Group, i, size int) {
	t.Helper()
	payload := bytes.Repeat([]byte{byte(i)}, size)
	s := sender.newSend(backends.Op{Kind: backends.OpSend, Peer: 1, Tag: 5}, tensor.FromSlice(payload), false)
	if !sender.push(&s) || !s.done() {
		t.Fatalf("message %d (%d bytes) did not go at once", i, size)
	}
}

// Messages through the box and the ring arrive in the order sent: past a full box (the rest go
// through the ring), and when the receiver has begun a ring message's header before it looked
// at the box (the sender wrote the box's message and then the ring's in between).
func TestBoxOrder(t *testing.T) {
	sender, receiver := mailboxPair(t, 1<<16)
	sizes := []int{}
	for i := range boxSlots + 8 {
		sizes = append(sizes, 1+i%3)
	}
	sizes = append(sizes, boxMax, boxMax+1, 1, 200, 2)
	for i, size := range sizes {
		boxTestSend(t, sender, i, size)
	}
	if got := sender.p2p.boxSent[1]; got != boxSlots {
		t.Fatalf("%d messages went through the box before the receiver read any, want the box's %d", got, boxSlots)
	}
	check := func(from int, wants []p2pRecv) {
		t.Helper()
		moved, err := receiver.pull(0, wants)
		if err != nil || !moved {
			t.Fatalf("pull: moved %v, error %v", moved, err)
		}
		for j, w := range wants {
			i := from + j
			if !w.done || !bytes.Equal(w.buf, bytes.Repeat([]byte{byte(i)}, sizes[i])) {
				t.Fatalf("message %d: done %v, got %v", i, w.done, w.buf)
			}
		}
	}
	wants := func(from, to int) []p2pRecv {
		var ws []p2pRecv
		for i := from; i < to; i++ {
			ws = append(ws, p2pRecv{tag: 5, buf: make([]byte, sizes[i])})
		}
		return ws
	}
	check(0, wants(0, len(sizes)))

	// The receiver reads the first byte of a ring message's header before the box's message sent
	// before it shows: a size mismatch (or a hang) if it took the ring's first.
	for i, size := range []int{3, 300} {
		boxTestSend(t, sender, i, size)
	}
	r := receiver.ringReader(0)
	rx := &receiver.p2p.rx[0]
	rx.hdrN = r.read(receiver, rx.hdr[:1])
	r.free(receiver)
	if rx.hdrN != 1 {
		t.Fatal("no ring message to begin")
	}
	sizes = []int{3, 300}
	check(0, wants(0, 2))
	if _, err := receiver.pull(0, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(rx.queued); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}
}
