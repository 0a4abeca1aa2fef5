package xccl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/flightrecorder"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// TestThroughComm runs ops through comm, as users call them: the flight recorder names them
// xccl:<op>, and a bitwise reduction fails with an error naming the op, the rank and the fix.
func TestThroughComm(t *testing.T) {
	useFixture(t)
	t.Setenv("GCCL_FR_DUMP_PREFIX", t.TempDir()+"/fr_") // the failing op below dumps the recorder
	ctx := context.Background()
	rec := flightrecorder.New(32)
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1, Backend: "xccl", Recorder: rec, Timeout: time.Minute})
	require.NoError(t, err)
	defer pg.Close()
	assert.Equal(t, "xccl", pg.Backend())

	x, err := tensor.FromFloat64s(tensor.Float32, []float64{1, 2, 3, 4}, 4)
	require.NoError(t, err)
	require.NoError(t, pg.AllReduceWith(ctx, x, comm.PreMulSum(0.5)))
	assert.Equal(t, []float64{0.5, 1, 1.5, 2}, x.Float64s())
	require.NoError(t, pg.AllReduce(ctx, x, comm.Avg))
	require.NoError(t, pg.Broadcast(ctx, x, 0))
	out := tensor.New(tensor.Float32, 4)
	require.NoError(t, pg.AllGather(ctx, out, x))
	assert.Equal(t, x.Float64s(), out.Float64s())
	require.NoError(t, pg.Barrier(ctx))

	d := rec.Snapshot()
	var names []string
	for _, e := range d.Entries {
		names = append(names, e.ProfilingName)
		assert.Equal(t, flightrecorder.StateCompleted, e.State, e.ProfilingName)
	}
	assert.Equal(t, []string{"xccl:all_reduce", "xccl:all_reduce", "xccl:broadcast", "xccl:all_gather", "xccl:barrier"}, names)

	i := tensor.New(tensor.Int32, 3)
	err = pg.AllReduce(ctx, i, comm.BAnd)
	require.ErrorIs(t, err, comm.ErrUnsupported)
	for _, s := range []string{"all_reduce", "rank 0", "BAND", "gloo or shm"} {
		assert.Contains(t, err.Error(), s)
	}
}

// TestNoLibrary: with no oneCCL to be found, choosing backend xccl is an error naming what was
// looked for, and the same process still runs other backends. It runs in a child process, since
// the library is looked for once per process.
func TestNoLibrary(t *testing.T) {
	if os.Getenv("GCCL_XCCL_NO_LIBRARY_CHILD") == "1" {
		ctx := context.Background()
		_, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1, Backend: "xccl", Timeout: 10 * time.Second})
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrLibrary)
		for _, s := range []string{"/nonexistent/oneccl/libccl.so.2", EnvLibrary, "CCL_ROOT"} {
			assert.Contains(t, err.Error(), s)
		}
		pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1, Backend: "gloo", Timeout: 10 * time.Second})
		require.NoError(t, err, "gloo must work without oneCCL")
		x := tensor.New(tensor.Float32, 3)
		x.Fill(2)
		require.NoError(t, pg.AllReduce(ctx, x, comm.Sum))
		assert.Equal(t, []float64{2, 2, 2}, x.Float64s())
		require.NoError(t, pg.Close())
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoLibrary$", "-test.v")
	cmd.Env = append(os.Environ(), "GCCL_XCCL_NO_LIBRARY_CHILD=1", EnvLibrary+"=/nonexistent/oneccl/libccl.so.2")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child: %s", out)
	assert.Contains(t, string(out), "--- PASS: TestNoLibrary")
}

