package shm

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/backends"
)

// wokenBy checks that s is not yet satisfied, puts it to sleep (for a minute), runs move (the
// peer's) once it has registered, and checks that it woke well before its minute, satisfied.
func wokenBy(t *testing.T, name string, s sleeper, move func()) {
	t.Helper()
	if atomic.LoadUint64(s.word) >= s.phase {
		t.Fatalf("%s: the sleeper is satisfied before the peer moved", name)
	}
	woke := make(chan struct{})
	go func() {
		s.sleep(time.Minute)
		close(woke)
	}()
	for atomic.LoadUint32(s.sleepers) == 0 { // registered: it sleeps, or is about to
		time.Sleep(time.Millisecond)
	}
	move()
	select {
	case <-woke:
	case <-time.After(20 * time.Second):
		// Let the sleeper go before failing: it must not outlive the memory it sleeps on.
		atomic.StoreUint64(s.word, s.phase)
		wakeSleepers(s.word, s.sleepers)
		<-woke
		t.Fatalf("%s: the sleeper was not woken by the peer's move (it would sleep the whole minute)", name)
	}
	if atomic.LoadUint64(s.word) < s.phase {
		t.Fatalf("%s: woken, but the word has not reached the phase", name)
	}
	if n := atomic.LoadUint32(s.sleepers); n != 0 {
		t.Fatalf("%s: sleepers = %d after the sleeper woke, want 0 (it must deregister)", name, n)
	}
}

// A sleeper is woken by the publish it waits for, long before its sleep would end; one whose
// word has already reached the phase does not sleep at all.
func TestSleeperWokenByPublish(t *testing.T) {
	var word uint64
	var sleepers uint32
	s := sleeper{word: &word, phase: 1, sleepers: &sleepers}
	wokenBy(t, "phase word", s, func() {
		publish(&word, 1)
		wakeSleepers(&word, &sleepers)
	})

	done := make(chan struct{})
	go func() {
		s.sleep(time.Minute) // word is 1 already
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("a sleeper slept although its word had reached the phase")
	}
}

// Without a publish a sleeper returns when its time is up (the waiter then checks aborts, the
// deadline and the peers' liveness).
func TestSleeperTimesOut(t *testing.T) {
	var word uint64
	var sleepers uint32
	t0 := time.Now()
	sleeper{word: &word, phase: 1, sleepers: &sleepers}.sleep(5 * time.Millisecond)
	if d := time.Since(t0); d < 5*time.Millisecond {
		t.Fatalf("sleep(5ms) with no publish returned after %v", d)
	}
	if sleepers != 0 {
		t.Fatalf("sleepers = %d after a timed-out sleep, want 0", sleepers)
	}
}

// A mailbox's sleepers: a receiver between messages sleeps until the sender counts its next
// message sent (through the box or the ring: push), a receiver inside a message until the
// sender's next bytes (ringWrite), a sender with a full ring until the receiver frees a byte
// (ringRead).
func TestMailboxSleepers(t *testing.T) {
	const ring = 256
	sender, receiver := mailboxPair(t, ring)
	ready := func(s sleeper) bool { return atomic.LoadUint64(s.word) >= s.phase }
	send := func(name string, n int) {
		s := p2pSend{peer: 1, payload: make([]byte, n)}
		binary.LittleEndian.PutUint32(s.hdr[0:], p2pMagic)
		binary.LittleEndian.PutUint64(s.hdr[16:], uint64(n))
		wokenBy(t, name, receiver.ringData(0), func() {
			if !sender.push(&s) {
				t.Fatalf("%s: push into an empty mailbox moved nothing", name)
			}
		})
		want := []p2pRecv{{buf: make([]byte, n)}}
		if _, err := receiver.pull(0, want); err != nil || !want[0].done {
			t.Fatalf("%s: pull: done %v, error %v", name, want[0].done, err)
		}
	}
	send("receiver between messages, one through the box", 1)
	send("receiver between messages, one through the ring", boxMax+1)

	// Inside a message (its header read), the receiver waits for the ring's bytes.
	receiver.p2p.rx[0].inMsg = true
	wokenBy(t, "receiver inside a message, empty ring", receiver.ringData(0), func() {
		if sender.ringWrite(1, []byte{7}) != 1 {
			t.Fatal("ringWrite of one byte into an empty ring wrote nothing")
		}
	})
	if n := sender.ringWrite(1, make([]byte, ring)); n != ring-1 {
		t.Fatalf("ringWrite filled %d bytes of the %d free", n, ring-1)
	}
	wokenBy(t, "sender, full ring", sender.ringSpace(1), func() {
		if receiver.ringRead(0, make([]byte, 1)) != 1 {
			t.Fatal("ringRead of a full ring read nothing")
		}
	})
	// One byte is free now, and all the unread bytes are there to read.
	if !ready(sender.ringSpace(1)) || !ready(receiver.ringData(0)) {
		t.Fatal("a ring with both free space and unread bytes has an unsatisfied sleeper")
	}
	// The sender counts free space from the tail it last read: it must read it again to see the
	// byte the receiver freed.
	if n := sender.ringWrite(1, make([]byte, 2)); n != 1 {
		t.Fatalf("ringWrite wrote %d bytes into the one the receiver freed", n)
	}
}

// mailboxPair returns the two ranks of a segment of 2 with mailboxes of ring bytes: rank 0 to
// send, rank 1 to receive.
func mailboxPair(t *testing.T, ring int) (sender, receiver *Group) {
	seg, fd, err := createSegment("test-mailbox", newLayout(2, 4096, ring))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		seg.unmap()
		unix.Close(fd)
	})
	sender = &Group{cfg: backends.Config{Rank: 0, Size: 2}, seg: seg, sleepers: seg.sleepers(0)}
	receiver = &Group{cfg: backends.Config{Rank: 1, Size: 2}, seg: seg, sleepers: seg.sleepers(1)}
	sender.p2p.init(2, ring)
	receiver.p2p.init(2, ring)
	return sender, receiver
}

// ringRead copies up to len(b) bytes from the mailbox src->this rank, hands them back to the
// sender, and returns how many.
func (g *Group) ringRead(src int, b []byte) int {
	r := g.ringReader(src)
	n := r.read(g, b)
	r.free(g)
	return n
}
