package gloo_test

import (
	"testing"

	"github.com/gccl/gccl/backends/backendtest"
)

// A rank killed with SIGKILL mid-job: the others fail with ErrPeerLost naming it within 2 s.

func TestPeerLostAllReduce(t *testing.T) { backendtest.PeerLoss(t, "gloo", "allreduce", 2) }

func TestPeerLostBarrier(t *testing.T) { backendtest.PeerLoss(t, "gloo", "barrier", 2) }

func TestPeerLostRank0(t *testing.T) { backendtest.PeerLoss(t, "gloo", "allreduce", 0) }

func TestPeerLostBatch(t *testing.T) { backendtest.PeerLoss(t, "gloo", "batch", 2) }

// A rank that finished its part and left is not a lost peer.
func TestPeerDone(t *testing.T) { backendtest.PeerDone(t, "gloo") }
