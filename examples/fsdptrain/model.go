package main

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gccl/gccl/tensor"
)

// Config is the MLP: In inputs, Layers linear layers of Hidden units with tanh between them, Out
// outputs, trained to regress a fixed random teacher network's outputs (mean squared error).
type Config struct {
	In, Hidden, Out, Layers int
	Seed                    uint64
}

func (c Config) check() error {
	if c.In < 1 || c.Hidden < 1 || c.Out < 1 || c.Layers < 1 {
		return fmt.Errorf("--in %d, --hidden %d, --out %d and --layers %d must all be at least 1", c.In, c.Hidden, c.Out, c.Layers)
	}
	return nil
}

// dims is layer i's [out, in].
func (c Config) dims(i int) (out, in int) {
	in, out = c.Hidden, c.Hidden
	if i == 0 {
		in = c.In
	}
	if i == c.Layers-1 {
		out = c.Out
	}
	return out, in
}

func weightName(i int) string { return fmt.Sprintf("layers.%d.weight", i) }
func biasName(i int) string   { return fmt.Sprintf("layers.%d.bias", i) }

// initWeights draws the full weights from the seed: the same on every rank.
func initWeights(c Config) map[string]*tensor.Tensor {
	rng := rand.New(rand.NewPCG(c.Seed, 1))
	w := map[string]*tensor.Tensor{}
	for i := range c.Layers {
		out, in := c.dims(i)
		wt, bt := tensor.New(tensor.Float32, out, in), tensor.New(tensor.Float32, out)
		scale := 1 / math.Sqrt(float64(in))
		ws, bs := wt.Float32s(), bt.Float32s()
		for j := range ws {
			ws[j] = float32((rng.Float64()*2 - 1) * scale)
		}
		for j := range bs {
			bs[j] = float32((rng.Float64()*2 - 1) * 0.1)
		}
		w[weightName(i)], w[biasName(i)] = wt, bt
	}
	return w
}

// batch is step's global batch: inputs [batch in] and the teacher's targets [batch out].
func batch(c Config, step, size int) (x, y *tensor.Tensor) {
	rng := rand.New(rand.NewPCG(c.Seed+1000, uint64(step)))
	x = tensor.New(tensor.Float32, size, c.In)
	xs := x.Float32s()
	for j := range xs {
		xs[j] = float32(rng.NormFloat64())
	}
	// The teacher: y = sin(x·T) with a fixed T [in out].
	trng := rand.New(rand.NewPCG(c.Seed+2000, 0))
	tm := make([]float64, c.In*c.Out)
	for j := range tm {
		tm[j] = trng.NormFloat64() / math.Sqrt(float64(c.In))
	}
	y = tensor.New(tensor.Float32, size, c.Out)
	ys := y.Float32s()
	for b := range size {
		for o := range c.Out {
			var s float64
			for i := range c.In {
				s += float64(xs[b*c.In+i]) * tm[i*c.Out+o]
			}
			ys[b*c.Out+o] = float32(math.Sin(s))
		}
	}
	return x, y
}

// Params gives the model its full weights and gradient accumulators, layer by layer: plain
// tensors for the single-process reference, fsdp's unsharded groups otherwise.
type Params interface {
	// Weights returns layer i's full weight and bias, float32, ready for compute.
	Weights(i int) (w, b *tensor.Tensor, err error)
	// Grads returns layer i's gradient accumulators, float32, of the weight's and bias's shapes.
	Grads(i int) (gw, gb *tensor.Tensor, err error)
}

// Hooks are called around each layer's forward and backward (fsdp's unshard, prefetch, reshard
// and reduce-scatter); nil hooks do nothing.
type Hooks struct {
	BeforeForward, AfterForward, BeforeBackward, AfterBackward func(i int) error
}

func call(f func(int) error, i int) error {
	if f == nil {
		return nil
	}
	return f(i)
}

