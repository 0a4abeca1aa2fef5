package xccl

import (
	"os"
	"testing"

	"github.com/gccl/gccl/backends/backendtest"
)

// A rank killed with SIGKILL in the middle of a job: the others fail with ErrPeerLost naming it
// within 2 s (the liveness watch sees its connection close and aborts the communicators, which
// interrupts the fixture's blocked collective), not at the op's deadline.

func TestPeerLostAllReduce(t *testing.T) { peerLoss(t, "allreduce", 2) }

func TestPeerLostBarrier(t *testing.T) { peerLoss(t, "barrier", 2) }

func TestPeerLostRank0(t *testing.T) { peerLoss(t, "allreduce", 0) }

func peerLoss(t *testing.T, mode string, kill int) {
	if os.Getenv("GCCL_RANKTEST_CHILD") == "" {
		t.Setenv(EnvLibrary, buildFixture(t))
		t.Setenv("GCCL_XCCL_FIXTURE_DIR", t.TempDir())
	}
	backendtest.PeerLoss(t, "xccl", mode, kill)
}

// A rank that finished its part and left is not a lost peer.
func TestPeerDone(t *testing.T) {
	if os.Getenv("GCCL_RANKTEST_CHILD") == "" {
		t.Setenv(EnvLibrary, buildFixture(t))
		t.Setenv("GCCL_XCCL_FIXTURE_DIR", t.TempDir())
	}
	backendtest.PeerDone(t, "xccl")
}
