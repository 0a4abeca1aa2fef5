// Package fsdp is gccl's fully sharded data parallelism, after PyTorch's FSDP2
// (torch.distributed.fsdp.fully_shard). Go has no autograd, so fsdp is model-agnostic: it
// manages groups of named parameters and their gradients, and the model calls it around its own
// forward and backward passes.
//
// Shard turns each parameter into a DTensor sharded on dim 0 over a 1-D mesh ([Shard(0)]), or
// over the second dimension of a 2-D mesh for HSDP ([Replicate, Shard(0)]: replicate x shard).
// Each rank keeps its torch.chunk of the rows as a float32 master shard, in one flat buffer per
// group in which every parameter's shard is padded to ceil(dim0/N) rows, so that every rank's
// all-gather input and reduce-scatter output have the same size; the true rows are views.
//
//	m, err := mesh.New(ctx, pg, []int{pg.Size()}, []string{"shard"}, mesh.Options{})
//	model, err := fsdp.Shard(ctx, m, [][]fsdp.Param{
//		{{Name: "fc1.weight", Tensor: w1}, {Name: "fc1.bias", Tensor: b1}}, // one group per layer
//		{{Name: "fc2.weight", Tensor: w2}},
//	}, fsdp.Options{MixedPrecision: fsdp.MixedPrecisionPolicy{ParamDType: tensor.BFloat16}})
//	opt := fsdp.NewAdamW(model, 1e-3)
//	for step := range steps {
//		g0, g1 := model.Group(0), model.Group(1)
//		g0.Unshard(ctx)                // one all-gather of the group's flat shard
//		g1.Prefetch(ctx)               // the next group's all-gather runs while g0 computes
//		w, _ := g0.Param("fc1.weight") // the full parameter (bfloat16 here)
//		... forward through layer 0 ...
//		g0.AfterForward()              // reshards (unless Options.NoReshardAfterForward)
//		g1.Unshard(ctx)                // waits for the prefetch
//		... forward through layer 1, loss, backward through layer 1 ...
//		gw, _ := g1.Grad("fc2.weight") // the full gradient accumulator (float32)
//		... add the gradient into gw ...
//		g0.Prefetch(ctx)               // backward prefetch
//		g1.ReduceGradients(ctx)        // one reduce-scatter per group, averaged
//		g1.Reshard()
//		... backward through layer 0, g0.ReduceGradients(ctx), g0.Reshard() ...
//		model.ClipGradNorm(ctx, 1.0)   // one small all-reduce
//		opt.Step()                     // updates the local shards, no communication
//		model.ZeroGrad()
//	}
//
// ReduceGradientsAsync issues the reduce-scatter and returns, so that it overlaps the backward
// pass of the next layer (as FSDP2 does); the optimizers' Step, ClipGradNorm and WaitGradients
// wait for it.
//
// Where the shard group's ranks can map memory together (comm's AllocShared: backend shm, one
// host), the full parameters of an unsharded group live once per host in shared slots and the
// unsharded gradients in shared regions: an unshard writes this rank's rows, and a reduction
// sums its rows of every rank's gradients in place, with no collective: signals in the shared
// memory order them, and a rank waits only for what it reads, which its peers wrote a layer
// earlier as a rule (see shared.go; Options.NoSharedMemory turns it off). Full parameters are
// then read-only: a write would reach every rank of the host.
//
// Gradient accumulation without communication: SetRequiresGradientSync(false) before the first
// micro-batches (ReduceGradients then keeps adding to the unsharded gradients), true before the
// last. For HSDP, ReduceGradients reduce-scatters over the shard dimension, then all-reduces the
// shard over the replicate dimension.
//
// State: ShardedStateDict (DTensors, no communication) and LoadShardedStateDict; FullStateDict
// (gathered to the mesh's first rank) and LoadFullStateDict (broadcast from it); SaveCheckpoint
// writes one safetensors file per shard rank plus metadata.json (with the optimizer's state,
// sharded the same way, when given one), and LoadCheckpoint reads it into a model sharded over
// any number of ranks. A state dict or checkpoint with missing or extra keys
// or wrong shapes is an error naming the key.
//
// Collective methods (Shard, Unshard, Prefetch, ReduceGradients, ClipGradNorm, FullStateDict,
// LoadFullStateDict, SaveCheckpoint, LoadCheckpoint) are called by every rank of the mesh in the
// same order. Bad arguments fail with errors that wrap comm.ErrInvalidArgument and name the op,
// the rank and the fix; when Shard or LoadCheckpoint finds a problem on one rank, every rank
// fails with it. Stats counts this rank's
// parameter memory (master shards, full parameters and all-gather buffers alive, and the peak).
package fsdp