// Step runs forward and backward on x [b in] with targets y [b out], adds the gradients of the
// loss 0.5·mean((out - y)²) into the accumulators, and returns the loss.
func Step(c Config, p Params, h Hooks, x, y *tensor.Tensor) (float64, error) {
	b := x.Shape()[0]
	acts := []*tensor.Tensor{x} // acts[i] is layer i's input; acts[Layers] the output
	for i := range c.Layers {
		if err := call(h.BeforeForward, i); err != nil {
			return 0, err
		}
		w, bias, err := p.Weights(i)
		if err != nil {
			return 0, err
		}
		out, _ := c.dims(i)
		z := tensor.New(tensor.Float32, b, out)
		if err := tensor.MatMulInto(z, acts[i], w, false, true, 1, 0); err != nil {
			return 0, err
		}
		zs, bs := z.Float32s(), bias.Float32s()
		for r := range b {
			for o := range out {
				v := zs[r*out+o] + bs[o]
				if i < c.Layers-1 {
					v = float32(math.Tanh(float64(v)))
				}
				zs[r*out+o] = v
			}
		}
		acts = append(acts, z)
		if err := call(h.AfterForward, i); err != nil {
			return 0, err
		}
	}
	// loss = 0.5·mean over the b·Out elements of (out - y)²; dloss/dout = (out - y)/(b·Out).
	outT := acts[c.Layers]
	n := float64(b * c.Out)
	d := tensor.New(tensor.Float32, b, c.Out)
	var loss float64
	ys, ds := y.Float32s(), d.Float32s()
	for j, v := range outT.Float32s() {
		e := float64(v) - float64(ys[j])
		loss += 0.5 * e * e / n
		ds[j] = float32(e / n)
	}
	for i := c.Layers - 1; i >= 0; i-- {
		if err := call(h.BeforeBackward, i); err != nil {
			return 0, err
		}
		w, _, err := p.Weights(i)
		if err != nil {
			return 0, err
		}
		gw, gb, err := p.Grads(i)
		if err != nil {
			return 0, err
		}
		out, in := c.dims(i)
		ds := d.Float32s()
		if i < c.Layers-1 { // through tanh: d(tanh z) = 1 - tanh²
			for j, a := range acts[i+1].Float32s() {
				ds[j] *= 1 - a*a
			}
		}
		if err := tensor.MatMulInto(gw, d, acts[i], true, false, 1, 1); err != nil {
			return 0, err
		}
		gbs := gb.Float32s()
		for r := range b {
			for o := range out {
				gbs[o] += ds[r*out+o]
			}
		}
		var next *tensor.Tensor
		if i > 0 {
			next = tensor.New(tensor.Float32, b, in)
			if err := tensor.MatMulInto(next, d, w, false, false, 1, 0); err != nil {
				return 0, err
			}
		}
		d = next
		if err := call(h.AfterBackward, i); err != nil {
			return 0, err
		}
	}
	return loss, nil
}

// plain is the single-process reference: the full weights and gradients, updated by plain
// SGD or AdamW written out here (torch.optim's formulas).
type plain struct {
	c     Config
	w, g  map[string]*tensor.Tensor
	m, v  map[string][]float64
	steps int
}

func newPlain(c Config) *plain {
	p := &plain{c: c, w: initWeights(c), g: map[string]*tensor.Tensor{}, m: map[string][]float64{}, v: map[string][]float64{}}
	p.zero()
	return p
}

func (p *plain) zero() {
	for name, w := range p.w {
		p.g[name] = tensor.New(tensor.Float32, w.Shape()...)
	}
}

func (p *plain) Weights(i int) (w, b *tensor.Tensor, err error) {
	return p.w[weightName(i)], p.w[biasName(i)], nil
}

func (p *plain) Grads(i int) (gw, gb *tensor.Tensor, err error) {
	return p.g[weightName(i)], p.g[biasName(i)], nil
}

// update applies one optimizer step (the same hyperparameters as the fsdp run's).
func (p *plain) update(o optimConfig) {
	p.steps++
	bc1, bc2 := 1-math.Pow(0.9, float64(p.steps)), 1-math.Pow(0.999, float64(p.steps)) // AdamW's bias corrections
	for name, w := range p.w {
		ws, gs := w.Float32s(), p.g[name].Float32s()
		if p.m[name] == nil {
			p.m[name], p.v[name] = make([]float64, len(ws)), make([]float64, len(ws))
		}
		m, v := p.m[name], p.v[name]
		for i := range ws {
			x, g := float64(ws[i]), float64(gs[i])
			if o.name == "sgd" {
				g += o.weightDecay * x
				m[i] = float64(float32(o.momentum*m[i] + g))
				x -= o.lr * m[i]
			} else {
				x *= 1 - o.lr*o.weightDecay
				m[i] = float64(float32(0.9*m[i] + 0.1*g))
				v[i] = float64(float32(0.999*v[i] + 0.001*g*g))
				x -= o.lr / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + 1e-8)
			}
			ws[i] = float32(x)
		}
	}
}

// clip scales the gradients to a global norm of at most maxNorm.
func (p *plain) clip(maxNorm float64) {
	var sq float64
	for _, g := range p.g {
		for _, v := range g.Float32s() {
			sq += float64(v) * float64(v)
		}
	}
	if coef := maxNorm / (math.Sqrt(sq) + 1e-6); coef < 1 {
		for _, g := range p.g {
			gs := g.Float32s()
			for i, v := range gs {
				gs[i] = float32(float64(v) * coef)
			}
		}
	}
}
