package comm

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
	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/gloo"
	"github.com/gccl/gccl/shm"
	"github.com/gccl/gccl/tensor"
)

// hierarchical is backend "auto"'s group for members on several hosts, with more than one
// member on some host. It is made of three groups of the other backends:
//
//   - local: shm over the members on this rank's host, in group-rank order (none when this
//     rank is alone on its host);
//   - leaders: gloo over each host's leader, its lowest group rank, hosts in the order of their
//     leaders (only on leaders);
//   - flat: gloo over every member, in group-rank order.
//
// All-reduce, broadcast, reduce, all-gather, reduce-scatter and barrier run in three steps:
// inside each host, between the leaders, inside each host again, so that only one rank per
// host sends across hosts. Gather, scatter and all-to-all run on flat, after a check inside
// each host and between the leaders that every member runs the same op (so that a rank that
// calls something else fails with ErrMismatch rather than leaving the others waiting for it).
// Send and Recv run on flat, so that ranks sending to each other in a cycle all wait on one
// transport: with shm for same-host pairs and gloo for the others, a rank stuck sending on shm
// reads none of its sockets, and a ring of large sends across hosts deadlocks (seen with 4
// ranks on 2 hosts sending 64 MiB around a ring). Same-host messages pay TCP for it.
//
// Each sub-group numbers its own ops. A failed sub-op aborts all three sub-groups, so that
// every member, whichever sub-group it waits in, fails promptly; a lost member is named in
// group ranks on every member (see lostRecordKey).
type hierarchical struct {
	cfg     backends.Config
	lay     hostLayout
	host    int       // this rank's host
	pos     int       // this rank's position among its host's members (0: the host's leader)
	local   *subGroup // nil when this rank is alone on its host
	leaders *subGroup // nil unless this rank leads its host
	flat    *subGroup
	records store.Store // the group's store, for the lost-member record
	settled atomic.Bool // this rank has recorded a lost member or read the record
	abort   atomic.Pointer[error]
	scratch [3][]byte // reusable temporary buffers, only touched by the running op
}

var _ backends.Group = (*hierarchical)(nil)

// subGroup is one of a hierarchical group's groups, with its own op numbering.
type subGroup struct {
	role   string // "local", "leaders" or "flat", for errors
	group  backends.Group
	ranks  []int  // ranks[i] is the group rank of sub-group rank i
	sub    []int  // sub[r] is group rank r's sub-group rank, -1 for non-members
	seq    uint64 // collectives issued
	p2pSeq uint64 // sends and receives issued
}

func newSubGroup(role string, ranks []int, size int) *subGroup {
	s := &subGroup{role: role, ranks: ranks, sub: make([]int, size)}
	for r := range s.sub {
		s.sub[r] = -1
	}
	for i, r := range ranks {
		s.sub[r] = i
	}
	return s
}

// next is the sub-op of op that runs kind on s over count elements (as Op.Count counts them)
// with root in s's ranks. It keeps op's dtype and reduce op, so that members of s that run
// different ops disagree in s's own mismatch check.
func (s *subGroup) next(kind backends.OpKind, op backends.Op, count, root int) backends.Op {
	s.seq++
	return backends.Op{Kind: kind, Seq: s.seq, DType: op.DType, Count: count, Root: root, Reduce: op.Reduce, AskedReduce: op.AskedReduce, EqualSplits: op.EqualSplits}
}

