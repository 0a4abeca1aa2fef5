package gloo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/internal/wait"
)

// The engine: each op's own goroutine posts sends and receives on the group's connections and
// drives them to completion with non-blocking syscalls. Nothing else touches the sockets while an
// op runs (comm runs one op per group at a time), so there are no reader goroutines, no locks and
// no channel hand-off on the critical path. Waiting spins on the sockets first (a sleep/wake-up
// costs ~24 µs on these machines), then yields the CPU, then sleeps in poll(2).

const (
	rxStageSize   = 64 << 10 // receive staging buffer; larger payloads are read straight into place
	pollSliceMsec = 100      // longest single poll(2) sleep, so aborts and deadlines are seen promptly
)

// bulkWait bounds spinning and yielding while large segments are in flight.
const bulkWait = 50 * time.Microsecond

// sendReq is a message being written.
type sendReq struct {
	hdr     [headerSize]byte
	payload []byte
	off     int // bytes of hdr+payload written
	done    bool
}

// recvReq is a posted receive: the next message from a peer that matches want lands in buf.
type recvReq struct {
	want header // Kind, and for collectives the full fingerprint; for p2p the tag
	buf  []byte
	got  int
	done bool
	// for p2p receives: the actual header (its Bytes may be checked by the caller)
	hdr header
}

// unexpected is a message that arrived before anyone asked for it.
type unexpected struct {
	hdr  header
	data []byte
}

// conn is one TCP connection to a peer.
type conn struct {
	group  uint32 // groupHash of the group's name
	peer   int    // group rank
	tcp    *net.TCPConn
	fd     int
	sends  []*sendReq // FIFO; sends[0] is being written
	recvs  []*recvReq // posted receives, FIFO
	queued []*unexpected

	// receive state
	stage      []byte
	start, end int         // unparsed bytes in stage
	cur        *recvReq    // payload being filled (a posted receive)
	curUnexp   *unexpected // or an unexpected message being filled
	curN       int         // payload bytes still to come for cur/curUnexp
	err        error       // sticky: the connection failed

	// sendStuck: a send to this peer could not be written (its buffers are full). The peer may
	// itself be blocked sending to us, so while it lasts this rank drains the connection even
	// beyond its posted receives: that is what makes paired sends deadlock-free.
	sendStuck bool
	// drain: some send of this rank, to any peer, is stuck, and this connection is drained too.
	// The peer a send waits on may be blocked sending to a third rank, which waits on us (a
	// ring of large sends): only reading every connection breaks the cycle.
	drain bool
	// parked: idle, with bytes of a later message waiting in the kernel; not polled again in
	// this wait (it would wake us at once, for nothing).
	parked bool
}

func newConn(peer int, c *net.TCPConn) (*conn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return nil, err
	}
	_ = c.SetNoDelay(true)
	// Socket buffers are left to the kernel's autotuning: fixing them (4 MiB) made a 16 MiB
	// all-reduce 50% slower here.
	_ = c.SetKeepAlive(true)
	_ = c.SetKeepAlivePeriod(2 * time.Second)
	return &conn{peer: peer, tcp: c, fd: fd, stage: make([]byte, rxStageSize)}, nil
}

// busy reports whether the connection has I/O to do for the running op.
func (c *conn) busy() bool { return len(c.sends) > 0 || c.wantsRead() }

// waitsOn reports whether the running op waits on this peer.
func (c *conn) waitsOn() bool { return len(c.sends) > 0 || len(c.recvs) > 0 || c.cur != nil }

// wantsRead reports whether the socket should be read: a receive is posted, a message is half
// read, or a stuck send needs the connection drained. Otherwise bytes stay in the kernel until
// their receive is posted (a peer already in the next op), instead of being copied twice
// through the unexpected queue.
func (c *conn) wantsRead() bool { return len(c.recvs) > 0 || c.curN > 0 || c.sendStuck || c.drain }

