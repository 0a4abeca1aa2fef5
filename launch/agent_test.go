package launch_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/launch"
)

// nodes runs a job of len(ranks) agents in this process, on loopback (real worker processes;
// the agents are goroutines here, in separate processes in tests/), agent i asking for node
// rank ranks[i].
func nodes(t *testing.T, mode string, ranks []int, edit func(*launch.Config)) ([]*launch.Result, []string, []error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	endpoint := l.Addr().String()
	require.NoError(t, l.Close())
	n := len(ranks)
	res, outs, errs := make([]*launch.Result, n), make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range ranks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			cfg := launch.Config{
				NProcs: 2, Program: os.Args[0], Env: []string{envMode + "=" + mode},
				MinNodes: n, MaxNodes: n, NodeRank: ranks[i], RdzvEndpoint: endpoint, RunID: "agents",
				Token: "t0ken", Stdout: &out, Stderr: &out, GracePeriod: 2 * time.Second, JoinTimeout: 30 * time.Second,
			}
			if edit != nil {
				edit(&cfg)
			}
			res[i], errs[i] = launch.Run(context.Background(), cfg)
			outs[i] = out.String()
		}()
	}
	wg.Wait()
	return res, outs, errs
}

func TestAgentsGiveEachNodeItsRanks(t *testing.T) {
	res, outs, errs := nodes(t, "env", []int{1, 0}, nil)
	for i := range res {
		require.NoError(t, errs[i])
		require.NoError(t, res[i].Err())
	}
	// The first agent asked for node rank 1: its workers are ranks 2 and 3 of 4.
	for _, want := range []string{"[rank 2] RANK=2\n", "[rank 3] LOCAL_RANK=1\n", "[rank 2] GROUP_RANK=1\n", "[rank 3] WORLD_SIZE=4\n", "[rank 2] LOCAL_WORLD_SIZE=2\n", "[rank 2] TORCHELASTIC_RUN_ID=agents\n"} {
		assert.Contains(t, outs[0], want)
	}
	assert.Contains(t, outs[1], "[rank 0] GROUP_RANK=0\n")
	assert.Contains(t, outs[1], "[rank 1] ROLE_RANK=1\n")
	assert.Contains(t, outs[0], "MASTER_ADDR=127.0.0.1\n")
}

func TestAgentsStopEveryNodeWhenOneRankFails(t *testing.T) {
	start := time.Now()
	// fail1: rank 1 (node 0) fails at once; the others sleep a minute unless stopped.
	res, outs, errs := nodes(t, "fail1", []int{0, 1}, nil)
	assert.Less(t, time.Since(start), 30*time.Second, "node 1's workers were stopped, not left to sleep")
	for i := range res {
		require.NoError(t, errs[i])
		rep := res[i].Report
		require.NotNil(t, rep, "node %d: the job failed; output:\n%s", i, outs[i])
		require.NotNil(t, rep.RootCause)
		assert.Equal(t, 1, rep.RootCause.Rank, "node %d's report names rank 1", i)
		assert.Equal(t, 0, rep.RootCause.Node)
		assert.Equal(t, []string{"rank 1 gives up"}, rep.RootCause.StderrTail, "the other node's report carries rank 1's stderr")
		assert.Len(t, rep.Failures, 1, "the stopped ranks did not fail: %+v", rep.Failures)
		assert.Equal(t, 1, res[i].First.Rank)
		assert.Equal(t, 3, res[i].First.ExitCode, "gccl run exits with the root cause's status on every node")
	}
	for r := 2; r < 4; r++ {
		assert.True(t, res[1].Ranks[r-2].Stopped, "rank %d was stopped", r)
	}
}

func TestRendezvousTimeoutSaysWhoIsMissing(t *testing.T) {
	_, _, errs := nodes(t, "env", []int{0}, func(c *launch.Config) {
		c.MinNodes, c.MaxNodes, c.JoinTimeout = 3, 3, time.Second
	})
	require.Error(t, errs[0])
	assert.ErrorContains(t, errs[0], "timed out")
	assert.ErrorContains(t, errs[0], "1 of 3 node(s) joined")
	assert.ErrorContains(t, errs[0], "missing node rank(s) 1, 2")
	assert.ErrorContains(t, errs[0], fmt.Sprintf("pid %d", os.Getpid()), "names the node that joined")
}

func TestRendezvousIDReusedOnALiveStore(t *testing.T) {
	srv, err := store.NewServer(store.ServerOptions{Token: "t0ken", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer srv.Close()
	onStore := func(c *launch.Config) { c.RdzvEndpoint = srv.Addr() }
	res, _, errs := nodes(t, "env", []int{0, 1}, onStore)
	for i := range res {
		require.NoError(t, errs[i])
		require.NoError(t, res[i].Err())
	}
	// The same --rdzv-id again on the store that outlived the job: a clear error, not a hang.
	_, _, errs = nodes(t, "env", []int{0, 1}, onStore)
	for i := range errs {
		assert.ErrorContains(t, errs[i], "ended without this node")
		assert.ErrorContains(t, errs[i], "use a new --rdzv-id")
	}
}
