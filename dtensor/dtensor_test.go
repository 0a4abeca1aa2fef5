package dtensor_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// meshCase is one mesh the ranks of TestRedistribute build, passed to them as ranktest's Case.
type meshCase struct {
	Name  string
	Ranks int
	Shape []int
	Long  bool // skipped with -short
}

// TestRedistribute: on 1-D meshes of 2, 3 and 4 real processes and 2-D meshes of 2x2 (and 2x3),
// for every pair of placements per mesh dimension (S(0), S(1), R, P(sum), and on 1-D meshes
// P(max) and P(avg)), even and uneven global shapes (sizes 7, 5, 4, 1 and 0, so trailing shards
// are short or empty) and float32, int32, int64 and int8 data, every rank checks: Distribute's local
// shard, Redistribute's local shard and Full against the reference cut from the known global
// tensor; Distribute from a non-zero source rank; FromLocal (with Check) round trips.
func TestRedistribute(t *testing.T) {
	if ranktest.Child(t) {
		var tc meshCase
		ranktest.ReadCase(t, &tc)
		redistributeChild(t, tc)
		return
	}
	cases := []meshCase{
		{Name: "1d_2", Ranks: 2, Shape: []int{2}},
		{Name: "1d_3", Ranks: 3, Shape: []int{3}},
		{Name: "1d_4", Ranks: 4, Shape: []int{4}},
		{Name: "2x2", Ranks: 4, Shape: []int{2, 2}},
		{Name: "2x3", Ranks: 6, Shape: []int{2, 3}, Long: true},
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			if tc.Long && testing.Short() {
				t.Skip("-short: 6 ranks on a small machine; 2x2 covers 2-D meshes")
			}
			start := time.Now()
			res := ranktest.Spawn(t, ranktest.Config{Ranks: tc.Ranks, Timeout: 2 * time.Minute, Case: tc,
				Env: []string{"GCCL_TIMEOUT=60s", "GCCL_BACKEND=gloo"}})
			ranktest.AssertExitedZero(t, res)
			t.Logf("%s: %d ranks in %v; rank 0: %s", tc.Name, tc.Ranks, time.Since(start).Round(time.Millisecond), strings.TrimSpace(res[0].Output))
		})
	}
}

// childMesh initialises this child's process group and builds over it a mesh of the given
// shape, its dimensions named dp, tp and pp in order; both are closed when the test ends.
func childMesh(ctx context.Context, t *testing.T, shape []int) (*comm.ProcessGroup, *mesh.Mesh) {
	pg, err := comm.Init(ctx, comm.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { pg.Close() })
	m, err := mesh.New(ctx, pg, shape, []string{"dp", "tp", "pp"}[:len(shape)], mesh.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return pg, m
}

// globalTensor is the known global tensor: small signed integers, exact in every dtype tested.
func globalTensor(dt tensor.DType, shape []int) *tensor.Tensor {
	n := 1
	for _, s := range shape {
		n *= s
	}
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = float64((i*7+3)%23 - 11)
	}
	t, err := tensor.FromFloat64s(dt, vals, shape...)
	if err != nil {
		panic(err)
	}
	return t
}

// reference is the local tensor a rank at coord must hold: its torch.chunk shard of g, and
// along Partial mesh dimensions the value at coordinate 0 and the op's identity elsewhere (every
// rank keeps the value for Avg, Max, Min).
func reference(t *testing.T, g *tensor.Tensor, meshShape, coord []int, ps []dtensor.Placement) *tensor.Tensor {
	shape, offset, err := dtensor.LocalShape(g.Shape(), meshShape, coord, ps)
	require.NoError(t, err)
	v := g
	for d := range shape {
		v, err = v.Narrow(d, offset[d], shape[d])
		require.NoError(t, err)
	}
	out := v.Clone()
	for i, p := range ps {
		if pp, ok := p.(dtensor.Partial); ok && coord[i] != 0 && (pp.Op == comm.Sum || pp.Op == comm.BXor) {
			out.Fill(0)
		}
	}
	return out
}

