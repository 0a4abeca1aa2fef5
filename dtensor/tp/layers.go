package tp

import (
	"context"
	"fmt"
	"math"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/tensor"
)

// ColumnParallelLinear is y = x·Wᵀ + b with W [out in] sharded on out (Shard(0), style
// Colwise) and b [out] sharded alike: each rank computes its own slice of the output, and the
// output stays sharded on its last dim. Nothing is communicated. Dense (before Parallelize, or
// replicated) it is an ordinary linear layer.
type ColumnParallelLinear struct {
	Weight *Parameter // [out in]
	Bias   *Parameter // [out], or nil
}

// Parameters returns the weight and the bias (when set).
func (l *ColumnParallelLinear) Parameters() []*Parameter { return params(l.Weight, l.Bias) }

// Forward returns x [... in] · W_localᵀ + b_local: [... out_local].
func (l *ColumnParallelLinear) Forward(x *tensor.Tensor) (*tensor.Tensor, error) {
	y, err := tensor.Linear(x, l.Weight.Local(), local(l.Bias))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errorPrefix("ColumnParallelLinear", l.Weight.Name, l.Weight), err)
	}
	return y, nil
}

// RowParallelLinear is y = x·Wᵀ + b with W [out in] sharded on in (Shard(1), style Rowwise):
// x is sharded on its last dim the same way (the output of a ColumnParallelLinear), each rank
// multiplies its slice, one all-reduce (Sum) over the tensor-parallel group adds the partial
// products, and the replicated bias b [out] is added once, after. Dense it is an ordinary
// linear layer.
type RowParallelLinear struct {
	Weight *Parameter // [out in]
	Bias   *Parameter // [out], replicated, or nil
	Stats  *Stats     // counts the all-reduces, if set
}

// Parameters returns the weight and the bias (when set).
func (l *RowParallelLinear) Parameters() []*Parameter { return params(l.Weight, l.Bias) }

// Forward returns x [... in_local] · W_localᵀ, all-reduced, + b: [... out] on every rank.
func (l *RowParallelLinear) Forward(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	dim, g, _, err := l.Weight.shard()
	if err != nil {
		return nil, err
	}
	if dim < 0 {
		y, err := tensor.Linear(x, l.Weight.Local(), local(l.Bias))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", errorPrefix("RowParallelLinear", l.Weight.Name, l.Weight), err)
		}
		return y, nil
	}
	if dim != 1 {
		return nil, fmt.Errorf("%s: weight is sharded on dim %d; want Shard(1) (style Rowwise): %w", errorPrefix("RowParallelLinear", l.Weight.Name, l.Weight), dim, comm.ErrInvalidArgument)
	}
	y, err := tensor.Linear(x, l.Weight.Local(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errorPrefix("RowParallelLinear", l.Weight.Name, l.Weight), err)
	}
	if err := l.Stats.allReduce(ctx, g, y); err != nil {
		return nil, fmt.Errorf("%s: %w", errorPrefix("RowParallelLinear", l.Weight.Name, l.Weight), err)
	}
	if b := local(l.Bias); b != nil {
		if err := tensor.AddInto(y, y, b); err != nil {
			return nil, fmt.Errorf("%s: bias: %w", errorPrefix("RowParallelLinear", l.Weight.Name, l.Weight), err)
		}
	}
	return y, nil
}

// ParallelMLP is Llama's SwiGLU MLP, down(silu(gate(x)) * up(x)), with gate and up
// column-parallel and down row-parallel: one all-reduce per call.
type ParallelMLP struct {
	Gate, Up *ColumnParallelLinear
	Down     *RowParallelLinear

	shared *sharedMLP // set by Share
}

// Parameters returns gate's, up's and down's.
func (m *ParallelMLP) Parameters() []*Parameter { return collect(m.Gate, m.Up, m.Down) }

// Forward returns the MLP of x [... hidden], replicated on every rank.
func (m *ParallelMLP) Forward(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if m.shared != nil {
		return m.shared.forward(ctx, x, m.Down)
	}
	g, err := m.Gate.Forward(x)
	if err != nil {
		return nil, err
	}
	u, err := m.Up.Forward(x)
	if err != nil {
		return nil, err
	}
	if err := tensor.SwiGLUInto(g, g, u); err != nil {
		return nil, fmt.Errorf("%s: %w", errorPrefix("ParallelMLP", "", m.Down.Weight), err)
	}
	return m.Down.Forward(ctx, g)
}