// progressWrite writes as much of the send queue as the socket takes.
func (c *conn) progressWrite() (bool, error) {
	progressed := false
	for len(c.sends) > 0 {
		s := c.sends[0]
		var n int
		var err error
		if s.off < headerSize {
			if len(s.payload) == 0 {
				n, err = unix.Write(c.fd, s.hdr[s.off:])
			} else {
				n, err = unix.Writev(c.fd, [][]byte{s.hdr[s.off:], s.payload})
			}
		} else {
			n, err = unix.Write(c.fd, s.payload[s.off-headerSize:])
		}
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				c.sendStuck = true
				return progressed, nil
			}
			err = c.fail(err)
			// The peer may have said why it left before closing: read it.
			_, _ = c.readAfterFailure()
			return progressed, err
		}
		progressed = true
		s.off += n
		if s.off == headerSize+len(s.payload) {
			s.done = true
			c.sends[0] = nil
			c.sends = c.sends[1:]
		}
	}
	c.sendStuck = false
	return progressed, nil
}

// fail records the connection's error, as a lost peer.
func (c *conn) fail(err error) error {
	if c.err == nil {
		cause := err.Error()
		if errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) {
			cause = "connection reset (the process died or closed the group)"
		}
		c.err = &backends.PeerLostError{Rank: c.peer, GlobalRank: -1, Cause: cause}
	}
	return c.err
}

// progressRead reads whatever the socket has and dispatches complete messages. It returns an
// error for a lost peer, a corrupt stream, a mismatch or an abort message.
func (c *conn) progressRead() (bool, error) {
	progressed := false
	for {
		if err := c.dispatch(); err != nil {
			return progressed, err
		}
		if !c.wantsRead() {
			return progressed, nil
		}
		// Stage is drained (or holds a partial header). Read more.
		var n int
		var err error
		if c.curN >= rxStageSize/2 && c.start == c.end {
			// Large payload: read straight into its destination.
			dst := c.curDst()
			n, err = unix.Read(c.fd, dst)
			if n > 0 {
				c.advanceCur(n)
				if c.err != nil {
					return progressed, c.err
				}
			}
		} else {
			n, err = c.readStage()
		}
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				return progressed, nil
			}
			return progressed, c.closedErr(c.fail(err))
		}
		if n == 0 {
			return progressed, c.closedErr(c.fail(errors.New("connection closed (EOF): the process exited or died")))
		}
		progressed = true
	}
}

// stagedHeader decodes the next message's header if the stage holds all of it (ok), leaving it
// staged; a corrupt header is the connection's error.
func (c *conn) stagedHeader() (header, bool, error) {
	if c.end-c.start < headerSize {
		return header{}, false, nil
	}
	h, err := decodeHeader(c.stage[c.start : c.start+headerSize])
	if err != nil {
		c.err = err
		return header{}, false, err
	}
	return h, true, nil
}

// readStage moves the unparsed bytes to the front of the stage and reads more after them.
func (c *conn) readStage() (int, error) {
	if c.start > 0 {
		c.end = copy(c.stage, c.stage[c.start:c.end])
		c.start = 0
	}
	n, err := unix.Read(c.fd, c.stage[c.end:])
	if n > 0 {
		c.end += n
	}
	return n, err
}

// readAfterFailure reads what the socket still holds after the connection failed.
func (c *conn) readAfterFailure() (bool, error) {
	saved := c.err
	c.err = nil
	moved, err := c.progressRead()
	if c.err == nil {
		c.err = saved
	}
	return moved, err
}

// closedErr: a peer that closed after sending everything this rank waits for is not an error
// for the current op (it finished and left); the error stays recorded for later ops.
func (c *conn) closedErr(err error) error {
	if c.waitsOn() {
		return err
	}
	return nil
}

func (c *conn) curDst() []byte {
	if c.cur != nil {
		return c.cur.buf[c.cur.got:]
	}
	return c.curUnexp.data[len(c.curUnexp.data)-c.curN:]
}

func (c *conn) advanceCur(n int) {
	c.curN -= n
	if c.cur != nil {
		c.cur.got += n
		if c.curN == 0 {
			c.cur.done = true
			c.cur = nil
		}
		return
	}
	if c.curN == 0 {
		c.queued = append(c.queued, c.curUnexp)
		c.curUnexp = nil
		// A receive may have been posted while this message was arriving.
		if err := c.matchQueued(); err != nil && c.err == nil {
			c.err = err
		}
	}
}

