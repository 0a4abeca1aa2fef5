package comm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/flightrecorder"
	"github.com/gccl/gccl/tensor"
)

// ProcessGroup is a set of ranks that run collectives together, over one backend. Ops on a group
// run in the order they were issued, synchronous and asynchronous alike. It is safe for
// concurrent use; concurrent callers' ops are ordered by when they were issued. Every rank must
// issue the same ops in the same order, so goroutines that share a group must agree on their
// order themselves (or use a group each): ops of different shapes that cross are ErrMismatch,
// but two ops of the same shape that cross pair up with each other's data, which no check sees.
type ProcessGroup struct {
	w           *world
	id          int
	name, desc  string
	label       string // how errors name the group: its name, and its description if any
	rank, size  int
	globalRanks []int
	backendName string
	backend     backends.Group
	// recordedBackend prefixes flight-recorder profiling names: backendName, or for backend
	// "auto" the backend it picked (shm, gloo), as PyTorch names the backend that runs the op.
	recordedBackend string
	posts           bool                 // the backend calls backends.Posted (backends.Poster)
	eager           backends.EagerSender // the backend's, or nil: async sends that fit run at once
	pacedSends      bool                 // a send that waits waits for its receiver's p2p op (backends.PacedSender)
	store           store.Store
	timeout         time.Duration
	ownsWorld       bool

	mu        sync.Mutex
	cond      sync.Cond     // signals turn changes to waiters (under mu)
	issued    uint64        // tickets handed out
	turn      atomic.Uint64 // ticket allowed to run
	waiters   atomic.Int32  // goroutines waiting on cond for a turn
	collSeq   uint64        // collectives issued
	p2pSeq    uint64        // p2p ops issued
	queue     []*request
	worker    bool      // async worker started (it runs until the group closes)
	idle      sync.Cond // wakes the worker for the next async op, or to exit (under mu)
	closed    bool
	children  map[string]int // NewGroup / Split counters, for stable group names
	monitored uint64         // MonitoredBarrier calls
	lostNamed atomic.Bool    // an op asked the exit records whom a lost peer was (exitedMember)
	names     [16]string     // flight-recorder profiling names by op kind
	opCtx     deadlineCtx    // the running op's context (one op runs at a time)
	stall     stallWatch     // the running op, once it waits (for the desync watch)
	frOps     [16]frOpCache  // by op kind, for the op that holds the turn (see record)
}

// Rank is this process's rank in the group.
func (pg *ProcessGroup) Rank() int { return pg.rank }

// Size is the number of ranks in the group.
func (pg *ProcessGroup) Size() int { return pg.size }

// Name is the group's name, unique in the job ("0" for the world).
func (pg *ProcessGroup) Name() string { return pg.name }

// Backend is the name of the group's backend.
func (pg *ProcessGroup) Backend() string { return pg.backendName }

// GlobalRank maps a group rank to its global rank.
func (pg *ProcessGroup) GlobalRank(groupRank int) int { return pg.globalRanks[groupRank] }

// GlobalRanks lists the global ranks of the members, in group-rank order.
func (pg *ProcessGroup) GlobalRanks() []int { return append([]int(nil), pg.globalRanks...) }

// Store is the group's view of the rendezvous store (keys are private to the group).
func (pg *ProcessGroup) Store() store.Store { return pg.store }

// Recorder is the flight recorder the group writes to.
func (pg *ProcessGroup) Recorder() *flightrecorder.Recorder { return pg.w.recorder }

// Timeout is the group's per-op timeout.
func (pg *ProcessGroup) Timeout() time.Duration { return pg.timeout }

