package shm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/backends/backendtest"
	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// A rank killed with SIGKILL mid-job: the others fail with ErrPeerLost naming it within 2 s
// (shm notices by checking the awaited peers' pids while it waits).

func TestPeerLostAllReduce(t *testing.T) { backendtest.PeerLoss(t, "shm", "allreduce", 2) }

func TestPeerLostBarrier(t *testing.T) { backendtest.PeerLoss(t, "shm", "barrier", 2) }

// A rank waiting for a dead peer's signal in shared memory (comm.SharedBuffer.WaitSignal).
func TestPeerLostSignal(t *testing.T) { backendtest.PeerLoss(t, "shm", "signal", 1) }

func TestPeerLostRank0(t *testing.T) { backendtest.PeerLoss(t, "shm", "allreduce", 0) }

// Ranks in batches that read each other's buffers in place (single copy), where a survivor may
// be reading the killed rank's memory when it dies.
func TestPeerLostBatch(t *testing.T) { backendtest.PeerLoss(t, "shm", "batch", 2) }

// The same in single-copy all-gathers (forced on for the 4 ranks: by default only pairs use
// it), where the survivors may be reading the killed rank's memory when it dies.
func TestPeerLostSingleCopyAllGather(t *testing.T) {
	backendtest.PeerLossWith(t, backendtest.PeerLossConfig{Backend: "shm", Mode: "allgather", Kill: 2,
		RankEnv: func(rank, size int) []string { return []string{"GCCL_SHM_SINGLE_COPY_BYTES=1"} }})
}

// A batch waits on its first op while it moves them all, and checks every peer of the batch
// while it waits: rank 0 receives from rank 1, which is alive but never sends, and from rank 2,
// which dies without a word. Rank 0 fails with ErrPeerLost naming rank 2 in seconds, not when
// the op times out.
func TestPeerLostInBatch(t *testing.T) {
	if ranktest.Child(t) {
		peerLostInBatchChild(t)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 3, Timeout: time.Minute, Env: []string{"GCCL_BACKEND=shm", "GCCL_TIMEOUT=60s"}})
	require.Len(t, res, 3)
	assert.Equal(t, 0, res[0].ExitCode, "rank 0: %s", res[0].Output)
	assert.Contains(t, res[0].Output, "peer lost: rank 2", "rank 0: %s", res[0].Output)
	assert.Equal(t, 7, res[2].ExitCode, "rank 2 dies as planned")
}

func peerLostInBatchChild(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	require.NoError(t, err)
	require.NoError(t, pg.Barrier(ctx))
	switch pg.Rank() {
	case 2:
		time.Sleep(200 * time.Millisecond)
		os.Exit(7) // no Close: a crash, as far as the others can tell
	case 1:
		time.Sleep(6 * time.Second) // alive, but never sends (longer than rank 0 may take to fail)
		os.Exit(0)
	}
	a, b := tensor.New(tensor.Float32, 4), tensor.New(tensor.Float32, 4)
	start := time.Now()
	err = pg.BatchSendRecv(ctx, []comm.P2POp{comm.RecvOp(a, 1, 0), comm.RecvOp(b, 2, 0)})
	require.Error(t, err)
	assert.True(t, errors.Is(err, comm.ErrPeerLost), "got %v", err)
	assert.Less(t, time.Since(start), 5*time.Second, "the lost peer is noticed while the batch waits for another")
	fmt.Println(err)
	os.Exit(0)
}

// A rank that finished its part and left is not a lost peer.
func TestPeerDone(t *testing.T) { backendtest.PeerDone(t, "shm") }
