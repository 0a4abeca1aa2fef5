// Command fsdptrain trains a small MLP (Layers linear layers with tanh between them, a
// hand-written backward pass) on synthetic regression data with package fsdp: every layer is
// one parameter group, sharded over the ranks, all-gathered before its forward and backward
// (the next layer's all-gather prefetched while the current one computes) and its gradients
// reduce-scattered. The global batch is split across the ranks; with --reference it trains the
// same model on one process without fsdp, and the loss curves agree step for step:
//
//	go build -o fsdptrain ./examples/fsdptrain
//	gccl run --nproc-per-node 1 -- ./fsdptrain --reference
//	gccl run --nproc-per-node 4 -- ./fsdptrain               # FSDP over 4 ranks
//	gccl run --nproc-per-node 4 -- ./fsdptrain --hsdp 2      # HSDP: 2 replicas x 2 shards
//
// Rank 0 prints the loss of every step and the peak parameter memory per rank; with --json it
// ends with one JSON line with the keys nranks, steps, losses and peak_param_bytes (and, with
// --bench K, the median times of compute alone, communication alone and whole steps with and
// without prefetch, over K rounds that interleave the four, and heap sizes read from
// runtime/metrics).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/fsdp"
	"github.com/gccl/gccl/internal/bench"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

type optimConfig struct {
	name                      string
	lr, momentum, weightDecay float64
	clip                      float64
}