// dispatch consumes staged bytes: payload for the message being filled, then whole headers.
func (c *conn) dispatch() error {
	for c.start < c.end {
		if c.curN > 0 {
			n := copy(c.curDst()[:min(c.curN, c.end-c.start)], c.stage[c.start:c.end])
			c.start += n
			c.advanceCur(n)
			if c.err != nil {
				return c.err
			}
			continue
		}
		h, ok, err := c.stagedHeader()
		if !ok {
			return err
		}
		if !c.wantsRead() && h.Kind != msgAbort {
			return nil // a later message: it waits in the stage for its receive
		}
		c.start += headerSize
		if err := c.begin(h); err != nil {
			return err
		}
	}
	return nil
}

// begin starts receiving the payload of a message with header h: into the posted receive it
// matches, or into a new unexpected message.
func (c *conn) begin(h header) error {
	if h.Group != c.group {
		return fmt.Errorf("%w: rank %d sent a message of another group (hash %#x, this group's is %#x): the connection is miswired",
			backends.ErrMismatch, c.peer, h.Group, c.group)
	}
	if h.Kind != msgAbort {
		for i, r := range c.recvs {
			if r.want.Kind != h.Kind || (h.Kind == msgP2P && r.want.Tag != h.Tag) {
				continue
			}
			if h.Kind == msgCollective {
				if why := mismatch(h, r.want); why != "" {
					return c.mismatchErr(h, r.want, why)
				}
			} else if err := c.p2pMismatch(h, r); err != nil {
				return err
			}
			c.recvs = append(c.recvs[:i], c.recvs[i+1:]...)
			r.hdr = h
			if h.Bytes == 0 {
				r.done = true
				return nil
			}
			c.cur, c.curN = r, int(h.Bytes)
			return nil
		}
	}
	if h.Bytes > 1<<40 {
		return fmt.Errorf("corrupt stream from rank %d: payload of %d bytes", c.peer, h.Bytes)
	}
	u := &unexpected{hdr: h, data: make([]byte, h.Bytes)}
	if h.Bytes == 0 {
		c.queued = append(c.queued, u)
		return c.matchQueued()
	}
	c.curUnexp, c.curN = u, int(h.Bytes)
	return nil
}

// p2pMismatch is the error for a message h that receive r matched by tag but cannot take: another
// size or dtype.
func (c *conn) p2pMismatch(h header, r *recvReq) error {
	if h.Bytes == uint64(len(r.buf)) && h.DType == r.want.DType {
		return nil
	}
	return fmt.Errorf("%w: rank %d sent %d bytes of %s with tag %d, this rank receives %d bytes of %s: post a receive of the size and dtype sent",
		backends.ErrMismatch, c.peer, h.Bytes, h.DType, h.Tag, len(r.buf), r.want.DType)
}

func (c *conn) mismatchErr(got, want header, why string) error {
	return fmt.Errorf("%w: rank %d sent %s, this rank expects %s: %s",
		backends.ErrMismatch, c.peer, got.describe(), want.describe(), why)
}

// abortMsg returns the error carried by a queued abort message, if one arrived.
func (c *conn) abortMsg() error {
	for _, u := range c.queued {
		if u.hdr.Kind == msgAbort {
			return peerAbortError(c.peer, u)
		}
	}
	return nil
}

func peerAbortError(from int, u *unexpected) error {
	return backends.PeerAbortError(backends.AbortClass(u.hdr.Tag), from, int(u.hdr.Root), -1, string(u.data))
}

// takeQueued matches a posted receive against messages that arrived early.
func (c *conn) takeQueued(r *recvReq) (bool, error) {
	for i, u := range c.queued {
		switch {
		case u.hdr.Kind == msgAbort:
			return false, peerAbortError(c.peer, u)
		case u.hdr.Kind != r.want.Kind:
			continue
		case u.hdr.Kind == msgP2P && u.hdr.Tag != r.want.Tag:
			continue
		case u.hdr.Kind == msgCollective:
			if why := mismatch(u.hdr, r.want); why != "" {
				return false, c.mismatchErr(u.hdr, r.want, why)
			}
		default:
			if err := c.p2pMismatch(u.hdr, r); err != nil {
				return false, err
			}
		}
		copy(r.buf, u.data)
		r.hdr, r.got, r.done = u.hdr, len(u.data), true
		c.queued = append(c.queued[:i], c.queued[i+1:]...)
		return true, nil
	}
	return false, nil
}

