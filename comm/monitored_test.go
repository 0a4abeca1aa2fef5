package comm_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// monitoredCase is one TestMonitoredBarrier scenario.
type monitoredCase struct {
	Name  string
	Ranks int
}

// TestMonitoredBarrier: ranks that all come pass, again and again, without the store growing;
// ranks that stay away are named, on rank 0 and on the others, at the timeout; a latecomer
// learns it came late; an absent rank 0 is named by the others; a pending async op does not
// hold the barrier up.
func TestMonitoredBarrier(t *testing.T) {
	if ranktest.Child(t) {
		var c monitoredCase
		ranktest.ReadCase(t, &c)
		monitoredChild(c.Name)
		return
	}
	for _, c := range []monitoredCase{
		{Name: "all_arrive", Ranks: 3},
		{Name: "missing", Ranks: 4},
		{Name: "late", Ranks: 3},
		{Name: "rank0_absent", Ranks: 3},
		{Name: "async_pending", Ranks: 3},
	} {
		t.Run(c.Name, func(t *testing.T) {
			res := ranktest.Spawn(t, ranktest.Config{Ranks: c.Ranks, Timeout: 60 * time.Second, Case: c,
				Env: []string{"GCCL_TIMEOUT=20s", biNoRaceExitSleep()}})
			all := biResults(t, res)
			switch c.Name {
			case "all_arrive":
				for r := range res {
					if o, ok := biGet(t, res, all, r, "negative"); ok {
						assert.True(t, o.Invalid, "rank %d: want ErrInvalidArgument, got %q", r, o.Err)
						assert.Contains(t, o.Err, "MonitoredBarrier #1", "rank %d", r)
					}
					if o, ok := biGet(t, res, all, r, "passes"); ok {
						assert.Empty(t, o.Err, "rank %d", r)
					}
				}
				if o, ok := biGet(t, res, all, 0, "keys"); ok {
					assert.Empty(t, o.Err, "rank 0: the barriers leave no keys behind but the last verdict")
				}
			case "missing":
				if o, ok := biGet(t, res, all, 0, "barrier"); ok {
					t.Logf("rank 0: %s", o.Err)
					assert.True(t, o.Timeout, "rank 0: want ErrTimeout, got %q", o.Err)
					assert.Contains(t, o.Err, "group rank(s) [2 3] (global [2 3]) did not reach the barrier within 1s")
					assert.Contains(t, o.Err, "gccl fr", "rank 0: the error says where to look")
					assert.GreaterOrEqual(t, o.Ms, int64(1000), "rank 0 waits for the timeout")
					assert.Less(t, o.Ms, int64(5000), "rank 0 gives up at the timeout")
				}
				if o, ok := biGet(t, res, all, 1, "barrier"); ok {
					t.Logf("rank 1: %s", o.Err)
					assert.True(t, o.Timeout, "rank 1: want ErrTimeout, got %q", o.Err)
					assert.Contains(t, o.Err, "rank 0 reports that group rank(s) [2 3]")
					assert.NotContains(t, o.Err, "this rank among them")
					assert.Less(t, o.Ms, int64(5000), "rank 1 learns the verdict, not its own longer wait")
				}
			case "late":
				if o, ok := biGet(t, res, all, 2, "barrier"); ok {
					t.Logf("rank 2: %s", o.Err)
					assert.True(t, o.Timeout, "rank 2: want ErrTimeout, got %q", o.Err)
					assert.Contains(t, o.Err, "group rank(s) [2]")
					assert.Contains(t, o.Err, "this rank among them")
				}
				for _, r := range []int{0, 1} {
					if o, ok := biGet(t, res, all, r, "barrier"); ok {
						assert.True(t, o.Timeout, "rank %d: want ErrTimeout, got %q", r, o.Err)
						assert.Contains(t, o.Err, "group rank(s) [2]", "rank %d", r)
					}
				}
			case "rank0_absent":
				for _, r := range []int{1, 2} {
					if o, ok := biGet(t, res, all, r, "barrier"); ok {
						t.Logf("rank %d: %s", r, o.Err)
						assert.True(t, o.Timeout, "rank %d: want ErrTimeout, got %q", r, o.Err)
						assert.Contains(t, o.Err, "rank 0 (global rank 0) gave no verdict within 3s", "rank %d", r)
						assert.GreaterOrEqual(t, o.Ms, int64(3000), "rank %d waits for the timeout and the grace", r)
					}
				}
			case "async_pending":
				for r := range res {
					if o, ok := biGet(t, res, all, r, "barrier"); ok {
						assert.Empty(t, o.Err, "rank %d", r)
					}
					if o, ok := biGet(t, res, all, r, "all_reduce"); ok {
						assert.Empty(t, o.Err, "rank %d", r)
						if assert.NotNil(t, o.DataOK) {
							assert.True(t, *o.DataOK, "rank %d: wrong sum %v", r, o.Data)
						}
					}
				}
			}
		})
	}
}

