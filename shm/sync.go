package shm

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/internal/wait"
	"github.com/gccl/gccl/tensor"
)

// livenessEvery is how often a waiting rank checks that the peers it waits for are alive.
const livenessEvery = 100 * time.Millisecond

// opFingerprint describes op for the mismatch check.
func opFingerprint(op backends.Op) fingerprint {
	count := int64(op.Count)
	if op.Kind == backends.OpAllToAll {
		count = 0 // split sizes legitimately differ per rank
	}
	return fingerprint{Seq: op.Seq, Count: count, What: uint64(uint32(int32(op.Root))) |
		uint64(uint8(op.Kind))<<32 | uint64(uint8(op.DType))<<40 | uint64(uint8(op.Reduce))<<48 | uint64(uint8(op.AskedReduce))<<56}
}

// begin is an op's first sync: it publishes the op's fingerprint, waits for every member and
// checks that they all run the same op.
func (g *Group) begin(ctx context.Context, op backends.Op) error {
	return g.beginTouching(ctx, op, touch{})
}

// beginTouching is begin, loading t's lines of the awaited peers while it waits.
func (g *Group) beginTouching(ctx context.Context, op backends.Op, t touch) error {
	g.opSeq++
	fp := opFingerprint(op)
	*g.seg.fp(g.cfg.Rank, g.opSeq) = fp
	if err := g.syncTouching(ctx, t); err != nil {
		return err
	}
	return g.checkFingerprints(fp)
}

// beginExtra is begin for an op that also publishes extra fields; it returns every member's.
// The extra fields share the op span's second cache line with the end of an inline payload:
// the waiter loads that line while it spins.
func (g *Group) beginExtra(ctx context.Context, op backends.Op, extra opExtra) ([]opExtra, error) {
	g.opSeq++
	fp := opFingerprint(op)
	*g.seg.fp(g.cfg.Rank, g.opSeq) = fp
	*g.seg.extra(g.cfg.Rank, g.opSeq) = extra
	if err := g.syncTouching(ctx, touch{tail: true}); err != nil {
		return nil, err
	}
	if err := g.checkFingerprints(fp); err != nil {
		return nil, err
	}
	all := make([]opExtra, g.cfg.Size)
	for p := range all {
		all[p] = *g.seg.extra(p, g.opSeq)
	}
	return all, nil
}

// checkFingerprints compares every peer's fingerprint for the current op with this rank's.
func (g *Group) checkFingerprints(fp fingerprint) error {
	for p := 0; p < g.cfg.Size; p++ {
		if p == g.cfg.Rank {
			continue
		}
		other := *g.seg.fp(p, g.opSeq)
		if why := fpMismatch(other, fp); why != "" {
			return fmt.Errorf("%w: rank %d runs %s, this rank %s: %s", backends.ErrMismatch, p, describe(other), describe(fp), why)
		}
	}
	return nil
}

func describe(fp fingerprint) string {
	red := tensor.ReduceOp(fp.reduce()).String()
	if asked := tensor.ReduceOp(fp.asked()); asked != tensor.ReduceOp(fp.reduce()) && asked != 0 {
		red += " for " + asked.String()
	}
	return fmt.Sprintf("%s #%d (%d x %s, op %s, root %d)", backends.OpKind(fp.kind()), fp.Seq, fp.Count,
		tensor.DType(fp.dtype()), red, fp.root())
}

func fpMismatch(got, want fingerprint) string {
	switch {
	case got.Seq != want.Seq:
		return "ranks issued a different number of collectives"
	case got.kind() != want.kind():
		return "ranks called different collectives"
	case got.dtype() != want.dtype():
		return "ranks passed different dtypes"
	case got.Count != want.Count:
		return "ranks passed different element counts"
	case got.reduce() != want.reduce(), got.asked() != want.asked():
		return "ranks passed different reduce ops"
	case got.root() != want.root():
		return "ranks passed different roots"
	}
	return ""
}

// sync publishes that this rank reached the next phase and waits until every member has.
func (g *Group) sync(ctx context.Context) error {
	return g.syncTouching(ctx, touch{})
}

// syncTouching is sync, loading t's lines of the awaited peers while it waits.
func (g *Group) syncTouching(ctx context.Context, t touch) error {
	g.phase++
	word := g.seg.phase(g.cfg.Rank, g.opSeq)
	publish(word, g.phase)
	wakeSleepers(word, g.sleepers)
	backends.Posted(ctx)
	return g.waitPhase(ctx, g.phase, t)
}

// touch is what a waiter loads from an awaited peer's memory while it spins, besides the
// peer's phase: the cache lines it reads once the peer has arrived. The loads do not depend on
// each other, so their misses overlap the phase's, where reading them after seeing the phase
// would cost misses in a row (~75 ns here, 60 ns of a 512-byte all-reduce's 430). The zero
// touch loads nothing.
type touch struct {
	tail  bool // the op span's second cache line (an inline payload longer than headMax)
	bytes int  // how many bytes of slot buffer slot, from at (at most touchMax)
	slot  int
	at    int
	root  int // only rank root's slot, when bytes > 0 and root >= 0
}

