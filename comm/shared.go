package comm

import (
	"context"
	"fmt"
	"sync"

	"github.com/gccl/gccl/backends"
)

// SharedBuffer is memory that every member of a group maps: what one rank writes there the
// others read in place, with no copy (torch's symmetric memory, for ranks on one host). It
// carries no synchronisation of its own: run a collective (a Barrier, say) between a rank's
// writes and its peers' reads of them, and between the peers' last reads and the next writes.
type SharedBuffer struct {
	mem  []byte
	once sync.Once
	free func()
}

// AllocShared returns nbytes of zeroed memory shared by every member of the group. Every member
// calls it with the same nbytes, in the same order relative to its other AllocShared calls on
// the group; it is not an op (it is not recorded and does not wait for the group's pending ops),
// and it bounds its wait with the group's timeout. Groups whose members cannot share memory
// (backends gloo and xccl, or "auto" across hosts) return an error wrapping ErrUnsupported, on
// every member alike. Close the buffer when done; the memory goes when every member has.
func (pg *ProcessGroup) AllocShared(ctx context.Context, nbytes int) (*SharedBuffer, error) {
	fail := func(err error) error {
		return fmt.Errorf("gccl: AllocShared on group %q (rank %d of %d): %w", pg.name, pg.rank, pg.size, err)
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
	mem, free, err := sm.AllocShared(ctx, nbytes)
	if err != nil {
		return nil, fail(err)
	}
	return &SharedBuffer{mem: mem, free: free}, nil
}

// Bytes is the shared memory, the same bytes on every member, until Close.
func (b *SharedBuffer) Bytes() []byte { return b.mem }

// Close unmaps the memory on this rank; Bytes (and whatever views it) must not be used after.
func (b *SharedBuffer) Close() {
	b.once.Do(func() {
		b.mem = nil
		b.free()
	})
}
