package comm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/flightrecorder"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// Every op comm runs lands in the flight recorder with PyTorch's fields.
func TestOpsAreRecorded(t *testing.T) {
	ctx := context.Background()
	rec := flightrecorder.New(16)
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1, Recorder: rec, Timeout: time.Minute})
	require.NoError(t, err)
	defer pg.Close()

	x := tensor.New(tensor.BFloat16, 2, 3)
	require.NoError(t, pg.AllReduce(ctx, x, comm.Sum))
	out := tensor.New(tensor.Float32, 4)
	require.NoError(t, pg.AllGather(ctx, out, tensor.New(tensor.Float32, 4)))
	require.NoError(t, pg.AllReduceAsync(x, comm.Max).Wait(ctx))
	require.Error(t, pg.Broadcast(ctx, x, 7), "invalid arguments are rejected before recording")

	d := rec.Snapshot()
	assert.Equal(t, flightrecorder.Version, d.Version)
	require.Len(t, d.Entries, 3)
	e := d.Entries[0]
	assert.Equal(t, "gloo:all_reduce", e.ProfilingName)
	assert.Equal(t, int64(1), e.CollectiveSeqID)
	assert.Equal(t, [][]int64{{2, 3}}, e.InputSizes)
	assert.Equal(t, []string{"BFloat16"}, e.InputDtypes)
	assert.Equal(t, flightrecorder.StateCompleted, e.State)
	assert.True(t, e.Retired)
	assert.Equal(t, int64(time.Minute/time.Millisecond), e.TimeoutMs)
	assert.False(t, e.IsP2P)
	assert.Equal(t, "0", e.ProcessGroup[0])
	assert.Equal(t, "gloo:all_gather", d.Entries[1].ProfilingName)
	assert.Equal(t, [][]int64{{4}}, d.Entries[1].OutputSizes)
	assert.Equal(t, int64(2), d.Entries[1].CollectiveSeqID)
	assert.Equal(t, int64(3), d.Entries[2].CollectiveSeqID)
	for _, e := range d.Entries {
		assert.Equal(t, flightrecorder.StateCompleted, e.State, e.ProfilingName)
		require.NotNil(t, e.DurationMs)
	}
	require.Contains(t, d.PGConfig, "0")
	assert.Equal(t, "[0]", d.PGConfig["0"].Ranks)
}

// An op that fails is retired without being completed, PyTorch's mark of a failed op.
func TestFailedOpIsRetiredNotCompleted(t *testing.T) {
	ctx := context.Background()
	rec := flightrecorder.New(16)
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1, Recorder: rec})
	require.NoError(t, err)
	pg.Abort(comm.ErrAborted)
	require.ErrorIs(t, pg.AllReduce(ctx, tensor.New(tensor.Float32, 1), comm.Sum), comm.ErrAborted)
	d := rec.Snapshot()
	require.Len(t, d.Entries, 1)
	assert.True(t, d.Entries[0].Retired)
	assert.NotEqual(t, flightrecorder.StateCompleted, d.Entries[0].State)
}

// An op waiting for a late peer is in the flight recorder, started, while it waits, on a
// backend that records ops when they have posted (shm) and on one recorded up front (gloo); and
// a sequence of ops records each with its own counters and completion.
func TestWaitingOpIsRecordedStarted(t *testing.T) {
	if ranktest.Child(t) {
		waitingOpChild(t, os.Getenv("WAIT_TEST_BACKEND"))
		return
	}
	for _, backend := range []string{"shm", "gloo"} {
		res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Env: []string{"WAIT_TEST_BACKEND=" + backend}})
		ranktest.AssertExitedZero(t, res)
	}
}

func waitingOpChild(t *testing.T, backend string) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Backend: backend})
	require.NoError(t, err)
	defer pg.Close()
	x := tensor.New(tensor.Float32, 2)
	for i := 0; i < 5; i++ {
		require.NoError(t, pg.AllReduce(ctx, x, comm.Sum))
	}
	if pg.Rank() == 1 {
		time.Sleep(300 * time.Millisecond) // rank 0 waits in its sixth all-reduce
		require.NoError(t, pg.AllReduce(ctx, x, comm.Sum))
		return
	}
	seen := make(chan flightrecorder.Entry, 1)
	go func() {
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
			if es := pg.Recorder().Snapshot().Entries; len(es) == 6 {
				seen <- es[5]
				return
			}
		}
		close(seen)
	}()
	require.NoError(t, pg.AllReduce(ctx, x, comm.Sum))
	e, ok := <-seen
	require.True(t, ok, "%s: the waiting all-reduce never appeared in the recorder", backend)
	assert.Equal(t, flightrecorder.StateStarted, e.State, "%s: seen while it waited", backend)
	assert.Equal(t, int64(6), e.CollectiveSeqID)
	assert.Equal(t, backend+":all_reduce", e.ProfilingName)
	es := pg.Recorder().Snapshot().Entries
	require.Len(t, es, 6)
	for i, e := range es {
		assert.Equal(t, flightrecorder.StateCompleted, e.State, "entry %d", i)
		assert.Equal(t, int64(i+1), e.CollectiveSeqID)
		assert.Equal(t, int64(i+1), e.OpID)
		assert.Equal(t, [][]int64{{2}}, e.InputSizes)
		assert.NotNil(t, e.DurationMs)
	}
}

