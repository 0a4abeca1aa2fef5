package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkStopAfterDeadRank measures how long gccl run takes from a rank killed with SIGKILL to
// every other worker gone (each worker's /proc entry polled every 10 ms), while the ranks idle
// after one all-reduce, so only the launcher can stop them: on one node (8 ranks), and on 3
// nodes x 2 ranks in network namespaces (root only); and, on 3 nodes, from node 2's agent killed
// with SIGKILL (its workers die with it; the others notice through memberlist) to every worker
// gone. ms/stop is the metric.
//
//	go test -run '^$' -bench StopAfterDeadRank -benchtime 5x ./tests/
func BenchmarkStopAfterDeadRank(b *testing.B) {
	gccl, job := buildNodeTools(b)
	b.Run("1node_8ranks", func(b *testing.B) {
		var total time.Duration
		for i := 0; i < b.N; i++ {
			p := &proc{name: "gccl run", done: make(chan struct{})}
			p.cmd = exec.Command(gccl, "run", "--nproc-per-node", "8", "--backend", "gloo", "--log-dir", b.TempDir(), job, "idle")
			p.cmd.Stdout, p.cmd.Stderr = p, p
			require.NoError(b, p.cmd.Start())
			go func() { p.err = p.cmd.Wait(); close(p.done) }()
			total += killAndWait(b, []*proc{p}, 8, 3)
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/stop")
	})
	for _, agentKilled := range []bool{false, true} {
		name := "3nodes_2ranks_netns"
		if agentKilled {
			name = "3nodes_agent_killed_netns"
		}
		b.Run(name, func(b *testing.B) {
			c := newCluster(b, 3)
			tok := filepath.Join(b.TempDir(), "token")
			require.NoError(b, os.WriteFile(tok, []byte("bench-token"), 0o600))
			var total time.Duration
			for i := 0; i < b.N; i++ {
				var ps []*proc
				for n := 0; n < 3; n++ {
					ps = append(ps, c.start(n, nil, gccl, "run", "--nproc-per-node", "2", "--nnodes", "3", "--node-rank", strconv.Itoa(n),
						"--rdzv-endpoint", fmt.Sprintf("%s:%d", c.addrs[0], 29500+i), "--rdzv-id", fmt.Sprintf("bench%d", i), "--token-file", tok,
						"--backend", "gloo", "--log-dir", b.TempDir(), job, "idle"))
				}
				victim := 3
				if agentKilled {
					victim = -1
				}
				total += killAndWait(b, ps, 2, victim)
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/stop")
		})
	}
}

// killAndWait waits for every rank of the idle job, SIGKILLs rank victim (-1: the last
// launcher), and returns how long until every worker was gone; then it waits for the launchers.
func killAndWait(b *testing.B, ps []*proc, perNode, victim int) time.Duration {
	pids := map[int]int{}
	for _, p := range ps {
		for _, m := range p.waitFor(b, readyLine, perNode, time.Minute) {
			r, _ := strconv.Atoi(m[1])
			pids[r], _ = strconv.Atoi(m[2])
		}
	}
	var all []int
	for _, pid := range pids {
		all = append(all, pid)
	}
	if victim >= 0 {
		require.NoError(b, syscall.Kill(pids[victim], syscall.SIGKILL))
	} else {
		require.NoError(b, ps[len(ps)-1].cmd.Process.Kill())
	}
	took := waitGone(b, all, 30*time.Second)
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			b.Fatalf("%s still running a minute after the failure", p.name)
		}
	}
	return took
}

// BenchmarkMultiNodeStartup times a whole 3-node x 2-rank job on network namespaces, from
// starting the three gccl run agents to the last one exiting: rendezvous, the workers' start,
// one 8-byte all-reduce across the nodes (nodejob once), and the agents' goodbyes. Root only.
//
//	go test -run '^$' -bench MultiNodeStartup -benchtime 10x ./tests/
func BenchmarkMultiNodeStartup(b *testing.B) {
	gccl, job := buildNodeTools(b)
	c := newCluster(b, 3)
	tok := filepath.Join(b.TempDir(), "token")
	require.NoError(b, os.WriteFile(tok, []byte("bench-token"), 0o600))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var ps []*proc
		for n := 0; n < 3; n++ {
			ps = append(ps, c.start(n, nil, gccl, "run", "--nproc-per-node", "2", "--nnodes", "3", "--node-rank", strconv.Itoa(n),
				"--rdzv-endpoint", fmt.Sprintf("%s:%d", c.addrs[0], 29600+i), "--rdzv-id", fmt.Sprintf("start%d", i), "--token-file", tok,
				"--backend", "gloo", job, "once"))
		}
		for _, p := range ps {
			if code := p.wait(b, time.Minute); code != 0 {
				b.Fatalf("%s exited %d:\n%s", p.name, code, p.output())
			}
		}
	}
}
