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

// TestLostRankTimesOut: real processes; rank 2 exits without joining an all-reduce. The others
// fail with ErrTimeout at the op's deadline, naming the op and their rank, abort, close and exit:
// nothing hangs. Every rank's bitwise reduction fails at once with ErrUnsupported.
func TestLostRankTimesOut(t *testing.T) {
	if ranktest.Child(t) {
		ctx := context.Background()
		pg, err := comm.Init(ctx, comm.Options{Backend: "xccl", Timeout: 2 * time.Second})
		require.NoError(t, err)
		require.NoError(t, pg.Barrier(ctx))
		if pg.Rank() == 2 {
			os.Exit(0) // gone, without a word
		}
		x := tensor.New(tensor.Int64, 3)
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
	lib := buildFixture(t)
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 3, Timeout: time.Minute, Env: []string{
		EnvLibrary + "=" + lib, "GCCL_XCCL_FIXTURE_DIR=" + t.TempDir(), "GCCL_FR_DUMP_PREFIX=" + t.TempDir() + "/fr_",
	}})
	ranktest.AssertExitedZero(t, res)
	for _, r := range res[:2] {
		assert.Contains(t, r.Output, "RESULT timed out as expected", "rank %d", r.Rank)
	}
}
