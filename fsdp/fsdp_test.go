package fsdp_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/flightrecorder"
	"github.com/gccl/gccl/fsdp"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// ranksCase is one job of TestRanks, passed to its ranks as JSON.
type ranksCase struct {
	Name  string
	Ranks int
	Shape []int // the mesh: [N] for FSDP, [replicate shard] for HSDP
	Save  string
	Load  []string // checkpoints written by earlier cases (other world sizes) to load
	// Backend: gloo (fsdp all-gathers each rank's own full parameters) or shm (the ranks
	// share them: shared.go).
	Backend string
}

// TestRanks runs the package on real processes: FSDP over 2 and 4 ranks and HSDP over a 2x2
// mesh. In each job every rank checks the sharding and padding layout, that Unshard and Prefetch
// rebuild the full parameters with one all-gather per group, that ReduceGradients gives the
// average of every rank's gradients with one reduce-scatter (plus one all-reduce for HSDP),
// mixed precision (bfloat16 parameters, float32 reduction), no-sync accumulation, clipping, SGD
// and AdamW against the single-process formulas, full and sharded state-dict round trips and
// their bad keys, and a sharded checkpoint loaded from the other jobs' world sizes. The jobs run
// in order: each saves a checkpoint the later ones load. The gloo jobs run the all-gathers; the
// shm jobs run the same checks on full parameters the ranks share, and the fallback to the
// all-gather when the shared slots run out or the ranks disagree on them.
func TestRanks(t *testing.T) {
	if ranktest.Child(t) {
		var tc ranksCase
		ranktest.ReadCase(t, &tc)
		ranksChild(t, tc)
		return
	}
	dir := t.TempDir()
	ck := func(n string) string { return filepath.Join(dir, n) }
	cases := []ranksCase{
		{Name: "fsdp_2", Ranks: 2, Shape: []int{2}, Save: ck("two")},
		{Name: "hsdp_2x2", Ranks: 4, Shape: []int{2, 2}, Save: ck("hsdp"), Load: []string{ck("two")}},
		{Name: "fsdp_4", Ranks: 4, Shape: []int{4}, Load: []string{ck("two"), ck("hsdp")}},
		{Name: "fsdp_2_shm", Ranks: 2, Shape: []int{2}, Backend: "shm", Load: []string{ck("hsdp")}},
		{Name: "hsdp_2x2_shm", Ranks: 4, Shape: []int{2, 2}, Backend: "shm", Load: []string{ck("two")}},
	}
	for _, tc := range cases {
		ok := t.Run(tc.Name, func(t *testing.T) {
			res := ranktest.Spawn(t, ranktest.Config{Ranks: tc.Ranks, Timeout: 2 * time.Minute, Case: tc,
				Env: []string{"GCCL_TIMEOUT=60s", "GCCL_BACKEND=" + cmp.Or(tc.Backend, "gloo")}})
			ranktest.AssertExitedZero(t, res)
		})
		if !ok {
			break // the later cases load this one's checkpoint
		}
	}
}

// spec is the test model: shapes chosen so that 2 and 4 ranks shard them unevenly (7 rows over 4:
// 2 2 2 1; 5 over 4: 2 2 1 0; 1 row: one rank holds it all).
var spec = []map[string][]int{
	{"a.weight": {7, 3}, "a.bias": {5}},
	{"b.weight": {4, 2, 3}, "b.scale": {1, 4}},
}

// order fixes the parameter order inside each group of spec.
var order = [][]string{{"a.weight", "a.bias"}, {"b.weight", "b.scale"}}

// newAdamWRef returns torch.optim.AdamW's update (lr 0.01, weight decay 0.01, default betas and
// eps), written out again, keeping its state per parameter (by the address of p).
func newAdamWRef() func(p, g []float64, step int) {
	ms, vs := map[*float64][]float64{}, map[*float64][]float64{}
	return func(p, g []float64, step int) {
		mm, vv := ms[&p[0]], vs[&p[0]]
		if mm == nil {
			mm, vv = make([]float64, len(p)), make([]float64, len(p))
			ms[&p[0]], vs[&p[0]] = mm, vv
		}
		for i := range p {
			p[i] *= 1 - 0.01*0.01
			mm[i] = 0.9*mm[i] + 0.1*g[i]
			vv[i] = 0.999*vv[i] + 0.001*g[i]*g[i]
			mhat := mm[i] / (1 - math.Pow(0.9, float64(step)))
			vhat := vv[i] / (1 - math.Pow(0.999, float64(step)))
			p[i] -= 0.01 * mhat / (math.Sqrt(vhat) + 1e-8)
		}
	}
}

// value is a deterministic float for element i of parameter name, shifted by bump.
func value(name string, i int, bump float64) float64 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return math.Sin(float64(h.Sum32()%1000)+1.7*float64(i)) + bump
}

func fullTensor(name string, shape []int, bump float64) *tensor.Tensor {
	n := 1
	for _, s := range shape {
		n *= s
	}
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = value(name, i, bump)
	}
	t, err := tensor.FromFloat64s(tensor.Float32, vals, shape...)
	if err != nil {
		panic(err)
	}
	return t
}

func groups(bump float64) [][]fsdp.Param {
	var out [][]fsdp.Param
	for gi, names := range order {
		var g []fsdp.Param
		for _, n := range names {
			g = append(g, fsdp.Param{Name: n, Tensor: fullTensor(n, spec[gi][n], bump)})
		}
		out = append(out, g)
	}
	return out
}