// AttentionConfig describes a grouped-query attention block.
type AttentionConfig struct {
	Heads, KVHeads int     // query and key/value heads; KVHeads divides Heads
	HeadDim        int     // even
	MaxSeq         int     // positions the KV cache and the rotary tables hold
	RopeTheta      float64 // rotary base; 0 means 10000
}

// ParallelAttention is Llama's attention block for one token at a time (decode) or a batch of
// tokens (prefill, causal), with grouped-query attention, rotary embeddings and a KV cache: q,
// k and v are column-parallel (heads, and kv heads, split across the ranks), each rank attends
// with its own heads over its own cache, and o is row-parallel: one all-reduce per call. tp must divide the head count, and either
// divide the kv-head count or be a multiple of it: with more ranks than kv heads (tp 8 over 2
// kv heads, say), k and v stay whole on every rank (see ReplicatedParameters) and each rank
// uses the one kv head its query heads read, as vLLM and Megatron replicate kv heads.
type ParallelAttention struct {
	Q, K, V *ColumnParallelLinear // [heads·head_dim hidden], [kv_heads·head_dim hidden] ×2
	O       *RowParallelLinear    // [hidden heads·head_dim]
	cfg     AttentionConfig
	rotary  *tensor.Rotary

	heads, kvHeads int        // local
	k, v           projection // the k and v rows this rank projects with
	kCache, vCache *tensor.Tensor
	attn           *tensor.Tensor
	scratch        []float32
}

// NewParallelAttention checks cfg and the weights' shapes and returns the block (dense until
// Parallelize shards its parameters).
func NewParallelAttention(cfg AttentionConfig, q, k, v *ColumnParallelLinear, o *RowParallelLinear) (*ParallelAttention, error) {
	if cfg.Heads <= 0 || cfg.KVHeads <= 0 || cfg.Heads%cfg.KVHeads != 0 {
		return nil, fmt.Errorf("%s: %d heads are not a positive multiple of %d kv heads: %w", errorPrefix("NewParallelAttention", "", nil), cfg.Heads, cfg.KVHeads, comm.ErrInvalidArgument)
	}
	if cfg.MaxSeq <= 0 {
		return nil, fmt.Errorf("%s: MaxSeq %d must be positive: %w", errorPrefix("NewParallelAttention", "", nil), cfg.MaxSeq, comm.ErrInvalidArgument)
	}
	rot, err := tensor.NewRotary(cfg.HeadDim, cfg.MaxSeq, cfg.RopeTheta)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", errorPrefix("NewParallelAttention", "", nil), err, comm.ErrInvalidArgument)
	}
	for _, c := range []struct {
		name  string
		shape []int
		rows  int
	}{{"q", q.Weight.Shape(), cfg.Heads * cfg.HeadDim}, {"k", k.Weight.Shape(), cfg.KVHeads * cfg.HeadDim}, {"v", v.Weight.Shape(), cfg.KVHeads * cfg.HeadDim}} {
		if len(c.shape) != 2 || c.shape[0] != c.rows {
			return nil, fmt.Errorf("%s: %s weight is %v; want [%d hidden]: %w", errorPrefix("NewParallelAttention", "", nil), c.name, c.shape, c.rows, comm.ErrInvalidArgument)
		}
	}
	if s := o.Weight.Shape(); len(s) != 2 || s[1] != cfg.Heads*cfg.HeadDim {
		return nil, fmt.Errorf("%s: o weight is %v; want [hidden %d]: %w", errorPrefix("NewParallelAttention", "", nil), s, cfg.Heads*cfg.HeadDim, comm.ErrInvalidArgument)
	}
	return &ParallelAttention{Q: q, K: k, V: v, O: o, cfg: cfg, rotary: rot}, nil
}

// Parameters returns q's, k's, v's and o's.
func (a *ParallelAttention) Parameters() []*Parameter { return collect(a.Q, a.K, a.V, a.O) }

// CheckParallel reports whether tp ranks can split the heads: tp must divide the query head
// count, and divide the key/value head count or be a multiple of it (kv heads replicated).
func (a *ParallelAttention) CheckParallel(tp int) error {
	if tp <= 0 || a.cfg.Heads%tp != 0 || (a.cfg.KVHeads%tp != 0 && tp%a.cfg.KVHeads != 0) {
		return fmt.Errorf("tensor-parallel degree %d does not divide the %d attention heads and %d kv heads; use a tp degree that divides the heads and divides the kv heads or is a multiple of them", tp, a.cfg.Heads, a.cfg.KVHeads)
	}
	return nil
}

