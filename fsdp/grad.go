package fsdp

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

// Grad is the named parameter's unsharded gradient accumulator: a tensor of the parameter's full
// shape, in MixedPrecision.ReduceDType (float32 by default), zero after the last ReduceGradients.
// The model's backward pass adds its gradient into it (e.g. MatMulInto with beta 1, or
// AccumulateGrad); ReduceGradients reduce-scatters it into the sharded gradient and frees it (its
// memory serves later unshards and reductions: do not use it after).
func (g *Group) Grad(name string) (*tensor.Tensor, error) {
	p, err := g.param("Grad", name)
	if err != nil {
		return nil, err
	}
	return g.gradOf("Grad", p)
}

// gradAccs are a group's unsharded gradient accumulators: views of this rank's region of a
// shared gradient slot (slot: 1 + its index), or tensors from the pool (slot 0), one per
// parameter (nil until its Grad).
type gradAccs struct {
	grads []*tensor.Tensor
	slot  int
}

// gradOf is p's unsharded gradient accumulator, made on first use (in shared memory if it can).
func (g *Group) gradOf(op string, p *param) (*tensor.Tensor, error) {
	if g.acc.grads == nil {
		if g.model.shared != nil {
			a, err := g.sharedGrads(context.Background())
			if err != nil {
				return nil, opErr(op, globalRank(g.model.mesh), err)
			}
			g.acc = a
		}
		if g.acc.grads == nil {
			g.acc.grads = make([]*tensor.Tensor, len(g.params))
		}
	}
	if g.acc.grads[p.index] == nil {
		g.acc.grads[p.index] = g.model.pool.tensor(g.model.reduceDT, true, p.shape...)
	}
	return g.acc.grads[p.index], nil
}

// AccumulateGrad adds grad (the parameter's full shape, any floating-point dtype, e.g. the
// bfloat16 of a mixed-precision backward) into the named parameter's unsharded gradient.
func (g *Group) AccumulateGrad(name string, grad *tensor.Tensor) error {
	const op = "AccumulateGrad"
	p, err := g.param(op, name)
	if err != nil {
		return err
	}
	if grad == nil || !grad.DType().IsFloat() || !slices.Equal(grad.Shape(), p.shape) {
		return errorf(op, globalRank(g.model.mesh), "the gradient of %q must be a floating-point tensor of its shape %v, got %v; pass the full gradient",
			name, p.shape, grad)
	}
	// The sum is in float32, and a reduced-precision accumulator gets it back converted.
	acc, err := g.gradOf(op, p)
	if err != nil {
		return err
	}
	sum, src := acc, grad.Contiguous()
	if sum.DType() != tensor.Float32 {
		sum = sum.To(tensor.Float32)
	}
	if src.DType() != tensor.Float32 {
		src = src.To(tensor.Float32)
	}
	if err := tensor.ReduceInto(tensor.Sum, tensor.Float32, sum.Bytes(), src.Bytes()); err != nil {
		return errorf(op, globalRank(g.model.mesh), "adding the gradient of %q: %v", name, err)
	}
	if sum != acc {
		convertInto(acc, sum)
	}
	return nil
}

// ReduceGradients averages the group's unsharded gradients across the ranks and adds this rank's
// part to the sharded gradient (float32): one reduce-scatter (a sum in ReduceDType, divided by
// the number of ranks) of a flat buffer over the shard group, and for HSDP then one all-reduce
// (sum) of the result over the replicate group. The unsharded gradients are freed. Parameters
// whose Grad was never asked for count as zero. With gradient sync off
// (SetRequiresGradientSync(false)) it does nothing and the unsharded gradients keep
// accumulating. Collective over the mesh. It is ReduceGradientsAsync, then the wait for it.
func (g *Group) ReduceGradients(ctx context.Context) error {
	g.ReduceGradientsAsync(ctx)
	return g.waitReduce()
}

// reduction is a ReduceGradientsAsync in flight.
type reduction struct {
	done   chan struct{} // closed once the sharded gradient holds the result
	issued chan struct{} // closed once its replicate all-reduce (HSDP) is issued, or skipped
	err    error
}

// ReduceGradientsAsync issues ReduceGradients' reduce-scatter (its copy into the flat buffer
// happens now, and the unsharded gradients are free at once) and returns while it runs, as
// torch's FSDP2 overlaps it with the backward pass of the next layer: a goroutine waits for it,
// issues HSDP's all-reduce (in the same order on every rank) and adds the result into the
// sharded gradient. Everything that reads the sharded gradients (ShardedGrad, ClipGradNorm,
// the optimizers' Step, ZeroGrad, WaitGradients) waits for it first.
//
// With a single Go processor (GOMAXPROCS=1, what gccl run gives each rank when there are as
// many ranks as cores) it returns only once the reduction is done (errors still come from
// WaitGradients): nothing can run beside the caller's compute there, so a reduce-scatter left
// in flight progresses only when the caller blocks, half done, while its peers wait for it
// (measured with examples/fsdptrain: a median step 4-9% longer than reducing at once). Where
// the gradients are in shared memory (shared.go) it only tells the peers where this rank's
// are; the next ReduceGradientsAsync (of any group) or a wait for this one reads and sums
// them, once the peers have told too (usually done by then: they did a layer earlier).
func (g *Group) ReduceGradientsAsync(ctx context.Context) {
	md := g.model
	if !md.gradSync {
		return
	}
	// A reduction of this group still in flight adds into the same sharded gradient first.
	if err := g.waitReduce(); err != nil {
		md.reduceErr = errors.Join(md.reduceErr, err)
	}
	a := g.acc
	g.acc = gradAccs{}
	if md.shared == nil {
		g.reduce(ctx, a, nil)
		return
	}
	md.finishPending()
	md.publishReduction(ctx, g, a)
}