// request is one validated op, ready to run: plain data (no closures), so that a synchronous
// op's request lives on the caller's stack.
type request struct {
	op          backends.Op
	red         Reduction
	in, out     *tensor.Tensor   // out is the flat buffer for list outputs
	inEl, outEl []int            // all-to-all split sizes, in elements
	list        []*tensor.Tensor // list outputs, filled from out after the op
	ticket      uint64
	seqs        [2]int64 // the group's collective and p2p counters just after the op was issued
	record      uint64   // flight-recorder id, when issue recorded the op (recorded)
	recorded    bool
	work        *Work
	// batch holds the sends and receives of an OpSendRecvBatch, batchRecords their
	// flight-recorder entries (made by issue, in its capacity). A batch takes one ticket per op,
	// so that each has its own op id.
	batch        []backends.P2P
	batchRecords []uint64
}

// tickets is how many tickets req takes: one per op.
func (req *request) tickets() uint64 { return max(1, uint64(len(req.batch))) }

// Work is the handle of an asynchronous op.
type Work struct {
	done chan struct{}
	err  error
	// What the op is, for the error when a wait ends first: formatted only then, so that an
	// async op on the fast path costs no formatting. group is "" until the op is issued.
	kind  backends.OpKind
	seq   uint64
	group string
}

// describe names the op: its kind, its sequence number and group once issued.
func (w *Work) describe() string {
	switch {
	case w.group != "":
		return fmt.Sprintf("%s #%d on group %s", w.kind, w.seq, w.group)
	case w.kind != 0:
		return w.kind.String()
	}
	return "op"
}

// Wait blocks until the op completes or ctx ends. When ctx ends first it returns ctx's error
// and the op carries on (it still has its own timeout).
func (w *Work) Wait(ctx context.Context) error {
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return fmt.Errorf("gccl: waiting for %s: %w (the op is still running)", w.describe(), ctx.Err())
	}
}

// Done is closed when the op has completed, successfully or not.
func (w *Work) Done() <-chan struct{} { return w.done }

// IsCompleted reports whether the op has completed.
func (w *Work) IsCompleted() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// Err is the op's error once it has completed (nil before, or on success).
func (w *Work) Err() error {
	if !w.IsCompleted() {
		return nil
	}
	return w.err
}

func failedWork(err error) *Work {
	return &Work{done: closedDone, err: err}
}

// closedDone is the done channel of every Work complete when it is returned.
var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// frEntry is what an op's flight-recorder entry is made from, and the entry once made.
type frEntry struct {
	in, out *tensor.Tensor
	kind    backends.OpKind
	peer    int
	root    int // and tag: what the desync watch publishes of an op that waits (see stallWatch)
	tag     int
	opID    int64
	seqs    [2]int64 // collective, p2p
	id      uint64
	made    bool
}

// setFREntry makes e req's entry, field by field (see record).
func (req *request) setFREntry(e *frEntry) {
	e.in, e.out, e.kind, e.peer, e.opID = req.in, req.out, req.op.Kind, req.op.Peer, int64(req.ticket+1)
	e.root, e.tag = req.op.Root, req.op.Tag
	e.seqs, e.id, e.made = req.seqs, req.record, req.recorded
}

// issue assigns the op its sequence number and ticket and reports whether it may run now: its
// turn has come, and it is synchronous (sync) or an async send that the backend can finish at
// once (backends.EagerSender). Such an op on a backend that posts (backends.Poster) is recorded
// by runNow, once the backend has posted this rank's part (see deadlineCtx.Posted), when the
// peers no longer wait for this rank; any other op (a batch too) is recorded here, started if it
// runs now.
func (pg *ProcessGroup) issue(req *request, sync bool) (ready bool, err error) {
	pg.mu.Lock()
	if pg.closed {
		pg.mu.Unlock()
		return false, pg.opError(req.op.Kind, 0, ErrClosed)
	}
	if req.op.Kind.IsP2P() {
		pg.p2pSeq++
		req.op.Seq = pg.p2pSeq
	} else {
		pg.collSeq++
		req.op.Seq = pg.collSeq
	}
	req.ticket = pg.issued
	pg.issued += req.tickets()
	req.seqs = [2]int64{int64(pg.collSeq), int64(pg.p2pSeq)}
	ready = pg.turn.Load() == req.ticket && (sync || pg.sendsNow(req))
	pg.mu.Unlock()
	if req.batch != nil {
		pg.recordBatch(req, ready)
	} else if !ready || !pg.posts {
		var e frEntry
		req.setFREntry(&e)
		pg.record(&e, ready)
		req.record, req.recorded = e.id, true
	}
	return ready, nil
}