// touchMax is the most slot bytes a waiter loads per peer while it spins: beyond, the loads
// cost more per spin than they save (4 KiB all-reduces are faster than OpenMPI's without).
const touchMax = 1 << 10

// touchSlots loads the first n bytes of every peer's slot buffer b (of root's alone when
// root >= 0) while waiting, if n is small enough to pay.
func touchSlots(b, n, root int) touch {
	if n > touchMax {
		return touch{}
	}
	return touch{bytes: n, slot: b, root: root}
}

// touchRegion is touchSlots of n bytes at offset at of the slot buffers (the region a
// reduce-scatter or a scatter reads).
func touchRegion(b, at, n, root int) touch {
	t := touchSlots(b, n, root)
	t.at = at
	return t
}

// touchAllIfReading is touchSlots of every peer for a rank that reads every slot after the
// sync (all of them when root < 0, else only the root), and nothing for the others.
func (g *Group) touchAllIfReading(b, n, root int) touch {
	if root >= 0 && g.cfg.Rank != root {
		return touch{}
	}
	return touchSlots(b, n, -1)
}

// load issues t's loads from peer p, whose op span is l.
func (t touch) load(s *segment, p int, l *opLine) {
	if t.tail {
		atomic.LoadUint64(l.tail())
	}
	if t.bytes > 0 && (t.root < 0 || t.root == p) {
		buf := s.slot(p, t.slot)[t.at:]
		for off := 0; off < t.bytes; off += 64 {
			atomic.LoadUint64((*uint64)(unsafe.Pointer(&buf[off])))
		}
	}
}

// waitPhase waits until every member has reached phase: spin, then yield, then sleep, checking
// the peers' abort words, the deadline and, while waiting long, that the awaited peers live.
// While it spins it also issues t's loads from each awaited peer (see touch).
func (g *Group) waitPhase(ctx context.Context, phase uint64, t touch) error {
	n := g.cfg.Size
	next := 0 // members before next are known to have arrived
	idle := idler{policy: g.policy}
	for iter := 0; ; iter++ {
		for next < n {
			l := g.seg.line(next, g.opSeq)
			t.load(g.seg, next, l)
			if atomic.LoadUint64(&l.phase) < phase {
				break
			}
			next++
		}
		if next == n {
			return nil
		}
		idle.spun()
		if !idle.due(iter) {
			continue
		}
		if err := g.checkPeers(ctx, next, phase); err != nil {
			return err
		}
		l := g.seg.line(next, g.opSeq)
		if idle.pause(sleeper{word: &l.phase, phase: phase, sleepers: g.seg.sleepers(next)}) {
			// Pausing may have slept: a peer that aborted and exited meanwhile must be
			// reported with its abort cause, not as lost.
			if err := g.checkPeers(ctx, next, phase); err != nil {
				return err
			}
			if err := g.checkAlive(next, phase); err != nil {
				return err
			}
		}
	}
}

// waitPeer runs step until it reports done, spinning, then yielding, then sleeping (on what
// sleepOn returns for peer, which the peer's next move wakes: ringData or ringSpace, say),
// checking the peer's liveness, aborts and the deadline. late says, for the timeout's error,
// what peer failed to do and what to check.
func (g *Group) waitPeer(ctx context.Context, peer int, sleepOn func(peer int) sleeper, late string, step func() (moved, done bool, err error)) error {
	return g.waitPeers(ctx, peer, nil, sleepOn, late, step)
}

// waitPeers is waitPeer that also checks the liveness and aborts of others: the peers that
// step moves too (a batch's peers whose ops are not done), asked anew at each check.
func (g *Group) waitPeers(ctx context.Context, peer int, others func() []int, sleepOn func(peer int) sleeper, late string, step func() (moved, done bool, err error)) error {
	idle := idler{policy: g.policy}
	posted := false
	for iter := 0; ; iter++ {
		moved, done, err := step()
		if err != nil || done {
			return err
		}
		if moved {
			idle.reset()
			continue
		}
		if !posted {
			backends.Posted(ctx)
			posted = true
		}
		idle.spun()
		if !idle.due(iter) {
			continue
		}
		if err := g.aborted(); err != nil {
			return err
		}
		if err := g.peerAborted(peer, others); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: the op did not complete in time; group rank %d %s, or raise the timeout (GCCL_TIMEOUT)",
				backends.ErrTimeout, peer, late)
		}
		if !idle.pause(sleepOn(peer)) {
			continue
		}
		err = g.lost(peer)
		for _, p := range peersOf(others) {
			if err == nil {
				err = g.lost(p)
			}
		}
		if err != nil {
			// A peer that wrote its last message and exited while this rank slept is no loss
			// if that message is what the op waits for: look once more before reporting it.
			if _, done, serr := step(); serr != nil || done {
				return serr
			}
			return err
		}
	}
}

// lost is a PeerLostError for member p if its process no longer runs, or, if it aborted before
// it exited, the error its abort word says.
func (g *Group) lost(p int) error {
	err := g.gone(p)
	if err == nil {
		return nil
	}
	if w := atomic.LoadUint64(g.seg.ctrl(p, ctrlAbort)); w != 0 {
		return g.peerAbort(p, w)
	}
	return err
}

