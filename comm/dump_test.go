package comm_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/flightrecorder"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// waitFile waits up to d for path to exist.
func waitFile(path string, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}

// TestDumpTriggers: an API call dumps one rank; a request through the store makes every rank
// dump within 2 seconds without stopping the job; writing to a rank's pipe dumps it. Each dump
// loads and holds the ops the rank ran.
func TestDumpTriggers(t *testing.T) {
	dir := os.Getenv("DUMP_TEST_DIR")
	if ranktest.Child(t) {
		ctx := context.Background()
		pg, err := comm.Init(ctx, comm.Options{})
		require.NoError(t, err)
		defer pg.Close()
		x := tensor.New(tensor.Float32, 4)
		for i := 0; i < 3; i++ {
			require.NoError(t, pg.AllReduce(ctx, x, comm.Sum))
		}
		prefix := filepath.Join(dir, "rank_")
		mine := flightrecorder.DumpPath(prefix, pg.Rank())

		path, err := pg.DumpFlightRecorder()
		require.NoError(t, err)
		require.Equal(t, mine, path)
		d, err := flightrecorder.LoadFile(path)
		require.NoError(t, err)
		assert.Len(t, d.Entries, 3)
		require.NoError(t, os.Remove(path))
		require.NoError(t, pg.Barrier(ctx))

		if pg.Rank() == 0 {
			require.NoError(t, pg.RequestFlightRecorderDumps(ctx))
		}
		for r := 0; r < pg.Size(); r++ {
			require.True(t, waitFile(flightrecorder.DumpPath(prefix, r), 2*time.Second), "rank %d's requested dump", r)
		}
		require.NoError(t, pg.Barrier(ctx)) // the job goes on
		require.NoError(t, os.Remove(mine))
		require.NoError(t, pg.Barrier(ctx))

		pipe := mine + ".pipe"
		require.NoError(t, os.WriteFile(pipe, []byte("dump\n"), 0o600))
		require.True(t, waitFile(mine, 2*time.Second), "dump after writing to %s", pipe)
		d, err = flightrecorder.LoadFile(mine)
		require.NoError(t, err)
		assert.Len(t, d.Entries, 6, "3 all-reduces and 3 barriers")
		return
	}
	dir = t.TempDir()
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Env: []string{
		"DUMP_TEST_DIR=" + dir, "GCCL_FR_DUMP_PREFIX=" + filepath.Join(dir, "rank_"),
		"GCCL_FR_DUMP_PIPE=1", "GCCL_FR_DUMP_FORMAT=json",
	}})
	ranktest.AssertExitedZero(t, res)
	for r := 0; r < 2; r++ {
		_, err := os.Stat(filepath.Join(dir, "rank_"+strconv.Itoa(r)+".pipe"))
		assert.True(t, os.IsNotExist(err), "rank %d's pipe is removed at Close", r)
	}
}
