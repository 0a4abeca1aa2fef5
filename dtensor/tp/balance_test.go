package tp_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor/tp"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// TestBalancerBounds: the split covers every row once, in rank order, on the grain when the rows
// allow, and leaves every rank its least.
func TestBalancerBounds(t *testing.T) {
	cases := []struct {
		rows  int
		share []float64
		want  []int
	}{
		{5632, nil, []int{0, 2816, 5632}}, // even at first
		{5632, []float64{0.6, 0.4}, []int{0, 3376, 5632}},
		{5632, []float64{0.99, 0.01}, []int{0, 4928, 5632}}, // rank 1 keeps a quarter of its even share, on the grain (704)
		{5632, []float64{0.01, 0.99}, []int{0, 704, 5632}},
		{32000, []float64{0.2, 0.3, 0.5}, []int{0, 6400, 16000, 32000}},
		{48, []float64{0.5, 0.5}, []int{0, 24, 48}},        // too few rows for the grain: row by row
		{48, []float64{0.9, 0.1}, []int{0, 42, 48}},        // least max(1, 0.25·24) = 6
		{3, []float64{0.2, 0.3, 0.5}, []int{0, 1, 2, 3}},   // one row each at least
		{2, []float64{0.5, 0.25, 0.25}, []int{0, 1, 2, 2}}, // fewer rows than ranks
		{100, []float64{0.25, 0.25, 0.25, 0.25}, []int{0, 25, 50, 75, 100}},
	}
	for _, c := range cases {
		n := len(c.want) - 1
		b := &tp.Balancer{}
		b.SetShares(c.share)
		got := b.Bounds(c.rows, n)
		assert.Equal(t, c.want, got, "rows %d shares %v", c.rows, c.share)
		assert.Len(t, b.Shares(), n)
	}
}

// TestBalancerUpdate: the shares move toward the ranks' speeds, by the smoothing, keep a floor,
// sum to 1, and stay put on times that say nothing.
func TestBalancerUpdate(t *testing.T) {
	b := &tp.Balancer{}
	bounds := b.Bounds(1024, 2)
	require.Equal(t, []int{0, 512, 1024}, bounds)
	// Rank 1 took twice as long for as many rows: speeds 2:1, so 2/3 and 1/3 is the target, and
	// the shares move a quarter of the way there.
	b.Update(bounds, []float32{100, 200})
	assert.InDelta(t, 0.75*0.5+0.25*2.0/3, b.Shares()[0], 1e-12)
	assert.InDelta(t, 1.0, b.Shares()[0]+b.Shares()[1], 1e-12)
	// Ranks that keep those speeds, whatever rows they get, end there.
	for range 50 {
		bounds := b.Bounds(1024, 2)
		b.Update(bounds, []float32{float32(bounds[1]) / 2, float32(bounds[2] - bounds[1])})
	}
	assert.InDelta(t, 2.0/3, b.Shares()[0], 0.01, "converges to the speeds")

	// A rank a hundred times slower keeps the floor (then all are scaled to sum to 1).
	b = &tp.Balancer{Smoothing: 1}
	b.Update(b.Bounds(1024, 4), []float32{1, 1, 1, 100})
	fast := 256.0 / (3*256 + 2.56)
	assert.InDelta(t, tp.MinShare/4/(3*fast+tp.MinShare/4), b.Shares()[3], 1e-9)
	sum := 0.0
	for _, s := range b.Shares() {
		sum += s
	}
	assert.InDelta(t, 1.0, sum, 1e-12)

	// A zero time (a clock too coarse) or an empty range teaches nothing.
	before := b.Shares()
	b.Update(b.Bounds(1000, 4), []float32{1, 0, 1, 1})
	assert.Equal(t, before, b.Shares())
	b.Update([]int{0, 0, 500, 900, 1000}, []float32{1, 1, 1, 1})
	assert.Equal(t, before, b.Shares())
}

