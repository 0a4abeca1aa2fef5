package gloo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/internal/peerconn"
	"github.com/gccl/gccl/internal/wait"
)

// Name is the name the backend registers under.
const Name = "gloo"

func init() { backends.Register(Name, Backend{}) }

// Backend creates gloo groups. The zero value is ready to use.
type Backend struct{}

var _ backends.Backend = Backend{}

// Group is one process group's connections: one TCP connection per peer.
type Group struct {
	cfg     backends.Config
	log     *slog.Logger
	eng     engine
	opMu    sync.Mutex // held while an op runs
	abort   atomic.Pointer[error]
	notify  sync.Once
	closed  atomic.Bool
	scratch []byte // reusable temporary buffer, only touched under opMu
}

var _ backends.Group = (*Group)(nil)

// NewGroup listens, publishes its address in the group's store, and connects to every peer:
// it dials the lower ranks and accepts the higher ones.
func (Backend) NewGroup(ctx context.Context, cfg backends.Config) (backends.Group, error) {
	g := &Group{cfg: cfg, log: cfg.Logger}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.eng.rank = cfg.Rank
	g.eng.group = groupHash(cfg.Name)
	g.eng.policy = wait.NewPolicy(cfg.LocalSize)
	g.eng.conns = make([]*conn, cfg.Size)
	if cfg.Size == 1 {
		return g, nil
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	if err := g.connect(ctx); err != nil {
		g.closeConns()
		return nil, fmt.Errorf("gloo: group %q rank %d of %d: connecting to peers: %w", cfg.Name, cfg.Rank, cfg.Size, err)
	}
	return g, nil
}

func (g *Group) connect(ctx context.Context) error {
	tcps, err := peerconn.Connect(ctx, peerconn.Config{Group: g.cfg, KeyPrefix: "gloo/addr/", Magic: helloMagic})
	if err != nil {
		return err
	}
	for p, t := range tcps {
		if t == nil {
			continue
		}
		c, err := newConn(p, t)
		if err != nil {
			peerconn.CloseAll(tcps)
			return err
		}
		c.group = g.eng.group
		g.eng.conns[p] = c
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

func (g *Group) setAbort(cause error) {
	cause = backends.AsAbort(cause)
	g.abort.CompareAndSwap(nil, &cause)
}

// Abort fails the running op and every later one, tells the peers, and closes the connections.
func (g *Group) Abort(cause error) {
	g.setAbort(cause)
	g.opMu.Lock()
	defer g.opMu.Unlock()
	g.notifyPeers()
}

// notifyPeers sends an abort message to every peer it can reach cleanly, then closes. Called
// with opMu held.
func (g *Group) notifyPeers() {
	g.notify.Do(func() {
		err := g.aborted()
		class, lost := backends.ClassifyAbort(err)
		reason := []byte(err.Error())
		if len(reason) > 4096 {
			reason = reason[:4096]
		}
		// First in the store, for peers whose connection breaks before the message arrives.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = g.cfg.Store.Set(ctx, abortKey(g.cfg.Rank), []byte(fmt.Sprintf("%d %d|%s", class, lost, reason)))
		cancel()
		var hdr [headerSize]byte
		h := header{Group: g.eng.group, Kind: msgAbort, Tag: int64(class), Root: int32(lost), Bytes: uint64(len(reason))}
		h.encode(hdr[:])
		for _, c := range g.eng.conns {
			// A connection in the middle of writing a message cannot take a header; its peer
			// will see the close instead.
			if c == nil || c.err != nil || (len(c.sends) > 0 && c.sends[0].off > 0) {
				continue
			}
			_ = c.tcp.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			_, _ = c.tcp.Write(append(hdr[:], reason...))
		}
		g.closeConns()
	})
}

func (g *Group) closeConns() {
	for _, c := range g.eng.conns {
		if c != nil {
			c.tcp.Close()
			if c.err == nil {
				c.err = fmt.Errorf("%w: connection closed", backends.ErrAborted)
			}
		}
	}
}

// Close aborts the group (telling peers) and releases its connections.
func (g *Group) Close() error {
	if g.closed.Swap(true) {
		return nil
	}
	g.setAbort(fmt.Errorf("%w: group closed", backends.ErrAborted))
	g.opMu.Lock()
	defer g.opMu.Unlock()
	// A clean close sends no abort: peers may still be finishing the last op with others. A
	// peer that waits on this rank sees the connection close.
	g.notify.Do(g.closeConns)
	return nil
}

// run runs one op with the group's connections; on error the group is aborted.
func (g *Group) run(op backends.Op, fn func() error) error {
	g.opMu.Lock()
	defer g.opMu.Unlock()
	if err := g.aborted(); err != nil {
		return backends.AbortedEarlier(err)
	}
	g.eng.bulk = op.Count*op.DType.Size() > smallGatherBytes
	err := fn()
	if err != nil {
		err = g.resolve(g.explainLoss(err))
		g.setAbort(err)
		g.notifyPeers()
	}
	return err
}

// explainLoss: when a connection died, the peer may have aborted on purpose (a mismatch, a
// timeout) and closed while this rank was mid-message, so no abort message got through. The
// reason it published in the store then replaces "peer lost". A peer that really died published
// nothing, and the lookup gives up after a short wait.
func (g *Group) explainLoss(err error) error {
	for _, c := range g.eng.conns {
		if c == nil || c.err == nil || c.err != err {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), abortLookup)
		defer cancel()
		v, gerr := g.cfg.Store.Get(ctx, abortKey(c.peer))
		if gerr != nil {
			return err
		}
		var class, lost int
		var reason string
		if _, perr := fmt.Sscanf(string(v), "%d %d", &class, &lost); perr != nil {
			return err
		}
		if i := strings.Index(string(v), "|"); i >= 0 {
			reason = string(v[i+1:])
		}
		return peerAbortError(c.peer, &unexpected{hdr: header{Tag: int64(class), Root: int32(lost)}, data: []byte(reason)})
	}
	return err
}

// abortLookup bounds the store lookup of a lost peer's abort reason.
const abortLookup = 300 * time.Millisecond

func abortKey(rank int) string { return "gloo/abort/" + strconv.Itoa(rank) }

// resolve fills in the global rank of a lost peer.
func (g *Group) resolve(err error) error {
	var pl *backends.PeerLostError
	if errors.As(err, &pl) && pl.GlobalRank < 0 && pl.Rank >= 0 && pl.Rank < len(g.cfg.GlobalRanks) {
		pl.GlobalRank = g.cfg.GlobalRanks[pl.Rank]
	}
	return err
}

// tmp returns a scratch buffer of n bytes (valid until the next call, under opMu).
func (g *Group) tmp(n int) []byte {
	if cap(g.scratch) < n {
		g.scratch = make([]byte, n)
	}
	return g.scratch[:n]
}

// waitAll drives I/O until every request is done.
func (g *Group) waitAll(ctx context.Context, sends []*sendReq, recvs []*recvReq) error {
	return g.eng.wait(ctx, g, func() bool {
		for _, s := range sends {
			if !s.done {
				return false
			}
		}
		for _, r := range recvs {
			if !r.done {
				return false
			}
		}
		return true
	})
}

// exchange sends sbuf to `to` and receives rbuf from `from` in step `step` of op, concurrently.
// Either side may be skipped with a negative rank.
func (g *Group) exchange(ctx context.Context, op backends.Op, step, to int, sbuf []byte, from int, rbuf []byte) error {
	var s *sendReq
	var r *recvReq
	if to >= 0 {
		s = g.eng.send(to, collectiveHeader(op, step, len(sbuf)), sbuf)
	}
	if from >= 0 {
		var err error
		if r, err = g.eng.recv(from, collectiveHeader(op, step, len(rbuf)), rbuf); err != nil {
			return err
		}
	}
	return g.eng.wait(ctx, g, func() bool { return (s == nil || s.done) && (r == nil || r.done) })
}
