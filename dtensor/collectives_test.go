package dtensor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// TestCollectives: on a 2x2 mesh of 4 real processes, each transition runs the collective it
// should, over the group of the mesh dimension that changes (read from the flight recorder):
// S->R all-gather, P->R all-reduce, P->S reduce-scatter, S(i)->S(j) all-to-all, R->S and R->P
// nothing; nested shards are undone from the innermost mesh dimension out; Distribute scatters
// along sharded dimensions and broadcasts along the others.
func TestCollectives(t *testing.T) {
	if ranktest.Child(t) {
		collectivesChild(t)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 4, Timeout: time.Minute,
		Env: []string{"GCCL_TIMEOUT=30s", "GCCL_BACKEND=gloo"}})
	ranktest.AssertExitedZero(t, res)
}

func collectivesChild(t *testing.T) {
	ctx := context.Background()
	pg, m := childMesh(ctx, t, []int{2, 2})
	g := globalTensor(tensor.Float32, []int{7, 5})
	// ops lists the collectives run by f, as "<group description>:<op>".
	ops := func(f func()) []string {
		before := pg.Recorder().Snapshot().Entries
		last := int64(-1)
		if len(before) > 0 {
			last = int64(before[len(before)-1].RecordID)
		}
		f()
		var out []string
		for _, e := range pg.Recorder().Snapshot().Entries {
			if int64(e.RecordID) > last {
				_, op, _ := strings.Cut(e.ProfilingName, ":")
				out = append(out, e.ProcessGroup[1]+":"+op)
			}
		}
		return out
	}
	S0, S1, R, P := dtensor.Shard{Dim: 0}, dtensor.Shard{Dim: 1}, dtensor.Replicate{}, dtensor.Partial{}
	type pl = []dtensor.Placement
	cases := []struct {
		name     string
		src, dst pl
		want     []string
	}{
		{"S->R", pl{S0, R}, pl{R, R}, []string{"mesh_dp:all_gather"}},
		{"P->R", pl{R, P}, pl{R, R}, []string{"mesh_tp:all_reduce"}},
		{"P->S", pl{P, R}, pl{S1, R}, []string{"mesh_dp:reduce_scatter"}},
		{"S(0)->S(1)", pl{S0, R}, pl{S1, R}, []string{"mesh_dp:all_to_all"}},
		{"R->S", pl{R, R}, pl{R, S0}, nil},
		{"R->P", pl{R, R}, pl{P, R}, nil},
		{"S->P", pl{S0, R}, pl{P, R}, []string{"mesh_dp:all_gather"}},
		{"two_dims", pl{S0, P}, pl{R, S1}, []string{"mesh_tp:reduce_scatter", "mesh_dp:all_gather"}},
		{"nested_outer_to_R", pl{S0, S0}, pl{R, S0}, []string{"mesh_tp:all_gather", "mesh_dp:all_gather"}},
		{"nested_inner_to_R", pl{S0, S0}, pl{S0, R}, []string{"mesh_tp:all_gather"}},
		{"swap", pl{S0, S1}, pl{S1, S0}, []string{"mesh_tp:all_gather", "mesh_dp:all_gather"}},
		{"both_partial", pl{P, P}, pl{R, R}, []string{"mesh_tp:all_reduce", "mesh_dp:all_reduce"}},
	}
	for _, tc := range cases {
		d, err := dtensor.Distribute(ctx, g, m, tc.src, dtensor.DistributeOptions{LocalIsFull: true})
		require.NoError(t, err, tc.name)
		var r *dtensor.DTensor
		got := ops(func() { r, err = d.Redistribute(ctx, tc.dst) })
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.want, got, tc.name)
		full, err := r.Full(ctx)
		require.NoError(t, err, tc.name)
		assert.True(t, tensor.Equal(g, full), tc.name)
	}
	for _, tc := range []struct {
		ps   pl
		want []string
	}{
		{pl{S0, S1}, []string{"mesh_dp:scatter", "mesh_tp:scatter"}},
		{pl{R, P}, []string{"mesh_dp:broadcast", "mesh_tp:broadcast"}},
	} {
		var err error
		got := ops(func() { _, err = dtensor.Distribute(ctx, g, m, tc.ps, dtensor.DistributeOptions{Src: 3}) })
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, "Distribute %v", tc.ps)
	}
}
