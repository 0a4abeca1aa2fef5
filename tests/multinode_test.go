package tests

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildNodeTools compiles the gccl CLI and the multi-node job.
func buildNodeTools(t testing.TB) (gccl, job string) {
	t.Helper()
	return buildWith(t, "./nodejob")
}

var (
	readyLine = regexp.MustCompile(`\[rank (\d+)\] ready rank=\d+ pid=(\d+)`)
	okLine    = regexp.MustCompile(`\[rank (\d+)\] rank (\d+) of (\d+) node (\d+) local (\d+) restart (\d+): ok`)
)

// failureJSON is the part of failure.json the tests check.
type failureJSON struct {
	Reason    string `json:"reason"`
	Message   string `json:"message"`
	RootCause *struct {
		Rank   int    `json:"rank"`
		Node   int    `json:"node"`
		Addr   string `json:"addr"`
		Signal string `json:"signal"`
	} `json:"root_cause"`
	Failures []struct {
		Rank int    `json:"rank"`
		Addr string `json:"addr"`
	} `json:"failures"`
}

func readFailure(t *testing.T, dir string) failureJSON {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "failure.json"))
	require.NoError(t, err)
	var f failureJSON
	require.NoError(t, json.Unmarshal(data, &f), string(data))
	return f
}

// TestMultiNode runs 3-node jobs, 2 ranks per node, over gloo, each node a network namespace
// with its own address, each gccl run inside its namespace: a job that checks its results on
// every rank (node ranks given, and numbered by a standalone gccl store's rendezvous), a worker
// killed, a node's agent killed (with and without restarts), every agent killed, and a rank that
// fails only on the first attempt.
func TestMultiNode(t *testing.T) {
	needRoot(t)
	gccl, job := buildNodeTools(t)
	c := newCluster(t, 3)
	tok := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tok, []byte("multinode-test-token\n"), 0o600))
	port := 29400
	// agents starts one gccl run per node; extra(i) gives node i's own flags.
	// agent starts gccl run on node i, for the job with this endpoint and id.
	agent := func(i int, endpoint, id, mode, logDir string, extra []string) *proc {
		args := []string{"run", "--nproc-per-node", "2", "--nnodes", "3", "--rdzv-endpoint", endpoint,
			"--rdzv-id", id, "--token-file", tok, "--backend", "gloo", "--log-dir", logDir}
		args = append(append(args, extra...), job, mode)
		return c.start(i, []string{"GCCL_TIMEOUT=30s", "GCCL_LOG_LEVEL=info"}, gccl, args...)
	}
	agents := func(t *testing.T, nodes int, endpoint, mode string, logs string, extra func(i int) []string) []*proc {
		port++
		if endpoint == "" {
			endpoint = fmt.Sprintf("%s:%d", c.addrs[0], port)
		}
		var ps []*proc
		for i := 0; i < nodes; i++ {
			var more []string
			if extra != nil {
				more = extra(i)
			}
			ps = append(ps, agent(i, endpoint, fmt.Sprintf("%s-%d", t.Name(), port), mode, filepath.Join(logs, strconv.Itoa(i)), more))
		}
		return ps
	}
	nodeRank := func(i int) []string { return []string{"--node-rank", strconv.Itoa(i)} }
	// readyPids waits for every rank of the long job to be running and returns their pids by rank.
	readyPids := func(t *testing.T, ps []*proc) map[int]int {
		pids := map[int]int{}
		for _, p := range ps {
			for _, m := range p.waitFor(t, readyLine, 2, 60*time.Second) {
				rank, _ := strconv.Atoi(m[1])
				pid, _ := strconv.Atoi(m[2])
				pids[rank] = pid
			}
		}
		require.Len(t, pids, 2*len(ps))
		return pids
	}
	t.Run("conformance", func(t *testing.T) {
		ps := agents(t, 3, "", "check", t.TempDir(), nodeRank)
		for i, p := range ps {
			require.Equal(t, 0, p.wait(t, 2*time.Minute), p.output())
			for l := 0; l < 2; l++ {
				r := 2*i + l
				assert.Contains(t, p.output(), fmt.Sprintf("[rank %d] rank %d of 6 node %d local %d restart 0: ok", r, r, i, l),
					"node %d runs ranks %d and %d, and their results are right", i, 2*i, 2*i+1)
			}
		}
	})

	t.Run("standalone store, nodes numbered by the rendezvous", func(t *testing.T) {
		port++
		endpoint := fmt.Sprintf("%s:%d", c.addrs[0], port)
		st := c.start(0, nil, gccl, "store", "--listen", endpoint, "--token-file", tok)
		st.waitFor(t, regexp.MustCompile(`listening on `+regexp.QuoteMeta(endpoint)), 1, 30*time.Second)
		ps := agents(t, 3, endpoint, "check", t.TempDir(), nil)
		ranks := map[int]bool{}
		for _, p := range ps {
			require.Equal(t, 0, p.wait(t, 2*time.Minute), p.output())
			ms := okLine.FindAllStringSubmatch(p.output(), -1)
			require.Len(t, ms, 2, p.output())
			for _, m := range ms {
				r, _ := strconv.Atoi(m[2])
				node, _ := strconv.Atoi(m[4])
				local, _ := strconv.Atoi(m[5])
				assert.Equal(t, "6", m[3])
				assert.Equal(t, 2*node+local, r, "global rank = node offset + local rank")
				ranks[r] = true
			}
		}
		assert.Len(t, ranks, 6, "every rank ran once")
		st.kill()
	})

	t.Run("worker killed", func(t *testing.T) {
		logs := t.TempDir()
		// idle: the ranks do not talk after the first all-reduce, so they would not notice a
		// dead peer themselves: the agents must stop them on every node.
		ps := agents(t, 3, "", "idle", logs, nodeRank)
		pids := readyPids(t, ps)
		require.NoError(t, syscall.Kill(pids[3], syscall.SIGKILL))
		took := waitGone(t, slices.Collect(maps.Values(pids)), 15*time.Second)
		t.Logf("every worker on every node stopped %v after rank 3 was killed", took)
		for i, p := range ps {
			assert.NotEqual(t, 0, p.wait(t, time.Minute), "node %d must report the failure", i)
			f := readFailure(t, filepath.Join(logs, strconv.Itoa(i)))
			require.NotNil(t, f.RootCause, "node %d: %+v", i, f)
			assert.Equal(t, 3, f.RootCause.Rank, "node %d's report: the root cause is rank 3", i)
			assert.Equal(t, "killed", f.RootCause.Signal)
			assert.Equal(t, c.addrs[1], f.RootCause.Addr, "rank 3 ran on node 1")
			assert.Contains(t, p.output(), fmt.Sprintf("rank 3 (pid %d) was killed by signal: killed on", pids[3]))
			assert.Contains(t, p.output(), fmt.Sprintf("(%s, node 1)", c.addrs[1]))
			assert.Len(t, f.Failures, 1, "node %d: the other ranks were stopped, they did not fail", i)
			// Every node's report analyses every surviving rank's flight-recorder dump: the
			// other nodes' dumps come through the store.
			for _, r := range []int{0, 1, 2, 4, 5} {
				_, err := os.Stat(filepath.Join(logs, strconv.Itoa(i), "fr", "attempt_0", "rank_"+strconv.Itoa(r)))
				assert.NoError(t, err, "node %d has rank %d's dump", i, r)
			}
			assert.Contains(t, p.output(), "flight recorder (5 dump(s))")
		}
	})

	t.Run("agent killed, no restart", func(t *testing.T) {
		logs := t.TempDir()
		ps := agents(t, 3, "", "long", logs, nodeRank)
		pids := readyPids(t, ps)
		require.NoError(t, ps[2].cmd.Process.Kill())
		// The dead agent's workers die with it (parent-death signal), the others are stopped.
		waitGone(t, []int{pids[4], pids[5]}, 5*time.Second)
		took := waitGone(t, slices.Collect(maps.Values(pids)), 30*time.Second)
		t.Logf("every worker stopped %v after node 2's agent was killed", took)
		for i, p := range ps[:2] {
			assert.NotEqual(t, 0, p.wait(t, time.Minute), "node %d must report the failure", i)
			f := readFailure(t, filepath.Join(logs, strconv.Itoa(i)))
			assert.Equal(t, "node lost", f.Reason, "node %d: %+v", i, f)
			assert.Contains(t, f.Message, fmt.Sprintf("node 2 (%s", c.addrs[2]))
		}
	})

	t.Run("agent killed, elastic restart", func(t *testing.T) {
		ps := agents(t, 3, "", "longfirst", t.TempDir(), func(int) []string {
			return []string{"--nnodes", "2:3", "--max-restarts", "1", "--rdzv-conf", "last_call_timeout=3"}
		})
		pids := readyPids(t, ps)
		require.NoError(t, ps[2].cmd.Process.Kill())
		for i, p := range ps[:2] {
			require.Equal(t, 0, p.wait(t, 2*time.Minute), "node %d: the job restarts on the 2 nodes left and succeeds; output:\n%s", i, p.output())
			ms := okLine.FindAllStringSubmatch(p.output(), -1)
			require.Len(t, ms, 2, p.output())
			for _, m := range ms {
				assert.Equal(t, "4", m[3], "world of 2 nodes x 2")
				assert.Equal(t, "1", m[6], "restart 1")
			}
			assert.Contains(t, p.output(), "memberlist declared it dead")
		}
		waitGone(t, slices.Collect(maps.Values(pids)), 5*time.Second)
	})

	t.Run("agent killed and started again: the job restarts with it", func(t *testing.T) {
		logs := t.TempDir()
		restarts := func(i int) []string { return append(nodeRank(i), "--max-restarts", "1") }
		ps := agents(t, 3, "", "longfirst", logs, restarts)
		pids := readyPids(t, ps)
		require.NoError(t, ps[2].cmd.Process.Kill())
		waitGone(t, []int{pids[4], pids[5]}, 5*time.Second)
		// A new agent for node 2 (as a Kubernetes Job would start a new pod) joins the job.
		again := agent(2, fmt.Sprintf("%s:%d", c.addrs[0], port), fmt.Sprintf("%s-%d", t.Name(), port), "longfirst",
			filepath.Join(logs, "2again"), restarts(2))
		for i, p := range []*proc{ps[0], ps[1], again} {
			require.Equal(t, 0, p.wait(t, 2*time.Minute), "node %d; output:\n%s", i, p.output())
			for l := 0; l < 2; l++ {
				r := 2*i + l
				assert.Contains(t, p.output(), fmt.Sprintf("[rank %d] rank %d of 6 node %d local %d restart 1: ok", r, r, i, l))
			}
		}
		waitGone(t, slices.Collect(maps.Values(pids)), 5*time.Second)
	})

	t.Run("every agent killed", func(t *testing.T) {
		ps := agents(t, 3, "", "long", t.TempDir(), nodeRank)
		pids := readyPids(t, ps)
		for _, p := range ps {
			require.NoError(t, p.cmd.Process.Kill())
		}
		waitGone(t, slices.Collect(maps.Values(pids)), 5*time.Second)
	})

	t.Run("agent stopped by SIGTERM: no restart", func(t *testing.T) {
		logs := t.TempDir()
		ps := agents(t, 3, "", "idle", logs, func(i int) []string { return append(nodeRank(i), "--max-restarts", "2") })
		pids := readyPids(t, ps)
		require.NoError(t, ps[1].cmd.Process.Signal(syscall.SIGTERM))
		waitGone(t, slices.Collect(maps.Values(pids)), 15*time.Second)
		assert.Equal(t, 128+int(syscall.SIGTERM), ps[1].wait(t, time.Minute), "gccl run exits 128 + SIGTERM")
		for i, p := range ps {
			code := p.wait(t, time.Minute)
			assert.NotEqual(t, 0, code, "node %d", i)
			assert.NotContains(t, p.output(), "restarting the job", "node %d: a signal stops the job for good", i)
		}
		f := readFailure(t, filepath.Join(logs, "0"))
		assert.Contains(t, f.Message, fmt.Sprintf("stopped by SIGTERM on node 1 (%s)", c.addrs[1]), "node 0 says why: %+v", f)
	})

	t.Run("job timeout on one node: every node stops, no restart", func(t *testing.T) {
		logs := t.TempDir()
		ps := agents(t, 3, "", "idle", logs, func(i int) []string {
			extra := append(nodeRank(i), "--max-restarts", "2")
			if i == 2 {
				extra = append(extra, "--timeout", "3s")
			}
			return extra
		})
		pids := readyPids(t, ps)
		waitGone(t, slices.Collect(maps.Values(pids)), 20*time.Second)
		for i, p := range ps {
			assert.NotEqual(t, 0, p.wait(t, time.Minute), "node %d", i)
			assert.NotContains(t, p.output(), "restarting the job", "node %d: a timeout stops the job for good", i)
		}
		f := readFailure(t, filepath.Join(logs, "0"))
		assert.Contains(t, f.Message, "timed out after 3s", "node 0 says why: %+v", f)
	})

	t.Run("store's host killed: every node stops, no restart", func(t *testing.T) {
		logs := t.TempDir()
		ps := agents(t, 3, "", "idle", logs, func(i int) []string { return append(nodeRank(i), "--max-restarts", "2") })
		pids := readyPids(t, ps)
		require.NoError(t, ps[0].cmd.Process.Kill()) // node 0's agent hosts the rendezvous store
		waitGone(t, slices.Collect(maps.Values(pids)), 20*time.Second)
		for i, p := range ps[1:] {
			assert.NotEqual(t, 0, p.wait(t, time.Minute), "node %d", i+1)
			assert.NotContains(t, p.output(), "restarting the job", "node %d: without the store there is no restart", i+1)
		}
		f := readFailure(t, filepath.Join(logs, "1"))
		assert.Equal(t, "store lost", f.Reason, "node 1 says why: %+v", f)
	})

	t.Run("max restarts, fails on the first run only", func(t *testing.T) {
		logs := t.TempDir()
		ps := agents(t, 3, "", "failfirst", logs, func(i int) []string {
			return append(nodeRank(i), "--max-restarts", "2")
		})
		for i, p := range ps {
			require.Equal(t, 0, p.wait(t, 2*time.Minute), p.output())
			for l := 0; l < 2; l++ {
				r := 2*i + l
				assert.Contains(t, p.output(), fmt.Sprintf("[rank %d] rank %d of 6 node %d local %d restart 1: ok", r, r, i, l))
			}
			assert.NotContains(t, p.output(), "restart 0: ok")
		}
		stderr, err := os.ReadFile(filepath.Join(logs, "1", "attempt_0", "3", "stderr.log"))
		require.NoError(t, err)
		assert.Contains(t, string(stderr), "fails on purpose")
		// The first attempt's flight-recorder dumps stay next to the second's.
		_, err = os.Stat(filepath.Join(logs, "0", "fr", "attempt_0", "rank_0"))
		assert.NoError(t, err, "rank 0's dump of attempt 0")
	})
}
