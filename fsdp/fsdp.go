package fsdp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// Param is a named parameter: its full (unsharded) value, the same on every rank.
type Param struct {
	Name   string
	Tensor *tensor.Tensor
}

// MixedPrecisionPolicy says in which dtypes parameters are all-gathered and computed with, and
// gradients reduced, like torch's MixedPrecisionPolicy. The zero value keeps everything in the
// master dtype (float32): no mixed precision.
type MixedPrecisionPolicy struct {
	// ParamDType is the dtype of the unsharded parameters the model computes with: the master
	// shards are converted to it before the all-gather (which then moves half the bytes for
	// BFloat16 or Float16). Invalid (zero): the master dtype.
	ParamDType tensor.DType
	// ReduceDType is the dtype of the unsharded gradients (Grad) and of the reduce-scatter.
	// Invalid (zero): the master dtype, float32, which is what torch recommends with bfloat16
	// parameters. The sharded gradients are always kept in float32.
	ReduceDType tensor.DType
}

// Options configure Shard. The zero value is torch's fully_shard default: reshard after forward,
// no mixed precision.
type Options struct {
	// NoReshardAfterForward keeps a group's full parameters after AfterForward (torch's
	// reshard_after_forward=False): the backward pass then needs no second all-gather, at the
	// cost of holding every group's full parameters between forward and backward. Where the
	// ranks share memory (see NoSharedMemory) those live once per host: fsdp then maps room for
	// every group's full parameters (and two more groups') up front.
	NoReshardAfterForward bool
	// MixedPrecision sets the compute and reduction dtypes.
	MixedPrecision MixedPrecisionPolicy
	// NoSharedMemory all-gathers every rank's own copy of the full parameters and
	// reduce-scatters gradients through a flat buffer, as torch does, even where the ranks of
	// the shard group could share memory (shared.go: backend shm, the ranks on one host), which
	// moves a fraction of the bytes (but then the full parameters must never be written to).
	NoSharedMemory bool
}

// masterDT is the dtype of the master shards (and of the parameters Shard accepts).
const masterDT = tensor.Float32

// Model is a set of parameter groups sharded over a mesh: what torch's fully_shard makes of a
// module. Its methods are called from one goroutine (the training loop); the only concurrency is
// its own prefetch, which it synchronises.
type Model struct {
	mesh       *mesh.Mesh
	placements []dtensor.Placement
	shardPG    *comm.ProcessGroup // the dimension the parameters are sharded over
	replPG     *comm.ProcessGroup // HSDP's replicate dimension; nil on a 1-D mesh
	n, rank    int                // shard-group size and this rank's place in it
	replRank   int                // this rank's place in the replicate group (0 without one)
	opts       Options
	paramDT    tensor.DType
	reduceDT   tensor.DType
	groups     []*Group
	byName     map[string]*param
	gradSync   bool
	lastReduce *reduction        // the last ReduceGradientsAsync issued (orders HSDP's all-reduces)
	reduceErr  error             // errors of reductions waited for by ZeroGrad, for WaitGradients
	pending    *pendingReduction // a shared reduction published, to finish (shared.go)

	pool      pool          // freed full-size buffers, reused by the next unshard or reduction
	shared    *sharedMemory // slots for full parameters and gradients shared by the shard group; nil: none
	mu        sync.Mutex    // guards the byte counts, which the prefetch goroutines update
	liveBytes int64
	peakBytes int64
}

// Group is one parameter group of a Model: the unit of one all-gather (Unshard) and one
// reduce-scatter (ReduceGradients), like one fully_shard'ed module.
type Group struct {
	model    *Model
	index    int
	params   []*param
	size     int            // elements in this rank's flat shard (padded)
	master   *tensor.Tensor // this rank's flat master shard, float32, size elements
	grad     *tensor.Tensor // flat sharded gradient, float32; nil until ReduceGradients
	spare    *tensor.Tensor // the sharded gradient's memory after ZeroGrad, for the next one
	full     []*tensor.Tensor
	acc      gradAccs   // unsharded gradient accumulators (ReduceDType), empty until Grad
	fetch    *fetch     // an unshard in flight (Prefetch)
	slot     int        // 1 + the shared slot holding the full parameters; 0: none
	fetchErr error      // a failed prefetch that Reshard waited for: the next Unshard returns it
	reducing *reduction // a gradient reduction in flight (ReduceGradientsAsync)
}

// param is one parameter's layout in its group.
type param struct {
	name      string
	group     *Group
	index     int   // in the group
	shape     []int // global
	rowSize   int   // elements per dim-0 row
	chunkRows int   // ceil(dim0/n): rows of the padded shard on every rank
	offset    int   // first element of its padded shard in the group's flat shard
	localRows int   // this rank's true rows (torch.chunk)
	startRow  int   // first global row this rank holds
	sharedAt  int   // where its full value starts in a shared slot, in bytes
	gradAt    int   // where its unsharded gradient starts in a shared gradient region, in bytes
	dt        *dtensor.DTensor
}

