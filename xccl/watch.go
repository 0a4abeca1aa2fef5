package xccl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gccl/gccl/backends"
)

// watch tells a group when a member dies, which oneCCL does not: every pair of ranks holds a TCP
// connection that carries nothing but a goodbye or an abort, and a goroutine per peer blocks
// reading it. The kernel closes a process's sockets when it exits or is killed, so a read that
// ends (EOF, reset) without a goodbye means the peer is gone, within milliseconds on one host or
// across hosts; TCP keepalive probes (every second, three missed) catch a host that vanished
// without closing anything. A dead peer, or a peer's abort message, aborts the group through
// lost, which makes the blocked op and every later one fail.
type watch struct {
	cfg   backends.Config
	conns []net.Conn
	lost  func(error) // aborts the group

	writeMu sync.Mutex // one message at a time on each connection
	told    bool       // an abort or goodbye went out: send nothing more
	closing atomic.Bool
	readers sync.WaitGroup
}

// Watch messages: one kind byte; an abort adds its class, the lost rank (int32, -1 for none) and
// a reason (uint16 length, then the bytes).
const (
	watchBye   = 'B'
	watchAbort = 'A'

	watchMagic     = 0x6763636c // "gccl"
	watchKeyPrefix = "xccl/watch/addr/"
	watchKeepAlive = time.Second
	watchWrite     = 200 * time.Millisecond // bound on writing a goodbye or an abort
	maxWatchReason = 4096
)

// newWatch connects this rank to every other member: it listens on the address a TCP backend
// uses (backends.SocketHost), publishes it in the group's store, dials the lower ranks and
// accepts the higher ones. ctx bounds the whole setup. Nothing is watched until start.
func newWatch(ctx context.Context, cfg backends.Config, lost func(error)) (*watch, error) {
	w := &watch{cfg: cfg, conns: make([]net.Conn, cfg.Size), lost: lost}
	if cfg.Size == 1 {
		return w, nil
	}
	if err := w.connect(ctx); err != nil {
		for _, c := range w.conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("xccl: group %q rank %d of %d: connecting the liveness watch to the peers: %w", cfg.Name, cfg.Rank, cfg.Size, err)
	}
	return w, nil
}

// start begins watching: one reader per peer, which may call lost from then on.
func (w *watch) start() {
	for p, c := range w.conns {
		if c != nil {
			w.readers.Add(1)
			go w.read(p, c)
		}
	}
}

func (w *watch) connect(ctx context.Context) error {
	cfg := w.cfg
	lc := net.ListenConfig{KeepAliveConfig: keepAlive()}
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(backends.SocketHost(cfg.MasterAddr), "0"))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	if err := cfg.Store.Set(ctx, watchKeyPrefix+strconv.Itoa(cfg.Rank), []byte(ln.Addr().String())); err != nil {
		return fmt.Errorf("publishing the address: %w", err)
	}
	type result struct {
		peer int
		c    net.Conn
		err  error
	}
	results := make(chan result, cfg.Size)
	go func() { // accept the higher ranks
		if dl, ok := ctx.Deadline(); ok {
			_ = ln.(*net.TCPListener).SetDeadline(dl)
		}
		for n := cfg.Rank + 1; n < cfg.Size; {
			c, err := ln.Accept()
			if err != nil {
				results <- result{peer: -1, err: fmt.Errorf("accepting the higher ranks: %w", err)}
				return
			}
			peer, err := w.readHello(c)
			if err != nil {
				cfg.Logger.Warn("xccl: refused a watch connection", "group", cfg.Name, "from", c.RemoteAddr().String(), "err", err)
				c.Close()
				continue
			}
			n++
			results <- result{peer: peer, c: c}
		}
	}()
	for peer := 0; peer < cfg.Rank; peer++ {
		go func() {
			c, err := w.dial(ctx, peer)
			results <- result{peer: peer, c: c, err: err}
		}()
	}
	for range cfg.Size - 1 {
		select {
		case r := <-results:
			if r.err != nil {
				return r.err
			}
			if w.conns[r.peer] != nil {
				r.c.Close()
				return fmt.Errorf("two connections claim to be rank %d", r.peer)
			}
			w.conns[r.peer] = r.c
		case <-ctx.Done():
			var missing []int
			for p, c := range w.conns {
				if c == nil && p != cfg.Rank {
					missing = append(missing, p)
				}
			}
			return fmt.Errorf("%w: ranks %v did not connect (%w): are all %d ranks running backend xccl?", backends.ErrTimeout, missing, ctx.Err(), cfg.Size)
		}
	}
	return nil
}

func keepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: watchKeepAlive, Interval: watchKeepAlive, Count: 3}
}