// newHierarchical creates the sub-groups, concurrently: each one's creation waits only for its
// own members, and every member starts all of its sub-groups at once, so no rank waits for
// another's sub-group to finish first.
func newHierarchical(ctx context.Context, cfg backends.Config, lay hostLayout, log *slog.Logger) (*hierarchical, error) {
	g := &hierarchical{cfg: cfg, lay: lay, host: lay.hostOf[cfg.Rank], pos: lay.localRank[cfg.Rank],
		records: store.WithPrefix(cfg.Store, "hier")}
	type spec struct {
		sg      *subGroup
		backend backends.Backend
		cfg     backends.Config
	}
	var specs []spec
	mine := lay.members[g.host]
	if len(mine) > 1 {
		g.local = newSubGroup("local", mine, cfg.Size)
		c := g.subConfig(g.local, "local"+strconv.Itoa(g.host), "hier/local/"+strconv.Itoa(g.host))
		c.LocalRank, c.LocalSize = g.pos, len(mine)
		specs = append(specs, spec{g.local, shm.Backend{}, c})
	}
	if g.pos == 0 {
		leaders := make([]int, len(lay.members))
		for h, m := range lay.members {
			leaders[h] = m[0]
		}
		g.leaders = newSubGroup("leaders", leaders, cfg.Size)
		specs = append(specs, spec{g.leaders, gloo.Backend{}, g.subConfig(g.leaders, "leaders", "hier/leaders")})
	}
	all := make([]int, cfg.Size)
	for r := range all {
		all[r] = r
	}
	g.flat = newSubGroup("flat", all, cfg.Size)
	specs = append(specs, spec{g.flat, gloo.Backend{}, g.subConfig(g.flat, "flat", "hier/flat")})
	log.Debug("gccl: hierarchical group", "group", cfg.Name, "rank", cfg.Rank, "host", g.host,
		"host_members", mine, "leader", g.pos == 0, "hosts", len(lay.members))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for _, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			grp, err := s.backend.NewGroup(ctx, s.cfg)
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("%s sub-group over group ranks %v: %w", s.sg.role, s.sg.ranks, err)
				}
				mu.Unlock()
				cancel() // the others would wait for members that may never come
				return
			}
			s.sg.group = grp
		}()
	}
	wg.Wait()
	if first != nil {
		for _, s := range specs {
			if s.sg.group != nil {
				_ = s.sg.group.Close()
			}
		}
		return nil, fmt.Errorf("auto: hierarchical group %q rank %d of %d: %w", cfg.Name, cfg.Rank, cfg.Size, first)
	}
	return g, nil
}

// subConfig is the Config of sub-group s: its ranks, its own name and store namespace, the
// rest as for the whole group.
func (g *hierarchical) subConfig(s *subGroup, name, prefix string) backends.Config {
	c := g.cfg
	c.Rank, c.Size = s.sub[g.cfg.Rank], len(s.ranks)
	c.GlobalRanks = make([]int, len(s.ranks))
	for i, r := range s.ranks {
		c.GlobalRanks[i] = g.cfg.GlobalRanks[r]
	}
	c.Name = g.cfg.Name + "/" + name
	c.Store = store.WithPrefix(g.cfg.Store, prefix)
	return c
}

func (g *hierarchical) subGroups() []*subGroup {
	return []*subGroup{g.local, g.leaders, g.flat}
}

// --- errors and aborts ---

// lostRecordKey (in the group's store, under "hier/") records the first lost member a rank of
// the group saw, as "rank globalRank|what was seen". A sub-group tells its members that a peer
// aborted because of a lost rank, but can name that rank only if it is one of its own members:
// a member that learns of the loss that way reads the record. And a member that sees a peer
// go away may be seeing a rank that aborted for a loss elsewhere and then exited: the record,
// written before any abort it causes, names the rank that was really lost first.
const lostRecordKey = "lost"

// lostLookup bounds the wait for the lost-member record (written before the abort that sends
// a rank looking for it, so normally there at once).
const lostLookup = 500 * time.Millisecond

// lostMember is a lost member, in group ranks, and what was seen.
type lostMember struct {
	rank, global int
	cause        string
}

// aborted returns the error that aborted the group, or nil.
func (g *hierarchical) aborted() error {
	if p := g.abort.Load(); p != nil {
		return *p
	}
	return nil
}

// run runs one op; on error every sub-group is aborted.
func (g *hierarchical) run(fn func() error) error {
	if err := g.aborted(); err != nil {
		return backends.AbortedEarlier(err)
	}
	err := fn()
	if err != nil {
		g.abortAll(err)
	}
	return err
}

// check turns sub-op sop's error on s into the group's terms (nil stays nil).
func (g *hierarchical) check(s *subGroup, sop backends.Op, err error) error {
	if err == nil {
		return nil
	}
	return g.fromSub(s, sop, err)
}

// where names sub-group s and sub-op sop in errors (a sub-group's own errors count in its
// ranks).
func (s *subGroup) where(sop backends.Op) string {
	if s.role == "flat" {
		return fmt.Sprintf("hierarchical flat sub-group (every rank), %s", sop)
	}
	return fmt.Sprintf("hierarchical %s sub-group (group ranks %v), %s", s.role, s.ranks, sop)
}

