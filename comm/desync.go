package comm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gccl/gccl/backends"
)

// The desync watch. Ranks that issue a group's ops in different orders can wait for each other
// for good: one in a collective that needs the other's part, the other in a receive that the
// first can only send after that collective; or both in receives from each other. Each sees
// only a peer that does not answer, until the group's timeout (10 minutes by default). So:
//   - once an op has waited desyncDelay, its rank publishes it in the group's store (a
//     collective or a receive, under desyncKey), and withdraws it when the op ends;
//   - a rank whose receive has waited that long looks at its peer's: a peer that waits in a
//     collective of the group that needs this rank's part, or in a receive from this rank, at
//     two looks in a row, is in a deadlock with it (the group runs each rank's ops in issue
//     order, so neither can get to the op the other waits for); so is a rank whose send waits
//     for a peer in such a collective, on a backend whose sends wait for their receiver's
//     point-to-point op (backends.PacedSender: shm);
//   - that rank then records a verdict in the group's store (desyncVerdictKey) and aborts the
//     group with ErrMismatch; the other members' ops fail through the abort and name the
//     verdict (withDesyncVerdict).
//
// Only a wait that cannot end otherwise is reported, seconds after it began. Any other send may
// finish while its receiver is busy elsewhere (gloo's ranks read every connection in any op),
// so a wait that involves one is left to the timeout; so are two collectives (the backends
// compare their fingerprints) and a broadcast or scatter at a non-root, which needs only the
// root. Ops on different groups are not compared: a rank may have another goroutine that will
// issue the op the peer waits for.
const (
	desyncDelay = time.Second            // an op waits this long before its rank publishes it
	desyncTick  = 500 * time.Millisecond // how often the watch looks (at most)
	// An op that keeps waiting is looked at every desyncTick, then every eighth of its wait so
	// far: a pipeline stage that waits minutes for its input costs the store little.
	desyncBackoff = 8
)

const desyncVerdictKey = "desync/verdict"

func desyncKey(rank int) string { return "desync/op/" + strconv.Itoa(rank) }

// waitingOp is an op that a group's rank waits in, as the watch publishes it.
type waitingOp struct {
	id              int64 // the op's id in the group (its flight-recorder op_id); 0: none
	kind            backends.OpKind
	seq             int64 // collective or p2p sequence number
	peer, root, tag int   // group ranks
	paced           bool  // a send that waits for its receiver's p2p op (backends.PacedSender)
}

// published reports whether the watch publishes op: a collective or a receive.
func (op waitingOp) published() bool {
	return op.kind != backends.OpSend && op.kind != backends.OpSendRecvBatch
}

// looks reports whether the rank waiting in op looks at its peer's.
func (op waitingOp) looks() bool { return op.kind == backends.OpRecv || op.paced }

// needs reports whether op, waiting at group rank r, cannot end without group rank other's part.
func (op waitingOp) needs(r, other int) bool {
	switch op.kind {
	case backends.OpSend:
		return op.paced && op.peer == other // else it may end while the peer is elsewhere
	case backends.OpSendRecvBatch:
		return false // not described enough to tell
	case backends.OpRecv:
		return op.peer == other
	case backends.OpBroadcast, backends.OpScatter:
		return r != op.root && other == op.root
	case backends.OpReduce, backends.OpGather:
		return r == op.root
	}
	return true // all-reduce, all-gather, reduce-scatter, all-to-all, barrier
}

func (op waitingOp) encode() []byte {
	return fmt.Appendf(nil, "%d|%d|%d|%d|%d|%d", op.id, op.kind, op.seq, op.peer, op.root, op.tag)
}

func parseWaitingOp(v []byte) (waitingOp, bool) {
	f := strings.Split(string(v), "|")
	if len(f) != 6 {
		return waitingOp{}, false
	}
	var n [6]int64
	for i, s := range f {
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return waitingOp{}, false
		}
		n[i] = x
	}
	op := waitingOp{id: n[0], kind: backends.OpKind(n[1]), seq: n[2], peer: int(n[3]), root: int(n[4]), tag: int(n[5])}
	return op, op.id > 0
}

