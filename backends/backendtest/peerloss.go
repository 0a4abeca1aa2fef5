package backendtest

// A rank killed with SIGKILL in the middle of a job: every other rank's pending op must fail
// with ErrPeerLost naming the dead rank, within 2 seconds, however busy or idle the ranks are,
// and whichever rank dies (rank 0 hosts nothing here: the store is hosted by the parent test).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

const (
	peerLossRanks    = 4
	peerLossReadyEnv = "GCCL_PEERLOSS_READY_DIR"
	peerLossReadyOps = 10               // ops a rank completes before it says it is ready
	peerLossLoopFor  = 60 * time.Second // how long a rank loops if nobody dies
	peerLossDeadline = 2 * time.Second  // the requirement: survivors fail this soon after the kill
)

// peerLossOutcome is what a surviving rank reports, as a "RESULT <json>" line.
type peerLossOutcome struct {
	Rank        int    `json:"rank"`
	Err         string `json:"err"`
	PeerLost    bool   `json:"peer_lost"`
	LostRank    int    `json:"lost_rank"`        // PeerLostError.Rank, -1 without one
	LostGlobal  int    `json:"lost_global_rank"` // PeerLostError.GlobalRank, -1 without one
	Ops         int    `json:"ops"`              // ops completed before the error
	SinceLastOK int64  `json:"since_last_ok_ms"` // from the last successful op to the error
	ErrAt       int64  `json:"err_at_unix_ns"`   // wall clock when the error came back
}

// PeerLoss is the peer-loss test for a backend: it runs peerLossRanks ranks that loop over ops (mode "allreduce": 1 MiB float32
// all-reduces; "allgather": all-gathers of 1 MiB a rank; "barrier": barriers and 8-byte
// all-reduces; "signal": every rank signals in a comm.SharedBuffer and waits for every peer's
// signal; "batch": BatchSendRecv of 1 MiB from the previous rank and to the next), SIGKILLs
// rank kill once every rank is busy, and checks what the others report.
func PeerLoss(t *testing.T, backend, mode string, kill int) {
	PeerLossWith(t, PeerLossConfig{Backend: backend, Mode: mode, Kill: kill})
}

// PeerLossConfig configures PeerLossWith.
type PeerLossConfig struct {
	Backend string // backend name (sets GCCL_BACKEND)
	Mode    string // "allreduce", "allgather", "barrier", "signal" or "batch", as for PeerLoss
	Kill    int    // the rank to SIGKILL
	// RankEnv, if set, gives rank `rank` of `size` extra KEY=VALUE environment variables (for
	// example its own GCCL_HOST_ID), as Config.RankEnv does for Run.
	RankEnv func(rank, size int) []string
}