// oneParamGroups is n groups of one parameter each, named prefix0.weight, prefix1.weight, ...,
// group i's of shape(i).
func oneParamGroups(prefix string, n int, shape func(i int) []int) [][]fsdp.Param {
	var out [][]fsdp.Param
	for i := range n {
		name := fmt.Sprintf("%s%d.weight", prefix, i)
		out = append(out, []fsdp.Param{{Name: name, Tensor: fullTensor(name, shape(i), 0)}})
	}
	return out
}

// gradFor is rank r's gradient of a parameter: different on every rank.
func gradFor(name string, shape []int, r int) *tensor.Tensor {
	return fullTensor(name+"/grad", shape, float64(r)*0.25)
}

// opsOn counts the flight-recorder entries whose profiling name ends in ":"+op, after mark.
func opsOn(pg *comm.ProcessGroup, mark int64, op string) (n int, groups []string) {
	for _, e := range pg.Recorder().Snapshot().Entries {
		if int64(e.RecordID) > mark && strings.HasSuffix(e.ProfilingName, ":"+op) {
			n++
			groups = append(groups, e.ProcessGroup[1])
		}
	}
	return n, groups
}

// allGatherDTypes lists the input dtypes of the all-gathers recorded after mark.
func allGatherDTypes(pg *comm.ProcessGroup, mark int64) []string {
	var out []string
	for _, e := range pg.Recorder().Snapshot().Entries {
		if int64(e.RecordID) > mark && strings.HasSuffix(e.ProfilingName, ":all_gather") {
			out = append(out, e.InputDtypes...)
		}
	}
	return out
}

func lastRecord(pg *comm.ProcessGroup) int64 {
	es := pg.Recorder().Snapshot().Entries
	if len(es) == 0 {
		return -1
	}
	return int64(es[len(es)-1].RecordID)
}