// fromSub says which sub-group and sub-op failed; a lost member becomes the group's lost
// member (see lostRecordKey), in group ranks.
func (g *hierarchical) fromSub(s *subGroup, sop backends.Op, err error) error {
	var pl *backends.PeerLostError
	if !errors.As(err, &pl) {
		return fmt.Errorf("%s: %w", s.where(sop), err)
	}
	seen := lostMember{rank: -1, global: pl.GlobalRank}
	switch {
	case seen.global >= 0:
		seen.rank = g.groupRank(seen.global)
	case pl.Rank >= 0 && pl.Rank < len(s.ranks):
		seen.rank = s.ranks[pl.Rank]
		seen.global = g.cfg.GlobalRanks[seen.rank]
	}
	var lost lostMember
	if seen.global >= 0 {
		seen.cause = fmt.Sprintf("%s, seen by rank %d in the %s", pl.Cause, g.cfg.Rank, s.where(sop))
		if lost = g.recordLost(seen); lost == seen {
			return &backends.PeerLostError{Rank: lost.rank, GlobalRank: lost.global, Cause: lost.cause}
		}
	} else if lost = g.lookupLost(); lost.global < 0 {
		return &backends.PeerLostError{Rank: -1, GlobalRank: -1, Cause: fmt.Sprintf("%s (in the %s)", pl.Cause, s.where(sop))}
	}
	return &backends.PeerLostError{Rank: lost.rank, GlobalRank: lost.global,
		Cause: fmt.Sprintf("%s; rank %d failed in the %s: %s", lost.cause, g.cfg.Rank, s.where(sop), pl.Cause)}
}

// groupRank is the group rank of a global rank, or -1.
func (g *hierarchical) groupRank(global int) int {
	if global < 0 {
		return -1
	}
	for r, gr := range g.cfg.GlobalRanks {
		if gr == global {
			return r
		}
	}
	return -1
}

// recordLost records m as the group's lost member unless one is recorded already, and returns
// the one recorded (m when the store cannot be reached).
func (g *hierarchical) recordLost(m lostMember) lostMember {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	mine := fmt.Sprintf("%d %d|%s", m.rank, m.global, m.cause)
	g.settled.Store(true)
	v, err := g.records.CompareAndSet(ctx, lostRecordKey, nil, []byte(mine))
	if err != nil || string(v) == mine {
		return m
	}
	if rec, ok := parseLost(v); ok {
		return rec
	}
	return m
}

// lookupLost waits briefly for the group's lost-member record (global -1 if there is none).
func (g *hierarchical) lookupLost() lostMember {
	ctx, cancel := context.WithTimeout(context.Background(), lostLookup)
	defer cancel()
	if v, err := g.records.Get(ctx, lostRecordKey); err == nil {
		if rec, ok := parseLost(v); ok {
			g.settled.Store(true)
			return rec
		}
	}
	return lostMember{rank: -1, global: -1}
}

func parseLost(v []byte) (lostMember, bool) {
	head, cause, _ := strings.Cut(string(v), "|")
	m := lostMember{cause: cause}
	if _, err := fmt.Sscanf(head, "%d %d", &m.rank, &m.global); err != nil {
		return m, false
	}
	return m, true
}

// abortAll aborts the group and every sub-group with cause. A lost member (recorded in the
// store if it is not already) is passed to each sub-group in that sub-group's ranks, or as -1
// when it is not a member, so that every sub-group's peers fail with ErrPeerLost and can look
// up whom.
func (g *hierarchical) abortAll(cause error) {
	cause = backends.AsAbort(cause)
	if g.abort.CompareAndSwap(nil, &cause) && !g.settled.Load() {
		var pl *backends.PeerLostError // from Abort: a lost member that no sub-group reported here
		if errors.As(cause, &pl) && pl.GlobalRank >= 0 {
			g.recordLost(lostMember{rank: g.groupRank(pl.GlobalRank), global: pl.GlobalRank, cause: pl.Cause})
		}
	}
	for _, s := range g.subGroups() {
		if s != nil && s.group != nil {
			s.group.Abort(subCause(s, cause, g.groupRank))
		}
	}
}

// subCause is cause as sub-group s's members must see it: a lost member in s's ranks.
func subCause(s *subGroup, cause error, groupRank func(global int) int) error {
	var pl *backends.PeerLostError
	if !errors.As(cause, &pl) {
		return cause
	}
	rank := -1
	if r := groupRank(pl.GlobalRank); r >= 0 {
		rank = s.sub[r]
	}
	return &backends.PeerLostError{Rank: rank, GlobalRank: pl.GlobalRank, Cause: pl.Cause}
}

