package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/gccl/gccl/dtensor/tp"
	"github.com/gccl/gccl/tensor"
	"github.com/gccl/gccl/tensor/safetensors"
)

// Config is a Llama-style decoder's shape.
type Config struct {
	Hidden, Layers, Heads, KVHeads, Vocab, Intermediate int
	MaxSeq                                              int
	Tied                                                bool // the LM head is the embedding table
	RopeTheta                                           float64
	Eps                                                 float64
}

func (c Config) headDim() int { return c.Hidden / c.Heads }

func (c Config) check() error {
	for _, v := range []struct {
		name string
		n    int
	}{{"hidden", c.Hidden}, {"layers", c.Layers}, {"heads", c.Heads}, {"kv-heads", c.KVHeads}, {"vocab", c.Vocab}, {"intermediate", c.Intermediate}} {
		if v.n <= 0 {
			return fmt.Errorf("--%s %d must be positive", v.name, v.n)
		}
	}
	if c.Hidden%c.Heads != 0 || c.headDim()%2 != 0 {
		return fmt.Errorf("--hidden %d must be a multiple of --heads %d with an even head size", c.Hidden, c.Heads)
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("--heads %d must be a multiple of --kv-heads %d", c.Heads, c.KVHeads)
	}
	return nil
}

// shapes lists every parameter's name and shape, in Hugging Face Llama's names.
func (c Config) shapes() map[string][]int {
	hd := c.headDim()
	s := map[string][]int{
		"model.embed_tokens.weight": {c.Vocab, c.Hidden},
		"model.norm.weight":         {c.Hidden},
	}
	if !c.Tied {
		s["lm_head.weight"] = []int{c.Vocab, c.Hidden}
	}
	for i := range c.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		s[p+"input_layernorm.weight"] = []int{c.Hidden}
		s[p+"post_attention_layernorm.weight"] = []int{c.Hidden}
		s[p+"self_attn.q_proj.weight"] = []int{c.Heads * hd, c.Hidden}
		s[p+"self_attn.k_proj.weight"] = []int{c.KVHeads * hd, c.Hidden}
		s[p+"self_attn.v_proj.weight"] = []int{c.KVHeads * hd, c.Hidden}
		s[p+"self_attn.o_proj.weight"] = []int{c.Hidden, c.Heads * hd}
		s[p+"mlp.gate_proj.weight"] = []int{c.Intermediate, c.Hidden}
		s[p+"mlp.up_proj.weight"] = []int{c.Intermediate, c.Hidden}
		s[p+"mlp.down_proj.weight"] = []int{c.Hidden, c.Intermediate}
	}
	return s
}

// plan is Megatron's layout of a Llama decoder.
var plan = tp.Plan{
	"model.embed_tokens.weight":              tp.Vocab,
	"lm_head.weight":                         tp.Colwise,
	"model.layers.*.self_attn.q_proj.weight": tp.Colwise,
	"model.layers.*.self_attn.k_proj.weight": tp.Colwise,
	"model.layers.*.self_attn.v_proj.weight": tp.Colwise,
	"model.layers.*.self_attn.o_proj.weight": tp.Rowwise,
	"model.layers.*.mlp.gate_proj.weight":    tp.Colwise,
	"model.layers.*.mlp.up_proj.weight":      tp.Colwise,
	"model.layers.*.mlp.down_proj.weight":    tp.Rowwise,
}

// seedWeights generates every parameter from seed, the same on every rank: each tensor from
// its own stream (seed, hash of its name), so the weights do not depend on the order.
func seedWeights(c Config, seed uint64) map[string]*tensor.Tensor {
	out := map[string]*tensor.Tensor{}
	for name, shape := range c.shapes() {
		h := fnv.New64a()
		h.Write([]byte(name))
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		t := tensor.New(tensor.Float32, shape...)
		s := t.Float32s()
		switch {
		case len(shape) == 1: // norm weights near 1
			for i := range s {
				s[i] = float32(1 + 0.1*r.NormFloat64())
			}
		default:
			scale := 1 / math.Sqrt(float64(shape[1]))
			if name == "model.embed_tokens.weight" {
				scale = 1
			}
			for i := range s {
				s[i] = float32(scale * r.NormFloat64())
			}
		}
		out[name] = t
	}
	return out
}

