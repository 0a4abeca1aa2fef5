package xccl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/internal/peerconn"
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

// newWatch connects this rank to every other member (internal/peerconn: the address a TCP
// backend listens on, published in the group's store; gloo's rendezvous). ctx bounds the whole
// setup. Nothing is watched until start.
func newWatch(ctx context.Context, cfg backends.Config, lost func(error)) (*watch, error) {
	tcps, err := peerconn.Connect(ctx, peerconn.Config{Group: cfg, KeyPrefix: watchKeyPrefix, Magic: watchMagic})
	if err != nil {
		return nil, fmt.Errorf("xccl: group %q rank %d of %d: connecting the liveness watch to the peers: %w", cfg.Name, cfg.Rank, cfg.Size, err)
	}
	w := &watch{cfg: cfg, conns: make([]net.Conn, cfg.Size), lost: lost}
	for p, c := range tcps {
		if c != nil {
			_ = c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: watchKeepAlive, Interval: watchKeepAlive, Count: 3})
			w.conns[p] = c
		}
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
				w.lost(backends.PeerAbortError(backends.AbortClass(hdr[0]), peer, lost, w.cfg.GlobalRank(lost), string(reason)))
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
	w.lost(&backends.PeerLostError{Rank: peer, GlobalRank: w.cfg.GlobalRank(peer), Cause: cause})
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
