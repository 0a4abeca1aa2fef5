package shm_test

import (
	"testing"

	"github.com/gccl/gccl/backends/backendtest"
)

// A rank killed with SIGKILL mid-job: the others fail with ErrPeerLost naming it within 2 s
// (shm notices by checking the awaited peers' pids while it waits).

func TestPeerLostAllReduce(t *testing.T) { backendtest.PeerLoss(t, "shm", "allreduce", 2) }

func TestPeerLostBarrier(t *testing.T) { backendtest.PeerLoss(t, "shm", "barrier", 2) }

func TestPeerLostRank0(t *testing.T) { backendtest.PeerLoss(t, "shm", "allreduce", 0) }