// openWeights checks that the safetensors file at path holds every parameter c needs, with c's
// shapes, in float32, bfloat16 or float16, and returns the parameters, each reading its blocks
// from the file (converted to float32) when tp.Parallelize asks for this rank's shard: no rank
// reads the whole model. Close the file once the model is parallelized.
func openWeights(c Config, path string) (map[string]*tp.Parameter, *safetensors.File, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	shapes := c.shapes()
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	slices.Sort(names)
	out := map[string]*tp.Parameter{}
	for _, name := range names {
		want := shapes[name]
		info, ok := f.Info(name)
		if !ok {
			f.Close()
			return nil, nil, fmt.Errorf("%s: no tensor %q (this model needs %d tensors; pass --tied if the file has no lm_head.weight)", path, name, len(shapes))
		}
		if !slices.Equal(info.Shape, want) {
			f.Close()
			return nil, nil, fmt.Errorf("%s: tensor %q is %v; the flags (--hidden, --heads, --kv-heads, --vocab, --intermediate) give %v", path, name, info.Shape, want)
		}
		switch info.DType {
		case tensor.Float32, tensor.BFloat16, tensor.Float16:
		default:
			f.Close()
			return nil, nil, fmt.Errorf("%s: tensor %q is %v; want F32, BF16 or F16", path, name, info.DType)
		}
		out[name] = tp.NewParameterFrom(name, want, func(offset, shape []int) (*tensor.Tensor, error) {
			t, err := f.ReadRegion(name, offset, shape)
			if err != nil || t.DType() == tensor.Float32 {
				return t, err
			}
			return t.To(tensor.Float32), nil
		})
	}
	return out, f, nil
}

// denseParameters wraps full tensors as parameters.
func denseParameters(w map[string]*tensor.Tensor) map[string]*tp.Parameter {
	out := make(map[string]*tp.Parameter, len(w))
	for name, t := range w {
		out[name] = tp.NewParameter(name, t)
	}
	return out
}

type layer struct {
	inNorm, postNorm *tp.Parameter
	attn             *tp.ParallelAttention
	mlp              *tp.ParallelMLP
}

// Model is a Llama-style decoder over tensor-parallel layers (dense until tp.Parallelize).
type Model struct {
	cfg    Config
	embed  *tp.VocabParallelEmbedding
	layers []layer
	norm   *tp.Parameter
	head   *tp.LMHead
	Stats  tp.Stats
}

// NewModel builds the model from its parameters by name (full tensors, or parameters that read
// their shards from a file).
func NewModel(c Config, params map[string]*tp.Parameter) (*Model, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	m := &Model{cfg: c}
	for name := range c.shapes() {
		if params[name] == nil {
			return nil, fmt.Errorf("no parameter %q", name)
		}
	}
	p := func(name string) *tp.Parameter { return params[name] }
	m.embed = &tp.VocabParallelEmbedding{Weight: p("model.embed_tokens.weight"), Stats: &m.Stats}
	m.norm = p("model.norm.weight")
	if c.Tied {
		m.head = &tp.LMHead{Weight: m.embed.Weight}
	} else {
		m.head = &tp.LMHead{Weight: p("lm_head.weight")}
	}
	for i := range c.Layers {
		pre := fmt.Sprintf("model.layers.%d.", i)
		col := func(n string) *tp.ColumnParallelLinear { return &tp.ColumnParallelLinear{Weight: p(pre + n)} }
		row := func(n string) *tp.RowParallelLinear {
			return &tp.RowParallelLinear{Weight: p(pre + n), Stats: &m.Stats}
		}
		attn, err := tp.NewParallelAttention(tp.AttentionConfig{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.headDim(), MaxSeq: c.MaxSeq, RopeTheta: c.RopeTheta},
			col("self_attn.q_proj.weight"), col("self_attn.k_proj.weight"), col("self_attn.v_proj.weight"), row("self_attn.o_proj.weight"))
		if err != nil {
			return nil, err
		}
		m.layers = append(m.layers, layer{
			inNorm: p(pre + "input_layernorm.weight"), postNorm: p(pre + "post_attention_layernorm.weight"),
			attn: attn,
			mlp:  &tp.ParallelMLP{Gate: col("mlp.gate_proj.weight"), Up: col("mlp.up_proj.weight"), Down: row("mlp.down_proj.weight")},
		})
	}
	return m, nil
}