// recordBatch makes the flight-recorder entries of a batch's ops, started or scheduled: like
// PyTorch's for a coalesced batch, they share the batch's sequence numbers and have an op id
// each.
func (pg *ProcessGroup) recordBatch(req *request, started bool) {
	req.batchRecords = req.batchRecords[:len(req.batch)]
	for i, p := range req.batch {
		e := frEntry{kind: p.Op.Kind, peer: p.Op.Peer, opID: int64(req.ticket) + int64(i) + 1, seqs: req.seqs}
		if p.Op.Kind == backends.OpSend {
			e.in = p.Buf
		} else {
			e.out = p.Buf
		}
		pg.record(&e, started)
		req.batchRecords[i] = e.id
	}
	req.recorded = true
}

// started marks req's flight-recorder entries started, when its turn comes after issue.
func (pg *ProcessGroup) started(req *request) {
	if req.batch == nil {
		pg.w.recorder.Started(req.record)
		return
	}
	for _, id := range req.batchRecords {
		pg.w.recorder.Started(id)
	}
}

// record makes e's flight-recorder entry, started or scheduled.
func (pg *ProcessGroup) record(e *frEntry, started bool) {
	e.made = true
	rec := pg.w.recorder
	if !rec.Enabled() {
		return
	}
	// An op started as it is recorded holds the group's turn, which makes it the only user of
	// the group's Op cache.
	var c *frOpCache
	if started && int(e.kind) < len(pg.frOps) {
		c = &pg.frOps[e.kind]
		if c.fits(e) {
			e.id = rec.RecordOp(c.op, e.seqs[0], e.seqs[1], e.opID, true)
			return
		}
	}
	// Shapes go through stack buffers: the recorder copies them.
	var dims [16]int64
	inSizes, inDtypes, nIn, rest := shapesOf(e.in, dims[:0:8])
	outSizes, outDtypes, nOut, _ := shapesOf(e.out, rest)
	// Field by field into a zero record: a composite literal is built aside and copied whole,
	// and the copy's wide loads stall on the narrow stores just made (~20 ns per op).
	var r flightrecorder.OpRecord
	r.Group, r.ProfilingName, r.OpID = pg.id, pg.profilingName(e.kind, e.peer), e.opID
	r.IsP2P, r.Timeout, r.Started, r.CaptureStack = e.kind.IsP2P(), pg.timeout, started, pg.w.frStacks
	// Like PyTorch, every entry carries both counters as they stand after this op.
	r.CollectiveSeqID, r.P2PSeqID = e.seqs[0], e.seqs[1]
	if c == nil {
		e.id = rec.RecordShapes(&r, inSizes[:nIn], outSizes[:nOut], inDtypes[:nIn], outDtypes[:nOut])
		return
	}
	c.set(rec.NewOp(&r, inSizes[:nIn], outSizes[:nOut], inDtypes[:nIn], outDtypes[:nOut]), e)
	e.id = rec.RecordOp(c.op, e.seqs[0], e.seqs[1], e.opID, true)
}

// frOpCache is the flight-recorder Op of the group's last op of one kind and what it was made
// from, so that an op that repeats it (a decode loop's all-reduce) is recorded without the
// recorder comparing shapes and names.
type frOpCache struct {
	op      *flightrecorder.Op
	peer    int
	in, out frTensorKey
}

// frTensorKey is what an Op records of an op's tensor: none, or its dtype and shape, the shape
// held here (up to frMaxDims dims; dims -1 for a tensor with more, which fits nothing) so that
// comparing it touches no other memory.
type frTensorKey struct {
	present bool
	dtype   tensor.DType
	dims    int
	shape   [frMaxDims]int64
}

const frMaxDims = 4

func (c *frOpCache) fits(e *frEntry) bool {
	return c.op != nil && c.peer == e.peer && c.in.fits(e.in) && c.out.fits(e.out)
}