// fetch is an unshard started by Prefetch: an all-gather, done once the full parameters are
// ready; or a shared unshard (shared.go), done at once, which Unshard settles.
type fetch struct {
	done   chan struct{}
	full   []*tensor.Tensor
	err    error
	shared *sharedUnshard
}

const opShard = "Shard"

// errorf returns an error that names the op and the rank and wraps comm.ErrInvalidArgument;
// format should end with what to do.
func errorf(op string, rank int, format string, args ...any) error {
	return fmt.Errorf("gccl: fsdp.%s (rank %d): %s: %w", op, rank, fmt.Sprintf(format, args...), comm.ErrInvalidArgument)
}

// opErr wraps err (from a collective) with the op and the rank.
func opErr(op string, rank int, err error) error {
	return fmt.Errorf("gccl: fsdp.%s (rank %d): %w", op, rank, err)
}

// globalRank is this process's rank in the mesh's root group.
func globalRank(m *mesh.Mesh) int {
	if m == nil || m.Parent() == nil {
		return -1
	}
	return m.Parent().Rank()
}

// Shard shards the parameters of groups over m, like torch's fully_shard applied to one module
// per group: every parameter becomes a DTensor sharded on dim 0 (placements [Shard(0)], or
// [Replicate, Shard(0)] on a 2-D mesh for HSDP, whose first dimension replicates and second
// shards), and each rank keeps its torch.chunk of the rows, in float32, in a flat buffer per
// group where every parameter's shard is padded to ceil(dim0/N) rows.
//
// Every rank calls Shard with the same groups (names, shapes and dtypes; the values of rank 0
// are not broadcast: initialise them from the same seed, or call LoadFullStateDict after).
// Shard checks with one small all-gather that the ranks agree. Parameters must be float32 with at
// least one dimension, named uniquely; a group mixing dtypes is rejected (put parameters of
// different dtypes in separate groups). The full tensors passed in are not kept.
func Shard(ctx context.Context, m *mesh.Mesh, groups [][]Param, opts Options) (*Model, error) {
	rank := globalRank(m)
	if m == nil {
		return nil, errorf(opShard, rank, "the mesh is nil; pass a 1-D mesh (FSDP) or a 2-D mesh (HSDP: replicate x shard)")
	}
	md := &Model{mesh: m, opts: opts, byName: map[string]*param{}, gradSync: true}
	switch m.NDim() {
	case 1:
		md.placements = []dtensor.Placement{dtensor.Shard{Dim: 0}}
		md.shardPG, _ = m.GroupAt(0)
	case 2:
		md.placements = []dtensor.Placement{dtensor.Replicate{}, dtensor.Shard{Dim: 0}}
		md.replPG, _ = m.GroupAt(0)
		md.shardPG, _ = m.GroupAt(1)
		md.replRank = md.replPG.Rank()
	default:
		return nil, errorf(opShard, rank, "%s has %d dimensions; pass a 1-D mesh (FSDP) or a 2-D mesh (HSDP: replicate x shard)", m, m.NDim())
	}
	md.n, md.rank = md.shardPG.Size(), md.shardPG.Rank()
	md.paramDT, md.reduceDT = opts.MixedPrecision.ParamDType, opts.MixedPrecision.ReduceDType
	if md.paramDT == tensor.Invalid {
		md.paramDT = masterDT
	}
	if md.reduceDT == tensor.Invalid {
		md.reduceDT = masterDT
	}
	problem := md.checkSpec(groups)
	// The ranks must agree on the groups: compare a fingerprint (and any local problem) across
	// the mesh so that every rank fails the same way instead of hanging in a later collective.
	if err := agree(ctx, md, opShard, fingerprint(groups), problem); err != nil {
		return nil, err
	}
	for gi, ps := range groups {
		g := &Group{model: md, index: gi}
		for pi, p := range ps {
			pr := &param{name: p.Name, group: g, index: pi, shape: p.Tensor.Shape(), offset: g.size}
			pr.rowSize = 1
			for _, s := range pr.shape[1:] {
				pr.rowSize *= s
			}
			pr.chunkRows = (pr.shape[0] + md.n - 1) / md.n
			pr.startRow, pr.localRows = dtensor.ChunkRange(pr.shape[0], md.n, md.rank)
			g.size += pr.chunkRows * pr.rowSize
			g.params = append(g.params, pr)
			md.byName[p.Name] = pr
		}
		g.master = tensor.New(masterDT, g.size)
		for pi, p := range ps {
			pr := g.params[pi]
			src := p.Tensor.Contiguous() // float32, as checkSpec requires
			local, err := src.Narrow(0, pr.startRow, pr.localRows)
			if err != nil {
				return nil, opErr(opShard, rank, err)
			}
			if err := pr.local(g.master).CopyFrom(local); err != nil {
				return nil, opErr(opShard, rank, err)
			}
			if pr.dt, err = dtensor.FromLocal(ctx, pr.local(g.master), m, md.placements,
				dtensor.FromLocalOptions{GlobalShape: pr.shape}); err != nil {
				return nil, opErr(opShard, rank, err)
			}
		}
		md.groups = append(md.groups, g)
		md.account(int64(g.master.NBytes()))
		// Room for what a step cycles through: with prefetch, the current group's full
		// parameters, the next one's and its all-gather output (3 groups' worth, the peak the
		// byte count shows), and a reduction's buffers besides (gradients, reduce-scatter input
		// and output).
		md.pool.limit = max(md.pool.limit, 4*md.n*g.size*max(md.paramDT.Size(), md.reduceDT.Size()))
	}
	var err error
	if md.shared, err = newSharedMemory(ctx, md); err != nil {
		return nil, opErr(opShard, rank, err)
	}
	return md, nil
}

