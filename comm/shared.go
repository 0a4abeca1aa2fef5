package comm

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/gccl/gccl/backends"
)

// SharedBuffer is memory that every member of a group maps: what one rank writes there the
// others read in place, with no copy (torch's symmetric memory, for ranks on one host). Order a
// rank's writes before its peers' reads of them, and the peers' last reads before the next
// writes, with a collective (a Barrier, say) or, one-sidedly, with the buffer's signals (torch's
// signal pad): each member has SharedSignals counters, which it advances with Signal after its
// writes and its peers wait on with WaitSignal before they read.
type SharedBuffer struct {
	mem  []byte
	pad  []byte // member r's signals: its counter of Signal calls, then its signal i, each on a cache line (see signal)
	pg   *ProcessGroup
	sig  backends.SharedMemory
	once sync.Once
	free func()
}

// SharedSignals is the number of signals each member of a SharedBuffer has (16 KiB of them per
// member: each on its own cache line).
const SharedSignals = 256

// AllocShared returns nbytes of zeroed memory shared by every member of the group. Every member
// calls it with the same nbytes, in the same order relative to its other AllocShared calls on
// the group; it is not an op (it is not recorded and does not wait for the group's pending ops),
// and it bounds its wait with the group's timeout. Groups whose members cannot share memory
// (backends gloo and xccl, or "auto" across hosts) return an error wrapping ErrUnsupported, on
// every member alike. Close the buffer when done; the memory goes when every member has.
func (pg *ProcessGroup) AllocShared(ctx context.Context, nbytes int) (*SharedBuffer, error) {
	fail := func(err error) error {
		return fmt.Errorf("gccl: AllocShared on group %s (rank %d of %d): %w", pg.label, pg.rank, pg.size, err)
	}
	if nbytes <= 0 {
		return nil, fail(fmt.Errorf("%d bytes asked: ask for at least one byte: %w", nbytes, ErrInvalidArgument))
	}
	sm, ok := pg.backend.(backends.SharedMemory)
	if !ok {
		return nil, fail(fmt.Errorf("%w: backend %q has no memory its members share; use backend \"shm\" (every member on one host)", ErrUnsupported, pg.recordedBackend))
	}
	pg.mu.Lock()
	closed := pg.closed
	pg.mu.Unlock()
	if closed {
		return nil, fail(ErrClosed)
	}
	// The signals follow the bytes asked for, each on its own cache line.
	at := (nbytes + signalLine - 1) / signalLine * signalLine
	mem, free, err := sm.AllocShared(ctx, at+pg.size*(1+SharedSignals)*signalLine)
	if err != nil {
		return nil, fail(err)
	}
	return &SharedBuffer{mem: mem[:nbytes:nbytes], pad: mem[at:], pg: pg, sig: sm, free: free}, nil
}

// signalLine is the room each signal takes: a cache line, so that one member's signal moving
// does not disturb the lines the others spin on.
const signalLine = 64

// Bytes is the shared memory, the same bytes on every member, until Close.
func (b *SharedBuffer) Bytes() []byte { return b.mem }

// Signal sets this rank's signal i (0 <= i < SharedSignals, 0 at first) to v and wakes the
// members waiting for it. A signal is a counter: v may not be less than its last value. The
// signal is ordered after this rank's earlier writes to the buffer: a member that has seen it
// (WaitSignal) reads them.
func (b *SharedBuffer) Signal(i int, v uint64) error {
	word, err := b.signal("Signal", b.pg.rank, i)
	if err != nil {
		return err
	}
	if last := atomic.LoadUint64(word); v < last {
		return b.errorf("Signal", "signal %d moves back from %d to %d: a signal is a counter, pass a value at least its last: %w", i, last, v, ErrInvalidArgument)
	}
	atomic.StoreUint64(word, v)
	b.sig.SignalShared(b.moves(b.pg.rank))
	return nil
}