// PeerLossWith is PeerLoss with every option.
func PeerLossWith(t *testing.T, cfg PeerLossConfig) {
	backend, mode, kill := cfg.Backend, cfg.Mode, cfg.Kill
	if ranktest.Child(t) {
		peerLossChild(mode)
		return
	}
	var rankEnv func(r int) []string
	if cfg.RankEnv != nil {
		rankEnv = func(r int) []string { return cfg.RankEnv(r, peerLossRanks) }
	}
	dir := t.TempDir()
	var startedAt, killAt time.Time
	killed := make(chan struct{})
	res := ranktest.Spawn(t, ranktest.Config{
		Ranks:   peerLossRanks,
		Timeout: 2 * time.Minute,
		// With -race, the race runtime sleeps a second at exit (atexit_sleep_ms): not ours to
		// measure.
		Env: []string{"GCCL_TIMEOUT=20s", "GCCL_BACKEND=" + backend, peerLossReadyEnv + "=" + dir,
			"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")},
		RankEnv: rankEnv,
		Started: func(procs []*os.Process) {
			startedAt = time.Now()
			go func() {
				defer close(killed)
				// Wait until every rank has completed a few ops, and about a second since
				// the start, so that the kill lands in the middle of the loop.
				deadline := time.Now().Add(60 * time.Second)
				for !peerLossAllReady(dir) {
					if time.Now().After(deadline) {
						t.Errorf("the ranks did not all get going within 60s; killing them all")
						for _, p := range procs {
							_ = p.Kill()
						}
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(time.Until(startedAt.Add(time.Second)))
				killAt = time.Now()
				if err := procs[kill].Signal(syscall.SIGKILL); err != nil {
					t.Errorf("SIGKILL rank %d: %v", kill, err)
				}
			}()
		},
	})
	<-killed
	require.False(t, killAt.IsZero(), "rank %d was never killed", kill)
	assert.Equal(t, syscall.SIGKILL, res[kill].Signal, "rank %d should have died of SIGKILL; output:\n%s", kill, res[kill].Output)
	for r, rr := range res {
		if r == kill {
			continue
		}
		o, ok := peerLossResult(rr.Output)
		if !assert.True(t, ok, "rank %d reported nothing (exit %d); output:\n%s", r, rr.ExitCode, rr.Output) {
			continue
		}
		errAfterKill := time.Unix(0, o.ErrAt).Sub(killAt)
		// Spawn measures Elapsed from just before it starts the ranks, which is before
		// startedAt: this overestimates the time from the kill to the exit, never under.
		exitAfterKill := startedAt.Add(rr.Elapsed).Sub(killAt)
		t.Logf("rank %d: error %v after the kill (%d ms after its last good op, after %d ops), exit %v after the kill: %s",
			r, errAfterKill.Round(time.Millisecond), o.SinceLastOK, o.Ops, exitAfterKill.Round(time.Millisecond), o.Err)
		assert.Equal(t, 0, rr.ExitCode, "rank %d; output:\n%s", r, rr.Output)
		assert.True(t, o.PeerLost, "rank %d: want errors.Is(err, comm.ErrPeerLost), got %q", r, o.Err)
		assert.True(t, o.LostGlobal == kill || strings.Contains(o.Err, fmt.Sprintf("global rank %d", kill)),
			"rank %d: the error must name global rank %d (PeerLostError.GlobalRank is %d): %q", r, kill, o.LostGlobal, o.Err)
		assert.Equal(t, kill, o.LostGlobal, "rank %d: errors.As(err, *comm.PeerLostError).GlobalRank", r)
		assert.Less(t, errAfterKill, peerLossDeadline, "rank %d: the pending op must fail within %v of the kill", r, peerLossDeadline)
		// Slack for the process to exit after it has reported.
		assert.Less(t, exitAfterKill, peerLossDeadline+500*time.Millisecond, "rank %d must exit soon after the kill", r)
	}
}

func peerLossAllReady(dir string) bool {
	for r := 0; r < peerLossRanks; r++ {
		if _, err := os.Stat(filepath.Join(dir, "ready-"+strconv.Itoa(r))); err != nil {
			return false
		}
	}
	return true
}

func peerLossResult(out string) (peerLossOutcome, bool) {
	var o peerLossOutcome
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "RESULT {"); i >= 0 {
			if json.Unmarshal([]byte(line[i+len("RESULT "):]), &o) == nil {
				return o, true
			}
		}
	}
	return o, false
}

