package comm

import (
	"context"
	"time"
)

// deadlineCtx carries an op's deadline without arming a timer: creating and stopping a runtime
// timer on every op costs more than a small all-reduce's bookkeeping. Err reports
// DeadlineExceeded once the deadline passes; Done is the parent's, so a backend that blocks
// must wake up by Deadline itself (gloo's wait loop polls Err and sizes its sleeps by Deadline).
type deadlineCtx struct {
	context.Context
	deadline time.Time
}

// deadline bounds the running op by the group's timeout. Ops on a group run one at a time, so
// the group reuses one context for them rather than allocating one per op.
func (pg *ProcessGroup) deadline(parent context.Context) context.Context {
	d := time.Now().Add(pg.timeout)
	if pd, ok := parent.Deadline(); ok && pd.Before(d) {
		return parent
	}
	pg.opCtx = deadlineCtx{Context: parent, deadline: d}
	return &pg.opCtx
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *deadlineCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}