// Abort fails the running op and every later one, on this rank and, through the sub-groups,
// on every member.
func (g *hierarchical) Abort(cause error) {
	if cause == nil {
		cause = errors.New("aborted")
	}
	g.abortAll(cause)
}

// Close closes every sub-group.
func (g *hierarchical) Close() error {
	err := fmt.Errorf("%w: group closed", backends.ErrAborted)
	g.abort.CompareAndSwap(nil, &err)
	var errs []error
	for _, s := range g.subGroups() {
		if s != nil && s.group != nil {
			errs = append(errs, s.group.Close())
		}
	}
	return errors.Join(errs...)
}

// --- buffers ---

// tmp returns temporary buffer i as a tensor of count elements of dt. Its contents are
// whatever the last op left there.
func (g *hierarchical) tmp(i int, dt tensor.DType, count int) *tensor.Tensor {
	n := count * dt.Size()
	if cap(g.scratch[i]) < n {
		g.scratch[i] = tensor.New(tensor.Uint8, n).Bytes() // aligned for every dtype
	}
	return viewBytes(dt, g.scratch[i][:n])
}

// viewBytes is a 1-D tensor of dt over b.
func viewBytes(dt tensor.DType, b []byte) *tensor.Tensor {
	t, err := tensor.FromBytes(dt, b)
	if err != nil {
		panic("gccl: internal: " + err.Error()) // b is always a whole number of elements
	}
	return t
}

// block is elements [from, from+count) of t, as a tensor sharing its storage.
func block(t *tensor.Tensor, from, count int) *tensor.Tensor {
	es := t.DType().Size()
	return viewBytes(t.DType(), t.Bytes()[from*es:(from+count)*es])
}

// --- collectives ---

// AllReduce: reduce to the leader inside each host, all-reduce between the leaders, broadcast
// from the leader inside each host. Every rank gets the leaders' result, bit for bit.
func (g *hierarchical) AllReduce(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(func() error {
		if g.local != nil {
			var dst *tensor.Tensor
			if g.pos == 0 {
				dst = out
			}
			if err := g.reduce(ctx, g.local, op, in, dst, 0); err != nil {
				return err
			}
		} else if ib, ob := in.Bytes(), out.Bytes(); len(ib) > 0 && &ib[0] != &ob[0] {
			copy(ob, in.Bytes())
		}
		if g.leaders != nil {
			sop := g.leaders.next(backends.OpAllReduce, op, op.Count, 0)
			if err := g.check(g.leaders, sop, g.leaders.group.AllReduce(ctx, sop, out, out)); err != nil {
				return err
			}
		}
		if g.local != nil {
			return g.broadcast(ctx, g.local, op, out, 0)
		}
		return nil
	})
}

// Broadcast: inside the root's host from the root, between the leaders from the root's host,
// inside every other host from its leader.
func (g *hierarchical) Broadcast(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	return g.run(func() error {
		rootHost := g.lay.hostOf[op.Root]
		if g.host == rootHost && g.local != nil {
			if err := g.broadcast(ctx, g.local, op, buf, g.lay.localRank[op.Root]); err != nil {
				return err
			}
		}
		if g.leaders != nil {
			if err := g.broadcast(ctx, g.leaders, op, buf, rootHost); err != nil {
				return err
			}
		}
		if g.host != rootHost && g.local != nil {
			return g.broadcast(ctx, g.local, op, buf, 0)
		}
		return nil
	})
}

// Reduce: on every other host, reduce to the leader, then between the leaders to the root's
// host. On the root's host, when the root leads it, the same; otherwise its leader first
// collects the other hosts' sums (with its own input) between the leaders, then the host
// reduces to the root, the leader contributing that sum. No point-to-point message is needed.
func (g *hierarchical) Reduce(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(func() error {
		rootHost, rootPos := g.lay.hostOf[op.Root], g.lay.localRank[op.Root]
		if g.host == rootHost && rootPos != 0 {
			if g.pos == 0 { // the root is another member of this host
				sum := g.tmp(0, op.DType, op.Count)
				if err := g.reduce(ctx, g.leaders, op, in, sum, rootHost); err != nil {
					return err
				}
				return g.reduce(ctx, g.local, op, sum, nil, rootPos)
			}
			return g.reduce(ctx, g.local, op, in, out, rootPos) // out is nil except on the root
		}
		// Sum this host to its leader (the root, on the root's host), then between the leaders.
		part := in
		if g.local != nil {
			var dst *tensor.Tensor
			if g.pos == 0 {
				dst = out // the root's output
				if g.host != rootHost {
					dst = g.tmp(0, op.DType, op.Count)
				}
			}
			if err := g.reduce(ctx, g.local, op, in, dst, 0); err != nil {
				return err
			}
			part = dst
		}
		if g.leaders == nil {
			return nil
		}
		var dst *tensor.Tensor
		if g.host == rootHost {
			dst = out
		}
		return g.reduce(ctx, g.leaders, op, part, dst, rootHost)
	})
}