// ReplicatedParameters returns k's and v's parameters when tp exceeds the kv heads: then they
// are not split (a kv head cannot be) but kept whole on every rank, whatever the plan says, and
// each rank reads the rows of its own kv head.
func (a *ParallelAttention) ReplicatedParameters(tp int) []*Parameter {
	if tp <= a.cfg.KVHeads {
		return nil
	}
	return collect(a.K, a.V)
}

// Reset empties the KV cache (a new sequence).
func (a *ParallelAttention) Reset() {
	a.kCache, a.vCache = nil, nil
}

func (a *ParallelAttention) setup() error {
	hd := a.cfg.HeadDim
	tp, rank := 1, 0
	if v := a.Q.Weight.Value; v != nil {
		tp, rank = v.Mesh().Shape()[0], v.Mesh().Coordinate()[0]
	}
	k, v, err := a.kvProjections(tp, rank)
	if err != nil {
		return err
	}
	a.k, a.v = k, v
	qRows, kRows := a.Q.Weight.Local().Shape()[0], k.weight.Shape()[0]
	if qRows%hd != 0 || kRows%hd != 0 || kRows == 0 || (qRows/hd)%(kRows/hd) != 0 {
		return fmt.Errorf("%s: %v: %w", errorPrefix("ParallelAttention", "", a.Q.Weight), a.CheckParallel(tp), comm.ErrInvalidArgument)
	}
	a.heads, a.kvHeads = qRows/hd, kRows/hd
	a.kCache = tensor.New(tensor.Float32, a.cfg.MaxSeq, a.kvHeads, hd)
	a.vCache = tensor.New(tensor.Float32, a.cfg.MaxSeq, a.kvHeads, hd)
	a.attn = tensor.New(tensor.Float32, a.heads, hd)
	a.scratch = make([]float32, a.cfg.MaxSeq)
	return nil
}

// projection is the weight rows (and bias) a rank projects with.
type projection struct{ weight, bias *tensor.Tensor }

func (p projection) forward(x *tensor.Tensor) (*tensor.Tensor, error) {
	return tensor.Linear(x, p.weight, p.bias)
}

// kvProjections returns the k and v rows this rank projects with: its local shards, or, when
// k and v are replicated because tp exceeds the kv heads, the rows of the one kv head that
// rank's query heads read (rank r of tp holds query heads from r·heads/tp, which read kv head
// r/(tp/kv)). The rows are views of the weights, not copies.
func (a *ParallelAttention) kvProjections(tp, rank int) (k, v projection, err error) {
	k = projection{a.K.Weight.Local(), local(a.K.Bias)}
	v = projection{a.V.Weight.Local(), local(a.V.Bias)}
	hd := a.cfg.HeadDim
	if tp <= a.cfg.KVHeads || tp%a.cfg.KVHeads != 0 || k.weight.Shape()[0] != a.cfg.KVHeads*hd {
		return k, v, nil
	}
	if v.weight.Shape()[0] != k.weight.Shape()[0] {
		return k, v, fmt.Errorf("%s: k is replicated but v is not (%v vs %v); give both the same style: %w", errorPrefix("ParallelAttention", "", a.Q.Weight), k.weight.Shape(), v.weight.Shape(), comm.ErrInvalidArgument)
	}
	head := rank / (tp / a.cfg.KVHeads)
	for _, p := range []*projection{&k, &v} {
		if p.weight, err = p.weight.Narrow(0, head*hd, hd); err != nil {
			return k, v, err
		}
		if p.bias != nil {
			if p.bias, err = p.bias.Narrow(0, head*hd, hd); err != nil {
				return k, v, err
			}
		}
	}
	return k, v, nil
}

