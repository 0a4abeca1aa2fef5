package comm

import (
	"context"
	"time"
)

// deadlineCtx carries an op's timeout without arming a timer and without reading the clock up
// front: a small all-reduce finishes before any backend asks, and a clock read costs ~60 ns on
// the machines this was tuned on. The deadline is fixed the first time Err or Deadline is
// called (backends check it only once they have waited a while), so it runs from that moment:
// microseconds later than the op's start. Done is the parent's, so a backend that blocks must
// wake up by Deadline itself (gloo's and shm's wait loops poll Err and size their sleeps by
// Deadline).
type deadlineCtx struct {
	context.Context
	timeout  time.Duration
	deadline time.Time // zero until first asked
	pg       *ProcessGroup
	entry    frEntry // the op's flight-recorder entry (a copy: a pointer would move the caller's request to the heap)
	waiting  bool    // the op has waited stallMark: the desync watch knows it (pg.stall)
}

// stallMark is how long an op waits, by its backend's checks of Err, before the desync watch is
// told of it (half its desyncDelay): an op that waits less costs the watch nothing.
const stallMark = desyncDelay / 2

// deadline bounds the running op by the group's timeout. Ops on a group run one at a time, so
// the group reuses one context for them rather than allocating one per op.
func (pg *ProcessGroup) deadline(parent context.Context, req *request) context.Context {
	c := &pg.opCtx
	c.Context, c.timeout, c.deadline, c.pg, c.waiting = parent, pg.timeout, time.Time{}, pg, false
	req.setFREntry(&c.entry)
	return c
}

// Posted is called by backends (backends.Posted) when the op has posted its part and is about
// to wait for the peers: the op's flight-recorder entry is made then, off the critical path.
func (c *deadlineCtx) Posted() {
	if !c.entry.made {
		c.pg.record(&c.entry, true)
	}
}

func (c *deadlineCtx) Deadline() (time.Time, bool) {
	own := c.own()
	if pd, ok := c.Context.Deadline(); ok && pd.Before(own) {
		return pd, true
	}
	return own, true
}

// own is the op's deadline by the group's timeout, fixed the first time it is asked for.
func (c *deadlineCtx) own() time.Time {
	if c.deadline.IsZero() {
		c.deadline = time.Now().Add(c.timeout)
	}
	return c.deadline
}

// Err is the parent's error, or DeadlineExceeded once the op's timeout has passed. Backends call
// it as they wait, which is when it tells the desync watch of an op that has waited stallMark.
func (c *deadlineCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err // the parent's deadline too
	}
	left := time.Until(c.own()) // the monotonic clock only: time.Now also reads the wall clock
	if left <= 0 {
		return context.DeadlineExceeded
	}
	if !c.waiting && c.timeout-left >= stallMark {
		c.waiting = true
		c.pg.stall.begin(&c.entry, c.deadline.Add(-c.timeout), c.pg.pacedSends)
	}
	return nil
}