func (c *frOpCache) set(op *flightrecorder.Op, e *frEntry) {
	c.op, c.peer = op, e.peer
	c.in.set(e.in)
	c.out.set(e.out)
}

// fits reports whether t is what k holds.
func (k *frTensorKey) fits(t *tensor.Tensor) bool {
	if k.dims < 0 {
		return false
	}
	if t == nil {
		return !k.present
	}
	if !k.present || k.dtype != t.DType() || k.dims != t.Dim() {
		return false
	}
	for d := range k.dims {
		if k.shape[d] != int64(t.Size(d)) {
			return false
		}
	}
	return true
}

func (k *frTensorKey) set(t *tensor.Tensor) {
	k.present, k.dims = t != nil, 0
	if t == nil {
		return
	}
	k.dtype, k.dims = t.DType(), t.Dim()
	if k.dims > frMaxDims {
		k.dims = -1 // fits nothing: the next op of this kind makes its Op again
		return
	}
	for d := range k.dims {
		k.shape[d] = int64(t.Size(d))
	}
}

func (pg *ProcessGroup) profilingName(kind backends.OpKind, peer int) string {
	switch kind {
	case backends.OpSend:
		return fmt.Sprintf("%s:send %d->%d", pg.recordedBackend, pg.rank, peer)
	case backends.OpRecv:
		return fmt.Sprintf("%s:recv %d<-%d", pg.recordedBackend, pg.rank, peer)
	}
	if int(kind) < len(pg.names) && pg.names[kind] != "" {
		return pg.names[kind]
	}
	return pg.recordedBackend + ":" + kind.String()
}

// execute runs req on the caller's goroutine once every op issued before it has finished.
func (pg *ProcessGroup) execute(ctx context.Context, req *request) error {
	ready, err := pg.issue(req, true)
	if err != nil {
		return err
	}
	if !ready {
		pg.waitTurn(req.ticket)
		pg.started(req)
	}
	err = pg.runNow(ctx, req)
	pg.finishTurn(req)
	return err
}

// sendsNow reports whether req, an async op whose turn has come, is a send the backend can
// finish at once.
func (pg *ProcessGroup) sendsNow(req *request) bool {
	return req.op.Kind == backends.OpSend && pg.eager != nil && pg.eager.SendFits(req.op.Peer, req.in.NBytes())
}

// enqueue hands req to the group's worker and returns its Work; an async send that can run now
// runs on the caller's goroutine instead, and its Work is complete when enqueue returns.
func (pg *ProcessGroup) enqueue(req *request) *Work {
	req.work = &Work{done: closedDone, kind: req.op.Kind}
	ready, err := pg.issue(req, false)
	if err != nil {
		req.work.err = err
		return req.work
	}
	req.work.seq, req.work.group = req.op.Seq, pg.label
	if ready {
		req.work.err = pg.runNow(context.Background(), req)
		pg.finishTurn(req)
		return req.work
	}
	req.work.done = make(chan struct{})
	pg.mu.Lock()
	pg.queue = append(pg.queue, req)
	if !pg.worker {
		pg.worker = true
		go pg.work()
	} else {
		pg.idle.Signal()
	}
	pg.mu.Unlock()
	return req.work
}

// work runs queued async ops in ticket order, and between them waits for the next until the
// group closes. A worker started per burst of async ops cost each one ~1 µs: the goroutine's
// start and its stack's growth to what the backend's calls need.
func (pg *ProcessGroup) work() {
	for {
		pg.mu.Lock()
		for len(pg.queue) == 0 && !pg.closed {
			pg.idle.Wait()
		}
		if len(pg.queue) == 0 { // closed
			pg.worker = false
			pg.mu.Unlock()
			return
		}
		req := pg.queue[0]
		pg.queue = pg.queue[1:]
		pg.waitTurnLocked(req.ticket)
		pg.mu.Unlock()
		pg.started(req)
		req.work.err = pg.runNow(context.Background(), req)
		close(req.work.done)
		pg.finishTurn(req)
	}
}