// Parameters returns every parameter (the tied table twice).
func (m *Model) Parameters() []*tp.Parameter {
	ps := slices.Concat(m.embed.Parameters(), []*tp.Parameter{m.norm}, m.head.Parameters())
	for _, l := range m.layers {
		ps = slices.Concat(ps, []*tp.Parameter{l.inNorm, l.postNorm}, l.attn.Parameters(), l.mlp.Parameters())
	}
	return ps
}

// Share moves every layer's MLP weights and the LM head's into memory the ranks share and
// splits their rows between the ranks by their speed, with one Balancer for all of them (see
// tp.ParallelMLP.Share).
func (m *Model) Share(ctx context.Context, b *tp.Balancer) error {
	for i, l := range m.layers {
		if err := l.mlp.Share(ctx, b); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return m.head.Share(ctx, b)
}

// Close unmaps the weights Share moved to shared memory; the model must not be used after.
func (m *Model) Close() {
	for _, l := range m.layers {
		l.mlp.Close()
	}
	m.head.Close()
}

// CheckParallel: tp must divide the heads, and divide the kv heads or be a multiple of them.
func (m *Model) CheckParallel(n int) error { return m.layers[0].attn.CheckParallel(n) }

// ReplicatedParameters: every layer's k and v when tp exceeds the kv heads.
func (m *Model) ReplicatedParameters(n int) []*tp.Parameter {
	var ps []*tp.Parameter
	for _, l := range m.layers {
		ps = append(ps, l.attn.ReplicatedParameters(n)...)
	}
	return ps
}

// hiddenStates runs the tokens ids at positions pos to pos+len(ids)-1 through the decoder, all
// at once (one all-reduce per block for all of them), and returns the final-norm output of the
// last one [hidden].
func (m *Model) hiddenStates(ctx context.Context, ids []int, pos int) (*tensor.Tensor, error) {
	x, err := m.embed.Forward(ctx, ids) // [tokens hidden]
	if err != nil {
		return nil, err
	}
	h := tensor.New(tensor.Float32, len(ids), m.cfg.Hidden)
	for _, l := range m.layers {
		if err := tensor.RMSNormInto(h, x, l.inNorm.Local(), m.cfg.Eps); err != nil {
			return nil, err
		}
		a, err := l.attn.Forward(ctx, h, pos)
		if err != nil {
			return nil, err
		}
		if err := tensor.AddInto(x, x, a); err != nil {
			return nil, err
		}
		if err := tensor.RMSNormInto(h, x, l.postNorm.Local(), m.cfg.Eps); err != nil {
			return nil, err
		}
		f, err := l.mlp.Forward(ctx, h)
		if err != nil {
			return nil, err
		}
		if err := tensor.AddInto(x, x, f); err != nil {
			return nil, err
		}
	}
	last, err := x.Narrow(0, len(ids)-1, 1)
	if err != nil {
		return nil, err
	}
	if last, err = last.Reshape(m.cfg.Hidden); err != nil {
		return nil, err
	}
	out := tensor.New(tensor.Float32, m.cfg.Hidden)
	if err := tensor.RMSNormInto(out, last, m.norm.Local(), m.cfg.Eps); err != nil {
		return nil, err
	}
	return out, nil
}

// Step runs token id at position pos and returns the greedy next token.
func (m *Model) Step(ctx context.Context, id, pos int) (int, error) {
	return m.Prefill(ctx, []int{id}, pos)
}

// Prefill runs the tokens ids at positions pos on, all at once, and returns the greedy token
// after the last.
func (m *Model) Prefill(ctx context.Context, ids []int, pos int) (int, error) {
	h, err := m.hiddenStates(ctx, ids, pos)
	if err != nil {
		return 0, err
	}
	return m.head.Argmax(ctx, h)
}

// lastLogits reruns the sequence (prompt, then every generated token but the last) on fresh
// caches and returns the full logits of the last step.
func (m *Model) lastLogits(ctx context.Context, prompt, generated []int) ([]float32, error) {
	seq := slices.Concat(prompt, generated[:len(generated)-1])
	h, err := m.hiddenStates(ctx, seq, 0)
	if err != nil {
		return nil, err
	}
	logits, err := m.head.Logits(ctx, h)
	if err != nil {
		return nil, err
	}
	return logits.Float32s(), nil
}
