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
}

// deadline bounds the running op by the group's timeout. Ops on a group run one at a time, so
// the group reuses one context for them rather than allocating one per op.
func (pg *ProcessGroup) deadline(parent context.Context, req *request) context.Context {
	c := &pg.opCtx
	c.Context, c.timeout, c.deadline, c.pg = parent, pg.timeout, time.Time{}, pg
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
	if c.deadline.IsZero() {
		now := time.Now()
		c.deadline = now.Add(c.timeout)
		c.pg.stall.begin(&c.entry, now) // the op waits: the desync watch may look at it
	}
	if pd, ok := c.Context.Deadline(); ok && pd.Before(c.deadline) {
		return pd, true
	}
	return c.deadline, true
}

func (c *deadlineCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	d, _ := c.Deadline()
	if time.Until(d) <= 0 { // the monotonic clock only: time.Now also reads the wall clock
		return context.DeadlineExceeded
	}
	return nil
}