// Ops that repeat a kind with another peer, shape or dtype each record their own: the group
// reuses the recorder's description of its last op of a kind only when it still fits.
func TestRepeatedOpsRecordTheirOwnPeersAndShapes(t *testing.T) {
	if ranktest.Child(t) {
		repeatedOpsChild(t, os.Getenv("WAIT_TEST_BACKEND"))
		return
	}
	for _, backend := range []string{"shm", "gloo"} {
		res := ranktest.Spawn(t, ranktest.Config{Ranks: 3, Env: []string{"WAIT_TEST_BACKEND=" + backend}})
		ranktest.AssertExitedZero(t, res)
	}
}

func repeatedOpsChild(t *testing.T, backend string) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Backend: backend})
	require.NoError(t, err)
	defer pg.Close()
	x := tensor.New(tensor.Float32, 2)
	if pg.Rank() == 0 {
		require.NoError(t, pg.Send(ctx, x, 1, 0))
		require.NoError(t, pg.Send(ctx, x, 2, 0))
		require.NoError(t, pg.Send(ctx, x, 1, 0))
	} else {
		require.NoError(t, pg.Recv(ctx, x, 0, 0))
		if pg.Rank() == 1 {
			require.NoError(t, pg.Recv(ctx, x, 0, 0))
		}
	}
	ops := []*tensor.Tensor{x, tensor.New(tensor.Float32, 3), tensor.New(tensor.Float64, 3), tensor.New(tensor.Float32, 3, 1), x,
		tensor.New(tensor.Float32, 1, 1, 1, 1, 2), tensor.New(tensor.Float32, 1, 1, 1, 2, 1), x} // more dims than the cache holds
	for _, y := range ops {
		require.NoError(t, pg.AllReduce(ctx, y, comm.Sum))
	}

	es := pg.Recorder().Snapshot().Entries
	var names []string
	for _, e := range es[:len(es)-len(ops)] {
		names = append(names, e.ProfilingName)
	}
	want := map[int][]string{
		0: {backend + ":send 0->1", backend + ":send 0->2", backend + ":send 0->1"},
		1: {backend + ":recv 1<-0", backend + ":recv 1<-0"},
		2: {backend + ":recv 2<-0"},
	}[pg.Rank()]
	assert.Equal(t, want, names, "rank %d", pg.Rank())
	for i, e := range es[len(es)-len(ops):] {
		y := ops[i]
		assert.Equal(t, backend+":all_reduce", e.ProfilingName)
		assert.Equal(t, [][]int64{y.AppendShape(nil)}, e.InputSizes, "all-reduce %d", i)
		assert.Equal(t, []string{y.DType().TorchName()}, e.InputDtypes, "all-reduce %d", i)
		assert.Equal(t, flightrecorder.StateCompleted, e.State)
	}
}

// An async send that shm can take at once is done when SendAsync returns, and recorded like any
// send; one that must wait for its receiver, or one issued behind a pending op, is left to the
// group's worker and done later, in order.
func TestEagerSend(t *testing.T) {
	if ranktest.Child(t) {
		eagerSendChild(t)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: time.Minute, Env: []string{"GCCL_TIMEOUT=20s"}})
	ranktest.AssertExitedZero(t, res)
}