// stallWatch is a group's part of the desync watch: the op this rank waits in, once it has
// waited a while. The op's goroutine sets and clears it; the world's watch goroutine reads it,
// publishes it and looks at the peer's.
type stallWatch struct {
	mu        sync.Mutex
	op        waitingOp
	since     time.Time
	published int64     // the id of the op in the store under desyncKey(rank), if any
	suspect   [2]int64  // this op's id and the peer's, at the last look that saw a deadlock
	nextLook  time.Time // for an op that looks
}

// begin records the running op e as waiting since then (a send, paced by its receiver if
// pacedSends). deadlineCtx.Err calls it once the op has waited stallMark, so that it costs an
// op that waits less nothing.
func (s *stallWatch) begin(e *frEntry, since time.Time, pacedSends bool) {
	op := waitingOp{id: e.opID, kind: e.kind, seq: e.seqs[0], peer: e.peer, root: e.root, tag: e.tag,
		paced: pacedSends && e.kind == backends.OpSend}
	if e.kind.IsP2P() {
		op.seq = e.seqs[1]
	}
	s.mu.Lock()
	s.op, s.since, s.suspect, s.nextLook = op, since, [2]int64{}, time.Time{}
	s.mu.Unlock()
}

// end: the op that began waiting is over; its record, if published, leaves the store before
// the group's next op runs (or, if the store does not answer, at the watch's next look).
func (s *stallWatch) end(pg *ProcessGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.withdraw(context.Background(), pg)
	s.op = waitingOp{}
}

// withdraw deletes the published record, under mu: one left behind would tell a peer that this
// rank still waits in an op it has left.
func (s *stallWatch) withdraw(ctx context.Context, pg *ProcessGroup) {
	if s.published == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := pg.store.Delete(ctx, desyncKey(pg.rank)); err == nil {
		s.published = 0
	}
}

// look publishes the op this rank has waited in for desyncDelay and, for a receive or a paced
// send, looks at the peer's; a deadlock seen at two looks in a row aborts the group.
func (s *stallWatch) look(ctx context.Context, pg *ProcessGroup, now time.Time) {
	s.mu.Lock()
	op, waited := s.op, now.Sub(s.since)
	if s.published != 0 && s.published != op.id {
		s.withdraw(ctx, pg) // end could not
	}
	if op.id == 0 || waited < desyncDelay {
		s.mu.Unlock()
		return
	}
	if op.published() && s.published != op.id {
		// Under mu, so that end's Delete cannot overtake this Set.
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		if pg.store.Set(sctx, desyncKey(pg.rank), op.encode()) == nil {
			s.published = op.id
		}
		cancel()
	}
	if !op.looks() || now.Before(s.nextLook) {
		s.mu.Unlock()
		return
	}
	s.nextLook = now.Add(max(desyncTick, waited/desyncBackoff))
	s.mu.Unlock()

	v, err := peek(ctx, pg.store, desyncKey(op.peer))
	theirs, ok := parseWaitingOp(v)
	// A paced send and its peer's receive from this rank: the receive reads the send's bytes.
	matched := op.kind == backends.OpSend && theirs.kind == backends.OpRecv
	deadlocked := err == nil && ok && theirs.needs(op.peer, pg.rank) && !matched
	if !s.confirm(op.id, theirs.id, deadlocked) {
		return
	}
	verdict := pg.desyncVerdict(op, theirs, waited)
	vctx, cancel := context.WithTimeout(ctx, time.Second)
	_, _ = pg.store.CompareAndSet(vctx, desyncVerdictKey, nil, []byte(verdict))
	cancel()
	pg.backend.Abort(fmt.Errorf("%w: %s", ErrMismatch, verdict))
}

