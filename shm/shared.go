package shm

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/comm/store"
)

var _ backends.SharedMemory = (*Group)(nil)

// AllocShared maps nbytes shared by every member, the way the group's segment is made: rank 0
// creates a memfd (never in /dev/shm) and publishes its pid and fd in the store, every member
// maps it through /proc and reports "ok" or its error, and rank 0 closes the file once every
// report is in, so that the memory lives exactly as long as some member maps it. Every member
// reads every report, so that all return the same outcome.
func (g *Group) AllocShared(ctx context.Context, nbytes int) ([]byte, func(), error) {
	cfg := g.cfg
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	mem, err := g.allocShared(ctx, nbytes)
	if err != nil {
		return nil, nil, fmt.Errorf("shm: group %q rank %d of %d: sharing %d bytes: %w", cfg.Name, cfg.Rank, cfg.Size, nbytes, err)
	}
	return mem, func() { _ = unix.Munmap(mem) }, nil
}

func (g *Group) allocShared(ctx context.Context, nbytes int) ([]byte, error) {
	cfg, st := g.cfg, g.cfg.Store
	g.sharedMu.Lock()
	g.sharedSeq++
	key := "shm/shared/" + strconv.FormatUint(g.sharedSeq, 10) + "/"
	g.sharedMu.Unlock()

	var mem []byte
	var err error
	if cfg.Rank == 0 {
		var fd int
		if fd, err = newMemfd(cfg.Name+"-shared", nbytes); err == nil {
			defer unix.Close(fd) // after every member has reported (below)
			mem, err = mapShared(fd, nbytes)
		}
		where := fmt.Sprintf("%d %d", os.Getpid(), fd)
		if err != nil {
			where = "error " + err.Error()
		}
		if serr := st.Set(ctx, key+"where", []byte(where)); serr != nil && err == nil {
			err = serr
		}
	} else {
		mem, err = openShared(ctx, st, key, nbytes)
	}
	report := "ok"
	if err != nil {
		report = err.Error()
	}
	if serr := st.Set(ctx, key+strconv.Itoa(cfg.Rank), []byte(report)); serr != nil && err == nil {
		err = serr
	}
	for p := 0; p < cfg.Size && err == nil; p++ {
		v, gerr := st.Get(ctx, key+strconv.Itoa(p))
		switch {
		case gerr != nil:
			err = fmt.Errorf("waiting for rank %d to map it: %w", p, gerr)
		case string(v) != "ok":
			err = fmt.Errorf("rank %d could not map it: %s", p, v)
		}
	}
	if err != nil {
		if mem != nil {
			_ = unix.Munmap(mem)
		}
		return nil, err
	}
	return mem, nil
}

// openShared maps the memory rank 0 published under key.
func openShared(ctx context.Context, st store.Store, key string, nbytes int) ([]byte, error) {
	v, err := st.Get(ctx, key+"where")
	if err != nil {
		return nil, fmt.Errorf("waiting for rank 0 to create it: %w", err)
	}
	if msg, ok := strings.CutPrefix(string(v), "error "); ok {
		return nil, fmt.Errorf("rank 0 could not create it: %s", msg)
	}
	var pid, fd int
	if _, err := fmt.Sscanf(string(v), "%d %d", &pid, &fd); err != nil {
		return nil, fmt.Errorf("bad record %q from rank 0", v)
	}
	f, err := openPeerFile(pid, fd, "rank 0's shared memory", nbytes)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mapShared(int(f.Fd()), nbytes)
}

// sharedLate is what a peer failed to do when a WaitShared timed out.
const sharedLate = "did not signal in the shared memory: check that every rank runs the same steps between its signals"

// SignalShared advances word and wakes the peers sleeping on it. They registered in this
// rank's sleepers word, the one its phase and mailbox words share (a wake-up on one of those
// with nobody sleeping on it costs a system call, nothing else). The add is a full fence (LOCK
// XADD): the sleepers' load cannot overtake it, so no waiter misses the wake-up.
func (g *Group) SignalShared(word *uint64) {
	atomic.AddUint64(word, 1)
	g.segUse.RLock()
	defer g.segUse.RUnlock()
	if !g.closed.Load() {
		wakeSleepers(word, g.seg.sleepers(g.cfg.Rank))
	}
}

// WaitShared waits until done holds, the way a receive waits for its sender: it reads peer's
// word before it calls done, so a move after done said no is a move past what it read, which
// wakes it.
func (g *Group) WaitShared(ctx context.Context, peer int, word *uint64, done func() bool) error {
	g.segUse.RLock()
	defer g.segUse.RUnlock()
	if g.closed.Load() {
		return fmt.Errorf("%w: group closed", backends.ErrAborted)
	}
	seen := atomic.LoadUint64(word)
	sleepOn := func(peer int) sleeper { return sleeper{word: word, phase: seen + 1, sleepers: g.seg.sleepers(peer)} }
	return g.waitPeer(ctx, peer, sleepOn, sharedLate, func() (bool, bool, error) {
		now := atomic.LoadUint64(word)
		moved := now != seen
		seen = now
		return moved, done(), nil
	})
}
