package mesh_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/mesh"
)

// TestConcurrentUse: on 4 real processes, goroutines of each rank read a mesh, take views and
// flatten it under one name at the same time (run it with -race): they all get the same
// flattened mesh, and only one group is created.
func TestConcurrentUse(t *testing.T) {
	if ranktest.Child(t) {
		concurrentChild(t)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 4, Timeout: time.Minute,
		Env: []string{"GCCL_TIMEOUT=30s", "GCCL_BACKEND=gloo"}})
	ranktest.AssertExitedZero(t, res)
}

func concurrentChild(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	require.NoError(t, err)
	defer pg.Close()
	m, err := mesh.New(ctx, pg, []int{2, 2}, []string{"dp", "tp"}, mesh.Options{})
	require.NoError(t, err)
	defer m.Close()
	n0, _ := groupCount(pg)

	const workers = 8
	flats := make([]*mesh.Mesh, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range 100 {
				sub, err := m.Sub("dp", "tp")
				assert.NoError(t, err)
				assert.Equal(t, m.Coordinate(), sub.Coordinate())
				tp, err := sub.Dim("tp")
				assert.NoError(t, err)
				assert.Equal(t, lineOf(pg.Rank(), []int{2, 2}, []int{1}), tp.Ranks())
				_, err = m.Group("dp")
				assert.NoError(t, err)
				_ = m.String()
			}
			f, err := m.Flatten(ctx, "dp_tp", mesh.DimOptions{})
			assert.NoError(t, err)
			flats[w] = f
		})
	}
	wg.Wait()
	for _, f := range flats {
		assert.Same(t, flats[0], f)
	}
	n1, _ := groupCount(pg)
	assert.Equal(t, n0+1, n1, "concurrent Flatten calls create one group")
	g, err := flats[0].Group("dp_tp")
	require.NoError(t, err)
	checkSum(t, ctx, g, pg.GlobalRanks(), "dp_tp")
}