type result struct {
	NRanks         int       `json:"nranks"`
	Steps          int       `json:"steps"`
	Losses         []float64 `json:"losses"`
	PeakParamBytes int64     `json:"peak_param_bytes"`
	// The model: its parameters in float32, and its largest group (layer).
	ModelParamBytes   int64 `json:"model_param_bytes"`
	LargestGroupBytes int64 `json:"largest_group_bytes"`
	ShardedParamBytes int64 `json:"sharded_param_bytes"`
	// --bench: milliseconds per step, the median over the rounds, of the slowest rank (a step
	// waits for it), and the fastest rank's compute (how unevenly the cores ran).
	ComputeMS        float64 `json:"compute_ms,omitempty"`
	CommMS           float64 `json:"comm_ms,omitempty"`
	StepMS           float64 `json:"step_ms,omitempty"`
	StepNoPrefetchMS float64 `json:"step_noprefetch_ms,omitempty"`
	ComputeFastestMS float64 `json:"compute_fastest_ms,omitempty"`
	// --bench: milliseconds per step blocked in Unshard, with and without prefetch: how much of
	// the all-gathers the prefetch hid behind compute.
	UnshardWaitMS           float64 `json:"unshard_wait_ms,omitempty"`
	UnshardWaitNoPrefetchMS float64 `json:"unshard_wait_noprefetch_ms,omitempty"`
	// --bench: milliseconds per step inside fsdp's calls (the hooks around each layer: unshard,
	// prefetch, reshard, reduce), with and without prefetch: the step's cost beyond compute.
	FSDPCallsMS           float64 `json:"fsdp_calls_ms,omitempty"`
	FSDPCallsNoPrefetchMS float64 `json:"fsdp_calls_noprefetch_ms,omitempty"`
	// --bench: live heap (runtime/metrics, after a GC) with every group sharded, and its peak
	// during a step, sampled after every unshard.
	HeapBaseBytes uint64 `json:"heap_base_bytes,omitempty"`
	HeapPeakBytes uint64 `json:"heap_peak_bytes,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fsdptrain:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		c                   Config
		o                   optimConfig
		steps, batchSize    int
		hsdp, bench         int
		reference, asJSON   bool
		noPrefetch, keep    bool
		bf16, private       bool
		backend, cpuProfile string
	)
	flag.IntVar(&c.In, "in", 32, "input features")
	flag.IntVar(&c.Hidden, "hidden", 60, "hidden units per layer")
	flag.IntVar(&c.Out, "out", 8, "outputs")
	flag.IntVar(&c.Layers, "layers", 4, "linear layers (one fsdp group each)")
	flag.Uint64Var(&c.Seed, "seed", 1, "seed of the weights and the data")
	flag.IntVar(&steps, "steps", 20, "training steps")
	flag.IntVar(&batchSize, "batch", 32, "global batch size (split across the ranks)")
	flag.StringVar(&o.name, "optimizer", "sgd", "sgd or adamw")
	flag.Float64Var(&o.lr, "lr", 0.3, "learning rate")
	flag.Float64Var(&o.momentum, "momentum", 0.9, "SGD momentum")
	flag.Float64Var(&o.weightDecay, "weight-decay", 0, "weight decay")
	flag.Float64Var(&o.clip, "clip", 0, "clip the global gradient norm to this (0: no clipping)")
	flag.BoolVar(&reference, "reference", false, "train on this process alone, without fsdp (the single-process reference)")
	flag.IntVar(&hsdp, "hsdp", 1, "replicas for HSDP (a replicate x shard mesh); 1: plain FSDP")
	flag.BoolVar(&noPrefetch, "no-prefetch", false, "do not prefetch the next group's all-gather, nor reduce-scatter asynchronously (nothing overlaps compute)")
	flag.BoolVar(&keep, "no-reshard-after-forward", false, "keep the full parameters between forward and backward")
	flag.BoolVar(&bf16, "bf16", false, "mixed precision: all-gather and compute with bfloat16 parameters")
	flag.BoolVar(&private, "no-shared-memory", false, "all-gather and reduce-scatter through shm's collectives even where the ranks could share the full parameters and gradients")
	flag.IntVar(&bench, "bench", 0, "after training, time K rounds of one step each: compute alone, communication alone, whole steps without and with prefetch (medians)")
	flag.StringVar(&backend, "backend", "", "backend (default: GCCL_BACKEND from gccl run --backend, else shm)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write each rank's CPU profile to FILE.<rank> (for go tool pprof)")
	flag.BoolVar(&asJSON, "json", false, "rank 0 ends with one JSON line: nranks, steps, losses, peak_param_bytes")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; every option is a flag (see -h)", flag.Args())
	}
	if err := c.check(); err != nil {
		return err
	}
	if o.name != "sgd" && o.name != "adamw" {
		return fmt.Errorf("--optimizer %q: use sgd or adamw", o.name)
	}
	if steps < 1 || batchSize < 1 {
		return fmt.Errorf("--steps %d and --batch %d must be at least 1", steps, batchSize)
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile + "." + os.Getenv("RANK"))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	// One BLAS thread per rank: the ranks share the machine's cores.
	tensor.SetBLASThreads(1)
	var res *result
	var err error
	if reference {
		res, err = trainReference(c, o, steps, batchSize)
	} else {
		opts := fsdp.Options{NoReshardAfterForward: keep, NoSharedMemory: private}
		if bf16 {
			opts.MixedPrecision.ParamDType = tensor.BFloat16
		}
		res, err = trainFSDP(c, o, steps, batchSize, hsdp, bench, !noPrefetch, opts, backend)
	}
	if err != nil || res == nil {
		return err
	}
	for i, l := range res.Losses {
		fmt.Printf("step %d loss %.6f\n", i, l)
	}
	fmt.Printf("nranks=%d peak parameter memory per rank %d bytes (model %d bytes, sharded %d, largest group %d)\n",
		res.NRanks, res.PeakParamBytes, res.ModelParamBytes, res.ShardedParamBytes, res.LargestGroupBytes)
	if bench > 0 {
		fmt.Printf("per step (slowest rank): compute %.2f ms (fastest rank %.2f), communication %.2f ms, step %.2f ms with prefetch (%.2fx max), %.2f ms without\n",
			res.ComputeMS, res.ComputeFastestMS, res.CommMS, res.StepMS, res.StepMS/max(res.ComputeMS, res.CommMS), res.StepNoPrefetchMS)
		fmt.Printf("in fsdp's calls: %.2f ms per step with prefetch (blocked in Unshard %.2f), %.2f ms without (%.2f)\n",
			res.FSDPCallsMS, res.UnshardWaitMS, res.FSDPCallsNoPrefetchMS, res.UnshardWaitNoPrefetchMS)
		fmt.Printf("heap: %d bytes with every group sharded, %d at the peak of a step\n", res.HeapBaseBytes, res.HeapPeakBytes)
	}
	if asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
	}
	return nil
}

func modelBytes(c Config) (total, largest int64) {
	for i := range c.Layers {
		out, in := c.dims(i)
		b := int64(4 * (out*in + out))
		total += b
		largest = max(largest, b)
	}
	return total, largest
}

func trainReference(c Config, o optimConfig, steps, batchSize int) (*result, error) {
	p := newPlain(c)
	res := &result{NRanks: 1, Steps: steps}
	res.ModelParamBytes, res.LargestGroupBytes = modelBytes(c)
	res.PeakParamBytes, res.ShardedParamBytes = res.ModelParamBytes, res.ModelParamBytes
	for s := range steps {
		x, y := batch(c, s, batchSize)
		loss, err := Step(c, p, Hooks{}, x, y)
		if err != nil {
			return nil, err
		}
		if o.clip > 0 {
			p.clip(o.clip)
		}
		p.update(o)
		p.zero()
		res.Losses = append(res.Losses, loss)
	}
	return res, nil
}

// fsdpParams hands the model the unsharded groups' parameters (as float32) and gradients.
type fsdpParams struct {
	md  *fsdp.Model
	f32 *float32Copy
}

func newFSDPParams(md *fsdp.Model) fsdpParams { return fsdpParams{md, &float32Copy{}} }

func (p fsdpParams) Weights(i int) (w, b *tensor.Tensor, err error) {
	g := p.md.Group(i)
	if w, err = g.Param(weightName(i)); err != nil {
		return nil, nil, err
	}
	if b, err = g.Param(biasName(i)); err != nil {
		return nil, nil, err
	}
	w, b = p.f32.of(w, b)
	return w, b, nil
}

// float32Copy gives a layer's weight and bias as the compute takes them, float32: as they are, or
// (mixed precision) the bfloat16 parameters converted into buffers it keeps, valid until its
// next call; Step is done with a layer's weights when it asks for the next layer's.
type float32Copy struct{ w, b *tensor.Tensor }

func (c *float32Copy) of(w, b *tensor.Tensor) (*tensor.Tensor, *tensor.Tensor) {
	if w.DType() == tensor.Float32 {
		return w, b
	}
	c.w, c.b = convertTo32(c.w, w), convertTo32(c.b, b)
	return c.w, c.b
}

// convertTo32 converts t into buf, a float32 tensor of t's shape (a new one if buf is nil or of
// another shape), and returns it.
func convertTo32(buf, t *tensor.Tensor) *tensor.Tensor {
	if buf == nil || !slices.Equal(buf.Shape(), t.Shape()) {
		buf = tensor.New(tensor.Float32, t.Shape()...)
	}
	if err := buf.ConvertFrom(t); err != nil {
		panic(err) // same shape, both on the host
	}
	return buf
}

func (p fsdpParams) Grads(i int) (gw, gb *tensor.Tensor, err error) {
	g := p.md.Group(i)
	if gw, err = g.Grad(weightName(i)); err != nil {
		return nil, nil, err
	}
	gb, err = g.Grad(biasName(i))
	return gw, gb, err
}

// hooks are fsdp's calls around each layer: unshard (and prefetch the next layer), reshard after
// forward (but the last layer's), reduce-scatter and reshard after backward. With prefetch, the reduce-scatter is
// asynchronous too (waited for after the first layer's backward): the collectives overlap compute.
// times, if not nil, accumulates the time spent in them and, of it, blocked in Unshard.
func hooks(ctx context.Context, md *fsdp.Model, prefetch bool, sample func(), times *hookTimes) Hooks {
	n := len(md.Groups())
	unshard := func(i int) error {
		t0 := time.Now()
		err := md.Group(i).Unshard(ctx)
		if times != nil {
			times.unshard += time.Since(t0)
		}
		return err
	}
	h := Hooks{
		BeforeForward: func(i int) error {
			if err := unshard(i); err != nil {
				return err
			}
			if prefetch && i+1 < n {
				md.Group(i + 1).Prefetch(ctx)
			}
			sample()
			return nil
		},
		AfterForward: func(i int) error {
			if i < n-1 { // the last layer's backward comes next: keep it (FSDP2 does for the root)
				md.Group(i).AfterForward()
			}
			return nil
		},
		BeforeBackward: func(i int) error {
			if err := unshard(i); err != nil {
				return err
			}
			if prefetch && i > 0 {
				md.Group(i - 1).Prefetch(ctx)
			}
			sample()
			return nil
		},
		AfterBackward: func(i int) error {
			g := md.Group(i)
			if !prefetch {
				if err := g.ReduceGradients(ctx); err != nil {
					return err
				}
				g.Reshard()
				return nil
			}
			g.ReduceGradientsAsync(ctx) // overlaps the next layer's backward
			g.Reshard()
			if i == 0 {
				return md.WaitGradients()
			}
			return nil
		},
	}
	if times == nil {
		return h
	}
	timed := func(f func(int) error) func(int) error {
		return func(i int) error {
			t0 := time.Now()
			err := f(i)
			times.calls += time.Since(t0)
			return err
		}
	}
	return Hooks{BeforeForward: timed(h.BeforeForward), AfterForward: timed(h.AfterForward),
		BeforeBackward: timed(h.BeforeBackward), AfterBackward: timed(h.AfterBackward)}
}

// hookTimes is the time a step spent in fsdp's hooks, and blocked in Unshard within them.
type hookTimes struct{ calls, unshard time.Duration }

func trainFSDP(c Config, o optimConfig, steps, batchSize, hsdp, bench int, prefetch bool, opts fsdp.Options, backend string) (*result, error) {
	if backend == "" && os.Getenv("GCCL_BACKEND") == "" {
		backend = "shm" // comm.Init's own default is gloo
	}
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Backend: backend})
	if err != nil {
		return nil, err
	}
	defer pg.Close()
	world := pg.Size()
	if batchSize%world != 0 {
		return nil, fmt.Errorf("--batch %d is not a multiple of the %d ranks; pass a batch that splits evenly", batchSize, world)
	}
	if hsdp < 1 || world%hsdp != 0 {
		return nil, fmt.Errorf("--hsdp %d does not divide the %d ranks; pass a number of replicas that does", hsdp, world)
	}
	shape, names := []int{world}, []string{"shard"}
	if hsdp > 1 {
		shape, names = []int{hsdp, world / hsdp}, []string{"replicate", "shard"}
	}
	m, err := mesh.New(ctx, pg, shape, names, mesh.Options{})
	if err != nil {
		return nil, err
	}
	defer m.Close()

	full := initWeights(c)
	var groups [][]fsdp.Param
	for i := range c.Layers {
		groups = append(groups, []fsdp.Param{{Name: weightName(i), Tensor: full[weightName(i)]}, {Name: biasName(i), Tensor: full[biasName(i)]}})
	}
	md, err := fsdp.Shard(ctx, m, groups, opts)
	if err != nil {
		return nil, err
	}
	defer md.Close()
	full, groups = nil, nil
	debug.FreeOSMemory()
	var opt fsdp.Optimizer
	if o.name == "sgd" {
		opt = fsdp.NewSGD(md, fsdp.SGD{LR: o.lr, Momentum: o.momentum, WeightDecay: o.weightDecay})
	} else {
		a := fsdp.NewAdamW(md, o.lr)
		a.WeightDecay = o.weightDecay
		opt = a
	}

	res := &result{NRanks: world, Steps: steps}
	res.ModelParamBytes, res.LargestGroupBytes = modelBytes(c)
	local := batchSize / world
	params := newFSDPParams(md)
	h := hooks(ctx, md, prefetch, func() {}, nil)
	lossT := tensor.New(tensor.Float64, 1)
	for s := range steps {
		x, y := batch(c, s, batchSize)
		xl, _ := x.Narrow(0, pg.Rank()*local, local)
		yl, _ := y.Narrow(0, pg.Rank()*local, local)
		loss, err := Step(c, params, h, xl.Contiguous(), yl.Contiguous())
		if err != nil {
			return nil, err
		}
		if o.clip > 0 {
			if _, err := md.ClipGradNorm(ctx, o.clip); err != nil {
				return nil, err
			}
		}
		if err := opt.Step(); err != nil {
			return nil, err
		}
		md.ZeroGrad()
		// The global loss: the mean of the ranks' means over equal shares of the batch.
		lossT.F64s()[0] = loss
		if err := pg.AllReduce(ctx, lossT, comm.Avg); err != nil {
			return nil, err
		}
		res.Losses = append(res.Losses, lossT.Float64s()[0])
	}
	st := md.Stats()
	res.PeakParamBytes, res.ShardedParamBytes = st.PeakBytes, st.ShardedBytes
	if bench > 0 {
		x, y := batch(c, 0, batchSize)
		xl, _ := x.Narrow(0, pg.Rank()*local, local)
		yl, _ := y.Narrow(0, pg.Rank()*local, local)
		if err := benchmark(ctx, pg, md, c, bench, xl.Contiguous(), yl.Contiguous(), res); err != nil {
			return nil, err
		}
	}
	if pg.Rank() != 0 {
		return nil, nil
	}
	return res, nil
}

// benchmark times k rounds of four kinds of step (forward and backward, no optimizer): compute
// alone (on a copy of the full parameters, no collectives), the collectives of a step alone (no
// compute), whole steps without prefetch and whole steps with it. Each round runs one step of
// each kind, in an order that rotates from round to round, so that every kind samples the same
// stretches of the machine's time (on a VM whose speed changes within seconds, timing the kinds
// one block after the other compared different moments); res gets each kind's median on the
// slowest rank (a step waits for it: a core that runs slower for a while makes the other rank
// wait at every collective) and the fastest rank's compute. Then it samples the heap through
// one step.
func benchmark(ctx context.Context, pg *comm.ProcessGroup, md *fsdp.Model, c Config, k int, x, y *tensor.Tensor, res *result) error {
	alone, err := copyParams(ctx, md)
	if err != nil {
		return err
	}
	params := newFSDPParams(md)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	kinds := []func() (time.Duration, hookTimes, error){
		func() (time.Duration, hookTimes, error) { // compute alone
			t0 := time.Now()
			_, err := Step(c, alone, Hooks{}, x, y)
			return time.Since(t0), hookTimes{}, err
		},
		func() (time.Duration, hookTimes, error) { // communication alone
			t0 := time.Now()
			err := stepCollectives(ctx, md)
			return time.Since(t0), hookTimes{}, err
		},
		func() (time.Duration, hookTimes, error) { return timedStep(ctx, md, params, c, false, x, y) },
		func() (time.Duration, hookTimes, error) { return timedStep(ctx, md, params, c, true, x, y) },
	}
	var times, waits, calls [4][]float64
	for r := range k {
		for j := range kinds {
			kind := (r + j) % len(kinds)
			if err := pg.Barrier(ctx); err != nil {
				return err
			}
			d, ht, err := kinds[kind]()
			if err != nil {
				return err
			}
			times[kind] = append(times[kind], ms(d))
			waits[kind] = append(waits[kind], ms(ht.unshard))
			calls[kind] = append(calls[kind], ms(ht.calls))
		}
	}
	medians := []float64{bench.Median(times[0]), bench.Median(times[1]), bench.Median(times[2]), bench.Median(times[3]), -bench.Median(times[0])}
	slowest, err := tensor.FromFloat64s(tensor.Float64, medians, len(medians))
	if err != nil {
		return err
	}
	if err := pg.AllReduce(ctx, slowest, comm.Max); err != nil {
		return err
	}
	m := slowest.F64s()
	res.ComputeMS, res.CommMS, res.StepNoPrefetchMS, res.StepMS, res.ComputeFastestMS = m[0], m[1], m[2], m[3], -m[4]
	res.UnshardWaitNoPrefetchMS, res.UnshardWaitMS = bench.Median(waits[2]), bench.Median(waits[3])
	res.FSDPCallsNoPrefetchMS, res.FSDPCallsMS = bench.Median(calls[2]), bench.Median(calls[3])
	alone = nil // not part of the heap below

	// The heap through one step with prefetch, after a GC at every sample.
	heap := func() uint64 {
		runtime.GC()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	res.HeapBaseBytes = heap()
	var peak uint64
	h := hooks(ctx, md, true, func() { peak = max(peak, heap()) }, nil)
	if _, err := Step(c, params, h, x, y); err != nil {
		return err
	}
	md.ZeroGrad()
	res.HeapPeakBytes = peak
	return nil
}

// paramCopy is a copy of the model's full parameters, as the fsdp step gets them (in
// MixedPrecision.ParamDType, converted for compute on every use), with gradient accumulators of
// its own: what a step computes, without fsdp.
type paramCopy struct {
	w, g map[string]*tensor.Tensor
	f32  float32Copy
}

func copyParams(ctx context.Context, md *fsdp.Model) (*paramCopy, error) {
	p := &paramCopy{w: map[string]*tensor.Tensor{}, g: map[string]*tensor.Tensor{}}
	for i, g := range md.Groups() {
		if err := g.Unshard(ctx); err != nil {
			return nil, err
		}
		for _, name := range []string{weightName(i), biasName(i)} {
			t, err := g.Param(name)
			if err != nil {
				return nil, err
			}
			p.w[name] = t.Clone()
			p.g[name] = tensor.New(tensor.Float32, t.Shape()...)
		}
		g.Reshard()
	}
	return p, nil
}

func (p *paramCopy) Weights(i int) (w, b *tensor.Tensor, err error) {
	w, b = p.f32.of(p.w[weightName(i)], p.w[biasName(i)])
	return w, b, nil
}

func (p *paramCopy) Grads(i int) (gw, gb *tensor.Tensor, err error) {
	return p.g[weightName(i)], p.g[biasName(i)], nil
}

// stepCollectives runs the collectives of a step without its compute: each group's unshard for
// the forward, then its unshard (but the last group's, kept from the forward) and gradient
// reduction for the backward, with the gradient accumulators a step's backward asks for (zero
// here), so that the reduction takes the step's path (in shared memory where the ranks share
// it, not the reduce-scatter fsdp falls back to when no rank has gradients).
func stepCollectives(ctx context.Context, md *fsdp.Model) error {
	n := len(md.Groups())
	for i, g := range md.Groups() {
		if err := g.Unshard(ctx); err != nil {
			return err
		}
		if i < n-1 { // as the step's hooks do
			g.AfterForward()
		}
	}
	for i := len(md.Groups()) - 1; i >= 0; i-- {
		g := md.Group(i)
		if err := g.Unshard(ctx); err != nil {
			return err
		}
		for _, name := range g.Names() {
			if _, err := g.Grad(name); err != nil {
				return err
			}
		}
		if err := g.ReduceGradients(ctx); err != nil {
			return err
		}
		g.Reshard()
	}
	md.ZeroGrad()
	return nil
}

// timedStep times one whole step, with or without prefetch, the time in fsdp's hooks and, of
// it, blocked in Unshard.
func timedStep(ctx context.Context, md *fsdp.Model, params fsdpParams, c Config, prefetch bool, x, y *tensor.Tensor) (time.Duration, hookTimes, error) {
	var ht hookTimes
	h := hooks(ctx, md, prefetch, func() {}, &ht)
	t0 := time.Now()
	if _, err := Step(c, params, h, x, y); err != nil {
		return 0, ht, err
	}
	md.ZeroGrad()
	return time.Since(t0), ht, nil
}
