package comm_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/gloo"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// unnamedLoss is gloo with a backend's blind spot: an all-reduce that loses a peer does not
// know which (as a hierarchical group's rank may not, when another sub-group saw the death).
type unnamedLoss struct{}

type unnamedLossGroup struct{ backends.Group }

func (unnamedLoss) NewGroup(ctx context.Context, cfg backends.Config) (backends.Group, error) {
	g, err := gloo.Backend{}.NewGroup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return unnamedLossGroup{g}, nil
}

func (g unnamedLossGroup) AllReduce(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	err := g.Group.AllReduce(ctx, op, in, out)
	if errors.Is(err, backends.ErrPeerLost) {
		return &backends.PeerLostError{Rank: -1, GlobalRank: -1, Cause: "a connection ended"}
	}
	return err
}

// exitInSetup is gloo, except that rank 1 of a group dies while it sets the group up.
type exitInSetup struct{}

func (exitInSetup) NewGroup(ctx context.Context, cfg backends.Config) (backends.Group, error) {
	if cfg.Rank == 1 {
		os.Exit(3)
	}
	return gloo.Backend{}.NewGroup(ctx, cfg)
}

func init() {
	comm.Register("test-unnamed-loss", unnamedLoss{})
	comm.Register("test-exit-in-setup", exitInSetup{})
}

// TestInitMemberDied: rank 1 dies during Init, after it joined the store, while rank 0 waits
// for it to connect. Rank 0 must fail with ErrPeerLost naming rank 1 within seconds (the
// store's record of its lost connection), not at the 30 s timeout.
func TestInitMemberDied(t *testing.T) {
	if ranktest.Child(t) {
		start := time.Now()
		pg, err := comm.Init(context.Background(), comm.Options{Backend: "test-exit-in-setup"})
		if err == nil {
			defer pg.Close()
		}
		setupReport(start, err)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: 60 * time.Second, Env: []string{"GCCL_TIMEOUT=30s"}})
	assert.Equal(t, 3, res[1].ExitCode, "rank 1 dies in setup")
	o := readSetup(t, res[0])
	t.Logf("rank 0 after %d ms: %s", o.ms, o.err)
	assert.True(t, o.lost, "rank 0: want ErrPeerLost, got %s", o.err)
	assert.Contains(t, o.err, "rank 1 (global rank 1)")
	assert.Contains(t, o.err, "the job's store lost its connection")
	assert.Less(t, o.ms, 10000, "rank 0 notices in seconds, well before the 30 s timeout")
}

// TestPeerLostNamedByStore: rank 1 dies after a barrier; rank 0's backend loses a peer in the
// next all-reduce without knowing which, and comm names rank 1 from the store's record of its
// lost connection. The op after it fails at once, with the same name.
func TestPeerLostNamedByStore(t *testing.T) {
	if ranktest.Child(t) {
		ctx := context.Background()
		pg, err := comm.Init(ctx, comm.Options{Backend: "test-unnamed-loss"})
		require.NoError(t, err)
		require.NoError(t, pg.Barrier(ctx))
		if pg.Rank() == 1 {
			os.Exit(0)
		}
		defer pg.Close()
		start := time.Now()
		err = pg.AllReduce(ctx, tensor.New(tensor.Float32, 4), comm.Sum)
		setupReport(start, err)
		start = time.Now()
		err = pg.AllReduce(ctx, tensor.New(tensor.Float32, 4), comm.Sum)
		setupReport(start, err)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: 60 * time.Second, Env: []string{"GCCL_TIMEOUT=30s"}})
	lines := setupLine.FindAllStringSubmatch(res[0].Output, -1)
	require.Len(t, lines, 2, "rank 0:\n%s", res[0].Output)
	for i, m := range lines {
		t.Logf("op %d: %s", i+1, m[6])
		assert.Equal(t, "true", m[5], "op %d: want ErrPeerLost, got %s", i+1, m[6])
		assert.Contains(t, m[6], "rank 1 (global rank 1)")
		assert.Contains(t, m[6], "the job's store lost its connection")
	}
}
