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
}

// deadline bounds the running op by the group's timeout. Ops on a group run one at a time, so
// the group reuses one context for them rather than allocating one per op.
func (pg *ProcessGroup) deadline(parent context.Context) context.Context {
	pg.opCtx = deadlineCtx{Context: parent, timeout: pg.timeout}
	return &pg.opCtx
}

func (c *deadlineCtx) Deadline() (time.Time, bool) {
	if c.deadline.IsZero() {
		c.deadline = time.Now().Add(c.timeout)
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
	if !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}