// Forward runs the block for the token x [hidden] at position pos (0, 1, 2, ... in order; pos
// 0 starts a new sequence), appending its keys and values to this rank's cache, and returns
// the block's output [hidden], replicated on every rank. Given x [T hidden], it runs T tokens at
// positions pos to pos+T-1 at once (a prefill: each token attends to the cache and to the tokens
// before it), with one all-reduce of [T hidden], and returns [T hidden].
func (a *ParallelAttention) Forward(ctx context.Context, x *tensor.Tensor, pos int) (*tensor.Tensor, error) {
	if x == nil || x.Dim() < 1 || x.Dim() > 2 {
		return nil, fmt.Errorf("%s: x is %v; want [hidden] (one token) or [tokens hidden]: %w", errorPrefix("ParallelAttention", "", a.Q.Weight), x, comm.ErrInvalidArgument)
	}
	if a.kCache == nil || pos == 0 {
		if err := a.setup(); err != nil {
			return nil, err
		}
	}
	tokens := 1
	if x.Dim() == 2 {
		tokens = x.Shape()[0]
	}
	if pos < 0 || tokens < 1 || pos+tokens > a.cfg.MaxSeq {
		return nil, fmt.Errorf("%s: positions %d to %d are outside the cache's 0 to %d: %w", errorPrefix("ParallelAttention", "", a.Q.Weight), pos, pos+tokens-1, a.cfg.MaxSeq-1, comm.ErrInvalidArgument)
	}
	hd := a.cfg.HeadDim
	q, err := a.Q.Forward(x)
	if err != nil {
		return nil, err
	}
	k, err := a.k.forward(x)
	if err != nil {
		return nil, fmt.Errorf("%s: k: %w", errorPrefix("ParallelAttention", "", a.Q.Weight), err)
	}
	v, err := a.v.forward(x)
	if err != nil {
		return nil, fmt.Errorf("%s: v: %w", errorPrefix("ParallelAttention", "", a.Q.Weight), err)
	}
	q3, err := q.Reshape(tokens, a.heads, hd)
	if err != nil {
		return nil, err
	}
	k3, err := k.Reshape(tokens, a.kvHeads, hd)
	if err != nil {
		return nil, err
	}
	if err := a.rotary.Apply(q3, pos); err != nil {
		return nil, err
	}
	if err := a.rotary.Apply(k3, pos); err != nil {
		return nil, err
	}
	n := a.kvHeads * hd
	copy(a.kCache.Float32s()[pos*n:(pos+tokens)*n], k.Float32s())
	copy(a.vCache.Float32s()[pos*n:(pos+tokens)*n], v.Float32s())
	if tokens == 1 { // a decode step: into the block's buffer, allocating nothing
		q2, err := q.Reshape(a.heads, hd)
		if err != nil {
			return nil, err
		}
		if err := tensor.Attention(a.attn, q2, a.kCache, a.vCache, pos+1, 0, a.scratch); err != nil {
			return nil, fmt.Errorf("%s: %w", errorPrefix("ParallelAttention", "", a.Q.Weight), err)
		}
		shape := []int{a.heads * hd} // x's shape, with heads·head_dim for hidden
		if x.Dim() == 2 {
			shape = []int{1, a.heads * hd}
		}
		flat, err := a.attn.Reshape(shape...)
		if err != nil {
			return nil, err
		}
		return a.O.Forward(ctx, flat)
	}
	out := tensor.New(tensor.Float32, tokens, a.heads*hd)
	qs, err := q3.Split(1, 0)
	if err != nil {
		return nil, err
	}
	outs, err := out.Split(1, 0)
	if err != nil {
		return nil, err
	}
	for t := range tokens { // token t sees the cache up to its own position
		qt, err := qs[t].Reshape(a.heads, hd)
		if err != nil {
			return nil, err
		}
		dst, err := outs[t].Reshape(a.heads, hd)
		if err != nil {
			return nil, err
		}
		if err := tensor.Attention(dst, qt, a.kCache, a.vCache, pos+t+1, 0, a.scratch); err != nil {
			return nil, fmt.Errorf("%s: token %d: %w", errorPrefix("ParallelAttention", "", a.Q.Weight), t, err)
		}
	}
	return a.O.Forward(ctx, out)
}

// VocabParallelEmbedding is an embedding table [vocab hidden] sharded on vocab (style Vocab):
// each rank looks up the ids in its own rows (zeros for the others), and one all-reduce (Sum)
// assembles the rows; the sum adds zeros, so the result is exactly the dense lookup's.
type VocabParallelEmbedding struct {
	Weight *Parameter // [vocab hidden]
	Stats  *Stats
}

// Parameters returns the table.
func (e *VocabParallelEmbedding) Parameters() []*Parameter { return params(e.Weight) }