// confirm reports whether the look at op (mine) saw the peer's op (theirs) in a deadlock with
// it, as the look before did: then op is reported, and not looked at again (end still
// withdraws its record).
func (s *stallWatch) confirm(mine, theirs int64, deadlocked bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch seen := [2]int64{mine, theirs}; {
	case s.op.id != mine: // the op ended meanwhile
		return false
	case !deadlocked:
		s.suspect = [2]int64{}
		return false
	case s.suspect != seen:
		s.suspect = seen // and look again before believing it
		return false
	}
	s.op = waitingOp{}
	return true
}

// desyncVerdict says what the deadlock between this rank's receive or paced send (mine, waiting
// for waited) and its peer's op (theirs) is, and what to do.
func (pg *ProcessGroup) desyncVerdict(mine, theirs waitingOp, waited time.Duration) string {
	me, peer := pg.rankName(pg.rank), pg.rankName(mine.peer)
	var what string
	switch {
	case mine.kind == backends.OpSend:
		what = fmt.Sprintf("%s waits in %s #%d, which needs %s, and %s waits in send #%d (tag %d) to %s, which %s only takes in a recv, after that %s",
			peer, theirs.kind, theirs.seq, me, me, mine.seq, mine.tag, peer, peer, theirs.kind)
	case theirs.kind == backends.OpRecv:
		what = fmt.Sprintf("%s waits in recv #%d (tag %d) from %s, and %s in recv #%d (tag %d) from %s; neither sends",
			me, mine.seq, mine.tag, peer, peer, theirs.seq, theirs.tag, me)
	default:
		what = fmt.Sprintf("%s waits in %s #%d, which needs %s, and %s waits in recv #%d (tag %d) from %s, which can only come after that %s",
			peer, theirs.kind, theirs.seq, me, me, mine.seq, mine.tag, peer, theirs.kind)
	}
	return fmt.Sprintf("deadlock after %.1f s: %s: the ranks issued the group's ops in different orders; issue the same collectives in the same order on every rank, and each recv where its send stands in the peer's order (or pair them in BatchSendRecv)",
		waited.Seconds(), what)
}

// withDesyncVerdict adds to err, a mismatch reported by a peer, the deadlock that peer found,
// if it found one on this group; otherwise err is returned as it is.
func (pg *ProcessGroup) withDesyncVerdict(err error) error {
	if !errors.Is(err, ErrMismatch) || pg.size == 1 {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	v, perr := peek(ctx, pg.store, desyncVerdictKey)
	if perr != nil || len(v) == 0 || strings.Contains(err.Error(), string(v)) {
		return err
	}
	return fmt.Errorf("%w: %s (this rank saw: %w)", ErrMismatch, v, err)
}

// desyncWatch is the world's goroutine that looks at its groups' waiting ops every desyncTick.
type desyncWatch struct {
	mu     sync.Mutex
	groups map[*ProcessGroup]struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// watchDesync adds pg to the groups the watch looks at, starting the watch with the first.
func (w *world) watchDesync(pg *ProcessGroup) {
	if pg.size == 1 {
		return
	}
	d := &w.desync
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.groups == nil {
		d.groups = map[*ProcessGroup]struct{}{}
		ctx, cancel := context.WithCancel(context.Background())
		d.cancel, d.done = cancel, make(chan struct{})
		go d.run(ctx)
	}
	d.groups[pg] = struct{}{}
}

// unwatchDesync removes pg, as it closes.
func (w *world) unwatchDesync(pg *ProcessGroup) {
	w.desync.mu.Lock()
	delete(w.desync.groups, pg)
	w.desync.mu.Unlock()
}

// stop ends the watch, as the world closes.
func (d *desyncWatch) stop() {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.cancel = nil
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (d *desyncWatch) run(ctx context.Context) {
	defer close(d.done)
	tick := time.NewTicker(desyncTick)
	defer tick.Stop()
	var groups []*ProcessGroup
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			d.mu.Lock()
			groups = groups[:0]
			for pg := range d.groups {
				groups = append(groups, pg)
			}
			d.mu.Unlock()
			for _, pg := range groups {
				pg.stall.look(ctx, pg, now)
			}
		}
	}
}
