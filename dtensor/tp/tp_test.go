package tp_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/dtensor/tp"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
	"github.com/gccl/gccl/tensor/safetensors"
)

const rtol, atol = 1e-5, 1e-5

// randn returns a tensor of the given shape with values from seed (the same on every rank).
func randn(seed uint64, shape ...int) *tensor.Tensor {
	r := rand.New(rand.NewPCG(seed, 7))
	t := tensor.New(tensor.Float32, shape...)
	s := t.Float32s()
	for i := range s {
		s[i] = float32(r.NormFloat64() * 0.3)
	}
	return t
}

// TestLayers: at tp = 2, 3 and 4 (real processes over shm), every layer equals the dense layer
// on the same full weights, and the MLP and the attention block each run exactly one all-reduce
// on the tp group per call.
func TestLayers(t *testing.T) {
	if ranktest.Child(t) {
		layersChild(t)
		return
	}
	for _, n := range []int{2, 3, 4} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			res := ranktest.Spawn(t, ranktest.Config{Ranks: n, Timeout: time.Minute,
				Env: []string{"GCCL_TIMEOUT=30s", "GCCL_BACKEND=shm"}})
			ranktest.AssertExitedZero(t, res)
		})
	}
}

// sliceLast returns columns [off, off+n) of the last dim of a [rows cols] or [cols] tensor.
func sliceLast(t *tensor.Tensor, off, n int) *tensor.Tensor {
	v, err := t.Narrow(t.Dim()-1, off, n)
	if err != nil {
		panic(err)
	}
	return v.Contiguous()
}

