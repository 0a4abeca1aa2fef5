package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// dialProbe dials the connections of one Client and watches what happens on
// them, so that Dial can tell "nothing listens" from "something that is not
// a gccl store listens", and fail at once when a peer answers in a foreign
// protocol instead of waiting for its deadline.
type dialProbe struct {
	addr string
	log  *slog.Logger

	mu       sync.Mutex
	abort    func(error) // cancels the handshake; nil once it succeeded
	last     *attempt    // the most recent connection attempt
	attempts int
	callErr  error // the last handshake call that failed on a live connection
}

// outcome is what is known about one connection attempt.
type outcome int

const (
	dialFailed     outcome = iota // no TCP connection (refused, unreachable, DNS)
	connected                     // TCP connection up; the peer has sent nothing yet
	closedSilently                // the peer closed the connection without sending a byte
	spokeHTTP2                    // the peer opened with an HTTP/2 SETTINGS frame
	spokeForeign                  // the peer sent bytes that are not HTTP/2
)

type attempt struct {
	outcome outcome
	err     error  // dialFailed, closedSilently
	head    []byte // spokeForeign: the first bytes the peer sent
}

// dial is the gRPC context dialer: a TCP dial whose connection is watched.
func (p *dialProbe) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if err != nil {
		p.last = &attempt{outcome: dialFailed, err: err}
		if p.abort != nil {
			p.log.Debug("store not reachable yet", "attempt", p.attempts, "err", err)
		}
		return nil, err
	}
	a := &attempt{outcome: connected}
	p.last = a
	return &sniffConn{Conn: conn, probe: p, attempt: a}, nil
}

// handshakeDone stops the probe from aborting: later reconnections of a
// working client are gRPC's business.
func (p *dialProbe) handshakeDone() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.abort = nil
}

func (p *dialProbe) noteCallError(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.callErr = err
}

// observe records what a connection's first bytes say about the peer, and
// aborts the handshake at once when they are not HTTP/2.
func (p *dialProbe) observe(a *attempt, head []byte, readErr error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case len(head) == 0:
		a.outcome, a.err = closedSilently, readErr
	case isSettingsFrameHeader(head):
		a.outcome = spokeHTTP2
	default:
		a.outcome, a.head = spokeForeign, bytes.Clone(head)
		if p.abort != nil {
			p.abort(fmt.Errorf("%w: the server at %s answered like %s; check that MASTER_ADDR/MASTER_PORT point at the gccl store",
				ErrNotAStore, p.addr, describePeer(head)))
		}
	}
}

// giveUp builds Dial's error once its deadline has passed (or its context
// was cancelled), from the most recent connection attempt.
func (p *dialProbe) giveUp(waited time.Duration, ctxErr error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	const hint = "check that MASTER_ADDR/MASTER_PORT point at the gccl store"
	a := p.last
	if a == nil {
		return fmt.Errorf("store: no gccl store at %s after %s: no connection attempt finished; is rank 0 / gccl run up? check MASTER_ADDR/MASTER_PORT (%w)",
			p.addr, waited, ctxErr)
	}
	switch a.outcome {
	case dialFailed:
		return fmt.Errorf("store: no gccl store at %s after %s: %w; is rank 0 / gccl run up? check MASTER_ADDR/MASTER_PORT (%w)",
			p.addr, waited, rootCause(a.err), ctxErr)
	case closedSilently:
		return fmt.Errorf("%w: %s accepted connections but closed them without a word (tried for %s); %s (%w)",
			ErrNotAStore, p.addr, waited, hint, ctxErr)
	case connected:
		// A silent peer may be a gccl store that is stopped or swamped (the
		// kernel accepts connections for it), so this is not ErrNotAStore.
		return fmt.Errorf("store: %s accepted a connection but did not answer the gccl store handshake within %s; is the store process stopped or overloaded? %s (%w)",
			p.addr, waited, hint, ctxErr)
	case spokeForeign:
		return fmt.Errorf("%w: the server at %s answered like %s; %s (%w)",
			ErrNotAStore, p.addr, describePeer(a.head), hint, ctxErr)
	default: // spokeHTTP2
		if p.callErr != nil {
			return fmt.Errorf("store: the server at %s speaks HTTP/2 but did not complete the gccl store handshake within %s (last error: %v); %s (%w)",
				p.addr, waited, p.callErr, hint, ctxErr)
		}
		return fmt.Errorf("store: the gccl store at %s accepted the connection but did not answer the handshake within %s; is it overloaded or stopped (SIGSTOP)? (%w)",
			p.addr, waited, ctxErr)
	}
}

// sniffConn is a client connection that shows its first bytes to the probe.
// gRPC reads a connection from one goroutine, so its fields need no lock.
type sniffConn struct {
	net.Conn
	probe   *dialProbe
	attempt *attempt
	head    []byte
	decided bool
}

// frameHeaderLen is the size of an HTTP/2 frame header; a gRPC server opens
// with a SETTINGS frame.
const frameHeaderLen = 9

func (c *sniffConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if !c.decided {
		const keep = 64 // enough to quote the peer in an error message
		c.head = append(c.head, b[:min(n, keep-len(c.head))]...)
		if len(c.head) >= frameHeaderLen || err != nil {
			c.decided = true
			c.probe.observe(c.attempt, c.head, err)
			c.head = nil
		}
	}
	return n, err
}

// isSettingsFrameHeader reports whether h starts with the header of a
// non-ACK HTTP/2 SETTINGS frame on stream 0, as every HTTP/2 server sends
// first.
func isSettingsFrameHeader(h []byte) bool {
	if len(h) < frameHeaderLen {
		return false
	}
	length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	const typeSettings, flagAck = 0x4, 0x1
	streamID := (uint32(h[5])<<24 | uint32(h[6])<<16 | uint32(h[7])<<8 | uint32(h[8])) & 0x7fffffff
	return h[3] == typeSettings && h[4]&flagAck == 0 && streamID == 0 && length%6 == 0
}

// describePeer names the protocol a foreign peer seems to speak.
func describePeer(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("HTTP/")):
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		return fmt.Sprintf("an HTTP/1 server (%q)", line)
	case len(head) >= 2 && (head[0] == 0x15 || head[0] == 0x16) && head[1] == 0x03:
		return "a TLS server"
	default:
		return fmt.Sprintf("something that does not speak HTTP/2 (it sent %q)", head)
	}
}

// rootCause strips a dial error down to its reason ("connection refused",
// "no such host", "i/o timeout"), keeping it wrapped.
func rootCause(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
