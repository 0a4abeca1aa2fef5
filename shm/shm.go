package shm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/internal/wait"
)

// Name is the name the backend registers under.
const Name = "shm"

func init() { backends.Register(Name, Backend{}) }

// Backend creates shared-memory groups. The zero value uses the defaults.
type Backend struct{}

var _ backends.Backend = Backend{}

// Defaults, overridable with GCCL_SHM_SLOT_BYTES and GCCL_SHM_MAILBOX_BYTES.
const (
	// Per rank and buffer: the piece size of large collectives. Pieces that stay in the cache
	// beat fewer syncs: at 2 ranks a 2 MiB all-reduce took ~275 µs with 256 KiB against
	// ~410-500 µs with 4 MiB, 16 MiB 2.7-2.9 ms against 3.3-4.2 ms (BENCHMARKS.md).
	defaultSlotBytes    = 256 << 10
	defaultMailboxBytes = 256 << 10 // per ordered pair, for send/recv
)

// Group is one process group's shared-memory segment and this rank's view of it.
type Group struct {
	cfg backends.Config
	log *slog.Logger
	seg *segment
	// sleepers is this rank's sleepers word, checked after every publish (futex.go).
	sleepers *uint32
	pids     []int
	phase    uint64 // sync phases this rank has passed
	opSeq    uint64 // collectives run (selects the fingerprint slot)
	piece    uint64 // pieces run (selects the data buffer)

	policy wait.Policy
	opMu   sync.Mutex
	abort  atomic.Pointer[error]
	closed atomic.Bool
	p2p    p2pState
	tmp    []byte
	srcs   [][]byte
	// singleCopy: every member can read every other's memory (process_vm_readv); scLimits:
	// from what sizes the group uses it (singlecopy.go).
	singleCopy bool
	scLimits   singleCopyLimits
	// writes: how this rank writes its slots, through its caches or past them (slotwrites.go).
	writes slotWrites
	// sharedSeq counts AllocShared calls (their store keys); sharedMu guards it.
	sharedMu  sync.Mutex
	sharedSeq uint64
	// segUse keeps the segment mapped while SignalShared and WaitShared, which run beside ops
	// (not under opMu), read its sleepers words, and while Abort, from any goroutine, writes
	// this rank's abort word; Close takes it to unmap.
	segUse sync.RWMutex
}

var (
	_ backends.Group       = (*Group)(nil)
	_ backends.Poster      = (*Group)(nil)
	_ backends.PacedSender = (*Group)(nil)
	_ backends.EagerSender = (*Group)(nil)
)

// CallsPosted: every op calls backends.Posted once it has posted this rank's part, before it
// waits for a peer (in syncTouching, exchangeInline and waitPeer).
func (*Group) CallsPosted() {}