// Forward returns the rows ids of the table: [len(ids) hidden], replicated on every rank.
func (e *VocabParallelEmbedding) Forward(ctx context.Context, ids []int) (*tensor.Tensor, error) {
	dim, g, off, err := e.Weight.shard()
	if err != nil {
		return nil, err
	}
	if dim < 0 {
		return tensor.Embedding(ids, e.Weight.Local())
	}
	shape := e.Weight.Shape()
	vocab, hidden := shape[0], shape[1]
	for i, id := range ids {
		if id < 0 || id >= vocab {
			return nil, fmt.Errorf("%s: id %d (position %d) out of range for a vocabulary of %d: %w", errorPrefix("VocabParallelEmbedding", "", e.Weight), id, i, vocab, comm.ErrInvalidArgument)
		}
	}
	w := e.Weight.Local()
	dst := tensor.New(w.DType(), len(ids), hidden)
	if err := dtensor.EmbeddingShardInto(dst, ids, w, off); err != nil {
		return nil, err
	}
	if err := e.Stats.allReduce(ctx, g, dst); err != nil {
		return nil, fmt.Errorf("%s: %w", errorPrefix("VocabParallelEmbedding", "", e.Weight), err)
	}
	return dst, nil
}

// LMHead is the output projection [vocab hidden], column-parallel over vocab (style Colwise or
// Vocab: Shard(0); it may be the embedding's table, tied). Argmax picks the greedy token with a
// local argmax and an all-gather of one (value, index) pair per rank.
type LMHead struct {
	Weight *Parameter // [vocab hidden]

	shared *sharedHead // set by Share
}

// Parameters returns the projection.
func (h *LMHead) Parameters() []*Parameter { return params(h.Weight) }

// Argmax returns the index of the largest logit of x [hidden] over the whole vocabulary, as
// tensor.Argmax on the dense logits would (the first on ties, NaN counting as largest).
func (h *LMHead) Argmax(ctx context.Context, x *tensor.Tensor) (int, error) {
	if h.shared != nil {
		return h.shared.argmax(ctx, x)
	}
	logits, err := tensor.Linear(x, h.Weight.Local(), nil)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", errorPrefix("LMHead", "", h.Weight), err)
	}
	dim, g, off, err := h.Weight.shard()
	if err != nil {
		return 0, err
	}
	if dim > 0 {
		return 0, fmt.Errorf("%s: weight is sharded on dim %d; want Shard(0) (style Colwise or Vocab): %w", errorPrefix("LMHead", "", h.Weight), dim, comm.ErrInvalidArgument)
	}
	best, val := -1, math.Inf(-1)
	if logits.Numel() > 0 {
		idx, err := tensor.Argmax(logits)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", errorPrefix("LMHead", "", h.Weight), err)
		}
		best, val = idx[0], float64(logits.Float32s()[idx[0]])
	}
	if dim < 0 {
		return best, nil
	}
	in := tensor.FromSlice([]float64{val, float64(off + best)})
	if best < 0 { // this rank holds no rows
		in = tensor.FromSlice([]float64{val, -1})
	}
	out := tensor.New(tensor.Float64, 2*g.Size())
	if err := g.AllGather(ctx, out, in); err != nil {
		return 0, fmt.Errorf("%s: %w", errorPrefix("LMHead", "", h.Weight), err)
	}
	return pickBest(out.F64s()), nil
}

// pickBest returns the index of the best of the ranks' (value, index) pairs, in rank order: the
// largest value, NaN counting as largest, the first on ties; an index below 0 is a rank with no
// rows.
func pickBest(pairs []float64) int {
	best, val := -1, 0.0
	for r := range len(pairs) / 2 {
		v, i := pairs[2*r], int(pairs[2*r+1])
		if i < 0 {
			continue
		}
		if best < 0 || (v != v && val == val) || (val == val && v > val) {
			best, val = i, v
		}
	}
	return best
}

// Logits returns the full logits [vocab] of x [hidden] on every rank (an all-gather of the
// local slices; for checks, since Argmax needs far less).
func (h *LMHead) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	logits, err := tensor.Linear(x, h.Weight.Local(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errorPrefix("LMHead", "", h.Weight), err)
	}
	if h.Weight.Value == nil {
		return logits, nil
	}
	d, err := dtensor.FromLocal(ctx, logits, h.Weight.Value.Mesh(), h.Weight.Value.Placements(),
		dtensor.FromLocalOptions{GlobalShape: h.Weight.Shape()[:1]})
	if err != nil {
		return nil, err
	}
	return d.Full(ctx)
}

func params(ps ...*Parameter) []*Parameter {
	var out []*Parameter
	for _, p := range ps {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func local(p *Parameter) *tensor.Tensor {
	if p == nil {
		return nil
	}
	return p.Local()
}