// reduce reduces the accumulators a of g: where every rank's are shared (slots, from
// finishPending, says where each rank's are), by reading them in place; else by a
// reduce-scatter. Then it divides and adds into the sharded gradient, on a goroutine.
func (g *Group) reduce(ctx context.Context, a gradAccs, slots []int64) {
	md := g.model
	es := md.reduceDT.Size()
	var w *comm.Work
	var in, out *tensor.Tensor
	var sharedErr error
	shared := slots != nil && !slices.Contains(slots, -1)
	if shared && g.grad == nil && md.replPG == nil && md.reduceDT == tensor.Float32 {
		g.reduceInto(a, slots)
		return
	}
	if shared {
		// Read in place (shared.go).
		out = md.pool.tensor(md.reduceDT, false, g.size)
		sharedErr = g.sumShared(a, slots, out)
	} else {
		// Padding and missing gradients must be zero; the rest is overwritten.
		in = md.pool.tensor(md.reduceDT, g.hasGaps(a), md.n*g.size)
		buf := in.Bytes()
		for i, p := range g.params {
			if a.grads == nil || a.grads[i] == nil {
				continue
			}
			src := a.grads[i].Bytes()
			g.eachChunk(p, es, func(fullAt, flatAt, n int) {
				copy(buf[flatAt:flatAt+n], src[fullAt:fullAt+n])
			})
		}
		md.dropGrads(a)
		out = md.pool.tensor(md.reduceDT, false, g.size)
		w = md.shardPG.ReduceScatterAsync(out, in, comm.Sum)
	}
	// The first reduction since ZeroGrad writes the sharded gradient, later ones add into it.
	// Its memory outlives ZeroGrad: a fresh one every step cost page faults and zeroing (8 MB
	// a step for a 16 MB model on 2 ranks).
	first := g.grad == nil
	if first {
		g.grad, g.spare = g.spare, nil
		if g.grad == nil {
			g.grad = tensor.New(tensor.Float32, g.size)
		}
	}
	acc := g.grad
	// Sum, then (in the goroutine below) divide and add into the float32 sharded gradient: the
	// same bits as Avg, which comm also computes as a sum and a division, but the division runs
	// here, off the collective (on shm, Avg's division cost several times the reduce-scatter).
	red := &reduction{done: make(chan struct{}), issued: make(chan struct{})}
	prev := md.lastReduce
	md.lastReduce, g.reducing = red, red
	go func() {
		defer close(red.done)
		err := sharedErr
		if w != nil {
			err = w.Wait(ctx)
		}
		ranks := float64(md.n)
		if md.replPG != nil {
			// The replicate all-reduces go out in the order the reductions were issued.
			if prev != nil {
				<-prev.issued
			}
			if err == nil {
				w2 := md.replPG.AllReduceAsync(out, comm.Sum)
				close(red.issued)
				err = w2.Wait(ctx)
			} else {
				close(red.issued)
			}
			ranks *= float64(md.replPG.Size())
		} else {
			close(red.issued)
		}
		if err != nil {
			// The buffers are not given back: the collectives may still be using them.
			md.pool.forget(in, out)
			red.err = opErr("ReduceGradients", globalRank(md.mesh), err)
			return
		}
		sum := out
		if sum.DType() != tensor.Float32 {
			sum = sum.To(tensor.Float32)
		}
		// The average, correctly rounded, copied or added into the sharded gradient by the SIMD
		// kernel (a third faster than one scalar loop dividing and adding).
		err = tensor.DivideBy(tensor.Float32, sum.Bytes(), int(ranks))
		switch {
		case err != nil:
		case first:
			copy(acc.Bytes(), sum.Bytes())
		default:
			err = tensor.ReduceInto(tensor.Sum, tensor.Float32, acc.Bytes(), sum.Bytes())
		}
		md.pool.put(in, out) // the collective is over: the buffers are free either way
		if err != nil {
			red.err = opErr("ReduceGradients", globalRank(md.mesh), err)
		}
	}()
	if runtime.GOMAXPROCS(0) == 1 {
		<-red.done
	}
}