// hello: magic, rank, size and the group's name, so that a stray connection is refused.
func (w *watch) hello() []byte {
	b := make([]byte, 16, 16+len(w.cfg.Name))
	binary.LittleEndian.PutUint32(b[0:], watchMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(w.cfg.Rank))
	binary.LittleEndian.PutUint32(b[8:], uint32(w.cfg.Size))
	binary.LittleEndian.PutUint32(b[12:], uint32(len(w.cfg.Name)))
	return append(b, w.cfg.Name...)
}

func (w *watch) readHello(c net.Conn) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var b [16]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, err
	}
	rank, size, n := int(binary.LittleEndian.Uint32(b[4:])), int(binary.LittleEndian.Uint32(b[8:])), binary.LittleEndian.Uint32(b[12:])
	if binary.LittleEndian.Uint32(b[0:]) != watchMagic || n > 4096 {
		return 0, errors.New("not a gccl xccl peer (bad hello)")
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(c, name); err != nil {
		return 0, err
	}
	switch {
	case string(name) != w.cfg.Name:
		return 0, fmt.Errorf("hello for group %q, this is group %q", name, w.cfg.Name)
	case size != w.cfg.Size:
		return 0, fmt.Errorf("rank %d says the group has %d ranks, this rank says %d", rank, size, w.cfg.Size)
	case rank <= w.cfg.Rank || rank >= size:
		return 0, fmt.Errorf("unexpected rank %d in hello", rank)
	}
	return rank, nil
}

func (w *watch) dial(ctx context.Context, peer int) (net.Conn, error) {
	addr, err := w.cfg.Store.Get(ctx, watchKeyPrefix+strconv.Itoa(peer))
	if err != nil {
		return nil, fmt.Errorf("waiting for rank %d's address: %w", peer, err)
	}
	d := net.Dialer{KeepAliveConfig: keepAlive()}
	delay := 5 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, "tcp", string(addr))
		if err == nil {
			if _, err = c.Write(w.hello()); err == nil {
				return c, nil
			}
			c.Close()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to rank %d at %s: %w", peer, addr, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// read blocks on peer's connection until it ends. A goodbye makes its end harmless; an abort
// message aborts the group with the peer's reason; an end without either means the peer died.
func (w *watch) read(peer int, c net.Conn) {
	defer w.readers.Done()
	var kind [1]byte
	_, err := io.ReadFull(c, kind[:])
	if err == nil && kind[0] == watchAbort {
		var hdr [7]byte
		if _, err = io.ReadFull(c, hdr[:]); err == nil {
			reason := make([]byte, binary.LittleEndian.Uint16(hdr[5:]))
			if _, err = io.ReadFull(c, reason); err == nil && !w.closing.Load() {
				lost := int(int32(binary.LittleEndian.Uint32(hdr[1:])))
				w.lost(backends.PeerAbortError(backends.AbortClass(hdr[0]), peer, lost, w.globalRank(lost), string(reason)))
				return
			}
		}
	}
	if err == nil && kind[0] == watchBye {
		return
	}
	if w.closing.Load() {
		return
	}
	cause := "its liveness connection closed without a goodbye (the process exited or was killed)"
	switch {
	case err == nil:
		cause = fmt.Sprintf("its liveness connection sent an unknown message %q", kind[0])
	case !errors.Is(err, io.EOF):
		cause = fmt.Sprintf("its liveness connection broke (%v): the process, its host or the network is gone", err)
	}
	w.lost(&backends.PeerLostError{Rank: peer, GlobalRank: w.globalRank(peer), Cause: cause})
}

// globalRank is the global rank of group rank r (-1 when r is out of range).
func (w *watch) globalRank(r int) int {
	if r < 0 || r >= len(w.cfg.GlobalRanks) {
		return -1
	}
	return w.cfg.GlobalRanks[r]
}

// abort tells every peer why this rank aborted, once, so that they fail with the same kind of
// error (backends.PeerAbortError) instead of waiting for their deadline.
func (w *watch) abort(cause error) {
	class, lost := backends.ClassifyAbort(cause)
	reason := cause.Error()
	if len(reason) > maxWatchReason {
		reason = reason[:maxWatchReason]
	}
	msg := make([]byte, 8, 8+len(reason))
	msg[0], msg[1] = watchAbort, byte(class)
	binary.LittleEndian.PutUint32(msg[2:], uint32(int32(lost)))
	binary.LittleEndian.PutUint16(msg[6:], uint16(len(reason)))
	w.send(append(msg, reason...))
}

// send writes msg to every peer, unless a message went out already.
func (w *watch) send(msg []byte) {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	if w.told {
		return
	}
	w.told = true
	for _, c := range w.conns {
		if c != nil {
			_ = c.SetWriteDeadline(time.Now().Add(watchWrite))
			_, _ = c.Write(msg)
		}
	}
}

// close says goodbye (a clean close is not a death), closes the connections and waits for the
// readers, so that none aborts the group once Close has begun.
func (w *watch) close() {
	w.closing.Store(true)
	w.send([]byte{watchBye})
	for _, c := range w.conns {
		if c != nil {
			c.Close()
		}
	}
	w.readers.Wait()
}
