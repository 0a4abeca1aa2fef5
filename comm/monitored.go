package comm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MonitoredBarrier is a barrier that says who did not come, like
// torch.distributed.monitored_barrier: every rank but 0 reports its arrival to rank 0, which
// waits for them until timeout (0: the group's timeout) and then gives every rank its verdict.
// If some ranks have not arrived by then, every rank that is waiting (and every latecomer)
// returns an error wrapping ErrTimeout that names them, in group and global ranks; if rank 0
// itself does not come, the others give up timeout plus a grace period after they arrived and
// name rank 0. Unlike torch's, rank 0 names every rank missing at the deadline, not only the
// first (torch's wait_all_ranks=True).
//
// It runs over the group's store, not its backend: it does not wait for the group's pending
// async ops, it works while the backend is stuck in an op (to find the rank that holds it up),
// it is not in the flight recorder, and its failure does not abort the group. Every rank calls
// it, in the same order relative to its other MonitoredBarrier calls on the group.
func (pg *ProcessGroup) MonitoredBarrier(ctx context.Context, timeout time.Duration) error {
	pg.mu.Lock()
	closed := pg.closed
	pg.monitored++
	n := pg.monitored
	pg.mu.Unlock()
	fail := func(err error) error {
		return fmt.Errorf("gccl: MonitoredBarrier #%d on group %s (rank %d of %d): %w", n, pg.label, pg.rank, pg.size, err)
	}
	switch {
	case closed:
		return fail(ErrClosed)
	case timeout < 0:
		return fail(fmt.Errorf("timeout %v is negative; pass 0 for the group's timeout (%v) or a positive duration: %w", timeout, pg.timeout, ErrInvalidArgument))
	case timeout == 0:
		timeout = pg.timeout
	}
	b := monitoredBarrier{pg: pg, n: n, prefix: "monitored_barrier/" + strconv.FormatUint(n, 10) + "/"}
	var err error
	if pg.rank == 0 {
		err = b.judge(ctx, timeout)
	} else {
		err = b.arrive(ctx, timeout)
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// monitoredBarrier is one MonitoredBarrier call: its number n on the group, and its keys in the
// group's store under prefix: "arrived/<rank>" from each rank but 0, "verdict" from rank 0
// ("ok", or "missing|<group ranks>|<reason>").
type monitoredBarrier struct {
	pg     *ProcessGroup
	n      uint64
	prefix string
}

// verdictGrace is how much longer than rank 0 the other ranks wait: rank 0's verdict, not their
// own timeout, should tell them who is missing. It is at least monitoredGraceMin.
func verdictGrace(timeout time.Duration) time.Duration {
	return max(monitoredGraceMin, timeout/10)
}

const monitoredGraceMin = 2 * time.Second

// arrive reports this rank's arrival and waits for rank 0's verdict.
func (b *monitoredBarrier) arrive(ctx context.Context, timeout time.Duration) error {
	st := b.pg.store
	wait := timeout + verdictGrace(timeout)
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := st.Set(wctx, b.prefix+"arrived/"+strconv.Itoa(b.pg.rank), []byte("1")); err != nil {
		return fmt.Errorf("reporting this rank's arrival to the group's store: %w", err)
	}
	v, err := st.Get(wctx, b.prefix+"verdict")
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("waiting for rank 0's verdict: %w", context.Cause(ctx))
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s gave no verdict within %v (the timeout %v and a grace period): rank 0, which checks the others, did not reach the barrier, or its store is unreachable; its flight-recorder dump or stack shows where it is",
			ErrTimeout, b.pg.rankName(0), wait, timeout)
	case err != nil:
		return fmt.Errorf("waiting for rank 0's verdict: %w", err)
	}
	missing, reason, ok := parseVerdict(v)
	switch {
	case !ok:
		return fmt.Errorf("rank 0's verdict %q cannot be read: %w", v, ErrMismatch)
	case len(missing) > 0:
		return fmt.Errorf("%w: rank 0 reports that %s%s", ErrTimeout, reason, b.youToo(missing))
	}
	return nil
}

// youToo adds, when this rank is among the missing, that it came too late.
func (b *monitoredBarrier) youToo(missing []int) string {
	for _, r := range missing {
		if r == b.pg.rank {
			return " (this rank among them: it arrived after rank 0's deadline)"
		}
	}
	return ""
}

// judge, on rank 0, waits for every other rank until the deadline, names those still missing
// then, and tells every rank.
func (b *monitoredBarrier) judge(ctx context.Context, timeout time.Duration) error {
	st := b.pg.store
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var missing []int
	for r := 1; r < b.pg.size; r++ {
		key := b.prefix + "arrived/" + strconv.Itoa(r)
		if len(missing) == 0 {
			if _, err := st.Get(dctx, key); err == nil {
				continue
			} else if ctx.Err() != nil {
				return fmt.Errorf("waiting for rank %d: %w", r, context.Cause(ctx))
			} else if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("waiting for rank %d: %w", r, err)
			}
		}
		// Past the deadline: only look.
		arrived, err := peek(ctx, st, key)
		if err != nil {
			return fmt.Errorf("looking for rank %d's arrival: %w", r, err)
		}
		if len(arrived) == 0 {
			missing = append(missing, r)
		}
	}
	verdict, reason := "ok", ""
	if len(missing) > 0 {
		reason = fmt.Sprintf("group rank(s) %v (global %v) did not reach the barrier within %v", missing, b.globals(missing), timeout)
		verdict = "missing|" + joinInts(missing) + "|" + reason
	}
	sctx, scancel := context.WithTimeout(context.Background(), monitoredGraceMin)
	defer scancel()
	if err := st.Set(sctx, b.prefix+"verdict", []byte(verdict)); err != nil {
		return fmt.Errorf("giving the other ranks the verdict after %v: %w", time.Since(start).Round(time.Millisecond), err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s; they are stuck (in an op of this group or elsewhere: their flight-recorder dumps, `gccl fr`, show where) or dead", ErrTimeout, reason)
	}
	// Every rank has arrived: each has read the previous barrier's verdict, and nobody reads
	// this one's arrivals again.
	for r := 1; r < b.pg.size; r++ {
		_, _ = st.Delete(sctx, b.prefix+"arrived/"+strconv.Itoa(r))
	}
	if b.n > 1 {
		_, _ = st.Delete(sctx, "monitored_barrier/"+strconv.FormatUint(b.n-1, 10)+"/verdict")
	}
	return nil
}

func (b *monitoredBarrier) globals(ranks []int) []int {
	g := make([]int, len(ranks))
	for i, r := range ranks {
		g[i] = b.pg.globalRanks[r]
	}
	return g
}

// parseVerdict reads rank 0's verdict: the missing group ranks (none for "ok") and the reason.
func parseVerdict(v []byte) (missing []int, reason string, ok bool) {
	if string(v) == "ok" {
		return nil, "", true
	}
	rest, found := strings.CutPrefix(string(v), "missing|")
	if !found {
		return nil, "", false
	}
	list, reason, found := strings.Cut(rest, "|")
	if !found {
		return nil, "", false
	}
	for _, f := range strings.Split(list, ",") {
		r, err := strconv.Atoi(f)
		if err != nil {
			return nil, "", false
		}
		missing = append(missing, r)
	}
	return missing, reason, len(missing) > 0
}