// AllGather: gather to the leader inside each host, all-gather the hosts' blocks (padded to
// the largest host) between the leaders, put the blocks in group-rank order, broadcast the
// whole inside each host. When hosts hold consecutive ranks in equal numbers, the blocks are in
// order already and go straight into out.
func (g *hierarchical) AllGather(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(func() error {
		c, m := op.Count, g.lay.maxLocal
		if g.leaders == nil {
			if err := g.gather(ctx, g.local, op, in, nil, 0); err != nil {
				return err
			}
			return g.broadcast(ctx, g.local, op, out, 0)
		}
		mine := len(g.lay.members[g.host])
		var hostBlock, all *tensor.Tensor // this host's block (padded to m ranks), every host's
		if g.lay.hostMajor {
			hostBlock, all = block(out, g.host*m*c, m*c), out
		} else {
			hostBlock, all = g.tmp(0, op.DType, m*c), g.tmp(1, op.DType, len(g.lay.members)*m*c)
		}
		if g.local != nil {
			if err := g.gather(ctx, g.local, op, in, block(hostBlock, 0, mine*c), 0); err != nil {
				return err
			}
		} else {
			copy(hostBlock.Bytes(), in.Bytes())
		}
		sop := g.leaders.next(backends.OpAllGather, op, m*c, 0)
		if err := g.check(g.leaders, sop, g.leaders.group.AllGather(ctx, sop, hostBlock, all)); err != nil {
			return err
		}
		if !g.lay.hostMajor {
			ab, ob, cb := all.Bytes(), out.Bytes(), c*op.DType.Size()
			for h, ranks := range g.lay.members {
				for j, r := range ranks {
					copy(ob[r*cb:(r+1)*cb], ab[(h*m+j)*cb:])
				}
			}
		}
		if g.local != nil {
			return g.broadcast(ctx, g.local, op, out, 0)
		}
		return nil
	})
}

// ReduceScatter: reduce the whole input to the leader inside each host, arrange it by host
// (each host's members' slots together, padded to the largest host), reduce-scatter those
// blocks between the leaders, scatter each host's block inside the host.
func (g *hierarchical) ReduceScatter(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.run(func() error {
		c, m, n := op.Count, g.lay.maxLocal, g.cfg.Size
		if g.leaders == nil {
			if err := g.reduce(ctx, g.local, op, in, nil, 0); err != nil {
				return err
			}
			return g.scatter(ctx, g.local, op, nil, out, 0)
		}
		sum := in
		if g.local != nil {
			sum = g.tmp(0, op.DType, n*c)
			if err := g.reduce(ctx, g.local, op, in, sum, 0); err != nil {
				return err
			}
		}
		byHost := sum
		if !g.lay.hostMajor {
			byHost = g.tmp(1, op.DType, len(g.lay.members)*m*c)
			sb, hb, cb := sum.Bytes(), byHost.Bytes(), c*op.DType.Size()
			for h, ranks := range g.lay.members {
				for j, r := range ranks {
					copy(hb[(h*m+j)*cb:(h*m+j+1)*cb], sb[r*cb:])
				}
			}
		}
		hostBlock := g.tmp(2, op.DType, m*c)
		sop := g.leaders.next(backends.OpReduceScatter, op, m*c, 0)
		if err := g.check(g.leaders, sop, g.leaders.group.ReduceScatter(ctx, sop, byHost, hostBlock)); err != nil {
			return err
		}
		if g.local == nil {
			copy(out.Bytes(), hostBlock.Bytes())
			return nil
		}
		return g.scatter(ctx, g.local, op, block(hostBlock, 0, len(g.lay.members[g.host])*c), out, 0)
	})
}