func placementSets(ndim int) [][]dtensor.Placement {
	per := []dtensor.Placement{dtensor.Shard{Dim: 0}, dtensor.Shard{Dim: 1}, dtensor.Replicate{}, dtensor.Partial{}}
	if ndim == 1 {
		per = append(per, dtensor.Partial{Op: comm.Max}, dtensor.Partial{Op: comm.Avg})
	}
	sets := [][]dtensor.Placement{nil}
	for range ndim {
		var next [][]dtensor.Placement
		for _, s := range sets {
			for _, p := range per {
				next = append(next, append(append([]dtensor.Placement(nil), s...), p))
			}
		}
		sets = next
	}
	return sets
}

func redistributeChild(t *testing.T, tc meshCase) {
	ctx := context.Background()
	pg, m := childMesh(ctx, t, tc.Shape)
	coord := m.Coordinate()
	shapes := [][]int{{7, 5}, {4, 6}, {5, 1}, {0, 3}}
	dtypes := []tensor.DType{tensor.Float32, tensor.Int32, tensor.Int64, tensor.Int8}
	sets := placementSets(len(tc.Shape))
	checked := 0
	for _, dt := range dtypes {
		for _, shape := range shapes {
			g := globalTensor(dt, shape)
			for _, src := range sets {
				what := fmt.Sprintf("%s %v from %v", dt, shape, src)
				d, err := dtensor.Distribute(ctx, g, m, src, dtensor.DistributeOptions{LocalIsFull: true})
				require.NoError(t, err, what)
				require.True(t, tensor.Equal(reference(t, g, tc.Shape, coord, src), d.Local()), "%s: Distribute's local %v", what, d.Local())
				require.False(t, d.Local().SharesStorage(g), "%s: Distribute shares its input's storage", what)
				for _, dst := range sets {
					what := fmt.Sprintf("%s %v: %v -> %v at %v", dt, shape, src, dst, coord)
					checked++
					r, err := d.Redistribute(ctx, dst)
					require.NoError(t, err, what)
					want := reference(t, g, tc.Shape, coord, dst)
					require.True(t, tensor.Equal(want, r.Local()), "%s: local %v, want %v", what, r.Local(), want)
					assert.Equal(t, dst, r.Placements(), what)
					assert.Equal(t, src, d.Placements(), "%s: the source changed", what)
				}
				full, err := d.Full(ctx)
				require.NoError(t, err, what)
				require.True(t, tensor.Equal(g, full), "%s: Full %v", what, full)

				// FromLocal of the reference shard, checked across the mesh, gives back g.
				f, err := dtensor.FromLocal(ctx, reference(t, g, tc.Shape, coord, src), m, src,
					dtensor.FromLocalOptions{GlobalShape: shape, Check: true})
				require.NoError(t, err, what)
				full, err = f.Full(ctx)
				require.NoError(t, err, what)
				require.True(t, tensor.Equal(g, full), "%s: FromLocal then Full %v", what, full)
			}
		}
	}
	fmt.Printf("checked %d redistributions\n", checked)
	// Distribute from the last rank: the others pass zeros of the same shape.
	last := pg.Size() - 1
	for _, src := range sets {
		for _, shape := range shapes {
			g := globalTensor(tensor.Float32, shape)
			in := g
			if pg.Rank() != last {
				in = tensor.New(tensor.Float32, shape...)
			}
			d, err := dtensor.Distribute(ctx, in, m, src, dtensor.DistributeOptions{Src: last})
			require.NoError(t, err)
			want := reference(t, g, tc.Shape, coord, src)
			require.True(t, tensor.Equal(want, d.Local()), "Distribute %v %v from rank %d: local %v, want %v", shape, src, last, d.Local(), want)
			assert.True(t, tensor.Equal(globalTensor(tensor.Float32, shape), g), "Distribute wrote to its input")
		}
	}
}