// peersOf returns what others returns (nil for no others).
func peersOf(others func() []int) []int {
	if others == nil {
		return nil
	}
	return others()
}

// peerAborted returns the abort of peer or of one of others, if one aborted.
func (g *Group) peerAborted(peer int, others func() []int) error {
	if w := atomic.LoadUint64(g.seg.ctrl(peer, ctrlAbort)); w != 0 {
		return g.peerAbort(peer, w)
	}
	for _, p := range peersOf(others) {
		if w := atomic.LoadUint64(g.seg.ctrl(p, ctrlAbort)); w != 0 {
			return g.peerAbort(p, w)
		}
	}
	return nil
}

// idler paces a wait loop that has nothing to do: spin, then yield, then sleep (backing off up
// to 1 ms), per the wait policy, and says when the awaited peers' liveness is due a check.
type idler struct {
	policy              wait.Policy
	idle                bool          // since is set: the wait has been idle since then
	since, lastLiveness time.Duration // monotonic clock readings (clock)
	sleep               time.Duration
	yield               wait.Yielder
}

// reset: something moved; the wait starts over.
func (d *idler) reset() { d.idle = false }

// due reports whether iteration iter of a wait loop should look beyond the awaited words
// (aborts, the deadline) and pause: every 64th while the policy spins, every 8th when it yields
// at once (more ranks than cores), where spinning only delays the peer that shares the core.
func (d *idler) due(iter int) bool {
	mask := 63
	if d.policy.Spin == 0 {
		mask = 7
	}
	return iter&mask == mask
}

// spun ends a fruitless round of a wait loop: with a PAUSE hint while the policy spins (a
// hyperthread sibling gets the core's resources meanwhile); with nothing when the policy
// yields at once (more ranks than cores), where the rounds before the yield should stay short
// (PAUSE there cost 0.4 µs per 8-byte all-reduce with 4 ranks on 2 cores).
func (d *idler) spun() {
	if d.policy.Spin > 0 {
		spinPause()
	}
}

// pause paces one idle round and reports whether a liveness check is due. When it sleeps, it
// sleeps on s for at most the backoff's length (the awaited peer's move wakes it).
func (d *idler) pause(s sleeper) bool {
	t := clock()
	if !d.idle {
		d.idle, d.since, d.lastLiveness, d.sleep = true, t, t, 20*time.Microsecond
	}
	switch d.policy.At(t - d.since) {
	case wait.SpinPhase:
	case wait.YieldPhase:
		d.yield.Yield()
	default:
		s.sleep(d.sleep)
		d.sleep = min(2*d.sleep, time.Millisecond)
	}
	if t-d.lastLiveness >= livenessEvery {
		d.lastLiveness = t
		return true
	}
	return false
}

// collectiveLate is what a collective's timeout tells the user to check.
const collectiveLate = "check that every rank calls the same collectives in the same order, or raise the timeout (GCCL_TIMEOUT)"

// checkPeers returns an error if this group or a peer aborted, or the deadline passed.
func (g *Group) checkPeers(ctx context.Context, next int, phase uint64) error {
	if err := g.aborted(); err != nil {
		return err
	}
	for p := 0; p < g.cfg.Size; p++ {
		if w := atomic.LoadUint64(g.seg.ctrl(p, ctrlAbort)); w != 0 && p != g.cfg.Rank {
			if backends.AbortClass(w>>32) == backends.AbortTimeout {
				// The peer that timed out first is seldom the one at fault: say whom this rank
				// was still waiting for.
				return backends.PeerAbortError(backends.AbortTimeout, p, -1, -1, fmt.Sprintf(
					"this rank was still waiting for group rank(s) %v: %s", g.behind(next, phase), collectiveLate))
			}
			return g.peerAbort(p, w)
		}
	}
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: the op did not complete in time; still waiting for group rank(s) %v: %s",
				backends.ErrTimeout, g.behind(next, phase), collectiveLate)
		}
		return err
	}
	return nil
}

// behind lists the members that have not reached phase.
func (g *Group) behind(from int, phase uint64) []int {
	var out []int
	for p := from; p < g.cfg.Size; p++ {
		// The newest of its two op lines says how far p got.
		if max(atomic.LoadUint64(g.seg.phase(p, 0)), atomic.LoadUint64(g.seg.phase(p, 1))) < phase {
			out = append(out, p)
		}
	}
	return out
}

// checkAlive turns a dead awaited member into a PeerLostError.
func (g *Group) checkAlive(from int, phase uint64) error {
	for _, p := range g.behind(from, phase) {
		if err := g.gone(p); err != nil {
			return err
		}
	}
	return nil
}

// gone is a PeerLostError for member p if its process no longer runs, else nil.
func (g *Group) gone(p int) error {
	if backends.ProcessAlive(g.pids[p]) {
		return nil
	}
	return &backends.PeerLostError{Rank: p, GlobalRank: g.cfg.GlobalRank(p),
		Cause: fmt.Sprintf("process %d is gone (exited or killed)", g.pids[p])}
}
