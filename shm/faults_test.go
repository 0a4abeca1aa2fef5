package shm_test

import (
	"testing"

	"github.com/gccl/gccl/backends/backendtest"
)

// A rank killed with SIGKILL mid-job: the others fail with ErrPeerLost naming it within 2 s
// (shm notices by checking the awaited peers' pids while it waits).

func TestPeerLostAllReduce(t *testing.T) { backendtest.PeerLoss(t, "shm", "allreduce", 2) }

func TestPeerLostBarrier(t *testing.T) { backendtest.PeerLoss(t, "shm", "barrier", 2) }

// A rank waiting for a dead peer's signal in shared memory (comm.SharedBuffer.WaitSignal).
func TestPeerLostSignal(t *testing.T) { backendtest.PeerLoss(t, "shm", "signal", 1) }

func TestPeerLostRank0(t *testing.T) { backendtest.PeerLoss(t, "shm", "allreduce", 0) }

// The same in single-copy all-gathers (forced on for the 4 ranks: by default only pairs use
// it), where the survivors may be reading the killed rank's memory when it dies.
func TestPeerLostSingleCopyAllGather(t *testing.T) {
	backendtest.PeerLossWith(t, backendtest.PeerLossConfig{Backend: "shm", Mode: "allgather", Kill: 2,
		RankEnv: func(rank, size int) []string { return []string{"GCCL_SHM_SINGLE_COPY_BYTES=1"} }})
}