func (pg *ProcessGroup) waitTurn(ticket uint64) {
	pg.mu.Lock()
	pg.waitTurnLocked(ticket)
	pg.mu.Unlock()
}

// waitTurnLocked waits, under mu, until turn is ticket. The waiter counts itself before it
// looks at turn and finishTurn counts waiters after it moves turn, so (the atomics being
// sequentially consistent) either the waiter sees the new turn or finishTurn sees the waiter and
// broadcasts, under mu, which the waiter holds until cond.Wait has queued it.
func (pg *ProcessGroup) waitTurnLocked(ticket uint64) {
	pg.waiters.Add(1)
	for pg.turn.Load() != ticket {
		pg.cond.Wait()
	}
	pg.waiters.Add(-1)
}

// finishTurn lets the op after req run; it takes the lock only when someone waits.
func (pg *ProcessGroup) finishTurn(req *request) {
	pg.turn.Add(req.tickets())
	if pg.waiters.Load() > 0 {
		pg.mu.Lock()
		pg.cond.Broadcast()
		pg.mu.Unlock()
	}
}

// runNow calls the backend with the op's timeout (the op's flight-recorder entry is started
// already, or made when the backend posts, or after it returns if it never did) and turns
// failures into errors that name the op; on a timeout or failure the group is aborted so that no
// rank waits forever.
func (pg *ProcessGroup) runNow(ctx context.Context, req *request) error {
	rec := pg.w.recorder
	ctx = pg.deadline(ctx, req)
	err := pg.call(ctx, req)
	if pg.opCtx.waiting {
		pg.stall.end(pg)
	}
	fr := &pg.opCtx.entry
	if !fr.made {
		pg.record(fr, true) // the backend never posted
	}
	timedOut := err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded)
	ids := req.batchRecords
	if req.batch == nil {
		ids = []uint64{fr.id}
	}
	for _, id := range ids {
		if err == nil {
			rec.Completed(id)
		} else {
			rec.Retire(id) // retired but not completed: PyTorch's mark of a failed op
		}
	}
	if err == nil {
		return nil
	}
	if timedOut && !errors.Is(err, ErrTimeout) {
		err = fmt.Errorf("%w after %v: %w", ErrTimeout, pg.timeout, err)
	}
	err = pg.opError(req.op.Kind, req.op.Seq, pg.withDesyncVerdict(pg.w.exitedMember(err, pg.globalRanks, &pg.lostNamed)))
	pg.backend.Abort(err)
	pg.w.dumper.onFailure(err)
	return err
}

// Abort fails the running op and every later op on the group (and tells the peers).
func (pg *ProcessGroup) Abort(cause error) {
	pg.backend.Abort(cause)
}

// Close waits for issued ops, then releases the group's backend state (and, for the world
// group from Init, the store). Ops issued after Close fail with ErrClosed.
func (pg *ProcessGroup) Close() error {
	pg.mu.Lock()
	if pg.closed {
		pg.mu.Unlock()
		return nil
	}
	pg.closed = true
	pg.idle.Broadcast() // the worker exits once the queue is empty
	pg.waitTurnLocked(pg.issued)
	pg.mu.Unlock()
	pg.w.unwatchDesync(pg)
	err := pg.backend.Close()
	if pg.ownsWorld {
		pg.w.close()
	}
	return err
}

// shapesOf returns t's shape (carved out of buf) and dtype name, for the flight recorder, in
// arrays returned by value so that everything stays on the caller's stack; also how many (0 for
// a nil tensor, else 1), and what is left of buf.
func shapesOf(t *tensor.Tensor, buf []int64) (sizes [1][]int64, dtypes [1]string, n int, rest []int64) {
	if t == nil {
		return sizes, dtypes, 0, buf
	}
	start := len(buf)
	buf = t.AppendShape(buf)
	sizes[0] = buf[start:len(buf):len(buf)]
	dtypes[0] = t.DType().TorchName()
	return sizes, dtypes, 1, buf
}