func layersChild(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	require.NoError(t, err)
	defer pg.Close()
	n, me := pg.Size(), pg.Rank()
	require.Equal(t, os.Getenv("WORLD_SIZE"), strconv.Itoa(n))
	m, err := mesh.New(ctx, pg, []int{n}, []string{"tp"}, mesh.Options{})
	require.NoError(t, err)
	defer m.Close()
	allReduces := func(f func()) int {
		before := pg.Recorder().Snapshot().Entries
		last := int64(-1)
		if len(before) > 0 {
			last = int64(before[len(before)-1].RecordID)
		}
		f()
		count := 0
		for _, e := range pg.Recorder().Snapshot().Entries {
			if int64(e.RecordID) > last && e.ProcessGroup[1] == "mesh_tp" && strings.HasSuffix(e.ProfilingName, ":all_reduce") {
				count++
			}
		}
		return count
	}
	const hidden, inter = 32, 48

	// Column- and row-parallel linear layers with biases (out 36: uneven at tp=4 is 9 each;
	// in 30 at tp=4: 8, 8, 8, 6).
	w, b := randn(1, 36, hidden), randn(2, 36)
	x := randn(3, 2, hidden)
	dense := &tp.ColumnParallelLinear{Weight: tp.NewParameter("col.weight", w), Bias: tp.NewParameter("col.bias", b)}
	want, err := dense.Forward(x)
	require.NoError(t, err)
	col := &tp.ColumnParallelLinear{Weight: tp.NewParameter("col.weight", w.Clone()), Bias: tp.NewParameter("col.bias", b.Clone())}
	require.NoError(t, tp.Parallelize(ctx, col, m, tp.Plan{"col.*": tp.Colwise}))
	got, err := col.Forward(x)
	require.NoError(t, err)
	off, l := dtensor.ChunkRange(36, n, me)
	assert.Equal(t, []int{2, l}, got.Shape())
	assert.True(t, tensor.AllClose(sliceLast(want, off, l), got, rtol, atol), "column-parallel")

	w, b, x = randn(4, hidden, 30), randn(5, hidden), randn(6, 2, 30)
	rowDense := &tp.RowParallelLinear{Weight: tp.NewParameter("row.weight", w), Bias: tp.NewParameter("row.bias", b)}
	want, err = rowDense.Forward(ctx, x)
	require.NoError(t, err)
	row := &tp.RowParallelLinear{Weight: tp.NewParameter("row.weight", w.Clone()), Bias: tp.NewParameter("row.bias", b.Clone())}
	require.NoError(t, tp.Parallelize(ctx, row, m, tp.Plan{"row.*": tp.Rowwise}))
	assert.Equal(t, []dtensor.Placement{dtensor.Replicate{}}, row.Bias.Value.Placements())
	off, l = dtensor.ChunkRange(30, n, me)
	assert.Equal(t, 1, allReduces(func() { got, err = row.Forward(ctx, sliceLast(x, off, l)) }))
	require.NoError(t, err)
	assert.True(t, tensor.AllClose(want, got, rtol, atol), "row-parallel")

	// MLP: one all-reduce.
	mlp := func(seed uint64) *tp.ParallelMLP {
		return &tp.ParallelMLP{
			Gate: &tp.ColumnParallelLinear{Weight: tp.NewParameter("mlp.gate.weight", randn(seed, inter, hidden))},
			Up:   &tp.ColumnParallelLinear{Weight: tp.NewParameter("mlp.up.weight", randn(seed+1, inter, hidden))},
			Down: &tp.RowParallelLinear{Weight: tp.NewParameter("mlp.down.weight", randn(seed+2, hidden, inter))},
		}
	}
	plan := tp.Plan{"*.gate.weight": tp.Colwise, "*.up.weight": tp.Colwise, "*.down.weight": tp.Rowwise,
		"*.q.weight": tp.Colwise, "*.k.weight": tp.Colwise, "*.v.weight": tp.Colwise, "*.o.weight": tp.Rowwise}
	x = randn(7, hidden)
	want, err = mlp(10).Forward(ctx, x)
	require.NoError(t, err)
	pm := mlp(10)
	require.NoError(t, tp.Parallelize(ctx, pm, m, plan))
	assert.Equal(t, 1, allReduces(func() { got, err = pm.Forward(ctx, x) }))
	require.NoError(t, err)
	assert.True(t, tensor.AllClose(want, got, rtol, atol), "mlp")

	// The same MLP from parameters read from a safetensors file (NewParameterFrom): each rank
	// reads only its own shard, and the result is the same.
	file := filepath.Join(t.TempDir(), "mlp.safetensors")
	dm := mlp(10)
	weights := map[string]*tensor.Tensor{}
	for _, p := range dm.Parameters() {
		weights[p.Name] = p.Local()
	}
	require.NoError(t, safetensors.WriteFile(file, weights, nil))
	sf, err := safetensors.Open(file)
	require.NoError(t, err)
	defer sf.Close()
	read := 0
	lazy := func(name string) *tp.Parameter {
		return tp.NewParameterFrom(name, weights[name].Shape(), func(off, shape []int) (*tensor.Tensor, error) {
			t, err := sf.ReadRegion(name, off, shape)
			if err == nil {
				read += t.Numel()
			}
			return t, err
		})
	}
	fm := &tp.ParallelMLP{
		Gate: &tp.ColumnParallelLinear{Weight: lazy("mlp.gate.weight")},
		Up:   &tp.ColumnParallelLinear{Weight: lazy("mlp.up.weight")},
		Down: &tp.RowParallelLinear{Weight: lazy("mlp.down.weight")},
	}
	assert.Nil(t, fm.Gate.Weight.Local())
	assert.Equal(t, []int{inter, hidden}, fm.Gate.Weight.Shape())
	require.NoError(t, tp.Parallelize(ctx, fm, m, plan))
	held := 0
	for _, p := range fm.Parameters() {
		held += p.Local().Numel()
	}
	assert.Equal(t, held, read, "a rank reads exactly its shards")
	assert.Less(t, read, 3*inter*hidden/n+3*hidden, "a rank reads about 1/%d of the weights", n)
	assert.Equal(t, 1, allReduces(func() { got, err = fm.Forward(ctx, x) }))
	require.NoError(t, err)
	assert.True(t, tensor.AllClose(want, got, rtol, atol), "mlp read from a file")
	// Dense use of a parameter from a source: Load reads it whole.
	whole := lazy("mlp.up.weight")
	require.NoError(t, whole.Load())
	assert.True(t, tensor.Equal(weights["mlp.up.weight"], whole.Local()))
	// A source that returns the wrong block is an error naming the parameter.
	liar := &tp.ColumnParallelLinear{Weight: tp.NewParameterFrom("liar.weight", []int{8, 4}, func(off, shape []int) (*tensor.Tensor, error) {
		return tensor.New(tensor.Float32, 8, 4), nil
	})}
	err = tp.Parallelize(ctx, liar, m, tp.Plan{"liar.weight": tp.Colwise})
	require.Error(t, err)
	assert.ErrorContains(t, err, `"liar.weight"`)
	assert.ErrorContains(t, err, fmt.Sprintf("tp.Parallelize (rank %d)", me), "the error names this rank")

	// Attention, 24 heads over 12 kv heads (divisible by 2, 3 and 4): one all-reduce per step.
	attn := func(heads, kvHeads int) *tp.ParallelAttention {
		const hd = 4
		lin := func(name string, seed uint64, out, in int) *tp.ColumnParallelLinear {
			return &tp.ColumnParallelLinear{Weight: tp.NewParameter(name, randn(seed, out, in))}
		}
		a, err := tp.NewParallelAttention(tp.AttentionConfig{Heads: heads, KVHeads: kvHeads, HeadDim: hd, MaxSeq: 8},
			lin("attn.q.weight", 20, heads*hd, hidden), lin("attn.k.weight", 21, kvHeads*hd, hidden), lin("attn.v.weight", 22, kvHeads*hd, hidden),
			&tp.RowParallelLinear{Weight: tp.NewParameter("attn.o.weight", randn(23, hidden, heads*hd))})
		require.NoError(t, err)
		return a
	}
	da, pa := attn(24, 12), attn(24, 12)
	require.NoError(t, tp.Parallelize(ctx, pa, m, plan))
	for pos := range 4 {
		x := randn(30+uint64(pos), hidden)
		want, err := da.Forward(ctx, x, pos)
		require.NoError(t, err)
		var got *tensor.Tensor
		assert.Equal(t, 1, allReduces(func() { got, err = pa.Forward(ctx, x, pos) }), "pos %d", pos)
		require.NoError(t, err)
		assert.True(t, tensor.AllClose(want, got, rtol, atol), "attention at pos %d", pos)
	}
	// A prefill of 3 tokens at once, then a decode step, equals 4 single-token steps, dense and
	// parallel, with one all-reduce for the whole prefill.
	for _, parallel := range []bool{false, true} {
		batched, stepwise := attn(24, 12), attn(24, 12)
		wantARs := 0
		if parallel {
			require.NoError(t, tp.Parallelize(ctx, batched, m, plan))
			require.NoError(t, tp.Parallelize(ctx, stepwise, m, plan))
			wantARs = 1
		}
		xs := randn(80, 4, hidden)
		prefill, err := xs.Narrow(0, 0, 3)
		require.NoError(t, err)
		var got *tensor.Tensor
		assert.Equal(t, wantARs, allReduces(func() { got, err = batched.Forward(ctx, prefill.Contiguous(), 0) }))
		require.NoError(t, err)
		require.Equal(t, []int{3, hidden}, got.Shape())
		last, err := xs.Narrow(0, 3, 1)
		require.NoError(t, err)
		decoded, err := batched.Forward(ctx, last.Contiguous(), 3)
		require.NoError(t, err)
		require.Equal(t, []int{1, hidden}, decoded.Shape())
		for pos := range 4 {
			row, err := xs.Narrow(0, pos, 1)
			require.NoError(t, err)
			flat, err := row.Contiguous().Reshape(hidden)
			require.NoError(t, err)
			want, err := stepwise.Forward(ctx, flat, pos)
			require.NoError(t, err)
			have := decoded
			if pos < 3 {
				have, err = got.Narrow(0, pos, 1)
				require.NoError(t, err)
			}
			flatHave, err := have.Contiguous().Reshape(hidden)
			require.NoError(t, err)
			assert.True(t, tensor.AllClose(want, flatHave, rtol, atol), "parallel %v: token %d", parallel, pos)
		}
	}
	_, err = pa.Forward(ctx, randn(81, 9, hidden), 0)
	assert.ErrorIs(t, err, comm.ErrInvalidArgument, "9 tokens in a cache of 8")
	assert.ErrorContains(t, err, fmt.Sprintf("tp.ParallelAttention (rank %d)", me), "the error names this rank")

	// More ranks than kv heads (2n heads over 1 kv head, and over 2 at even tp > 2): k and v
	// stay whole on every rank, each rank uses its query heads' kv head, and the block still
	// equals the dense one with one all-reduce per step.
	kvs := []int{1}
	if n > 2 && n%2 == 0 {
		kvs = append(kvs, 2)
	}
	for _, kv := range kvs {
		da, pa := attn(2*n, kv), attn(2*n, kv)
		require.NoError(t, tp.Parallelize(ctx, pa, m, plan))
		assert.Equal(t, []dtensor.Placement{dtensor.Replicate{}}, pa.K.Weight.Value.Placements(), "kv %d", kv)
		assert.Equal(t, []dtensor.Placement{dtensor.Shard{Dim: 0}}, pa.Q.Weight.Value.Placements(), "kv %d", kv)
		for pos := range 4 {
			x := randn(60+uint64(pos), hidden)
			want, err := da.Forward(ctx, x, pos)
			require.NoError(t, err)
			var got *tensor.Tensor
			assert.Equal(t, 1, allReduces(func() { got, err = pa.Forward(ctx, x, pos) }), "kv %d pos %d", kv, pos)
			require.NoError(t, err)
			assert.True(t, tensor.AllClose(want, got, rtol, atol), "attention over %d kv heads at pos %d", kv, pos)
		}
	}

	// A tp degree that neither divides the kv heads nor is a multiple of them: a clear error,
	// nothing sharded.
	bad := attn(2*(n+1), n+1)
	err = tp.Parallelize(ctx, bad, m, plan)
	require.Error(t, err)
	assert.ErrorIs(t, err, comm.ErrInvalidArgument)
	assert.Contains(t, err.Error(), "does not divide")
	assert.Contains(t, err.Error(), fmt.Sprintf("(rank %d)", me), "the error names this rank")
	assert.Nil(t, bad.Q.Weight.Value)

	// Vocab-parallel embedding (vocab 50: uneven at 3 and 4) and the LM head.
	table := randn(40, 50, hidden)
	ids := []int{0, 49, 17, 13, 12, 25, 37, 38, 3}
	emb := &tp.VocabParallelEmbedding{Weight: tp.NewParameter("embed.weight", table.Clone())}
	head := &tp.LMHead{Weight: emb.Weight} // tied
	want, err = tensor.Embedding(ids, table)
	require.NoError(t, err)
	require.NoError(t, tp.Parallelize(ctx, emb, m, tp.Plan{"embed.weight": tp.Vocab}))
	assert.Equal(t, 1, allReduces(func() { got, err = emb.Forward(ctx, ids) }))
	require.NoError(t, err)
	assert.True(t, tensor.Equal(want, got), "embedding")
	for i := range 5 {
		x := randn(50+uint64(i), hidden)
		logits, err := tensor.Linear(x, table, nil)
		require.NoError(t, err)
		wantIdx, err := tensor.Argmax(logits)
		require.NoError(t, err)
		gotIdx, err := head.Argmax(ctx, x)
		require.NoError(t, err)
		assert.Equal(t, wantIdx[0], gotIdx, "argmax %d", i)
		full, err := head.Logits(ctx, x)
		require.NoError(t, err)
		assert.True(t, tensor.AllClose(logits, full, rtol, atol), "logits %d", i)
	}
}