func peerLossChild(mode string) {
	ctx := context.Background()
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	pg, err := comm.Init(ictx, comm.Options{})
	cancel()
	if err != nil {
		fmt.Printf("init failed: %v\n", err)
		return
	}
	defer pg.Close()
	rank := pg.Rank()
	n := 2 // 8 bytes
	if mode != "barrier" {
		n = 1 << 18 // 1 MiB of float32
	}
	x := tensor.New(tensor.Float32, n)
	var all *tensor.Tensor
	if mode == "allgather" || mode == "batch" {
		all = tensor.New(tensor.Float32, pg.Size()*n)
	}
	var shared *comm.SharedBuffer
	if mode == "signal" {
		if shared, err = pg.AllocShared(ctx, 64); err != nil {
			fmt.Printf("AllocShared failed: %v\n", err)
			return
		}
		defer shared.Close()
	}
	var signalled uint64
	step := func() error {
		if mode == "signal" {
			// Every rank signals the step, then waits for every peer's.
			signalled++
			if err := shared.Signal(0, signalled); err != nil {
				return err
			}
			for p := range pg.Size() {
				if err := shared.WaitSignal(ctx, p, 0, signalled); err != nil {
					return err
				}
			}
			return nil
		}
		x.Fill(1)
		if mode == "batch" {
			n := pg.Size()
			got, _ := all.Narrow(0, 0, x.Numel())
			return pg.BatchSendRecv(ctx, []comm.P2POp{comm.RecvOp(got, (rank-1+n)%n, 0), comm.SendOp(x, (rank+1)%n, 0)})
		}
		if mode == "allgather" {
			return pg.AllGather(ctx, all, x)
		}
		if mode == "barrier" {
			if err := pg.Barrier(ctx); err != nil {
				return err
			}
		}
		return pg.AllReduce(ctx, x, comm.Sum)
	}
	lastOK := time.Now()
	ops := 0
	for end := time.Now().Add(peerLossLoopFor); time.Now().Before(end); {
		err := step()
		if err == nil {
			lastOK = time.Now()
			ops++
			if ops == peerLossReadyOps {
				_ = os.WriteFile(filepath.Join(os.Getenv(peerLossReadyEnv), "ready-"+strconv.Itoa(rank)), nil, 0o644)
			}
			continue
		}
		now := time.Now()
		o := peerLossOutcome{Rank: rank, Err: err.Error(), PeerLost: errors.Is(err, comm.ErrPeerLost),
			LostRank: -1, LostGlobal: -1, Ops: ops, SinceLastOK: now.Sub(lastOK).Milliseconds(), ErrAt: now.UnixNano()}
		var pl *comm.PeerLostError
		if errors.As(err, &pl) {
			o.LostRank, o.LostGlobal = pl.Rank, pl.GlobalRank
		}
		b, _ := json.Marshal(o)
		fmt.Printf("RESULT %s\n", b)
		return
	}
	fmt.Printf("no error after %v and %d ops\n", peerLossLoopFor, ops)
}

// PeerDone is the opposite case: a rank that has done its part of the point-to-point traffic,
// closed its group and exited is no loss. Rank 2 of 3 sends rank 0 one message and leaves; ranks
// 0 and 1 then exchange 16 MiB both ways (sends that wait while every incoming connection or
// mailbox is drained, rank 2's included), and rank 0 receives from 1 and 2 in one batch. Both
// must succeed.
func PeerDone(t *testing.T, backend string) {
	if ranktest.Child(t) {
		peerDoneChild(t)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 3, Timeout: time.Minute,
		Env: []string{"GCCL_TIMEOUT=20s", "GCCL_BACKEND=" + backend}})
	ranktest.AssertExitedZero(t, res)
}

func peerDoneChild(t *testing.T) {
	ctx := context.Background()
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	pg, err := comm.Init(ictx, comm.Options{})
	cancel()
	require.NoError(t, err)
	r := pg.Rank()
	require.NoError(t, pg.Barrier(ctx))
	if r == 2 {
		require.NoError(t, pg.Send(ctx, input(tensor.Float32, tensor.Sum, 2, 5, 1), 0, 0))
		require.NoError(t, pg.Close())
		return
	}
	time.Sleep(300 * time.Millisecond) // rank 2 is gone by now
	peer := 1 - r
	big := mib(tensor.Float32, 16)
	got := tensor.New(tensor.Float32, big)
	w := pg.SendAsync(input(tensor.Float32, tensor.Sum, r, big, 2), peer, 1)
	require.NoError(t, pg.Recv(ctx, got, peer, 1))
	require.NoError(t, w.Wait(ctx))
	require.NoError(t, expectBlocks("the 16 MiB message", got, tensor.Float32, []int{peer}, big, 2))
	if r == 1 {
		time.Sleep(300 * time.Millisecond) // rank 0 waits on this rank while it checks the others
		require.NoError(t, pg.Send(ctx, input(tensor.Float32, tensor.Sum, 1, 5, 3), 0, 0))
	} else {
		from1, from2 := tensor.New(tensor.Float32, 5), tensor.New(tensor.Float32, 5)
		require.NoError(t, pg.BatchSendRecv(ctx, []comm.P2POp{comm.RecvOp(from1, 1, 0), comm.RecvOp(from2, 2, 0)}))
		require.NoError(t, expectBlocks("rank 1's message", from1, tensor.Float32, []int{1}, 5, 3))
		require.NoError(t, expectBlocks("rank 2's message", from2, tensor.Float32, []int{2}, 5, 1))
	}
	require.NoError(t, pg.Close())
}