// checkSpec finds what is wrong with groups or the options on this rank ("" if nothing).
func (md *Model) checkSpec(groups [][]Param) string {
	for _, c := range []struct {
		what string
		dt   tensor.DType
	}{{"ParamDType", md.paramDT}, {"ReduceDType", md.reduceDT}} {
		if c.dt != tensor.Float32 && c.dt != tensor.BFloat16 && c.dt != tensor.Float16 {
			return fmt.Sprintf("MixedPrecision.%s %s is not a floating-point compute dtype; use float32, bfloat16 or float16", c.what, c.dt)
		}
	}
	if len(groups) == 0 {
		return "no parameter groups; pass at least one group of parameters"
	}
	seen := map[string]bool{}
	for gi, ps := range groups {
		if len(ps) == 0 {
			return fmt.Sprintf("group %d is empty; drop it or give it parameters", gi)
		}
		for _, p := range ps[1:] {
			if p.Tensor != nil && ps[0].Tensor != nil && p.Tensor.DType() != ps[0].Tensor.DType() {
				return fmt.Sprintf("group %d mixes dtypes: %q is %s but %q is %s; put parameters of different dtypes in separate groups",
					gi, ps[0].Name, ps[0].Tensor.DType(), p.Name, p.Tensor.DType())
			}
		}
		for _, p := range ps {
			switch {
			case p.Name == "":
				return fmt.Sprintf("group %d has a parameter without a name; name every parameter", gi)
			case seen[p.Name]:
				return fmt.Sprintf("parameter %q appears twice; give every parameter one name and one group", p.Name)
			case p.Tensor == nil:
				return fmt.Sprintf("parameter %q is nil; pass its full tensor", p.Name)
			case p.Tensor.Dim() == 0:
				return fmt.Sprintf("parameter %q is a scalar; reshape it to [1] so that it has a dim 0 to shard", p.Name)
			case p.Tensor.DType() != masterDT:
				return fmt.Sprintf("parameter %q is %s; pass float32 master parameters (and MixedPrecision.ParamDType for %s compute)",
					p.Name, p.Tensor.DType(), p.Tensor.DType())
			}
			seen[p.Name] = true
		}
	}
	return ""
}

func fingerprint(groups [][]Param) string {
	var b strings.Builder
	for gi, ps := range groups {
		for _, p := range ps {
			if p.Tensor != nil {
				fmt.Fprintf(&b, "%d:%s:%s%v;", gi, p.Name, p.Tensor.DType(), p.Tensor.Shape())
			}
		}
	}
	return b.String()
}

// agree compares fingerprints and problems across the whole mesh (shard group, then replicate
// group), so that every rank returns the same error.
func agree(ctx context.Context, md *Model, op, fp, problem string) error {
	type info struct {
		Rank        int
		FP, Problem string
	}
	rank := globalRank(md.mesh)
	verdict := func(all []info) string {
		for _, x := range all {
			if x.Problem != "" {
				return fmt.Sprintf("rank %d: %s", x.Rank, x.Problem)
			}
		}
		for _, x := range all {
			if x.FP != all[0].FP {
				return fmt.Sprintf("rank %d's parameter groups differ from rank %d's (%s vs %s); build the same groups, names and shapes on every rank",
					x.Rank, all[0].Rank, abbreviate(x.FP), abbreviate(all[0].FP))
			}
		}
		return ""
	}
	all, err := comm.AllGatherObject(ctx, md.shardPG, info{rank, fp, problem})
	if err != nil {
		return opErr(op, rank, err)
	}
	v := verdict(all)
	if md.replPG != nil {
		vs, err := comm.AllGatherObject(ctx, md.replPG, info{rank, fp, v})
		if err != nil {
			return opErr(op, rank, err)
		}
		v = verdict(vs)
	}
	if v != "" {
		// This rank's own problem is not prefixed with its rank: errorf names it.
		return errorf(op, rank, "%s", strings.TrimPrefix(v, fmt.Sprintf("rank %d: ", rank)))
	}
	return nil
}