// engine drives the connections of one group for the op that is running.
type engine struct {
	group  uint32 // groupHash of the group's name, stamped on every message
	policy wait.Policy
	bulk   bool // the running op moves large segments (set by the algorithm)
	rank   int
	conns  []*conn // indexed by group rank; nil for self
	pfds   []unix.PollFd
}

// post queues a send of payload to peer with header h.
func (e *engine) send(peer int, h header, payload []byte) *sendReq {
	s := &sendReq{payload: payload}
	h.Bytes = uint64(len(payload))
	h.Group = e.group
	h.encode(s.hdr[:])
	c := e.conns[peer]
	c.sends = append(c.sends, s)
	return s
}

// recv posts a receive of the next message from peer matching want into buf.
func (e *engine) recv(peer int, want header, buf []byte) (*recvReq, error) {
	want.Bytes = uint64(len(buf))
	want.Group = e.group
	r := &recvReq{want: want, buf: buf}
	c := e.conns[peer]
	c.recvs = append(c.recvs, r)
	if err := c.matchQueued(); err != nil {
		return nil, err
	}
	// A peer that closed may still have sent this message before it left.
	if !r.done && c.err != nil {
		return nil, c.err
	}
	return r, nil
}

// matchQueued hands early arrivals to posted receives, in order. Invariant afterwards: no posted
// receive has a matching queued message, so new arrivals can be matched directly.
func (c *conn) matchQueued() error {
	if len(c.queued) == 0 {
		return nil
	}
	kept := c.recvs[:0]
	for _, r := range c.recvs {
		ok, err := c.takeQueued(r)
		if err != nil {
			return err
		}
		if !ok {
			kept = append(kept, r)
		}
	}
	for i := len(kept); i < len(c.recvs); i++ {
		c.recvs[i] = nil
	}
	c.recvs = kept
	return nil
}

// progress does one round of non-blocking I/O on every busy connection (all connections when
// all is set). It reports whether anything moved.
func (e *engine) progress(all bool) (bool, error) {
	e.updateDrain()
	moved := false
	for _, c := range e.conns {
		if c == nil || (!all && !c.busy()) {
			continue
		}
		if c.err != nil {
			if !c.waitsOn() {
				// A peer this op does not wait on is gone: it may have done its part and left.
				// An op that needs it fails then.
				continue
			}
			return moved, c.failure(c.err)
		}
		if len(c.sends) > 0 {
			m, err := c.progressWrite()
			if err != nil {
				return moved, c.failure(err)
			}
			moved = moved || m
		}
		if c.wantsRead() || c.start < c.end {
			m, err := c.progressRead()
			if err != nil {
				return moved, c.failure(err)
			}
			moved = moved || m
		}
	}
	return moved, nil
}

// updateDrain sets every connection's drain flag: while any send is stuck, all are read.
func (e *engine) updateDrain() {
	stuck := false
	for _, c := range e.conns {
		if c != nil && c.sendStuck {
			stuck = true
			break
		}
	}
	for _, c := range e.conns {
		if c != nil {
			c.drain = stuck
		}
	}
}

// failure is the error to report for err on a connection: the abort message the peer sent
// before it closed, if one arrived (it says why), else err.
func (c *conn) failure(err error) error {
	if am := c.abortMsg(); am != nil {
		return am
	}
	return err
}

// abortQueued returns the error of an abort message any peer sent.
func (e *engine) abortQueued() error {
	for _, c := range e.conns {
		if c != nil {
			if err := c.abortMsg(); err != nil {
				return err
			}
		}
	}
	return nil
}

// waiter is what wait needs to know about the op for error messages and abort checks.
type waiter interface {
	aborted() error
}