// TestTimeoutTellsThePeers: real processes; rank 2 stays alive but does not join an
// all-reduce. The others fail with ErrTimeout at the op's deadline (or as soon as a peer that
// timed out tells them), naming the op and their rank, abort, close and exit: nothing hangs. Rank
// 2's group is aborted by their abort messages, with the timeout's class. Every rank's bitwise
// reduction fails at once with ErrUnsupported.
func TestTimeoutTellsThePeers(t *testing.T) {
	if ranktest.Child(t) {
		ctx := context.Background()
		pg, err := comm.Init(ctx, comm.Options{Backend: "xccl", Timeout: 2 * time.Second})
		require.NoError(t, err)
		require.NoError(t, pg.Barrier(ctx))
		x := tensor.New(tensor.Int64, 3)
		if pg.Rank() == 2 {
			time.Sleep(4 * time.Second) // the others time out meanwhile, and say so
			err := pg.AllReduce(ctx, x, comm.Sum)
			require.ErrorIs(t, err, comm.ErrAborted)
			require.ErrorIs(t, err, comm.ErrTimeout, "the peers' abort carries the timeout's class")
			assert.Contains(t, err.Error(), "timed out")
			require.NoError(t, pg.Close())
			fmt.Println("RESULT aborted by the peers")
			return
		}
		sub, err := pg.NewGroup(ctx, []int{0, 1}, comm.GroupOptions{})
		require.NoError(t, err)
		err = sub.AllReduce(ctx, x, comm.BOr)
		require.ErrorIs(t, err, comm.ErrUnsupported)
		assert.Contains(t, err.Error(), fmt.Sprintf("all_reduce on rank %d", pg.Rank()))
		start := time.Now()
		err = pg.AllReduce(ctx, x, comm.Sum)
		require.ErrorIs(t, err, comm.ErrTimeout)
		assert.Less(t, time.Since(start), 10*time.Second)
		assert.Contains(t, err.Error(), "all_reduce")
		assert.Contains(t, err.Error(), fmt.Sprintf("rank %d of 3", pg.Rank()))
		require.ErrorIs(t, pg.AllReduce(ctx, x, comm.Sum), comm.ErrAborted, "later ops fail fast")
		_ = sub.Close()
		start = time.Now()
		_ = pg.Close()
		assert.Less(t, time.Since(start), 15*time.Second)
		fmt.Println("RESULT timed out as expected")
		return
	}
	res := spawnFixtureRanks(t, 3)
	ranktest.AssertExitedZero(t, res)
	for _, r := range res[:2] {
		assert.Contains(t, r.Output, "RESULT timed out as expected", "rank %d", r.Rank)
	}
	assert.Contains(t, res[2].Output, "RESULT aborted by the peers")
}

// TestGoodbyeIsNotALoss: real processes; a rank that closes its group and exits is not taken for
// dead (it says goodbye on the liveness watch): the other two keep using the world group between
// themselves. A rank that exits without closing is: the survivors' next op fails with
// ErrPeerLost naming it, within seconds and not at the 60 s deadline.
func TestGoodbyeIsNotALoss(t *testing.T) {
	if ranktest.Child(t) {
		ctx := context.Background()
		pg, err := comm.Init(ctx, comm.Options{Backend: "xccl", Timeout: time.Minute})
		require.NoError(t, err)
		require.NoError(t, pg.Barrier(ctx))
		x := tensor.New(tensor.Float32, 4)
		switch pg.Rank() {
		case 3:
			require.NoError(t, pg.Close())
			fmt.Println("RESULT closed")
			return
		case 2:
			time.Sleep(time.Second) // after rank 3's goodbye
			os.Exit(0)              // gone without a word
		}
		time.Sleep(500 * time.Millisecond) // rank 3's goodbye and close have arrived
		peer := 1 - pg.Rank()
		for i := range 5 {
			if pg.Rank() == 0 {
				x.Fill(float64(i))
				require.NoError(t, pg.Send(ctx, x, peer, i), "rank 3 closed cleanly: not a loss")
			} else {
				require.NoError(t, pg.Recv(ctx, x, peer, i), "rank 3 closed cleanly: not a loss")
				assert.Equal(t, []float64{float64(i), float64(i), float64(i), float64(i)}, x.Float64s())
			}
		}
		start := time.Now()
		var lost error
		for lost == nil && time.Since(start) < 30*time.Second {
			if pg.Rank() == 0 {
				lost = pg.Send(ctx, x, peer, 99)
			} else {
				lost = pg.Recv(ctx, x, peer, 99)
			}
			time.Sleep(50 * time.Millisecond)
		}
		require.ErrorIs(t, lost, comm.ErrPeerLost)
		var pl *comm.PeerLostError
		require.ErrorAs(t, lost, &pl)
		assert.Equal(t, 2, pl.Rank)
		assert.Equal(t, 2, pl.GlobalRank)
		assert.Contains(t, lost.Error(), "without a goodbye")
		assert.Less(t, time.Since(start), 10*time.Second)
		_ = pg.Close()
		fmt.Println("RESULT saw rank 2 lost")
		return
	}
	res := spawnFixtureRanks(t, 4)
	for _, r := range res {
		if r.Rank != 2 {
			assert.Equal(t, 0, r.ExitCode, "rank %d:\n%s", r.Rank, r.Output)
		}
	}
	assert.Contains(t, res[3].Output, "RESULT closed")
	for _, r := range res[:2] {
		assert.Contains(t, r.Output, "RESULT saw rank 2 lost", "rank %d:\n%s", r.Rank, r.Output)
	}
}

// spawnFixtureRanks runs the calling test as n ranks over the fixture.
func spawnFixtureRanks(t *testing.T, n int) []ranktest.Result {
	lib := buildFixture(t)
	return ranktest.Spawn(t, ranktest.Config{Ranks: n, Timeout: time.Minute, Env: []string{
		EnvLibrary + "=" + lib, "GCCL_XCCL_FIXTURE_DIR=" + t.TempDir(),
	}})
}