func abbreviate(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// local is the view of this rank's true rows of p in a flat shard buffer of its group.
func (p *param) local(flat *tensor.Tensor) *tensor.Tensor {
	v, err := flat.Narrow(0, p.offset, p.localRows*p.rowSize)
	if err != nil {
		panic(err) // the layout was computed from the same sizes
	}
	shape := slices.Clone(p.shape)
	shape[0] = p.localRows
	v, err = v.Reshape(shape...)
	if err != nil {
		panic(err)
	}
	return v
}

func (md *Model) account(delta int64) {
	md.mu.Lock()
	md.liveBytes += delta
	md.peakBytes = max(md.peakBytes, md.liveBytes)
	md.mu.Unlock()
}

// Stats are a Model's parameter-memory counts on this rank, in bytes: the master shards plus
// whatever full parameters and all-gather buffers are alive.
type Stats struct {
	ShardedBytes int64 // the float32 master shards (padded): about 1/N of the model
	LiveBytes    int64 // now: the shards plus the unsharded groups and buffers in flight
	PeakBytes    int64 // the most LiveBytes has been
}

// Stats returns this rank's parameter-memory counts.
func (md *Model) Stats() Stats {
	md.mu.Lock()
	defer md.mu.Unlock()
	var sharded int64
	for _, g := range md.groups {
		sharded += int64(g.master.NBytes())
	}
	return Stats{ShardedBytes: sharded, LiveBytes: md.liveBytes, PeakBytes: md.peakBytes}
}

// ResetPeak sets PeakBytes to LiveBytes (e.g. after a warm-up step).
func (md *Model) ResetPeak() {
	md.mu.Lock()
	md.peakBytes = md.liveBytes
	md.mu.Unlock()
}

// Close unmaps the memory the ranks of the shard group share for full parameters and gradients
// (see Options.NoSharedMemory), which otherwise goes when the process exits. Tensors handed out
// by Param and Grad must not be used after, nor the model.
func (md *Model) Close() {
	if md.shared != nil {
		md.shared.close()
		md.shared = nil
	}
}

// Mesh is the mesh the model is sharded over.
func (md *Model) Mesh() *mesh.Mesh { return md.mesh }

// Groups lists the parameter groups in the order given to Shard.
func (md *Model) Groups() []*Group { return slices.Clone(md.groups) }

// Group returns group i (in the order given to Shard).
func (md *Model) Group(i int) *Group { return md.groups[i] }

// GroupOf returns the group that holds the named parameter, or nil.
func (md *Model) GroupOf(name string) *Group {
	if p := md.byName[name]; p != nil {
		return p.group
	}
	return nil
}

// Sharded returns the named parameter's master shard as a DTensor ([Shard(0)], or [Replicate,
// Shard(0)] for HSDP), whose local tensor is a view of this rank's true rows: writes through it
// change the model. Nil for an unknown name.
func (md *Model) Sharded(name string) *dtensor.DTensor {
	if p := md.byName[name]; p != nil {
		return p.dt
	}
	return nil
}

// SetRequiresGradientSync turns gradient synchronisation off (false) for gradient accumulation
// without communication, like torch's set_requires_gradient_sync: ReduceGradients then leaves the
// unsharded gradients in place, and the next backward adds to them; turn it on again before the
// last micro-batch's ReduceGradients, which reduces the sum.
func (md *Model) SetRequiresGradientSync(on bool) { md.gradSync = on }

// Index is the group's position in the model.
func (g *Group) Index() int { return g.index }

// Names lists the group's parameter names, in order.
func (g *Group) Names() []string {
	out := make([]string, len(g.params))
	for i, p := range g.params {
		out[i] = p.name
	}
	return out
}

// ShardSize is the number of elements in this rank's padded flat shard of the group: the same on
// every rank, so the all-gather and the reduce-scatter move equal blocks.
func (g *Group) ShardSize() int { return g.size }

// param looks the named parameter up in the group (through the model's index: names are unique
// across the model).
func (g *Group) param(op, name string) (*param, error) {
	if p := g.model.byName[name]; p != nil && p.group == g {
		return p, nil
	}
	return nil, errorf(op, globalRank(g.model.mesh), "group %d has no parameter %q (it has %s); ask the group that holds it (Model.GroupOf)",
		g.index, name, strings.Join(g.Names(), ", "))
}