// Barrier: inside each host, between the leaders, inside each host again.
func (g *hierarchical) Barrier(ctx context.Context, op backends.Op) error {
	return g.run(func() error {
		if g.local != nil {
			if err := g.barrier(ctx, g.local, op); err != nil {
				return err
			}
		}
		if g.leaders != nil {
			if err := g.barrier(ctx, g.leaders, op); err != nil {
				return err
			}
		}
		if g.local != nil {
			return g.barrier(ctx, g.local, op)
		}
		return nil
	})
}

// Gather runs on flat.
func (g *hierarchical) Gather(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.runFlat(ctx, op, func(sop backends.Op) error { return g.flat.group.Gather(ctx, sop, in, out) })
}

// Scatter runs on flat.
func (g *hierarchical) Scatter(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.runFlat(ctx, op, func(sop backends.Op) error { return g.flat.group.Scatter(ctx, sop, in, out) })
}

// AllToAll runs on flat.
func (g *hierarchical) AllToAll(ctx context.Context, op backends.Op, in, out *tensor.Tensor, inSplits, outSplits []int) error {
	return g.runFlat(ctx, op, func(sop backends.Op) error {
		return g.flat.group.AllToAll(ctx, sop, in, out, inSplits, outSplits)
	})
}

// runFlat runs a collective on flat, after checking that every member runs the same op: a shm
// barrier inside each host, then a gloo barrier between the leaders, both carrying op's
// fingerprint (kind, dtype, count, root). A rank that calls another collective then fails
// with ErrMismatch at once, where otherwise flat and the other sub-groups would wait for each
// other until the timeout.
func (g *hierarchical) runFlat(ctx context.Context, op backends.Op, fn func(sop backends.Op) error) error {
	return g.run(func() error {
		count := op.Count
		if op.Kind == backends.OpAllToAll {
			count = 0 // ranks send different amounts
		}
		for _, s := range []*subGroup{g.local, g.leaders} {
			if s != nil {
				sop := s.next(op.Kind, op, count, op.Root)
				if err := g.check(s, sop, s.group.Barrier(ctx, sop)); err != nil {
					return err
				}
			}
		}
		sop := g.flat.next(op.Kind, op, op.Count, op.Root)
		return g.check(g.flat, sop, fn(sop))
	})
}

// Send runs on flat.
func (g *hierarchical) Send(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	return g.run(func() error {
		sop := g.flat.p2p(op)
		return g.check(g.flat, sop, g.flat.group.Send(ctx, sop, buf))
	})
}

// Recv runs on flat.
func (g *hierarchical) Recv(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	return g.run(func() error {
		sop := g.flat.p2p(op)
		return g.check(g.flat, sop, g.flat.group.Recv(ctx, sop, buf))
	})
}

// p2p is op (a send or receive) on s.
func (s *subGroup) p2p(op backends.Op) backends.Op {
	s.p2pSeq++
	return backends.Op{Kind: op.Kind, Seq: s.p2pSeq, DType: op.DType, Count: op.Count, Peer: s.sub[op.Peer], Tag: op.Tag}
}

// --- sub-ops ---

func (g *hierarchical) reduce(ctx context.Context, s *subGroup, op backends.Op, in, out *tensor.Tensor, root int) error {
	sop := s.next(backends.OpReduce, op, in.Numel(), root)
	return g.check(s, sop, s.group.Reduce(ctx, sop, in, out))
}

func (g *hierarchical) broadcast(ctx context.Context, s *subGroup, op backends.Op, buf *tensor.Tensor, root int) error {
	sop := s.next(backends.OpBroadcast, op, buf.Numel(), root)
	return g.check(s, sop, s.group.Broadcast(ctx, sop, buf))
}

func (g *hierarchical) gather(ctx context.Context, s *subGroup, op backends.Op, in, out *tensor.Tensor, root int) error {
	sop := s.next(backends.OpGather, op, in.Numel(), root)
	return g.check(s, sop, s.group.Gather(ctx, sop, in, out))
}

func (g *hierarchical) scatter(ctx context.Context, s *subGroup, op backends.Op, in, out *tensor.Tensor, root int) error {
	sop := s.next(backends.OpScatter, op, out.Numel(), root)
	return g.check(s, sop, s.group.Scatter(ctx, sop, in, out))
}

func (g *hierarchical) barrier(ctx context.Context, s *subGroup, op backends.Op) error {
	sop := s.next(backends.OpBarrier, op, 0, 0)
	return g.check(s, sop, s.group.Barrier(ctx, sop))
}