func eagerSendChild(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Backend: "shm"})
	require.NoError(t, err)
	defer pg.Close()
	small, large := tensor.New(tensor.Float32, 1024), tensor.New(tensor.Float32, 1<<20) // 4 KiB; 4 MiB, beyond the mailbox
	if pg.Rank() == 1 {
		time.Sleep(300 * time.Millisecond) // rank 0 issues all three sends meanwhile
		first, last := tensor.New(tensor.Float32, 1024), tensor.New(tensor.Float32, 1024)
		last.Fill(-1)
		for _, x := range []*tensor.Tensor{first, large, last} {
			require.NoError(t, pg.Recv(ctx, x, 0, 3))
		}
		assert.Equal(t, 7.0, first.Float64s()[1023], "the first message as it was sent")
		assert.Equal(t, 5.0, large.Float64s()[1<<20-1])
		assert.Equal(t, 0.0, last.Float64s()[0], "the last message as it was sent")
		return
	}
	small.Fill(7)
	large.Fill(5)
	w := pg.SendAsync(small, 1, 3)
	assert.True(t, w.IsCompleted(), "a send that fits the mailbox of an idle group is done at once")
	small.Fill(0) // the message holds the 7s already
	wl := pg.SendAsync(large, 1, 3)
	ws := pg.SendAsync(small, 1, 3)
	assert.False(t, wl.IsCompleted(), "a send beyond the mailbox waits for the receiver")
	assert.False(t, ws.IsCompleted(), "a send behind a pending op waits for it")
	require.NoError(t, ws.Wait(ctx))
	assert.True(t, wl.IsCompleted(), "sends complete in issue order")
	require.NoError(t, errors.Join(w.Err(), wl.Err()))
	es := pg.Recorder().Snapshot().Entries
	require.Len(t, es, 3)
	for i, e := range es {
		assert.Equal(t, "shm:send 0->1", e.ProfilingName, "entry %d", i)
		assert.Equal(t, flightrecorder.StateCompleted, e.State, "entry %d", i)
		assert.Equal(t, int64(i+1), e.P2PSeqID, "entry %d", i)
	}
	assert.Equal(t, [][]int64{{1024}}, es[0].InputSizes)
}

// TestBatchSendRecvRecords: a batch is one op of the group with a flight-recorder entry per
// send and receive (one p2p sequence number, an op id each, completed together), and its
// messages arrive whole, large ones crossing both ways at once.
func TestBatchSendRecvRecords(t *testing.T) {
	if ranktest.Child(t) {
		batchRecordsChild(t)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: time.Minute, Env: []string{"GCCL_TIMEOUT=20s"}})
	ranktest.AssertExitedZero(t, res)
}

func batchRecordsChild(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Backend: "shm"})
	require.NoError(t, err)
	defer pg.Close()
	r := pg.Rank()
	peer := 1 - r
	big, small := tensor.New(tensor.Float32, 1<<20), tensor.New(tensor.Float32, 3) // 4 MiB: beyond the mailbox
	big.Fill(float64(10 + r))
	small.Fill(float64(20 + r))
	gotBig, gotSmall := tensor.New(tensor.Float32, 1<<20), tensor.New(tensor.Float32, 3)
	require.NoError(t, pg.BatchSendRecv(ctx, []comm.P2POp{
		comm.RecvOp(gotSmall, peer, 2), comm.SendOp(big, peer, 1), comm.SendOp(small, peer, 2), comm.RecvOp(gotBig, peer, 1),
	}))
	assert.Equal(t, float64(10+peer), gotBig.Float64s()[1<<20-1])
	assert.Equal(t, []float64{float64(20 + peer), float64(20 + peer), float64(20 + peer)}, gotSmall.Float64s())
	require.NoError(t, pg.Barrier(ctx))

	es := pg.Recorder().Snapshot().Entries
	require.Len(t, es, 5)
	names := []string{
		fmt.Sprintf("shm:recv %d<-%d", r, peer), fmt.Sprintf("shm:send %d->%d", r, peer),
		fmt.Sprintf("shm:send %d->%d", r, peer), fmt.Sprintf("shm:recv %d<-%d", r, peer),
	}
	for i, name := range names {
		e := es[i]
		assert.Equal(t, name, e.ProfilingName, "entry %d", i)
		assert.True(t, e.IsP2P, "entry %d", i)
		assert.Equal(t, flightrecorder.StateCompleted, e.State, "entry %d", i)
		assert.Equal(t, int64(1), e.P2PSeqID, "entry %d: the batch counts once", i)
		assert.Equal(t, int64(0), e.CollectiveSeqID, "entry %d", i)
		assert.Equal(t, int64(i+1), e.OpID, "entry %d: an op id per op", i)
	}
	assert.Equal(t, [][]int64{{3}}, es[0].OutputSizes)
	assert.Equal(t, [][]int64{{1 << 20}}, es[1].InputSizes)
	assert.Equal(t, "shm:barrier", es[4].ProfilingName)
	assert.Equal(t, int64(5), es[4].OpID, "the op after the batch")
	assert.Equal(t, int64(1), es[4].CollectiveSeqID)
}