// NewGroup maps the group's segment. Group rank 0 creates it and publishes where to find it;
// the others map it and report back; rank 0 then drops its handle, so the segment lives exactly
// as long as some member maps it.
func (Backend) NewGroup(ctx context.Context, cfg backends.Config) (backends.Group, error) {
	g := &Group{cfg: cfg, log: cfg.Logger, policy: wait.NewPolicy(max(cfg.LocalSize, cfg.Size))}
	if g.log == nil {
		g.log = slog.Default()
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	if err := g.setup(ctx); err != nil {
		if g.seg != nil {
			g.seg.unmap()
		}
		return nil, fmt.Errorf("shm: group %q rank %d of %d: %w", cfg.Name, cfg.Rank, cfg.Size, err)
	}
	g.p2p.init(cfg.Size, g.seg.l.mailboxBytes)
	g.writes.modes, g.writes.lead = g.seg.ctrl(0, ctrlWrites), cfg.Rank == 0
	g.writes.crowded = max(cfg.LocalSize, cfg.Size) > slotWritesMaxCrowding*wait.LocalCPUs()
	return g, nil
}

func envBytes(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 4096 {
		return v / 64 * 64
	}
	return def
}

func (g *Group) setup(ctx context.Context) error {
	cfg := g.cfg
	nt, err := parseNTSetting(os.Getenv("GCCL_SHM_NONTEMPORAL"))
	if err != nil {
		return err
	}
	g.writes.setting = nt
	l := newLayout(cfg.Size, envBytes("GCCL_SHM_SLOT_BYTES", defaultSlotBytes), envBytes("GCCL_SHM_MAILBOX_BYTES", defaultMailboxBytes))
	st := cfg.Store
	host := backends.HostID(cfg.Hostname)
	// Every member must be on this host.
	if err := st.Set(ctx, "shm/host/"+strconv.Itoa(cfg.Rank), []byte(host)); err != nil {
		return err
	}
	for p := 0; p < cfg.Size; p++ {
		v, err := st.Get(ctx, "shm/host/"+strconv.Itoa(p))
		if err != nil {
			return fmt.Errorf("waiting for rank %d: %w", p, err)
		}
		if string(v) != host {
			return fmt.Errorf("rank %d runs on host %q and this rank on %q: the shm backend needs every member on one host; use backend \"gloo\" (or \"auto\") for groups that span hosts", p, v, host)
		}
	}
	if cfg.Rank == 0 {
		seg, fd, err := createSegment(cfg.Name, l)
		if err != nil {
			return err
		}
		g.seg = seg
		defer unix.Close(fd)
		where := fmt.Sprintf("%d %d %d", os.Getpid(), fd, l.size)
		if err := st.Set(ctx, "shm/segment", []byte(where)); err != nil {
			return err
		}
		if cfg.Size > 1 {
			// Keep the memfd open until every member has mapped it.
			if _, err := st.Get(ctx, "shm/all-mapped"); err != nil {
				return fmt.Errorf("waiting for every rank to map the segment: %w", err)
			}
		}
	} else {
		v, err := st.Get(ctx, "shm/segment")
		if err != nil {
			return fmt.Errorf("waiting for rank 0's segment: %w", err)
		}
		var pid, fd, size int
		if _, err := fmt.Sscanf(string(v), "%d %d %d", &pid, &fd, &size); err != nil {
			return fmt.Errorf("bad segment record %q", v)
		}
		if size != l.size {
			return fmt.Errorf("rank 0's segment has %d bytes, this rank expects %d: set the same GCCL_SHM_* values on every rank", size, l.size)
		}
		if g.seg, err = openSegment(pid, fd, l); err != nil {
			return err
		}
		n, err := st.Add(ctx, "shm/mapped", 1)
		if err != nil {
			return err
		}
		if int(n) == cfg.Size-1 {
			if err := st.Set(ctx, "shm/all-mapped", []byte("1")); err != nil {
				return err
			}
		}
	}
	atomic.StoreUint64(g.seg.ctrl(cfg.Rank, ctrlPid), uint64(os.Getpid()))
	g.sleepers = g.seg.sleepers(cfg.Rank)
	// Learn every member's pid for liveness checks, and rank 0's single-copy thresholds, which
	// every member uses.
	// Each also says where its probeWord is, so that every member finds out whether it can read
	// every other's memory (single-copy collectives and messages).
	lim := envLimits()
	probe := uint64(uintptr(unsafe.Pointer(&probeWord)))
	me := fmt.Sprintf("%d %d %d %d", os.Getpid(), lim.move, lim.allReduce, probe)
	if err := st.Set(ctx, "shm/pid/"+strconv.Itoa(cfg.Rank), []byte(me)); err != nil {
		return err
	}
	g.pids = make([]int, cfg.Size)
	var reads uint64
	for p := range g.pids {
		v, err := st.Get(ctx, "shm/pid/"+strconv.Itoa(p))
		if err != nil {
			return err
		}
		var l singleCopyLimits
		if _, err := fmt.Sscanf(string(v), "%d %d %d %d", &g.pids[p], &l.move, &l.allReduce, &probe); err != nil {
			return fmt.Errorf("shm: rank %d's record %q: %w", p, v, err)
		}
		if p == 0 {
			g.scLimits = l
		}
		if p != cfg.Rank && p < 64 && canRead(g.pids[p], probe) {
			reads |= 1 << p
		}
	}
	// Peers send this rank single-copy messages only once it says it can read them.
	atomic.StoreUint64(g.seg.ctrl(cfg.Rank, ctrlReads), reads)
	if cfg.Size > 1 && g.scLimits != (singleCopyLimits{}) {
		all := cfg.Size <= 64 && reads == (uint64(1)<<cfg.Size-1)&^(1<<cfg.Rank)
		return g.agreeSingleCopy(ctx, all)
	}
	return nil
}

// aborted returns the error that aborted the group, or nil.
func (g *Group) aborted() error {
	if p := g.abort.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records err as the group's abort cause and publishes it to the peers.
// The abort word: the backends.AbortClass in the high half, the lost rank + 1 in the low half.
func (g *Group) fail(err error) {
	err = backends.AsAbort(err)
	if !g.abort.CompareAndSwap(nil, &err) {
		return
	}
	class, lost := backends.ClassifyAbort(err)
	// Abort may come from another goroutine while Close unmaps the segment.
	g.segUse.RLock()
	defer g.segUse.RUnlock()
	if !g.closed.Load() && g.seg != nil && g.seg.mem != nil {
		atomic.StoreUint64(g.seg.ctrl(g.cfg.Rank, ctrlAbort), uint64(class)<<32|uint64(lost+1))
	}
}

// peerAbort is the error for a peer's published abort word.
func (g *Group) peerAbort(p int, word uint64) error {
	lost := int(word&0xffffffff) - 1
	return backends.PeerAbortError(backends.AbortClass(word>>32), p, lost, g.cfg.GlobalRank(lost), "")
}

// Abort fails the running op and every later one, and tells the peers.
func (g *Group) Abort(cause error) {
	if cause == nil {
		cause = errors.New("aborted")
	}
	g.fail(cause)
}

// Close releases this rank's mapping. The segment itself goes when the last member unmaps it.
func (g *Group) Close() error {
	if g.closed.Swap(true) {
		return nil
	}
	err := fmt.Errorf("%w: group closed", backends.ErrAborted)
	g.abort.CompareAndSwap(nil, &err)
	g.opMu.Lock()
	defer g.opMu.Unlock()
	// A WaitShared in progress sees the abort and lets go.
	g.segUse.Lock()
	defer g.segUse.Unlock()
	if g.seg != nil {
		g.seg.unmap()
	}
	return nil
}

// run runs one op; on error the group is aborted.
func (g *Group) run(fn func() error) error {
	g.opMu.Lock()
	defer g.opMu.Unlock()
	if err := g.aborted(); err != nil {
		return backends.AbortedEarlier(err)
	}
	err := fn()
	if err != nil {
		g.fail(err)
	}
	return err
}

// scratch returns a private buffer of n bytes (valid until the next call, under opMu).
func (g *Group) scratch(n int) []byte {
	if cap(g.tmp) < n {
		g.tmp = make([]byte, n)
	}
	return g.tmp[:n]
}

// clock reads the monotonic clock used for idle times: one read, where time.Now also reads the
// wall clock (~20 ns more here, on every pause of a wait).
func clock() time.Duration { return time.Since(clockBase) }

var clockBase = time.Now()
