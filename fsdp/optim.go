package fsdp

import (
	"math"

	"github.com/gccl/gccl/tensor"
)

// Optimizer updates a Model's float32 master shards from its sharded gradients. Step runs on
// the local shards only (no communication); groups without a gradient are left alone. SGD and
// AdamW are the implementations; SaveCheckpoint and LoadCheckpoint save and restore their state,
// sharded like the parameters.
type Optimizer interface {
	Step() error
	// state exposes the per-group flat state buffers (laid out like the group's flat shard) for
	// checkpoints.
	state() optimizerState
}

// optimizerState is an optimizer's state as checkpoints see it.
type optimizerState struct {
	kind  string
	model *Model
	names []string                                     // the buffers per group, e.g. exp_avg, exp_avg_sq
	bufs  func(group int, alloc bool) []*tensor.Tensor // flat float32; nil (alloc false) before the group's first step
	steps []int                                        // per group; nil when the optimizer counts none
}

// SGD is stochastic gradient descent with momentum and weight decay, torch.optim.SGD's update
// (dampening 0, no Nesterov): g += WeightDecay·p; buf = Momentum·buf + g; p -= LR·buf.
type SGD struct {
	LR, Momentum, WeightDecay float64

	model *Model
	bufs  []*tensor.Tensor // per group, flat like its shard
}

// NewSGD returns an SGD optimizer over md's shards with cfg's LR, Momentum and WeightDecay
// (zero: none), e.g. NewSGD(md, SGD{LR: 0.1, Momentum: 0.9}).
func NewSGD(md *Model, cfg SGD) *SGD {
	return &SGD{LR: cfg.LR, Momentum: cfg.Momentum, WeightDecay: cfg.WeightDecay, model: md, bufs: make([]*tensor.Tensor, len(md.groups))}
}

func (o *SGD) state() optimizerState {
	st := optimizerState{kind: "sgd", model: o.model}
	if o.Momentum != 0 {
		st.names = []string{"momentum_buffer"}
	}
	st.bufs = func(gi int, alloc bool) []*tensor.Tensor {
		if o.Momentum == 0 {
			return nil
		}
		if o.bufs[gi] == nil && alloc {
			o.bufs[gi] = tensor.New(tensor.Float32, o.model.groups[gi].size)
		}
		if o.bufs[gi] == nil {
			return nil
		}
		return []*tensor.Tensor{o.bufs[gi]}
	}
	return st
}

// forEachGrad waits for the gradients in flight, then calls update with every group that has a
// sharded gradient: its index, master shard and gradient.
func (md *Model) forEachGrad(update func(gi int, p, g []float32)) error {
	if err := md.WaitGradients(); err != nil {
		return err
	}
	for gi, g := range md.groups {
		if g.grad != nil {
			update(gi, g.master.Float32s(), g.grad.Float32s())
		}
	}
	return nil
}

// Step applies one update to every group that has a sharded gradient (after WaitGradients).
func (o *SGD) Step() error {
	st := o.state()
	return o.model.forEachGrad(func(gi int, p, gr []float32) {
		var buf []float32
		if bufs := st.bufs(gi, true); bufs != nil {
			buf = bufs[0].Float32s()
		}
		for i := range p {
			d := float64(gr[i]) + o.WeightDecay*float64(p[i])
			if buf != nil {
				buf[i] = float32(o.Momentum*float64(buf[i]) + d)
				d = float64(buf[i])
			}
			p[i] = float32(float64(p[i]) - o.LR*d)
		}
	})
}

// AdamW is Adam with decoupled weight decay, torch.optim.AdamW's update: p *= 1 - LR·WeightDecay;
// m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²; p -= LR/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + Eps).
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64

	model *Model
	steps []int
	m, v  []*tensor.Tensor // per group, flat like its shard
}

// NewAdamW returns an AdamW optimizer over md's shards with torch's defaults for the betas
// (0.9, 0.999), eps (1e-8) and weight decay (0.01); change the fields to override them.
func NewAdamW(md *Model, lr float64) *AdamW {
	n := len(md.groups)
	return &AdamW{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, model: md,
		steps: make([]int, n), m: make([]*tensor.Tensor, n), v: make([]*tensor.Tensor, n)}
}

func (o *AdamW) state() optimizerState {
	st := optimizerState{kind: "adamw", model: o.model, names: []string{"exp_avg", "exp_avg_sq"}, steps: o.steps}
	st.bufs = func(gi int, alloc bool) []*tensor.Tensor {
		if o.m[gi] == nil && alloc {
			n := o.model.groups[gi].size
			o.m[gi], o.v[gi] = tensor.New(tensor.Float32, n), tensor.New(tensor.Float32, n)
		}
		if o.m[gi] == nil {
			return nil
		}
		return []*tensor.Tensor{o.m[gi], o.v[gi]}
	}
	return st
}

// Step applies one update to every group that has a sharded gradient (after WaitGradients).
func (o *AdamW) Step() error {
	st := o.state()
	return o.model.forEachGrad(func(gi int, p, gr []float32) {
		bufs := st.bufs(gi, true)
		m, v := bufs[0].Float32s(), bufs[1].Float32s()
		o.steps[gi]++
		t := float64(o.steps[gi])
		bc1, bc2 := 1-math.Pow(o.Beta1, t), 1-math.Pow(o.Beta2, t)
		step, sqrtBC2 := o.LR/bc1, math.Sqrt(bc2)
		for i := range p {
			x := float64(p[i]) * (1 - o.LR*o.WeightDecay)
			gv := float64(gr[i])
			m[i] = float32(o.Beta1*float64(m[i]) + (1-o.Beta1)*gv)
			v[i] = float32(o.Beta2*float64(v[i]) + (1-o.Beta2)*gv*gv)
			x -= step * float64(m[i]) / (math.Sqrt(float64(v[i]))/sqrtBC2 + o.Eps)
			p[i] = float32(x)
		}
	})
}