// wait drives I/O until done() is true: spin, then yield, then sleep in poll(2).
func (e *engine) wait(ctx context.Context, g waiter, done func() bool) error {
	for _, c := range e.conns {
		if c != nil {
			c.parked = false
		}
	}
	var idleSince time.Time
	var yield wait.Yielder
	checks := 0
	for {
		if done() {
			return nil
		}
		moved, err := e.progress(false)
		// The op may complete even though the peer then closed or aborted: that is for the
		// next op to find out.
		if done() {
			return nil
		}
		if err != nil {
			return err
		}
		if err := e.abortQueued(); err != nil {
			return err
		}
		if moved {
			idleSince = time.Time{}
			continue
		}
		checks++
		if checks&63 == 0 {
			if err := g.aborted(); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return e.contextErr(ctx)
			}
		}
		now := time.Now()
		if idleSince.IsZero() {
			idleSince = now
			continue
		}
		idle := now.Sub(idleSince)
		policy := e.policy
		if e.bulk {
			// A segment takes hundreds of µs to arrive: a wake-up is cheap next to that, and
			// spinning or yielding would take CPU from peers that share the cores.
			policy = policy.Capped(bulkWait)
		}
		switch policy.At(idle) {
		case wait.SpinPhase:
			continue
		case wait.YieldPhase:
			yield.Yield()
			continue
		}
		if err := g.aborted(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return e.contextErr(ctx)
		}
		if err := e.sleep(ctx); err != nil {
			return err
		}
	}
}

// sleep blocks in poll(2) until a connection the op reads is readable, a pending send can
// write, an idle connection shows something (an abort or EOF from any peer wakes us), or a short
// slice passes.
func (e *engine) sleep(ctx context.Context) error {
	e.pfds = e.pfds[:0]
	for _, c := range e.conns {
		if c == nil {
			continue
		}
		var ev int16
		if c.wantsRead() || (!c.parked && c.err == nil) {
			ev |= unix.POLLIN
		}
		if len(c.sends) > 0 {
			ev |= unix.POLLOUT
		}
		if ev != 0 {
			e.pfds = append(e.pfds, unix.PollFd{Fd: int32(c.fd), Events: ev})
		}
	}
	timeout := pollSliceMsec
	if dl, ok := ctx.Deadline(); ok {
		if ms := int(time.Until(dl)/time.Millisecond) + 1; ms < timeout {
			timeout = ms
		}
	}
	if len(e.pfds) == 0 {
		time.Sleep(time.Duration(timeout) * time.Millisecond)
		return nil
	}
	if _, err := unix.Poll(e.pfds, timeout); err != nil && err != unix.EINTR {
		return fmt.Errorf("poll: %w", err)
	}
	for _, c := range e.conns {
		if c == nil || c.wantsRead() || c.err != nil || c.parked {
			continue
		}
		for _, p := range e.pfds {
			if int(p.Fd) == c.fd && p.Revents != 0 {
				if err := c.inspectIdle(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// inspectIdle looks at what woke an idle connection: an abort is returned, EOF recorded (a peer
// that finished and left matters only if we wait on it), and the start of a later message is
// left in the stage and the connection parked.
func (c *conn) inspectIdle() error {
	if c.end-c.start < headerSize && c.end < len(c.stage) {
		n, err := c.readStage()
		switch {
		case n > 0:
		case err == unix.EAGAIN || err == unix.EINTR:
		case err != nil:
			c.fail(err)
			return nil
		default:
			c.fail(errors.New("connection closed (EOF): the process exited or died"))
			return nil
		}
	}
	h, ok, err := c.stagedHeader()
	if !ok {
		return err
	}
	if h.Kind != msgAbort {
		c.parked = true
		return nil
	}
	_, _ = c.readAfterFailure() // reads the abort message whole
	for i := 0; i < 100 && c.abortMsg() == nil && c.curN > 0; i++ {
		time.Sleep(time.Millisecond) // the rest of the reason is on its way
		_, _ = c.readAfterFailure()
	}
	return c.abortMsg()
}

func (e *engine) contextErr(ctx context.Context) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ctx.Err()
	}
	var recvFrom, sendTo []int
	for _, c := range e.conns {
		if c == nil {
			continue
		}
		if len(c.recvs) > 0 || c.cur != nil {
			recvFrom = append(recvFrom, c.peer)
		}
		if len(c.sends) > 0 {
			sendTo = append(sendTo, c.peer)
		}
	}
	waiting := ""
	if len(recvFrom) > 0 {
		waiting += fmt.Sprintf("; still waiting for data from group rank(s) %v", recvFrom)
	}
	if len(sendTo) > 0 {
		waiting += fmt.Sprintf("; still sending to group rank(s) %v (they are not receiving)", sendTo)
	}
	return fmt.Errorf("%w: the op did not complete in time%s: check that every rank calls the same collectives in the same order, or raise the timeout (GCCL_TIMEOUT)",
		backends.ErrTimeout, waiting)
}