// TestShare: at tp 2 and 3 over shm (real processes), a shared MLP (with biases) and a shared LM
// head give the dense results whatever the split, with one all-reduce per MLP call, and every rank
// ends with the same split; the parameters stay this rank's shards, now in the shared memory.
func TestShare(t *testing.T) {
	if ranktest.Child(t) {
		shareChild(t)
		return
	}
	for _, n := range []int{2, 3} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			res := ranktest.Spawn(t, ranktest.Config{Ranks: n, Timeout: time.Minute,
				Env: []string{"GCCL_TIMEOUT=30s", "GCCL_BACKEND=shm"}})
			ranktest.AssertExitedZero(t, res)
		})
	}
}

func shareChild(t *testing.T) {
	const hidden, inter, vocab, rtol, atol = 32, 100, 70, 1e-5, 1e-5
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	require.NoError(t, err)
	defer pg.Close()
	n := pg.Size()
	m, err := mesh.New(ctx, pg, []int{n}, []string{"tp"}, mesh.Options{})
	require.NoError(t, err)
	defer m.Close()
	mlp := func() *tp.ParallelMLP {
		return &tp.ParallelMLP{
			Gate: &tp.ColumnParallelLinear{Weight: tp.NewParameter("mlp.gate.weight", randn(1, inter, hidden)), Bias: tp.NewParameter("mlp.gate.bias", randn(2, inter))},
			Up:   &tp.ColumnParallelLinear{Weight: tp.NewParameter("mlp.up.weight", randn(3, inter, hidden)), Bias: tp.NewParameter("mlp.up.bias", randn(4, inter))},
			Down: &tp.RowParallelLinear{Weight: tp.NewParameter("mlp.down.weight", randn(5, hidden, inter)), Bias: tp.NewParameter("mlp.down.bias", randn(6, hidden))},
		}
	}
	plan := tp.Plan{"mlp.gate.*": tp.Colwise, "mlp.up.*": tp.Colwise, "mlp.down.*": tp.Rowwise, "embed.weight": tp.Vocab}
	dense, pm := mlp(), mlp()
	require.NoError(t, tp.Parallelize(ctx, pm, m, plan))
	shards := map[string]*tensor.Tensor{}
	for _, p := range pm.Parameters() {
		shards[p.Name] = p.Local().Clone()
	}
	var b tp.Balancer
	require.NoError(t, pm.Share(ctx, &b))
	defer pm.Close()
	for _, p := range pm.Parameters() {
		assert.True(t, tensor.Equal(shards[p.Name], p.Local()), "%s keeps this rank's shard", p.Name)
	}
	assert.True(t, pm.Gate.Weight.Local().Overlaps(tp.SharedGate(pm)), "gate's shard is a view of the shared memory")
	err = pm.Share(ctx, &b)
	assert.ErrorIs(t, err, comm.ErrInvalidArgument, "shared twice")
	assert.ErrorContains(t, err, "tp.ParallelMLP.Share")
	assert.ErrorIs(t, mlp().Share(ctx, nil), comm.ErrInvalidArgument, "no balancer")
	require.NoError(t, dense.Share(ctx, &b), "a dense MLP has nothing to share")
	assert.Nil(t, tp.SharedGate(dense))

	splits := [][]float64{nil, {0.9, 0.1}, {0.1, 0.9}, {0.3, 0.7}}
	if n == 3 {
		splits = [][]float64{nil, {0.8, 0.1, 0.1}, {0.1, 0.1, 0.8}, {0.2, 0.5, 0.3}}
	}
	for i, split := range splits {
		for _, x := range []*tensor.Tensor{randn(10+uint64(i), hidden), randn(20+uint64(i), 3, hidden)} {
			want, err := dense.Forward(ctx, x)
			require.NoError(t, err)
			b.SetShares(slices.Clone(split))
			before := pm.Down.Stats
			pm.Down.Stats = &tp.Stats{}
			got, err := pm.Forward(ctx, x)
			require.NoError(t, err)
			assert.Equal(t, 1, pm.Down.Stats.AllReduces, "one all-reduce per call")
			pm.Down.Stats = before
			assert.Equal(t, want.Shape(), got.Shape())
			assert.True(t, tensor.AllClose(want, got, rtol, atol), "split %v, x %v", split, x.Shape())
		}
	}

	// The LM head, tied to a vocab-parallel embedding (vocab 70: uneven at 3).
	table := randn(30, vocab, hidden)
	emb := &tp.VocabParallelEmbedding{Weight: tp.NewParameter("embed.weight", table.Clone())}
	head := &tp.LMHead{Weight: emb.Weight}
	require.NoError(t, tp.Parallelize(ctx, emb, m, plan))
	require.NoError(t, head.Share(ctx, &b))
	defer head.Close()
	for i, split := range splits {
		x := randn(40+uint64(i), hidden)
		logits, err := tensor.Linear(x, table, nil)
		require.NoError(t, err)
		want, err := tensor.Argmax(logits)
		require.NoError(t, err)
		b.SetShares(slices.Clone(split))
		got, err := head.Argmax(ctx, x)
		require.NoError(t, err)
		assert.Equal(t, want[0], got, "argmax, split %v", split)
		full, err := head.Logits(ctx, x)
		require.NoError(t, err)
		assert.True(t, tensor.AllClose(logits, full, rtol, atol), "logits, split %v", split)
	}
	ids := []int{0, 69, 23, 47}
	wantRows, err := tensor.Embedding(ids, table)
	require.NoError(t, err)
	rows, err := emb.Forward(ctx, ids)
	require.NoError(t, err)
	assert.True(t, tensor.Equal(wantRows, rows), "the tied embedding reads the shared table")

	// Calls learn from every rank's times (the split moves off even) and leave every rank with
	// the same split.
	b.SetShares(nil)
	for i := range 20 {
		_, err := pm.Forward(ctx, randn(50+uint64(i), hidden))
		require.NoError(t, err)
		_, err = head.Argmax(ctx, randn(80+uint64(i), hidden))
		require.NoError(t, err)
	}
	shares := tensor.New(tensor.Float64, n*n)
	require.NoError(t, pg.AllGather(ctx, shares, tensor.FromSlice(b.Shares())))
	all := shares.F64s()
	assert.NotEqual(t, slices.Repeat([]float64{1 / float64(n)}, n), all[:n], "the split learned from the ranks' times")
	for r := 1; r < n; r++ {
		assert.Equal(t, all[:n], all[r*n:(r+1)*n], "rank %d's split against rank 0's", r)
	}
}

