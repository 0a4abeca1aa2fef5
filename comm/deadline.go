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

func withDeadline(parent context.Context, timeout time.Duration) context.Context {
	d := time.Now().Add(timeout)
	if pd, ok := parent.Deadline(); ok && pd.Before(d) {
		return parent
	}
	return &deadlineCtx{Context: parent, deadline: d}
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
