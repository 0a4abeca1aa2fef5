package comm_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// desyncCase is one way two ranks order a group's ops, run on a backend.
type desyncCase struct {
	Backend, Scenario string
}

// TestDesyncDeadlock: ranks that issue a group's ops in different orders, so that each waits
// for the other for good, fail with ErrMismatch within seconds, not at the 60 s timeout, and
// both errors say what each rank waits in; ranks that only wait for a slow peer are left
// alone.
func TestDesyncDeadlock(t *testing.T) {
	if ranktest.Child(t) {
		var c desyncCase
		ranktest.ReadCase(t, &c)
		runDesyncCase(t, c)
		return
	}
	for _, backend := range []string{"gloo", "shm"} {
		for _, tc := range []struct {
			scenario string
			ranks    int // 2 if 0
			check    func(t *testing.T, rank int, o setupResult)
		}{
			{"collective_vs_recv", 0, func(t *testing.T, rank int, o setupResult) {
				assert.True(t, o.mismatch, "rank %d: want ErrMismatch, got %s", rank, o.err)
				assert.Contains(t, o.err, "deadlock after")
				assert.Contains(t, o.err, "rank 0 (global rank 0) waits in all_reduce #1, which needs rank 1 (global rank 1)")
				assert.Contains(t, o.err, "rank 1 (global rank 1) waits in recv #1 (tag 7) from rank 0 (global rank 0)")
				assert.Less(t, o.ms, 15000, "rank %d: the deadlock is an error in seconds, well before the 60 s timeout", rank)
			}},
			{"recv_vs_recv", 0, func(t *testing.T, rank int, o setupResult) {
				assert.True(t, o.mismatch, "rank %d: want ErrMismatch, got %s", rank, o.err)
				assert.Contains(t, o.err, "neither sends")
				assert.Contains(t, o.err, "in recv #1 (tag 3) from")
				assert.Less(t, o.ms, 15000, "rank %d: the deadlock is an error in seconds, well before the 60 s timeout", rank)
			}},
			{"subgroup", 3, func(t *testing.T, rank int, o setupResult) {
				if rank == 0 {
					assert.Equal(t, "<nil>", o.err, "rank 0 is not in the group")
					return
				}
				assert.True(t, o.mismatch, "rank %d: want ErrMismatch, got %s", rank, o.err)
				assert.Contains(t, o.err, `on group "0/1,2#0"`)
				assert.Contains(t, o.err, "rank 0 (global rank 1) waits in all_reduce #1, which needs rank 1 (global rank 2)")
				assert.Contains(t, o.err, "rank 1 (global rank 2) waits in recv #1 (tag 7) from rank 0 (global rank 1)")
			}},
			{"send_vs_collective", 0, func(t *testing.T, rank int, o setupResult) {
				if backend == "gloo" {
					assert.Equal(t, "<nil>", o.err, "rank %d: gloo's ranks read a send's bytes in any op, so the send finishes", rank)
					return
				}
				assert.True(t, o.mismatch, "rank %d: want ErrMismatch, got %s", rank, o.err)
				assert.Contains(t, o.err, "rank 1 (global rank 1) waits in all_reduce #1, which needs rank 0 (global rank 0)")
				assert.Contains(t, o.err, "rank 0 (global rank 0) waits in send #1 (tag 5) to rank 1 (global rank 1)")
				assert.Less(t, o.ms, 15000, "rank %d: the deadlock is an error in seconds, well before the 60 s timeout", rank)
			}},
			{"slow_sender", 0, func(t *testing.T, rank int, o setupResult) {
				assert.Equal(t, "<nil>", o.err, "rank %d: a receive that waits 3 s for its send is no deadlock", rank)
			}},
			{"slow_collective", 0, func(t *testing.T, rank int, o setupResult) {
				assert.Equal(t, "<nil>", o.err, "rank %d: an all-reduce that waits 3 s for a peer is no deadlock", rank)
			}},
		} {
			t.Run(backend+"/"+tc.scenario, func(t *testing.T) {
				t.Parallel()
				res := ranktest.Spawn(t, ranktest.Config{
					Ranks: max(2, tc.ranks), Timeout: 90 * time.Second, Env: []string{"GCCL_TIMEOUT=60s"},
					Case: desyncCase{Backend: backend, Scenario: tc.scenario},
				})
				ranktest.AssertExitedZero(t, res)
				for _, r := range res {
					o := readSetup(t, r)
					t.Logf("rank %d after %d ms: %s", r.Rank, o.ms, o.err)
					tc.check(t, r.Rank, o)
				}
			})
		}
	}
}

// runDesyncCase is one rank of a TestDesyncDeadlock case: it reports the first op that fails,
// or (err=<nil>) that all of them completed, and how long it took.
func runDesyncCase(t *testing.T, c desyncCase) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Backend: c.Backend})
	require.NoError(t, err)
	defer pg.Close()
	peer := 1 - pg.Rank()
	buf := tensor.New(tensor.Float32, 16)
	start := time.Now()
	switch c.Scenario {
	case "collective_vs_recv":
		if pg.Rank() == 0 {
			if err = pg.AllReduce(ctx, buf, comm.Sum); err == nil {
				err = pg.Send(ctx, buf, peer, 7)
			}
		} else {
			if err = pg.Recv(ctx, buf, peer, 7); err == nil {
				err = pg.AllReduce(ctx, buf, comm.Sum)
			}
		}
	case "subgroup":
		// Global ranks 1 and 2 do collective_vs_recv on a group of their own; rank 0 waits for
		// them in a barrier of the world.
		var sub *comm.ProcessGroup
		if sub, err = pg.NewGroup(ctx, []int{1, 2}, comm.GroupOptions{}); err == nil && sub != nil {
			defer sub.Close()
			if sub.Rank() == 0 {
				if err = sub.AllReduce(ctx, buf, comm.Sum); err == nil {
					err = sub.Send(ctx, buf, 1, 7)
				}
			} else {
				if err = sub.Recv(ctx, buf, 0, 7); err == nil {
					err = sub.AllReduce(ctx, buf, comm.Sum)
				}
			}
		}
		setupReport(start, err)
		err = pg.Barrier(ctx)
		if err != nil {
			t.Errorf("the world's barrier after: %v", err)
		}
		return
	case "send_vs_collective":
		// A send far larger than shm's mailbox, which the receiver drains only in a recv.
		big := tensor.New(tensor.Float32, 4<<20)
		if pg.Rank() == 0 {
			if err = pg.Send(ctx, big, peer, 5); err == nil {
				err = pg.AllReduce(ctx, buf, comm.Sum)
			}
		} else {
			if err = pg.AllReduce(ctx, buf, comm.Sum); err == nil {
				err = pg.Recv(ctx, big, peer, 5)
			}
		}
	case "recv_vs_recv":
		if err = pg.Recv(ctx, buf, peer, 3); err == nil {
			err = pg.Send(ctx, buf, peer, 3)
		}
	case "slow_sender":
		if pg.Rank() == 0 {
			err = pg.Recv(ctx, buf, peer, 0)
		} else {
			time.Sleep(3 * time.Second)
			err = pg.Send(ctx, buf, peer, 0)
		}
		if err == nil {
			err = pg.AllReduce(ctx, buf, comm.Sum)
		}
	case "slow_collective":
		if pg.Rank() == 1 {
			time.Sleep(3 * time.Second)
		}
		if err = pg.AllReduce(ctx, buf, comm.Sum); err == nil {
			err = pg.Barrier(ctx)
		}
	default:
		err = fmt.Errorf("unknown scenario %q", c.Scenario)
	}
	setupReport(start, err)
}