// TestShareUnsupported: on gloo the ranks share no memory: every rank gets ErrUnsupported, and
// the MLP still computes with its shards.
func TestShareUnsupported(t *testing.T) {
	if ranktest.Child(t) {
		ctx := context.Background()
		pg, err := comm.Init(ctx, comm.Options{})
		require.NoError(t, err)
		defer pg.Close()
		m, err := mesh.New(ctx, pg, []int{pg.Size()}, []string{"tp"}, mesh.Options{})
		require.NoError(t, err)
		defer m.Close()
		pm := &tp.ParallelMLP{
			Gate: &tp.ColumnParallelLinear{Weight: tp.NewParameter("gate", randn(1, 8, 4))},
			Up:   &tp.ColumnParallelLinear{Weight: tp.NewParameter("up", randn(2, 8, 4))},
			Down: &tp.RowParallelLinear{Weight: tp.NewParameter("down", randn(3, 4, 8))},
		}
		require.NoError(t, tp.Parallelize(ctx, pm, m, tp.Plan{"gate": tp.Colwise, "up": tp.Colwise, "down": tp.Rowwise}))
		err = pm.Share(ctx, &tp.Balancer{})
		assert.ErrorIs(t, err, comm.ErrUnsupported)
		assert.ErrorContains(t, err, `backend "shm"`)
		_, err = pm.Forward(ctx, randn(4, 4))
		assert.NoError(t, err)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: time.Minute,
		Env: []string{"GCCL_TIMEOUT=30s", "GCCL_BACKEND=gloo"}})
	ranktest.AssertExitedZero(t, res)
}