// Signalled is member rank's signal i now.
func (b *SharedBuffer) Signalled(rank, i int) (uint64, error) {
	word, err := b.signal("Signalled", rank, i)
	if err != nil {
		return 0, err
	}
	return atomic.LoadUint64(word), nil
}

// WaitSignal returns once member rank's signal i is at least v, after which this rank reads what
// rank wrote to the buffer before that Signal. It is not an op (not recorded, not ordered with
// the group's ops); it fails with an error wrapping ErrPeerLost if rank dies, ErrAborted if the
// group is aborted, ErrTimeout after the group's timeout (or ctx's deadline, if sooner).
func (b *SharedBuffer) WaitSignal(ctx context.Context, rank, i int, v uint64) error {
	word, err := b.signal("WaitSignal", rank, i)
	if err != nil {
		return err
	}
	if atomic.LoadUint64(word) >= v {
		return nil
	}
	err = b.wait(ctx, rank, func() bool { return atomic.LoadUint64(word) >= v })
	if err != nil {
		return b.errorf("WaitSignal", "waiting for rank %d's signal %d to reach %d (it is at %d): %w", rank, i, v, atomic.LoadUint64(word), err)
	}
	return nil
}

// WaitUntil returns once done reports true: it calls done at once, then as it waits (while it
// spins, and whenever member rank signals, which wakes it from a sleep), so done should be cheap
// and read rank's signals (Signalled), for a wait on several of them at once. It fails as
// WaitSignal does.
func (b *SharedBuffer) WaitUntil(ctx context.Context, rank int, done func() bool) error {
	if _, err := b.signal("WaitUntil", rank, 0); err != nil {
		return err
	}
	if done() {
		return nil
	}
	if err := b.wait(ctx, rank, done); err != nil {
		return b.errorf("WaitUntil", "waiting for rank %d's signals: %w", rank, err)
	}
	return nil
}

// wait has the backend wait for done, woken by rank's signals, within the group's timeout.
func (b *SharedBuffer) wait(ctx context.Context, rank int, done func() bool) error {
	if t := b.pg.timeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	return b.sig.WaitShared(ctx, rank, b.moves(rank), done)
}

// signal is member rank's signal i, checked for op.
func (b *SharedBuffer) signal(op string, rank, i int) (*uint64, error) {
	b.pg.mu.Lock()
	pgClosed := b.pg.closed
	b.pg.mu.Unlock()
	switch {
	case b.pad == nil:
		return nil, b.errorf(op, "the buffer is closed: %w", ErrClosed)
	case pgClosed:
		return nil, b.errorf(op, "its process group is closed: close the buffer before the group: %w", ErrClosed)
	case i < 0 || i >= SharedSignals:
		return nil, b.errorf(op, "signal %d out of range: a member has signals 0 to %d: %w", i, SharedSignals-1, ErrInvalidArgument)
	case rank < 0 || rank >= b.pg.size:
		return nil, b.errorf(op, "rank %d out of range: the group's ranks are 0 to %d: %w", rank, b.pg.size-1, ErrInvalidArgument)
	}
	return b.word(rank, 1+i), nil
}

// moves is member rank's count of its Signal calls, which its waiters sleep on.
func (b *SharedBuffer) moves(rank int) *uint64 { return b.word(rank, 0) }

// word is the counter on member rank's line j of the pad.
func (b *SharedBuffer) word(rank, j int) *uint64 {
	return (*uint64)(unsafe.Pointer(&b.pad[(rank*(1+SharedSignals)+j)*signalLine]))
}

func (b *SharedBuffer) errorf(op, format string, args ...any) error {
	return fmt.Errorf("gccl: %s on a shared buffer of group %s (rank %d of %d): %w", op, b.pg.label, b.pg.rank, b.pg.size, fmt.Errorf(format, args...))
}

// Close unmaps the memory on this rank; Bytes (and whatever views it) and the signals must not
// be used after.
func (b *SharedBuffer) Close() {
	b.once.Do(func() {
		b.mem, b.pad = nil, nil
		b.free()
	})
}
