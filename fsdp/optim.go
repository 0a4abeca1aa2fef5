package fsdp

import (
	"math"
)

// Optimizer updates a Model's float32 master shards from its sharded gradients. Step runs on
// the local shards only (no communication); groups without a gradient are left alone.
type Optimizer interface {
	Step() error
}

// SGD is stochastic gradient descent with momentum and weight decay, torch.optim.SGD's update
// (dampening 0, no Nesterov): g += WeightDecay·p; buf = Momentum·buf + g; p -= LR·buf.
type SGD struct {
	LR, Momentum, WeightDecay float64

	model *Model
	bufs  [][]float32
}

// NewSGD returns an SGD optimizer over md's shards.
func NewSGD(md *Model, lr, momentum, weightDecay float64) *SGD {
	return &SGD{LR: lr, Momentum: momentum, WeightDecay: weightDecay, model: md, bufs: make([][]float32, len(md.groups))}
}

// Step applies one update to every group that has a sharded gradient.
func (o *SGD) Step() error {
	for gi, g := range o.model.groups {
		if g.grad == nil {
			continue
		}
		p, gr := g.master.Float32s(), g.grad.Float32s()
		if o.Momentum != 0 && o.bufs[gi] == nil {
			o.bufs[gi] = make([]float32, len(p))
		}
		buf := o.bufs[gi]
		for i := range p {
			d := float64(gr[i]) + o.WeightDecay*float64(p[i])
			if buf != nil {
				buf[i] = float32(o.Momentum*float64(buf[i]) + d)
				d = float64(buf[i])
			}
			p[i] = float32(float64(p[i]) - o.LR*d)
		}
	}
	return nil
}

// AdamW is Adam with decoupled weight decay, torch.optim.AdamW's update: p *= 1 - LR·WeightDecay;
// m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²; p -= LR/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + Eps).
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64

	model *Model
	steps []int
	m, v  [][]float32
}

// NewAdamW returns an AdamW optimizer over md's shards with torch's defaults for the betas
// (0.9, 0.999), eps (1e-8) and weight decay (0.01); change the fields to override them.
func NewAdamW(md *Model, lr float64) *AdamW {
	n := len(md.groups)
	return &AdamW{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, model: md,
		steps: make([]int, n), m: make([][]float32, n), v: make([][]float32, n)}
}

// Step applies one update to every group that has a sharded gradient.
func (o *AdamW) Step() error {
	for gi, g := range o.model.groups {
		if g.grad == nil {
			continue
		}
		p, gr := g.master.Float32s(), g.grad.Float32s()
		if o.m[gi] == nil {
			o.m[gi], o.v[gi] = make([]float32, len(p)), make([]float32, len(p))
		}
		o.steps[gi]++
		t := float64(o.steps[gi])
		bc1, bc2 := 1-math.Pow(o.Beta1, t), 1-math.Pow(o.Beta2, t)
		step, sqrtBC2 := o.LR/bc1, math.Sqrt(bc2)
		m, v := o.m[gi], o.v[gi]
		for i := range p {
			x := float64(p[i]) * (1 - o.LR*o.WeightDecay)
			gv := float64(gr[i])
			m[i] = float32(o.Beta1*float64(m[i]) + (1-o.Beta1)*gv)
			v[i] = float32(o.Beta2*float64(v[i]) + (1-o.Beta2)*gv*gv)
			x -= step * float64(m[i]) / (math.Sqrt(float64(v[i]))/sqrtBC2 + o.Eps)
			p[i] = float32(x)
		}
	}
	return nil
}