// reduceInto is reduce's shortcut for the first reduction since ZeroGrad of float32 gradients
// shared by every rank, with no HSDP: it sums them straight into the sharded gradient and
// divides there (the same bits as summing into a buffer, dividing and copying, without the
// buffer's zeroing and copy: a millisecond a step of examples/fsdptrain's bench, measured).
func (g *Group) reduceInto(a gradAccs, slots []int64) {
	md := g.model
	g.grad, g.spare = g.spare, nil
	if g.grad == nil {
		g.grad = tensor.New(tensor.Float32, g.size)
	}
	err := g.sumShared(a, slots, g.grad)
	if err == nil {
		err = tensor.DivideBy(tensor.Float32, g.grad.Bytes(), md.n)
	}
	red := &reduction{done: make(chan struct{}), issued: make(chan struct{})}
	close(red.done)
	close(red.issued)
	if err != nil {
		red.err = opErr("ReduceGradients", globalRank(md.mesh), err)
	}
	md.lastReduce, g.reducing = red, red
}

// waitReduce waits for the group's reduction in flight, if any, and returns its error.
func (g *Group) waitReduce() error {
	if p := g.model.pending; p != nil && p.g == g {
		g.model.finishPending()
	}
	r := g.reducing
	if r == nil {
		return nil
	}
	<-r.done
	g.reducing = nil
	return r.err
}

// WaitGradients waits for every ReduceGradientsAsync in flight and returns their errors (and
// those of reductions that ZeroGrad or a later ReduceGradientsAsync of the same group waited
// for). The optimizers' Step and ClipGradNorm call it.
func (md *Model) WaitGradients() error {
	err := md.reduceErr
	md.reduceErr = nil
	for _, g := range md.groups {
		err = errors.Join(err, g.waitReduce())
	}
	md.lastReduce = nil
	return err
}

// ShardedGrad is this rank's true rows of the named parameter's sharded gradient (a view, valid
// until ZeroGrad, whose memory serves the next step's), or nil before the first ReduceGradients
// (or after ZeroGrad). It waits for the group's reduction in flight; where the shard group
// shares memory, finishing it may fall back to a reduce-scatter, so call it on every rank of
// the shard group (as WaitGradients) while one may be in flight.
func (g *Group) ShardedGrad(name string) (*tensor.Tensor, error) {
	p, err := g.param("ShardedGrad", name)
	if err != nil {
		return nil, err
	}
	if err := g.waitReduce(); err != nil {
		return nil, err
	}
	if g.grad == nil {
		return nil, nil
	}
	return p.local(g.grad), nil
}

// ZeroGrad drops every group's sharded and unsharded gradients (torch's zero_grad with
// set_to_none: ShardedGrad is nil until the next ReduceGradients), after waiting for the
// reductions in flight (whose errors the next WaitGradients returns). The sharded gradients'
// memory is kept for the next step's, and the unsharded ones' serves later unshards and
// reductions: do not use tensors from Grad or ShardedGrad after.
func (md *Model) ZeroGrad() {
	for _, g := range md.groups {
		if err := g.waitReduce(); err != nil {
			md.reduceErr = errors.Join(md.reduceErr, err)
		}
	}
	md.lastReduce = nil
	for _, g := range md.groups {
		if g.grad != nil {
			g.spare = g.grad
		}
		md.dropGrads(g.acc)
		g.acc = gradAccs{}
		g.grad = nil
	}
}

// hasGaps reports whether the group's flat buffer of all ranks' shards has bytes that reduce
// does not copy a gradient of a into: padding rows, or a parameter whose Grad was never asked
// for.
func (g *Group) hasGaps(a gradAccs) bool {
	for i, p := range g.params {
		if p.chunkRows*g.model.n != p.shape[0] || a.grads == nil || a.grads[i] == nil {
			return true
		}
	}
	return false
}

// ClipGradNorm scales the sharded gradients so that their global L2 norm (over every parameter of
// every group, across the mesh) is at most maxNorm, like torch's clip_grad_norm_, and returns the
// norm before clipping. It sums the squares of the local shards (padding is zero) and runs one
// all-reduce of that one number over the shard group (after ReduceGradients the gradients are
// the same across HSDP's replicas). Collective over the shard group.
func (md *Model) ClipGradNorm(ctx context.Context, maxNorm float64) (float64, error) {
	const op = "ClipGradNorm"
	rank := globalRank(md.mesh)
	if !(maxNorm > 0) {
		return 0, errorf(op, rank, "maxNorm %v must be positive", maxNorm)
	}
	if err := md.WaitGradients(); err != nil {
		return 0, err
	}
	var sq float64
	for _, g := range md.groups {
		if g.grad == nil {
			continue
		}
		for _, v := range g.grad.Float32s() {
			sq += float64(v) * float64(v)
		}
	}
	t := tensor.FromSlice([]float64{sq})
	if err := md.shardPG.AllReduce(ctx, t, comm.Sum); err != nil {
		return 0, opErr(op, rank, err)
	}
	norm := math.Sqrt(t.Float64s()[0])
	// torch: clip_coef = max_norm / (total_norm + 1e-6), applied when below 1.
	if coef := maxNorm / (norm + 1e-6); coef < 1 {
		for _, g := range md.groups {
			if g.grad == nil {
				continue
			}
			if err := tensor.Scale(tensor.Float32, g.grad.Bytes(), coef); err != nil {
				return 0, opErr(op, rank, err)
			}
		}
	}
	return norm, nil
}