func ranksChild(t *testing.T, tc ranksCase) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	require.NoError(t, err)
	defer pg.Close()
	names := []string{"shard"}
	if len(tc.Shape) == 2 {
		names = []string{"replicate", "shard"}
	}
	m, err := mesh.New(ctx, pg, tc.Shape, names, mesh.Options{})
	require.NoError(t, err)
	defer m.Close()
	n, _ := m.Size("shard")
	sr, _ := m.LocalRank("shard")
	world := pg.Size()

	md, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{})
	require.NoError(t, err)

	t.Run("layout", func(t *testing.T) {
		for gi, names := range order {
			g := md.Group(gi)
			assert.Equal(t, names, g.Names())
			size := 0
			for _, name := range names {
				shape := spec[gi][name]
				chunk := (shape[0] + n - 1) / n
				size += chunk * len(fullTensor(name, shape, 0).Float32s()) / shape[0]
				d := md.Sharded(name)
				require.NotNil(t, d, name)
				assert.Equal(t, shape, d.Shape())
				want := []dtensor.Placement{dtensor.Shard{Dim: 0}}
				if len(tc.Shape) == 2 {
					want = []dtensor.Placement{dtensor.Replicate{}, dtensor.Shard{Dim: 0}}
				}
				assert.Equal(t, want, d.Placements(), name)
				start, rows := dtensor.ChunkRange(shape[0], n, sr)
				assert.Equal(t, rows, d.Local().Shape()[0], "%s: rank %d's rows", name, sr)
				full := fullTensor(name, shape, 0)
				part, err := full.Narrow(0, start, rows)
				require.NoError(t, err)
				assert.True(t, tensor.Equal(part.Contiguous(), d.Local()), "%s: rank %d's shard is rows %d..%d", name, sr, start, start+rows)
				// The DTensor's Full gathers the same tensor.
				got, err := d.Full(ctx)
				require.NoError(t, err)
				assert.True(t, tensor.Equal(full, got), name)
			}
			assert.Equal(t, size, g.ShardSize(), "group %d: every shard padded to ceil(dim0/%d) rows", gi, n)
		}
		st := md.Stats()
		assert.Equal(t, int64(4*(md.Group(0).ShardSize()+md.Group(1).ShardSize())), st.ShardedBytes)
	})

	t.Run("unshard", func(t *testing.T) {
		g := md.Group(0)
		_, err := g.Param("a.weight")
		assert.ErrorIs(t, err, comm.ErrInvalidArgument, "sharded: Param needs Unshard")
		mark := lastRecord(pg)
		require.NoError(t, g.Unshard(ctx))
		require.NoError(t, g.Unshard(ctx)) // already unsharded: nothing
		cnt, on := opsOn(pg, mark, "all_gather")
		if tc.Backend == "shm" {
			// Shared: no collective at all (the ranks signal that they wrote their rows).
			assert.Zero(t, cnt, "no all-gather")
			cnt, _ = opsOn(pg, mark, "barrier")
			assert.Zero(t, cnt, "no barrier after the writes")
		} else {
			assert.Equal(t, 1, cnt, "one all-gather per group")
			assert.Equal(t, []string{"mesh_shard"}, on)
		}
		for _, name := range order[0] {
			p, err := g.Param(name)
			require.NoError(t, err)
			assert.True(t, tensor.Equal(fullTensor(name, spec[0][name], 0), p), name)
		}
		live := md.Stats().LiveBytes
		g.Reshard()
		assert.False(t, g.IsUnsharded())
		assert.Less(t, md.Stats().LiveBytes, live, "Reshard frees the full parameters")
		assert.Equal(t, md.Stats().ShardedBytes, md.Stats().LiveBytes)
		// Prefetch both groups, then take them.
		md.Group(1).Prefetch(ctx)
		g.Prefetch(ctx)
		require.NoError(t, md.Group(1).Unshard(ctx))
		require.NoError(t, g.Unshard(ctx))
		p, err := md.Group(1).Param("b.weight")
		require.NoError(t, err)
		assert.True(t, tensor.Equal(fullTensor("b.weight", spec[1]["b.weight"], 0), p))
		g.Reshard()
		md.Group(1).Reshard()
		_, err = g.Param("nope")
		assert.ErrorContains(t, err, `no parameter "nope"`)
	})

	// reference: the average over every rank of the mesh of gradFor.
	avgGrad := func(name string, shape []int, scale float64) *tensor.Tensor {
		var sum []float64
		for r := range world {
			for i, v := range gradFor(name, shape, r).Float32s() {
				if sum == nil {
					sum = make([]float64, len(gradFor(name, shape, r).Float32s()))
				}
				sum[i] += float64(v) * scale
			}
		}
		for i := range sum {
			sum[i] /= float64(world)
		}
		out, _ := tensor.FromFloat64s(tensor.Float32, sum, shape...)
		return out
	}
	checkGrads := func(t *testing.T, md *fsdp.Model, scale, tol float64) {
		for gi, names := range order {
			for _, name := range names {
				shape := spec[gi][name]
				got, err := md.Group(gi).ShardedGrad(name)
				require.NoError(t, err)
				require.NotNil(t, got, name)
				start, rows := dtensor.ChunkRange(shape[0], n, sr)
				want, _ := avgGrad(name, shape, scale).Narrow(0, start, rows)
				assert.True(t, tensor.AllClose(want.Contiguous(), got, tol, tol), "%s: %v vs %v", name, got, want)
			}
		}
	}
	reduceAll := func(t *testing.T, md *fsdp.Model, scale float64) {
		for gi, names := range order {
			g := md.Group(gi)
			for _, name := range names {
				gr := gradFor(name, spec[gi][name], m.Rank())
				if scale != 1 {
					gr = gr.Clone()
					require.NoError(t, tensor.Scale(tensor.Float32, gr.Bytes(), scale))
				}
				require.NoError(t, g.AccumulateGrad(name, gr))
			}
			require.NoError(t, g.ReduceGradients(ctx))
		}
	}

	t.Run("reduce_gradients", func(t *testing.T) {
		mark := lastRecord(pg)
		reduceAll(t, md, 1)
		cnt, on := opsOn(pg, mark, "reduce_scatter")
		if tc.Backend == "shm" {
			// Shared: no collective on the shard group at all (the ranks signal where their
			// gradients are and that they read them).
			assert.Zero(t, cnt)
			for _, op := range []string{"all_gather", "barrier", "all_reduce"} {
				n, on := opsOn(pg, mark, op)
				if op == "all_reduce" && len(tc.Shape) == 2 {
					continue // HSDP's, below
				}
				assert.Zero(t, n, "%s on %v", op, on)
			}
		} else {
			assert.Equal(t, 2, cnt, "one reduce-scatter per group")
			assert.Equal(t, []string{"mesh_shard", "mesh_shard"}, on)
		}
		ar, on := opsOn(pg, mark, "all_reduce")
		if len(tc.Shape) == 2 {
			assert.Equal(t, 2, ar, "HSDP: one all-reduce per group over the replicate dimension")
			assert.Equal(t, []string{"mesh_replicate", "mesh_replicate"}, on)
		} else {
			assert.Zero(t, ar)
		}
		checkGrads(t, md, 1, 1e-6)
	})

	t.Run("reduce_gradients_async", func(t *testing.T) {
		// The backward pass's order: reduce a group asynchronously while the next one is
		// prefetched and computed; twice, so the second reduction adds to the first.
		am, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{})
		require.NoError(t, err)
		for range 2 {
			for gi := len(order) - 1; gi >= 0; gi-- {
				g := am.Group(gi)
				require.NoError(t, g.Unshard(ctx))
				if gi > 0 {
					am.Group(gi - 1).Prefetch(ctx)
				}
				for _, name := range order[gi] {
					require.NoError(t, g.AccumulateGrad(name, gradFor(name, spec[gi][name], m.Rank())))
				}
				g.ReduceGradientsAsync(ctx)
				g.Reshard()
			}
		}
		require.NoError(t, am.WaitGradients())
		checkGrads(t, am, 2, 1e-6)
	})

	t.Run("reduce_gradients_async_one_processor", func(t *testing.T) {
		// With one Go processor the reduction is over when ReduceGradientsAsync returns: its
		// reduce-scatter is completed in the flight recorder, and the result is right.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		am, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{NoSharedMemory: true})
		require.NoError(t, err)
		for gi := len(order) - 1; gi >= 0; gi-- {
			g := am.Group(gi)
			require.NoError(t, g.Unshard(ctx))
			for _, name := range order[gi] {
				require.NoError(t, g.AccumulateGrad(name, gradFor(name, spec[gi][name], m.Rank())))
			}
			mark := lastRecord(pg)
			g.ReduceGradientsAsync(ctx)
			var states []string
			for _, e := range pg.Recorder().Snapshot().Entries {
				if int64(e.RecordID) > mark && strings.HasSuffix(e.ProfilingName, ":reduce_scatter") {
					states = append(states, e.State)
				}
			}
			assert.Equal(t, []string{flightrecorder.StateCompleted}, states, "group %d", gi)
			g.Reshard()
		}
		require.NoError(t, am.WaitGradients())
		checkGrads(t, am, 1, 1e-6)
	})

	t.Run("clip", func(t *testing.T) {
		var sq float64
		for gi, names := range order {
			for _, name := range names {
				for _, v := range avgGrad(name, spec[gi][name], 1).Float32s() {
					sq += float64(v) * float64(v)
				}
			}
		}
		mark := lastRecord(pg)
		norm, err := md.ClipGradNorm(ctx, 0.5)
		require.NoError(t, err)
		cnt, _ := opsOn(pg, mark, "all_reduce")
		assert.Equal(t, 1, cnt, "one small all-reduce")
		assert.InDelta(t, math.Sqrt(sq), norm, 1e-5)
		after, err := md.ClipGradNorm(ctx, 1e9)
		require.NoError(t, err)
		assert.InDelta(t, 0.5, after, 1e-5, "clipped to maxNorm")
		checkGrads(t, md, 0.5/(math.Sqrt(sq)+1e-6), 1e-5)
		_, err = md.ClipGradNorm(ctx, 0)
		assert.ErrorIs(t, err, comm.ErrInvalidArgument)
	})

	t.Run("no_sync_accumulation", func(t *testing.T) {
		md.ZeroGrad()
		md.SetRequiresGradientSync(false)
		mark := lastRecord(pg)
		reduceAll(t, md, 1)
		reduceAll(t, md, 2)
		cnt, _ := opsOn(pg, mark, "reduce_scatter")
		assert.Zero(t, cnt, "no communication while gradient sync is off")
		g, err := md.Group(0).ShardedGrad("a.weight")
		require.NoError(t, err)
		assert.Nil(t, g)
		md.SetRequiresGradientSync(true)
		reduceAll(t, md, 4)
		checkGrads(t, md, 7, 1e-5) // 1 + 2 + 4
	})

	t.Run("zero_grad_then_a_missing_gradient", func(t *testing.T) {
		// An evenly sharded group (8 rows over 2 or 4 ranks: no padding), so that only a missing
		// gradient leaves bytes of the flat buffer uncopied: after a full reduction (the reused
		// buffers then hold gradients) and ZeroGrad, a reduction without e.bias's gradient gives
		// e.bias a zero sharded gradient and e.weight the new average, not added to the old one.
		shapes := map[string][]int{"e.weight": {8, 3}, "e.bias": {8}}
		names := []string{"e.weight", "e.bias"}
		var params []fsdp.Param
		for _, name := range names {
			params = append(params, fsdp.Param{Name: name, Tensor: fullTensor(name, shapes[name], 0)})
		}
		em, err := fsdp.Shard(ctx, m, [][]fsdp.Param{params}, fsdp.Options{})
		require.NoError(t, err)
		g := em.Group(0)
		for range 2 {
			for _, name := range names {
				require.NoError(t, g.AccumulateGrad(name, gradFor(name, shapes[name], m.Rank())))
			}
			require.NoError(t, g.ReduceGradients(ctx))
			em.ZeroGrad()
		}
		got, err := g.ShardedGrad("e.weight")
		require.NoError(t, err)
		assert.Nil(t, got, "no sharded gradient after ZeroGrad")
		require.NoError(t, g.AccumulateGrad("e.weight", gradFor("e.weight", shapes["e.weight"], m.Rank())))
		require.NoError(t, g.ReduceGradients(ctx))
		start, rows := dtensor.ChunkRange(8, n, sr)
		got, err = g.ShardedGrad("e.weight")
		require.NoError(t, err)
		want, _ := avgGrad("e.weight", shapes["e.weight"], 1).Narrow(0, start, rows)
		assert.True(t, tensor.AllClose(want.Contiguous(), got, 1e-6, 1e-6), "e.weight: %v vs %v", got, want)
		got, err = g.ShardedGrad("e.bias")
		require.NoError(t, err)
		assert.True(t, tensor.Equal(tensor.New(tensor.Float32, rows), got), "e.bias had no gradient: %v", got)
	})

	if tc.Backend == "shm" {
		t.Run("shared_slots_kept_after_forward", func(t *testing.T) {
			// With NoReshardAfterForward every group stays unsharded from its forward to its
			// backward: a slot each (and two more), so no unshard falls back, step after step.
			const groups = 7
			gs := oneParamGroups("k", groups, func(i int) []int { return []int{5, 2 + i} })
			km, err := fsdp.Shard(ctx, m, gs, fsdp.Options{NoReshardAfterForward: true})
			require.NoError(t, err)
			defer km.Close()
			mark := lastRecord(pg)
			for range 3 {
				for i := range groups {
					g := km.Group(i)
					require.NoError(t, g.Unshard(ctx))
					if i+1 < groups {
						km.Group(i + 1).Prefetch(ctx)
					}
					name := fmt.Sprintf("k%d.weight", i)
					p, err := g.Param(name)
					require.NoError(t, err)
					assert.True(t, tensor.Equal(fullTensor(name, []int{5, 2 + i}, 0), p), name)
					g.AfterForward()
					assert.True(t, g.IsUnsharded())
				}
				for i := groups - 1; i >= 0; i-- {
					km.Group(i).Reshard()
				}
			}
			ag, _ := opsOn(pg, mark, "all_gather")
			assert.Zero(t, ag, "no unshard fell back to the all-gather")
		})

		t.Run("shared_unshard_of_different_groups", func(t *testing.T) {
			// Ranks that unshard different groups get an error naming both, at once.
			gs := oneParamGroups("d", 2, func(int) []int { return []int{4, 3} })
			dm, err := fsdp.Shard(ctx, m, gs, fsdp.Options{})
			require.NoError(t, err)
			defer dm.Close()
			err = dm.Group(sr % 2).Unshard(ctx)
			assert.ErrorIs(t, err, comm.ErrInvalidArgument)
			assert.ErrorContains(t, err, fmt.Sprintf("ran shared unshard 1 with group %d, this rank with group %d", 1-sr%2, sr%2))
			assert.ErrorContains(t, err, "call Prefetch and Unshard for the same groups in the same order on every rank")
		})

		t.Run("shared_slots_random_schedule", func(t *testing.T) {
			// Every rank runs the same random sequence of Prefetch, Unshard (then reads every
			// parameter), Reshard and gradient reductions over 7 groups of different shapes
			// (seeded alike everywhere): groups held over many later unshards make unshards
			// abandon and fall back, slots come back in every order. The full parameters and
			// the sharded gradients must be right throughout.
			const groups = 7
			shapeOf := func(i int) []int { return []int{3 + 2*i, 4 + i%3} }
			nameOf := func(i int) string { return fmt.Sprintf("r%d.weight", i) }
			var gs [][]fsdp.Param
			for i := range groups {
				gs = append(gs, []fsdp.Param{{Name: nameOf(i), Tensor: fullTensor(nameOf(i), shapeOf(i), 0)}})
			}
			rm, err := fsdp.Shard(ctx, m, gs, fsdp.Options{})
			require.NoError(t, err)
			defer rm.Close()
			rng := rand.New(rand.NewPCG(7, 11))
			reductions := make([]int, groups)
			mark := lastRecord(pg)
			unshards := 0
			for step := range 400 {
				i := rng.IntN(groups)
				g := rm.Group(i)
				switch a := rng.IntN(10); {
				case a < 3:
					g.Prefetch(ctx)
				case a < 6:
					unshards++
					require.NoError(t, g.Unshard(ctx), "step %d", step)
					p, err := g.Param(nameOf(i))
					require.NoError(t, err)
					require.True(t, tensor.Equal(fullTensor(nameOf(i), shapeOf(i), 0), p), "step %d: group %d", step, i)
				case a < 9:
					g.Reshard()
				default:
					require.NoError(t, g.AccumulateGrad(nameOf(i), gradFor(nameOf(i), shapeOf(i), m.Rank())))
					g.ReduceGradientsAsync(ctx)
					reductions[i]++
				}
			}
			require.NoError(t, rm.WaitGradients())
			// The schedule covers both paths (it is the same on every run: the seed is fixed).
			ag, _ := opsOn(pg, mark, "all_gather")
			assert.Positive(t, ag, "some unshards fell back to the all-gather")
			assert.Less(t, ag, unshards/2, "most unshards were shared")
			for i := range groups {
				rm.Group(i).Reshard()
				got, err := rm.Group(i).ShardedGrad(nameOf(i))
				require.NoError(t, err)
				if reductions[i] == 0 {
					assert.Nil(t, got, "group %d: never reduced", i)
					continue
				}
				start, rows := dtensor.ChunkRange(shapeOf(i)[0], n, sr)
				want, _ := avgGrad(nameOf(i), shapeOf(i), float64(reductions[i])).Narrow(0, start, rows)
				assert.True(t, tensor.AllClose(want.Contiguous(), got, 1e-5, 1e-5), "group %d after %d reductions: %v vs %v", i, reductions[i], got, want)
			}
			assert.Equal(t, rm.Stats().ShardedBytes, rm.Stats().LiveBytes, "every full parameter freed")
		})

		t.Run("shared_slots_run_out_or_disagree", func(t *testing.T) {
			gs := oneParamGroups("s", 6, func(int) []int { return []int{5, 3} })
			ms, err := fsdp.Shard(ctx, m, gs, fsdp.Options{})
			require.NoError(t, err)
			defer ms.Close()
			check := func(i int) {
				name := fmt.Sprintf("s%d.weight", i)
				p, err := ms.Group(i).Param(name)
				require.NoError(t, err)
				assert.True(t, tensor.Equal(fullTensor(name, []int{5, 3}, 0), p), name)
			}
			// Six groups unsharded at once: four in the shared slots, two all-gathered (their
			// unshards go to slots that the first two still hold).
			mark := lastRecord(pg)
			for i := range 6 {
				require.NoError(t, ms.Group(i).Unshard(ctx))
			}
			assert.Equal(t, []string{"Float", "Float"}, allGatherDTypes(pg, mark))
			for i := range 6 {
				check(i)
			}
			for i := range 6 {
				ms.Group(i).Reshard()
			}
			// The ranks' Reshard calls diverge: shard rank 0 frees group 0's slot and
			// prefetches group 4, whose unshard goes to that slot; the others free it, and
			// unshard group 4, only after a barrier, which rank 0 reaches once its Prefetch
			// returns. Rank 0 waits for them a while (slotWait), then abandons the shared
			// unshard, and every rank all-gathers group 4.
			shardPG, err := m.Group("shard")
			require.NoError(t, err)
			for i := range 4 {
				require.NoError(t, ms.Group(i).Unshard(ctx))
			}
			mark = lastRecord(pg)
			if sr == 0 {
				ms.Group(0).Reshard()
				ms.Group(4).Prefetch(ctx)
				require.NoError(t, shardPG.Barrier(ctx))
			} else {
				require.NoError(t, shardPG.Barrier(ctx))
				ms.Group(0).Reshard()
			}
			require.NoError(t, ms.Group(4).Unshard(ctx))
			assert.Equal(t, []string{"Float"}, allGatherDTypes(pg, mark))
			for i := 1; i <= 4; i++ {
				check(i)
			}
			// Once every rank has freed group 1's slot, the next unshard, which goes there,
			// is shared again.
			ms.Group(1).Reshard()
			mark = lastRecord(pg)
			require.NoError(t, ms.Group(5).Unshard(ctx))
			assert.Empty(t, allGatherDTypes(pg, mark))
			check(5)
			assert.Equal(t, ms.Stats().ShardedBytes+4*5*3*4, ms.Stats().LiveBytes, "four groups' full parameters counted")
			// Gradients of six groups at once: four in shared regions, two private, whose
			// reductions every rank runs as reduce-scatters.
			for i := range 6 {
				name := fmt.Sprintf("s%d.weight", i)
				require.NoError(t, ms.Group(i).AccumulateGrad(name, gradFor(name, []int{5, 3}, m.Rank())))
			}
			mark = lastRecord(pg)
			for i := range 6 {
				require.NoError(t, ms.Group(i).ReduceGradients(ctx))
			}
			rs, _ := opsOn(pg, mark, "reduce_scatter")
			assert.Equal(t, 2, rs, "the two groups with private gradients")
			for i := range 6 {
				name := fmt.Sprintf("s%d.weight", i)
				got, err := ms.Group(i).ShardedGrad(name)
				require.NoError(t, err)
				start, rows := dtensor.ChunkRange(5, n, sr)
				want, _ := avgGrad(name, []int{5, 3}, 1).Narrow(0, start, rows)
				assert.True(t, tensor.AllClose(want.Contiguous(), got, 1e-6, 1e-6), "%s: %v vs %v", name, got, want)
			}
		})
	}

	t.Run("mixed_precision", func(t *testing.T) {
		mp, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{MixedPrecision: fsdp.MixedPrecisionPolicy{ParamDType: tensor.BFloat16}})
		require.NoError(t, err)
		mark := lastRecord(pg)
		for gi, names := range order {
			g := mp.Group(gi)
			require.NoError(t, g.Unshard(ctx))
			for _, name := range names {
				p, err := g.Param(name)
				require.NoError(t, err)
				assert.Equal(t, tensor.BFloat16, p.DType())
				assert.True(t, tensor.Equal(fullTensor(name, spec[gi][name], 0).To(tensor.BFloat16), p), name)
				acc, err := g.Grad(name)
				require.NoError(t, err)
				assert.Equal(t, tensor.Float32, acc.DType(), "gradients reduced in float32")
				// The backward computes in bfloat16; the accumulator converts.
				require.NoError(t, g.AccumulateGrad(name, gradFor(name, spec[gi][name], m.Rank()).To(tensor.BFloat16)))
			}
			g.AfterForward()
			assert.False(t, g.IsUnsharded(), "reshard after forward by default")
			require.NoError(t, g.ReduceGradients(ctx))
		}
		for _, e := range pg.Recorder().Snapshot().Entries {
			if int64(e.RecordID) <= mark {
				continue
			}
			if strings.HasSuffix(e.ProfilingName, ":all_gather") && tc.Backend != "shm" {
				assert.Equal(t, []string{"BFloat16"}, e.InputDtypes, "all-gather in bfloat16")
			}
			if strings.HasSuffix(e.ProfilingName, ":reduce_scatter") {
				assert.Equal(t, []string{"Float"}, e.InputDtypes, "reduce-scatter in float32")
			}
		}
		checkGrads(t, mp, 1, 2e-2) // bfloat16 gradients: 8 bits of mantissa
		// Master shards stay float32.
		assert.Equal(t, tensor.Float32, mp.Sharded("a.weight").DType())

		keep, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{NoReshardAfterForward: true})
		require.NoError(t, err)
		require.NoError(t, keep.Group(0).Unshard(ctx))
		keep.Group(0).AfterForward()
		assert.True(t, keep.Group(0).IsUnsharded(), "NoReshardAfterForward keeps the full parameters")
		keep.Group(0).Reshard()
	})

	t.Run("optimizers", func(t *testing.T) {
		for _, name := range []string{"sgd", "adamw"} {
			om, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{})
			require.NoError(t, err)
			var opt fsdp.Optimizer
			var ref func(p, g []float64, step int)
			if name == "sgd" {
				opt = fsdp.NewSGD(om, fsdp.SGD{LR: 0.1, Momentum: 0.9, WeightDecay: 0.01})
				bufs := map[*float64][]float64{}
				ref = func(p, g []float64, _ int) { // torch.optim.SGD, written out again
					b := bufs[&p[0]]
					if b == nil {
						b = make([]float64, len(p))
						bufs[&p[0]] = b
					}
					for i := range p {
						d := g[i] + 0.01*p[i]
						b[i] = 0.9*b[i] + d
						p[i] -= 0.1 * b[i]
					}
				}
			} else {
				a := fsdp.NewAdamW(om, 0.01)
				opt = a
				ref = newAdamWRef()
			}
			refP := map[string][]float64{}
			for gi, names := range order {
				for _, pn := range names {
					refP[pn] = fullTensor(pn, spec[gi][pn], 0).Float64s()
				}
			}
			for step := 1; step <= 3; step++ {
				om.ZeroGrad()
				reduceAll(t, om, float64(step))
				require.NoError(t, opt.Step())
				for gi, names := range order {
					for _, pn := range names {
						ref(refP[pn], avgGrad(pn, spec[gi][pn], float64(step)).Float64s(), step)
					}
				}
			}
			full, err := om.FullStateDict(ctx)
			require.NoError(t, err)
			if m.Rank() != 0 {
				assert.Nil(t, full)
				continue
			}
			for gi, names := range order {
				for _, pn := range names {
					want, _ := tensor.FromFloat64s(tensor.Float32, refP[pn], spec[gi][pn]...)
					assert.True(t, tensor.AllClose(want, full[pn], 1e-5, 1e-5), "%s %s: %v vs %v", name, pn, full[pn], want)
				}
			}
		}
	})

	t.Run("state_dicts", func(t *testing.T) {
		sm, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{})
		require.NoError(t, err)
		// Full: rank 0 loads values shifted by 1, broadcast to every rank.
		var sd map[string]*tensor.Tensor
		if m.Rank() == 0 {
			sd = map[string]*tensor.Tensor{}
			for _, g := range groups(1) {
				for _, p := range g {
					sd[p.Name] = p.Tensor
				}
			}
		}
		require.NoError(t, sm.LoadFullStateDict(ctx, sd))
		for gi, names := range order {
			for _, name := range names {
				start, rows := dtensor.ChunkRange(spec[gi][name][0], n, sr)
				want, _ := fullTensor(name, spec[gi][name], 1).Narrow(0, start, rows)
				assert.True(t, tensor.Equal(want.Contiguous(), sm.Sharded(name).Local()), name)
			}
		}
		back, err := sm.FullStateDict(ctx)
		require.NoError(t, err)
		if m.Rank() == 0 {
			assert.Len(t, back, 4)
			for name, want := range sd {
				assert.True(t, tensor.Equal(want, back[name]), name)
			}
		}
		// Sharded: the locals of one model into another.
		other, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{})
		require.NoError(t, err)
		locals := map[string]*tensor.Tensor{}
		for name, d := range sm.ShardedStateDict() {
			locals[name] = d.Local()
		}
		require.NoError(t, other.LoadShardedStateDict(locals))
		for name, d := range other.ShardedStateDict() {
			assert.True(t, tensor.Equal(locals[name], d.Local()), name)
		}

		// Bad keys: every rank fails, naming the key.
		bad := func(edit func(map[string]*tensor.Tensor)) map[string]*tensor.Tensor {
			if m.Rank() != 0 {
				return nil
			}
			c := map[string]*tensor.Tensor{}
			for k, v := range sd {
				c[k] = v
			}
			edit(c)
			return c
		}
		for _, c := range []struct {
			name, want string
			edit       func(map[string]*tensor.Tensor)
		}{
			{"missing", `missing key "b.scale"`, func(c map[string]*tensor.Tensor) { delete(c, "b.scale") }},
			{"extra", `unexpected key "c.weight"`, func(c map[string]*tensor.Tensor) { c["c.weight"] = tensor.New(tensor.Float32, 2) }},
			{"shape", `key "a.bias" has shape [6]`, func(c map[string]*tensor.Tensor) { c["a.bias"] = tensor.New(tensor.Float32, 6) }},
		} {
			err := sm.LoadFullStateDict(ctx, bad(c.edit))
			assert.ErrorIs(t, err, comm.ErrInvalidArgument, c.name)
			assert.ErrorContains(t, err, c.want, c.name)
			assert.ErrorContains(t, err, "fsdp.LoadFullStateDict (rank ", c.name)
		}
		delete(locals, "a.bias")
		err = other.LoadShardedStateDict(locals)
		assert.ErrorContains(t, err, `missing key "a.bias"`)
	})

	t.Run("checkpoint", func(t *testing.T) {
		if tc.Save != "" {
			// Saved: the values shifted by 2 (loaded through a full state dict first).
			sm, err := fsdp.Shard(ctx, m, groups(2), fsdp.Options{})
			require.NoError(t, err)
			require.NoError(t, sm.SaveCheckpoint(ctx, tc.Save, nil))
			// Round trip at this world size.
			lm, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{})
			require.NoError(t, err)
			require.NoError(t, lm.LoadCheckpoint(ctx, tc.Save, nil))
			for name, d := range lm.ShardedStateDict() {
				assert.True(t, tensor.Equal(sm.Sharded(name).Local(), d.Local()), name)
			}
		}
		// The optimizer's state goes along: two AdamW steps before saving, the third after loading
		// (at another world size), against the formula. Every rank adds the same gradient, so the
		// average does not depend on the world size.
		sameGrads := func(t *testing.T, md *fsdp.Model, step int) {
			md.ZeroGrad()
			for gi, names := range order {
				for _, name := range names {
					gr := gradFor(name, spec[gi][name], 0).Clone()
					require.NoError(t, tensor.Scale(tensor.Float32, gr.Bytes(), float64(step)))
					require.NoError(t, md.Group(gi).AccumulateGrad(name, gr))
				}
				require.NoError(t, md.Group(gi).ReduceGradients(ctx))
			}
		}
		if tc.Save != "" {
			om, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{})
			require.NoError(t, err)
			a := fsdp.NewAdamW(om, 0.01)
			for step := 1; step <= 2; step++ {
				sameGrads(t, om, step)
				require.NoError(t, a.Step())
			}
			require.NoError(t, om.SaveCheckpoint(ctx, tc.Save+"_adamw", a))
		}
		for _, dir := range tc.Load {
			lm, err := fsdp.Shard(ctx, m, groups(7), fsdp.Options{})
			require.NoError(t, err)
			la := fsdp.NewAdamW(lm, 0.01)
			require.NoError(t, lm.LoadCheckpoint(ctx, dir+"_adamw", la))
			sameGrads(t, lm, 3)
			require.NoError(t, la.Step())
			full, err := lm.FullStateDict(ctx)
			require.NoError(t, err)
			if m.Rank() == 0 {
				ref := newAdamWRef()
				for gi, names := range order {
					for _, name := range names {
						p := fullTensor(name, spec[gi][name], 0).Float64s()
						for step := 1; step <= 3; step++ {
							g := gradFor(name, spec[gi][name], 0).Float64s()
							for i := range g {
								g[i] *= float64(step)
							}
							ref(p, g, step)
						}
						want, _ := tensor.FromFloat64s(tensor.Float32, p, spec[gi][name]...)
						assert.True(t, tensor.AllClose(want, full[name], 1e-5, 1e-5), "%s after AdamW state from %s", name, dir)
					}
				}
			}
			err = lm.LoadCheckpoint(ctx, dir+"_adamw", fsdp.NewSGD(lm, fsdp.SGD{LR: 0.1, Momentum: 0.9}))
			assert.ErrorContains(t, err, `holds "adamw" optimizer state, not sgd's`)
		}
		for _, dir := range tc.Load {
			lm, err := fsdp.Shard(ctx, m, groups(0), fsdp.Options{})
			require.NoError(t, err)
			require.NoError(t, lm.LoadCheckpoint(ctx, dir, nil), dir)
			full, err := lm.FullStateDict(ctx)
			require.NoError(t, err)
			if m.Rank() == 0 {
				for gi, names := range order {
					for _, name := range names {
						assert.True(t, tensor.Equal(fullTensor(name, spec[gi][name], 2), full[name]), "%s from %s", name, dir)
					}
				}
			}
			// A different model: another name, or another shape.
			for _, c := range []struct {
				edit func([][]fsdp.Param)
				want string
			}{
				{func(g [][]fsdp.Param) { g[1][1].Name = "b.gain" }, `"b.gain"`},
				{func(g [][]fsdp.Param) { g[0][1].Tensor = tensor.New(tensor.Float32, 9) }, `key "a.bias" has shape [5] but the model's is [9]`},
			} {
				gs := groups(0)
				c.edit(gs)
				om, err := fsdp.Shard(ctx, m, gs, fsdp.Options{})
				require.NoError(t, err)
				err = om.LoadCheckpoint(ctx, dir, nil)
				assert.True(t, errors.Is(err, fsdp.ErrCheckpoint), "%v", err)
				assert.ErrorContains(t, err, c.want)
				assert.ErrorContains(t, err, "different model")
			}
			// Only the last rank cannot read the checkpoint: every rank fails, naming it.
			bad := dir
			if m.Rank() == world-1 {
				bad = dir + "_missing"
			}
			err = lm.LoadCheckpoint(ctx, bad, nil)
			assert.True(t, errors.Is(err, fsdp.ErrCheckpoint) || m.Rank() == world-1, "%v", err)
			require.Error(t, err)
			if m.Rank() != world-1 {
				assert.ErrorContains(t, err, fmt.Sprintf("rank %d: ", world-1))
			}
			assert.ErrorContains(t, err, "pass a directory written by SaveCheckpoint")
		}
	})

	t.Run("bad_input", func(t *testing.T) {
		// Ranks that disagree on the groups all fail, instead of hanging later.
		gs := groups(0)
		if m.Rank() == 1 {
			gs[0][0].Tensor = tensor.New(tensor.Float32, 8, 3)
		}
		_, err := fsdp.Shard(ctx, m, gs, fsdp.Options{})
		assert.ErrorIs(t, err, comm.ErrInvalidArgument)
		assert.ErrorContains(t, err, "differ")
		// A problem on one rank fails every rank, naming it.
		gs = groups(0)
		if m.Rank() == world-1 {
			gs[1][0].Tensor = gs[1][0].Tensor.To(tensor.Float64)
		}
		_, err = fsdp.Shard(ctx, m, gs, fsdp.Options{})
		assert.ErrorContains(t, err, "mixes dtypes")
	})
}