func monitoredChild(name string) {
	pg := biJoin()
	if pg == nil {
		return
	}
	ctx := context.Background()
	rank := pg.Rank()
	barrier := func(timeout time.Duration) {
		start := time.Now()
		err := pg.MonitoredBarrier(ctx, timeout)
		biReport("barrier", rank, err, time.Since(start), nil)
	}
	switch name {
	case "all_arrive":
		start := time.Now()
		err := pg.MonitoredBarrier(ctx, -time.Second)
		biReport("negative", rank, err, time.Since(start), nil)
		err = nil
		start = time.Now()
		for i := 2; i <= 30 && err == nil; i++ {
			err = pg.MonitoredBarrier(ctx, 10*time.Second)
		}
		biReport("passes", rank, err, time.Since(start), nil)
		if err == nil {
			err = pg.Barrier(ctx)
		}
		if rank == 0 {
			// Every rank has left the 30th barrier (and begun no other): of the barriers' keys,
			// only the 30th's verdict is left.
			for _, k := range []struct {
				key  string
				want bool
			}{{"monitored_barrier/30/verdict", true}, {"monitored_barrier/29/verdict", false},
				{"monitored_barrier/2/verdict", false}, {"monitored_barrier/30/arrived/1", false},
				{"monitored_barrier/30/arrived/2", false}} {
				if err != nil {
					break
				}
				// A compare-and-set that cannot match only reads.
				var v []byte
				if v, err = pg.Store().CompareAndSet(ctx, k.key, []byte("?"), []byte("?")); err == nil && (len(v) > 0) != k.want {
					err = fmt.Errorf("key %s: present %v, want %v", k.key, len(v) > 0, k.want)
				}
			}
			biReport("keys", rank, err, 0, nil)
		}
	case "missing":
		if rank < 2 {
			barrier(time.Second)
		}
	case "late":
		if rank == 2 {
			time.Sleep(2500 * time.Millisecond)
		}
		barrier(time.Second)
	case "rank0_absent":
		if rank > 0 {
			barrier(time.Second)
		}
	case "async_pending":
		// Ranks 0 and 1 have an all-reduce pending that waits for rank 2, which joins it only
		// after the barrier.
		t := biFilled(tensor.Float32, 16, float64(rank+1))
		var w *comm.Work
		if rank < 2 {
			w = pg.AllReduceAsync(t, comm.Sum)
		}
		barrier(5 * time.Second)
		start := time.Now()
		var err error
		if rank < 2 {
			err = w.Wait(ctx)
		} else {
			err = pg.AllReduce(ctx, t, comm.Sum)
		}
		biReport("all_reduce", rank, err, time.Since(start), func(o *biOutcome) {
			ok := biAllEqual(t, 6)
			o.DataOK, o.Data = &ok, biHead(t)
		})
	}
	biSyncExit(pg)
}
