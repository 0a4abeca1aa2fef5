package comm

import (
	"context"
	"fmt"
	"sync"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// ReduceOp is how values from different ranks combine.
type ReduceOp = tensor.ReduceOp

// The reduce ops. Avg divides the sum by the group size (integers: truncating); PreMulSum is
// created with PreMulSum(factor).
const (
	Sum     = tensor.Sum
	Avg     = tensor.Avg
	Product = tensor.Product
	Min     = tensor.Min
	Max     = tensor.Max
	BAnd    = tensor.BAnd
	BOr     = tensor.BOr
	BXor    = tensor.BXor
)

// Reduction is a reduce op with its parameters (PreMulSum's factor). Most calls take a plain
// ReduceOp; AllReduceWith and friends take a Reduction.
type Reduction struct {
	Op     ReduceOp
	Factor float64 // PreMulSum: every rank's input is multiplied by Factor before the sum
}

// PreMulSum is the reduction that scales every input by factor, then sums (NCCL's
// ncclRedOpCreatePreMulSum, PyTorch's _make_nccl_premul_sum).
func PreMulSum(factor float64) Reduction { return Reduction{Op: tensor.PreMulSum, Factor: factor} }

// check validates the common properties of every tensor argument of an op.
func (pg *ProcessGroup) checkTensor(kind backends.OpKind, what string, t *tensor.Tensor) error {
	if t == nil {
		return pg.invalid(kind, "%s is nil", what)
	}
	if !t.DType().Valid() {
		return pg.invalid(kind, "%s has an invalid dtype", what)
	}
	if !t.IsContiguous() {
		return pg.invalid(kind, "%s (%v) is not contiguous: pass t.Contiguous() (and copy the result back)", what, t.Shape())
	}
	if dev := t.Device(); !dev.IsCPU() {
		dg, ok := pg.backend.(backends.DeviceGroup)
		if !ok {
			return pg.invalid(kind, "%s is on device %v; the %s backend cannot move it: copy it to the host first, or use a backend for the device (xccl for xpu)", what, dev, pg.backendName)
		}
		if !dg.SupportsDevice(dev) {
			return pg.invalid(kind, "%s is on device %v, which this %s group does not run on: pass a tensor on the group's device (xccl: the device it was created for, GCCL_XCCL_DEVICE), or copy it to the host", what, dev, pg.backendName)
		}
	}
	return nil
}

// checkSameDevice refuses an op whose tensors are on different devices (host and device, or
// two devices).
func (pg *ProcessGroup) checkSameDevice(kind backends.OpKind, aName string, a *tensor.Tensor, bName string, b *tensor.Tensor) error {
	if a.Device() != b.Device() {
		return pg.invalid(kind, "the %s is on %v but the %s is on %v: pass the tensors of one op on one device (all on the host, or all on the group's device)",
			aName, a.Device(), bName, b.Device())
	}
	return nil
}

func (pg *ProcessGroup) checkSameDType(kind backends.OpKind, a, b *tensor.Tensor) error {
	if a.DType() != b.DType() {
		return pg.invalid(kind, "the input is %s but the output is %s: pass tensors of one dtype", a.DType(), b.DType())
	}
	return nil
}

func (pg *ProcessGroup) checkRoot(kind backends.OpKind, what string, root int) error {
	if root < 0 || root >= pg.size {
		return pg.invalid(kind, "%s %d is out of range: the group has ranks 0..%d", what, root, pg.size-1)
	}
	return nil
}

// lowerReduce validates a reduction for t's dtype and lowers it to what backends run, with what
// is left for comm to do around it (preScale, postDivide): on the host, Avg and PreMulSum become
// Sum, with a scale before or a division after. comm cannot touch device memory, so a device
// tensor's Avg goes to the backend as Avg (which runs it, or says it cannot), and PreMulSum is
// refused. It sets op's Reduce (what the backend runs) and AskedReduce (red's op, which the
// backends' fingerprints compare too).
func (pg *ProcessGroup) lowerReduce(kind backends.OpKind, red Reduction, t *tensor.Tensor, op *backends.Op) (Reduction, error) {
	if err := tensor.CheckReduce(red.Op, t.DType()); err != nil {
		return red, pg.invalid(kind, "%v", err)
	}
	if red.Factor != 0 && red.Op != tensor.PreMulSum {
		return red, pg.invalid(kind, "a Factor (%g) with reduce op %s, which takes none: use PreMulSum(%g), or leave Factor 0", red.Factor, red.Op, red.Factor)
	}
	op.Reduce, op.AskedReduce = red.Op, red.Op
	if t.IsDevice() {
		if red.Op == tensor.PreMulSum {
			return red, pg.opError(kind, 0, fmt.Errorf("%w: PREMUL_SUM on %v tensors: gccl cannot scale device memory (it has no SYCL kernels): multiply the input by %g on the device, then pass SUM",
				ErrUnsupported, t.Device(), red.Factor))
		}
		return Reduction{Op: tensor.Sum}, nil
	}
	switch red.Op {
	case tensor.Avg, tensor.PreMulSum:
		op.Reduce = tensor.Sum
	}
	return red, nil
}

// preScale and postDivide implement PreMulSum and Avg around a Sum (in place on t).
func (pg *ProcessGroup) preScale(red Reduction, t *tensor.Tensor) error {
	if red.Op == tensor.PreMulSum {
		return tensor.Scale(t.DType(), t.Bytes(), red.Factor)
	}
	return nil
}

func (pg *ProcessGroup) postDivide(red Reduction, t *tensor.Tensor) error {
	if red.Op == tensor.Avg {
		return tensor.DivideBy(t.DType(), t.Bytes(), pg.size)
	}
	return nil
}

// --- AllReduce ---

// AllReduce reduces t across the group in place: afterwards every rank holds the same result.
func (pg *ProcessGroup) AllReduce(ctx context.Context, t *tensor.Tensor, op ReduceOp) error {
	return pg.AllReduceWith(ctx, t, Reduction{Op: op})
}

// AllReduceWith is AllReduce with a parameterised reduction (PreMulSum).
func (pg *ProcessGroup) AllReduceWith(ctx context.Context, t *tensor.Tensor, red Reduction) error {
	var req request
	if err := pg.allReduceReq(&req, t, red); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// AllReduceAsync issues AllReduce and returns at once.
func (pg *ProcessGroup) AllReduceAsync(t *tensor.Tensor, op ReduceOp) *Work {
	req := new(request)
	if err := pg.allReduceReq(req, t, Reduction{Op: op}); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

// allReduceReq validates an all-reduce and fills req, which is the zero request.
func (pg *ProcessGroup) allReduceReq(req *request, t *tensor.Tensor, red Reduction) error {
	const kind = backends.OpAllReduce
	if err := pg.checkTensor(kind, "tensor", t); err != nil {
		return err
	}
	red, err := pg.lowerReduce(kind, red, t, &req.op)
	if err != nil {
		return err
	}
	// Field by field into the zero request: a composite literal is built on the stack and
	// copied whole (~200 bytes), on the latency path of every small all-reduce.
	req.red, req.in, req.out = red, t, t
	req.op.Kind, req.op.DType, req.op.Count = kind, t.DType(), t.Numel()
	return nil
}

// --- Broadcast ---

// Broadcast copies root's t into t on every rank.
func (pg *ProcessGroup) Broadcast(ctx context.Context, t *tensor.Tensor, root int) error {
	var req request
	if err := pg.broadcastReq(&req, t, root); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// BroadcastAsync issues Broadcast and returns at once.
func (pg *ProcessGroup) BroadcastAsync(t *tensor.Tensor, root int) *Work {
	req := new(request)
	if err := pg.broadcastReq(req, t, root); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

func (pg *ProcessGroup) broadcastReq(req *request, t *tensor.Tensor, root int) error {
	const kind = backends.OpBroadcast
	if err := pg.checkTensor(kind, "tensor", t); err != nil {
		return err
	}
	if err := pg.checkRoot(kind, "root", root); err != nil {
		return err
	}
	*req = request{in: t, out: t, op: backends.Op{Kind: kind, DType: t.DType(), Count: t.Numel(), Root: root}}
	return nil
}

// --- Reduce ---

// Reduce reduces t across the group into t on root (in place, like torch.distributed.reduce).
// On other ranks t is left unchanged.
func (pg *ProcessGroup) Reduce(ctx context.Context, t *tensor.Tensor, root int, op ReduceOp) error {
	var req request
	if err := pg.reduceReq(&req, t, root, Reduction{Op: op}); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// ReduceAsync issues Reduce and returns at once.
func (pg *ProcessGroup) ReduceAsync(t *tensor.Tensor, root int, op ReduceOp) *Work {
	req := new(request)
	if err := pg.reduceReq(req, t, root, Reduction{Op: op}); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

func (pg *ProcessGroup) reduceReq(req *request, t *tensor.Tensor, root int, red Reduction) error {
	const kind = backends.OpReduce
	if err := pg.checkTensor(kind, "tensor", t); err != nil {
		return err
	}
	if err := pg.checkRoot(kind, "root", root); err != nil {
		return err
	}
	op := backends.Op{Kind: kind, DType: t.DType(), Count: t.Numel(), Root: root}
	red, err := pg.lowerReduce(kind, red, t, &op)
	if err != nil {
		return err
	}
	*req = request{red: red, in: t, out: t, op: op}
	return nil
}

// --- AllGather ---

// AllGather concatenates every rank's in, in rank order, into out (torch's
// all_gather_into_tensor): out has Size() times in's elements. in may be the view of out at
// this rank's slot (in place).
func (pg *ProcessGroup) AllGather(ctx context.Context, out, in *tensor.Tensor) error {
	var req request
	if err := pg.allGatherReq(&req, out, in); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// AllGatherAsync issues AllGather and returns at once.
func (pg *ProcessGroup) AllGatherAsync(out, in *tensor.Tensor) *Work {
	req := new(request)
	if err := pg.allGatherReq(req, out, in); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

func (pg *ProcessGroup) allGatherReq(req *request, out, in *tensor.Tensor) error {
	const kind = backends.OpAllGather
	if err := pg.checkPair(kind, out, in, true); err != nil {
		return err
	}
	*req = request{in: in, out: out, op: backends.Op{Kind: kind, DType: in.DType(), Count: in.Numel()}}
	return nil
}

// checkPair validates out and in where one of them (the output when outIsLarge, else the
// input) holds Size() times the other's elements. They may share storage only in place: the
// smaller is exactly this rank's slot of the larger.
func (pg *ProcessGroup) checkPair(kind backends.OpKind, out, in *tensor.Tensor, outIsLarge bool) error {
	if err := pg.checkTensor(kind, "input", in); err != nil {
		return err
	}
	if err := pg.checkTensor(kind, "output", out); err != nil {
		return err
	}
	if err := pg.checkSameDType(kind, in, out); err != nil {
		return err
	}
	if err := pg.checkSameDevice(kind, "input", in, "output", out); err != nil {
		return err
	}
	large, small, largeName, smallName := out, in, "output", "input"
	if !outIsLarge {
		large, small, largeName, smallName = in, out, "input", "output"
	}
	if large.Numel() != small.Numel()*pg.size {
		return pg.invalid(kind, "the %s has %d elements but must have %d (group size %d x the %s's %d)",
			largeName, large.Numel(), small.Numel()*pg.size, pg.size, smallName, small.Numel())
	}
	if in.Overlaps(out) && small.Numel() > 0 && !isSlot(large, small, pg.rank) {
		return pg.invalid(kind, "the input and output overlap: in place, the %s must be the view of this rank's slot (rank %d) of the %s; otherwise pass separate tensors",
			smallName, pg.rank, largeName)
	}
	return nil
}

// isSlot reports whether small is exactly slot r of large (both contiguous, on one device,
// large holding Size() times small's elements).
func isSlot(large, small *tensor.Tensor, r int) bool {
	if small.IsDevice() {
		return small.DevicePointer() == large.DevicePointer()+uintptr(r*small.NBytes())
	}
	lb, sb := large.Bytes(), small.Bytes()
	slot := lb[r*len(sb) : (r+1)*len(sb)]
	return &slot[0] == &sb[0]
}

// AllGatherList gathers every rank's in into outs[r] (torch's all_gather with a list).
func (pg *ProcessGroup) AllGatherList(ctx context.Context, outs []*tensor.Tensor, in *tensor.Tensor) error {
	var req request
	if err := pg.allGatherListReq(&req, outs, in); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// AllGatherListAsync issues AllGatherList and returns at once.
func (pg *ProcessGroup) AllGatherListAsync(outs []*tensor.Tensor, in *tensor.Tensor) *Work {
	req := new(request)
	if err := pg.allGatherListReq(req, outs, in); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

func (pg *ProcessGroup) allGatherListReq(req *request, outs []*tensor.Tensor, in *tensor.Tensor) error {
	const kind = backends.OpAllGather
	if err := pg.checkList(kind, "output list", outs, in); err != nil {
		return err
	}
	if in.IsDevice() {
		return pg.opError(kind, 0, fmt.Errorf("%w: AllGatherList of %v tensors: gccl cannot copy between device buffers (it has no SYCL kernels): all-gather into one output of %d x the input with AllGather and take its Chunk(%d, 0) views",
			ErrUnsupported, in.Device(), pg.size, pg.size))
	}
	for i, o := range outs {
		for j := range i {
			if o.Overlaps(outs[j]) {
				return pg.invalid(kind, "outputs %d and %d overlap in memory (one rank's data would overwrite another's): give each rank a tensor of its own", j, i)
			}
		}
	}
	flat := tensor.New(in.DType(), pg.size*in.Numel())
	if err := pg.allGatherReq(req, flat, in); err != nil {
		return err
	}
	req.list = outs
	return nil
}

func (pg *ProcessGroup) checkList(kind backends.OpKind, what string, list []*tensor.Tensor, like *tensor.Tensor) error {
	if err := pg.checkTensor(kind, "input", like); err != nil {
		return err
	}
	if len(list) != pg.size {
		return pg.invalid(kind, "the %s has %d tensors; it needs one per rank (%d)", what, len(list), pg.size)
	}
	for i, t := range list {
		if t == nil {
			return pg.invalid(kind, "%s[%d] is nil", what, i)
		}
		if t.DType() != like.DType() || t.Numel() != like.Numel() {
			return pg.invalid(kind, "%s[%d] is %d x %s but must match the single tensor (%d x %s)",
				what, i, t.Numel(), t.DType(), like.Numel(), like.DType())
		}
		if t.Device() != like.Device() { // the name is built only for the error
			return pg.checkSameDevice(kind, fmt.Sprintf("%s[%d]", what, i), t, "single tensor", like)
		}
	}
	return nil
}

// scatterFlat copies consecutive slots of flat into the list.
func scatterFlat(flat *tensor.Tensor, list []*tensor.Tensor) {
	b := flat.Bytes()
	off := 0
	for _, t := range list {
		n := t.NBytes()
		src, _ := tensor.FromBytes(t.DType(), b[off:off+n], t.Shape()...)
		_ = t.CopyFrom(src)
		off += n
	}
}

// gatherFlat concatenates the list into a new flat tensor.
func gatherFlat(list []*tensor.Tensor) *tensor.Tensor {
	n := 0
	for _, t := range list {
		n += t.Numel()
	}
	flat := tensor.New(list[0].DType(), n)
	b := flat.Bytes()
	off := 0
	for _, t := range list {
		off += copy(b[off:], t.Contiguous().Bytes())
	}
	return flat
}

// --- Gather and Scatter ---

// Gather concatenates every rank's in into out on root (out has Size() times in's elements);
// out is ignored (may be nil) on other ranks.
func (pg *ProcessGroup) Gather(ctx context.Context, out, in *tensor.Tensor, root int) error {
	var req request
	if err := pg.gatherReq(&req, out, in, root); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// GatherAsync issues Gather and returns at once.
func (pg *ProcessGroup) GatherAsync(out, in *tensor.Tensor, root int) *Work {
	req := new(request)
	if err := pg.gatherReq(req, out, in, root); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

func (pg *ProcessGroup) gatherReq(req *request, out, in *tensor.Tensor, root int) error {
	const kind = backends.OpGather
	if err := pg.checkRoot(kind, "root", root); err != nil {
		return err
	}
	if pg.rank == root {
		if err := pg.checkPair(kind, out, in, true); err != nil {
			return err
		}
	} else {
		if err := pg.checkTensor(kind, "input", in); err != nil {
			return err
		}
		out = nil
	}
	*req = request{in: in, out: out, op: backends.Op{Kind: kind, DType: in.DType(), Count: in.Numel(), Root: root}}
	return nil
}

// Scatter sends slot r of root's in (Size() times out's elements) to rank r's out; in is
// ignored (may be nil) on other ranks.
func (pg *ProcessGroup) Scatter(ctx context.Context, out, in *tensor.Tensor, root int) error {
	var req request
	if err := pg.scatterReq(&req, out, in, root); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// ScatterAsync issues Scatter and returns at once.
func (pg *ProcessGroup) ScatterAsync(out, in *tensor.Tensor, root int) *Work {
	req := new(request)
	if err := pg.scatterReq(req, out, in, root); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

func (pg *ProcessGroup) scatterReq(req *request, out, in *tensor.Tensor, root int) error {
	const kind = backends.OpScatter
	if err := pg.checkRoot(kind, "root", root); err != nil {
		return err
	}
	if pg.rank == root {
		if err := pg.checkPair(kind, out, in, false); err != nil {
			return err
		}
	} else {
		if err := pg.checkTensor(kind, "output", out); err != nil {
			return err
		}
		in = nil
	}
	*req = request{in: in, out: out, op: backends.Op{Kind: kind, DType: out.DType(), Count: out.Numel(), Root: root}}
	return nil
}

// --- ReduceScatter ---

// ReduceScatter reduces in (Size() times out's elements) across the group and leaves slot r of
// the result in rank r's out (torch's reduce_scatter_tensor). out may be the view of in at this
// rank's slot (in place).
func (pg *ProcessGroup) ReduceScatter(ctx context.Context, out, in *tensor.Tensor, op ReduceOp) error {
	var req request
	if err := pg.reduceScatterReq(&req, out, in, Reduction{Op: op}); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// ReduceScatterWith is ReduceScatter with a parameterised reduction (PreMulSum).
func (pg *ProcessGroup) ReduceScatterWith(ctx context.Context, out, in *tensor.Tensor, red Reduction) error {
	var req request
	if err := pg.reduceScatterReq(&req, out, in, red); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// ReduceScatterAsync issues ReduceScatter and returns at once.
func (pg *ProcessGroup) ReduceScatterAsync(out, in *tensor.Tensor, op ReduceOp) *Work {
	req := new(request)
	if err := pg.reduceScatterReq(req, out, in, Reduction{Op: op}); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

func (pg *ProcessGroup) reduceScatterReq(req *request, out, in *tensor.Tensor, red Reduction) error {
	const kind = backends.OpReduceScatter
	if err := pg.checkPair(kind, out, in, false); err != nil {
		return err
	}
	op := backends.Op{Kind: kind, DType: in.DType(), Count: out.Numel()}
	red, err := pg.lowerReduce(kind, red, in, &op)
	if err != nil {
		return err
	}
	*req = request{red: red, in: in, out: out, op: op}
	return nil
}

// ReduceScatterList reduces ins[r] across the group into rank r's out (torch's reduce_scatter
// with a list).
func (pg *ProcessGroup) ReduceScatterList(ctx context.Context, out *tensor.Tensor, ins []*tensor.Tensor, op ReduceOp) error {
	const kind = backends.OpReduceScatter
	if err := pg.checkList(kind, "input list", ins, out); err != nil {
		return err
	}
	if out.IsDevice() {
		return pg.opError(kind, 0, fmt.Errorf("%w: ReduceScatterList of %v tensors: gccl cannot copy between device buffers (it has no SYCL kernels): lay the inputs out in one tensor of %d x the output and pass it to ReduceScatter",
			ErrUnsupported, out.Device(), pg.size))
	}
	flat := gatherFlat(ins)
	var req request
	if err := pg.reduceScatterReq(&req, out, flat, Reduction{Op: op}); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// --- AllToAll ---

// AllToAll splits in into Size() equal blocks, sends block r to rank r, and concatenates the
// blocks received, in rank order, into out (torch's all_to_all_single without split sizes).
func (pg *ProcessGroup) AllToAll(ctx context.Context, out, in *tensor.Tensor) error {
	var req request
	if err := pg.allToAllReq(&req, out, in, nil, nil); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// AllToAllSplits is AllToAll with uneven blocks: inSplits[r] rows (dim-0 slices) of in go to
// rank r, and outSplits[r] rows of out come from rank r (torch's all_to_all_single with
// split sizes). The peers' splits must agree: rank a's inSplits[b] == rank b's outSplits[a].
func (pg *ProcessGroup) AllToAllSplits(ctx context.Context, out, in *tensor.Tensor, outSplits, inSplits []int) error {
	var req request
	if err := pg.allToAllReq(&req, out, in, outSplits, inSplits); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// AllToAllAsync issues AllToAllSplits (nil splits: equal blocks) and returns at once.
func (pg *ProcessGroup) AllToAllAsync(out, in *tensor.Tensor, outSplits, inSplits []int) *Work {
	req := new(request)
	if err := pg.allToAllReq(req, out, in, outSplits, inSplits); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

func (pg *ProcessGroup) allToAllReq(req *request, out, in *tensor.Tensor, outSplits, inSplits []int) error {
	const kind = backends.OpAllToAll
	if err := pg.checkTensor(kind, "input", in); err != nil {
		return err
	}
	if err := pg.checkTensor(kind, "output", out); err != nil {
		return err
	}
	if err := pg.checkSameDType(kind, in, out); err != nil {
		return err
	}
	if err := pg.checkSameDevice(kind, "input", in, "output", out); err != nil {
		return err
	}
	if in.Overlaps(out) {
		return pg.invalid(kind, "the input and output overlap: all-to-all cannot run in place; pass a separate output")
	}
	if inSplits == nil && outSplits == nil && in.Numel() != out.Numel() {
		return pg.invalid(kind, "without split sizes every block is the same size, but the input has %d elements and the output %d: make them equal, or pass split sizes", in.Numel(), out.Numel())
	}
	inEl, err := pg.splitElems(kind, "input", in, inSplits)
	if err != nil {
		return err
	}
	outEl, err := pg.splitElems(kind, "output", out, outSplits)
	if err != nil {
		return err
	}
	if r := pg.rank; inEl[r] != outEl[r] {
		return pg.invalid(kind, "this rank's block for itself differs in size: inSplits[%d] gives it %d elements of the input, outSplits[%d] %d of the output; make them equal", r, inEl[r], r, outEl[r])
	}
	*req = request{in: in, out: out, inEl: inEl, outEl: outEl,
		op: backends.Op{Kind: kind, DType: in.DType(), Count: in.Numel(), EqualSplits: inSplits == nil && outSplits == nil}}
	return nil
}

// splitElems turns dim-0 row splits into element counts, checking they cover t exactly. nil
// splits mean equal blocks.
func (pg *ProcessGroup) splitElems(kind backends.OpKind, what string, t *tensor.Tensor, splits []int) ([]int, error) {
	el := make([]int, pg.size)
	if splits == nil {
		if t.Numel()%pg.size != 0 {
			return nil, pg.invalid(kind, "the %s has %d elements, not divisible by the group size %d: pass split sizes", what, t.Numel(), pg.size)
		}
		for i := range el {
			el[i] = t.Numel() / pg.size
		}
		return el, nil
	}
	if len(splits) != pg.size {
		return nil, pg.invalid(kind, "%d %s split sizes for a group of %d: give one per rank", len(splits), what, pg.size)
	}
	rows, row := 1, 1
	if t.Dim() > 0 {
		shape := t.Shape()
		rows = shape[0]
		row = t.Numel() / max(rows, 1)
		if rows == 0 {
			row = 0
		}
	}
	sum := 0
	for i, s := range splits {
		if s < 0 {
			return nil, pg.invalid(kind, "%s split size %d for rank %d is negative", what, s, i)
		}
		sum += s
		el[i] = s * row
	}
	if sum != rows {
		return nil, pg.invalid(kind, "the %s split sizes add up to %d rows but the %s has %d", what, sum, what, rows)
	}
	return el, nil
}

// --- Barrier ---

// Barrier returns once every rank of the group has entered it.
func (pg *ProcessGroup) Barrier(ctx context.Context) error {
	req := request{op: backends.Op{Kind: backends.OpBarrier, DType: tensor.Uint8}}
	return pg.execute(ctx, &req)
}

// BarrierAsync issues Barrier and returns at once.
func (pg *ProcessGroup) BarrierAsync() *Work {
	return pg.enqueue(&request{op: backends.Op{Kind: backends.OpBarrier, DType: tensor.Uint8}})
}

// --- Send and Recv ---

// Send sends t to group rank dst with tag. Messages between two ranks with the same tag arrive
// in order; different tags may be received in any order.
func (pg *ProcessGroup) Send(ctx context.Context, t *tensor.Tensor, dst, tag int) error {
	var req request
	if err := pg.p2pReq(&req, backends.OpSend, t, dst, tag); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// SendAsync issues Send and returns at once (torch's isend). When no op of the group is pending
// and the backend can take the whole message without waiting for dst (shm, when the message fits
// the mailbox to dst), the send is done before SendAsync returns: its Work is complete, and t may
// be reused at once. Otherwise the group's worker sends it, after the ops issued before it.
func (pg *ProcessGroup) SendAsync(t *tensor.Tensor, dst, tag int) *Work {
	req := new(request)
	if err := pg.p2pReq(req, backends.OpSend, t, dst, tag); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

// Recv receives into t the next message from group rank src with tag.
func (pg *ProcessGroup) Recv(ctx context.Context, t *tensor.Tensor, src, tag int) error {
	var req request
	if err := pg.p2pReq(&req, backends.OpRecv, t, src, tag); err != nil {
		return err
	}
	return pg.execute(ctx, &req)
}

// RecvAsync issues Recv and returns at once (torch's irecv).
func (pg *ProcessGroup) RecvAsync(t *tensor.Tensor, src, tag int) *Work {
	req := new(request)
	if err := pg.p2pReq(req, backends.OpRecv, t, src, tag); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(req)
}

// P2POp is one send or receive of a batch that BatchSendRecv runs (torch.distributed.P2POp); make
// one with SendOp or RecvOp.
type P2POp struct {
	Recv   bool           // false: send Tensor to Peer; true: receive into Tensor from Peer
	Tensor *tensor.Tensor // what is sent, or the buffer a receive fills
	Peer   int            // group rank of the destination or source
	Tag    int            // matches a send with a receive, as Send's and Recv's (>= 0)
}

// SendOp is a send of t to group rank dst with tag, for BatchSendRecv.
func SendOp(t *tensor.Tensor, dst, tag int) P2POp { return P2POp{Tensor: t, Peer: dst, Tag: tag} }

// RecvOp is a receive into t from group rank src with tag, for BatchSendRecv.
func RecvOp(t *tensor.Tensor, src, tag int) P2POp {
	return P2POp{Recv: true, Tensor: t, Peer: src, Tag: tag}
}

// BatchSendRecv runs the sends and receives of ops together, as one op of the group (torch's
// batch_isend_irecv, NCCL's grouped send and receive): no op of the batch waits for another, so
// ranks that exchange messages (a pipeline's stages, a halo exchange) can send and receive at
// once whatever the order of ops on each rank. Messages to or from one peer with one tag keep
// their order in ops. On shm and gloo a message lands straight in its receive's buffer; xccl runs
// the sends, then the receives. The flight recorder has an entry per send and receive, which
// share the batch's sequence number, as PyTorch's do.
func (pg *ProcessGroup) BatchSendRecv(ctx context.Context, ops []P2POp) error {
	br := batchPool.Get().(*batchRequest)
	if err := pg.batchReq(br, ops); err != nil {
		return err
	}
	err := pg.execute(ctx, &br.request)
	if err == nil { // else the backend may still hold the ops (an op that timed out)
		*br = batchRequest{}
		batchPool.Put(br)
	}
	return err
}

// BatchSendRecvAsync issues BatchSendRecv and returns at once; its Work completes when every op
// of the batch has.
func (pg *ProcessGroup) BatchSendRecvAsync(ops []P2POp) *Work {
	br := new(batchRequest)
	if err := pg.batchReq(br, ops); err != nil {
		return failedWork(err)
	}
	return pg.enqueue(&br.request)
}

// batchRequest is the request of a small batch with room for its ops and their flight-recorder
// ids, so that a batch takes one allocation, or none from batchPool (the synchronous call).
type batchRequest struct {
	request
	ops [4]backends.P2P
	ids [4]uint64
}

var batchPool = sync.Pool{New: func() any { return new(batchRequest) }}

// batchReq validates ops (as Send and Recv would, naming the op that is wrong) and fills br, a
// zero batchRequest.
func (pg *ProcessGroup) batchReq(br *batchRequest, ops []P2POp) error {
	if len(ops) == 0 {
		return pg.invalid(backends.OpSendRecvBatch, "no op given: pass at least one SendOp or RecvOp")
	}
	req := &br.request
	req.op = backends.Op{Kind: backends.OpSendRecvBatch}
	req.batch, req.batchRecords = br.ops[:0], br.ids[:0]
	if len(ops) > len(br.ops) {
		req.batch, req.batchRecords = make([]backends.P2P, 0, len(ops)), make([]uint64, 0, len(ops))
	}
	req.batch = req.batch[:len(ops)]
	for i, o := range ops {
		kind := backends.OpSend
		if o.Recv {
			kind = backends.OpRecv
		}
		op, err := pg.p2pOp(kind, o.Tensor, o.Peer, o.Tag)
		if err != nil {
			return fmt.Errorf("%w (op %d of the %d of a %s)", err, i, len(ops), backends.OpSendRecvBatch)
		}
		req.batch[i] = backends.P2P{Op: op, Buf: o.Tensor}
		for j, prev := range req.batch[:i] {
			if (prev.Op.Kind == backends.OpRecv || kind == backends.OpRecv) && prev.Buf.Overlaps(o.Tensor) {
				return pg.invalid(backends.OpSendRecvBatch, "ops %d and %d overlap in memory, and one receives into it: give each receive a buffer of its own", j, i)
			}
		}
	}
	return nil
}

func (pg *ProcessGroup) p2pReq(req *request, kind backends.OpKind, t *tensor.Tensor, peer, tag int) error {
	op, err := pg.p2pOp(kind, t, peer, tag)
	if err != nil {
		return err
	}
	*req = request{op: op}
	if kind == backends.OpSend {
		req.in = t
	} else {
		req.out = t
	}
	return nil
}

// p2pOp validates a send (to peer) or receive (from peer) of t, and returns it.
func (pg *ProcessGroup) p2pOp(kind backends.OpKind, t *tensor.Tensor, peer, tag int) (backends.Op, error) {
	if err := pg.checkTensor(kind, "tensor", t); err != nil {
		return backends.Op{}, err
	}
	what := "destination"
	if kind == backends.OpRecv {
		what = "source"
	}
	if err := pg.checkRoot(kind, what, peer); err != nil {
		return backends.Op{}, err
	}
	if peer == pg.rank {
		return backends.Op{}, pg.invalid(kind, "the %s is this rank (%d): a rank cannot send to or receive from itself", what, peer)
	}
	if tag < 0 {
		return backends.Op{}, pg.invalid(kind, "tag %d is negative", tag)
	}
	return backends.Op{Kind: kind, DType: t.DType(), Count: t.Numel(), Peer: peer, Tag: tag}, nil
}

// sendRecvBatch runs a batch on the backend: all at once on a BatchSendRecver, else its sends in
// order, then its receives in order.
func (pg *ProcessGroup) sendRecvBatch(ctx context.Context, req *request) error {
	for i := range req.batch {
		req.batch[i].Op.Seq = req.op.Seq
	}
	if b, ok := pg.backend.(backends.BatchSendRecver); ok {
		return b.SendRecv(ctx, req.batch)
	}
	for _, kind := range []backends.OpKind{backends.OpSend, backends.OpRecv} {
		for i, p := range req.batch {
			if p.Op.Kind != kind {
				continue
			}
			var err error
			if kind == backends.OpSend {
				err = pg.backend.Send(ctx, p.Op, p.Buf)
			} else {
				err = pg.backend.Recv(ctx, p.Op, p.Buf)
			}
			if err != nil {
				return fmt.Errorf("op %d of %d (%s with peer %d, tag %d): %w", i, len(req.batch), kind, p.Op.Peer, p.Op.Tag, err)
			}
		}
	}
	return nil
}

// call runs a validated request on the backend: the one place where comm's ops meet the
// backend contract (Avg and PreMulSum lowered around a Sum, list outputs copied back).
func (pg *ProcessGroup) call(ctx context.Context, req *request) error {
	op, in, out, red := req.op, req.in, req.out, req.red
	b := pg.backend
	switch op.Kind {
	case backends.OpAllReduce:
		if err := pg.preScale(red, in); err != nil {
			return err
		}
		if err := b.AllReduce(ctx, op, in, out); err != nil {
			return err
		}
		return pg.postDivide(red, out)
	case backends.OpBroadcast:
		return b.Broadcast(ctx, op, in)
	case backends.OpReduce:
		src := in
		if red.Op == tensor.PreMulSum && pg.rank != op.Root {
			src = in.Clone() // leave non-root inputs unchanged
		}
		if err := pg.preScale(red, src); err != nil {
			return err
		}
		var dst *tensor.Tensor
		if pg.rank == op.Root {
			dst = out
		}
		if err := b.Reduce(ctx, op, src, dst); err != nil {
			return err
		}
		if dst != nil {
			return pg.postDivide(red, dst)
		}
		return nil
	case backends.OpAllGather:
		if err := b.AllGather(ctx, op, in, out); err != nil {
			return err
		}
		if req.list != nil {
			scatterFlat(out, req.list)
		}
		return nil
	case backends.OpGather:
		return b.Gather(ctx, op, in, out)
	case backends.OpScatter:
		return b.Scatter(ctx, op, in, out)
	case backends.OpReduceScatter:
		src := in
		if red.Op == tensor.PreMulSum {
			src = in.Clone()
			if err := pg.preScale(red, src); err != nil {
				return err
			}
			if in.Overlaps(out) { // in place: the output is a view of the scaled copy's slot
				per := out.NBytes()
				tmp, _ := tensor.FromBytes(out.DType(), src.Bytes()[pg.rank*per:(pg.rank+1)*per], out.Shape()...)
				if err := b.ReduceScatter(ctx, op, src, tmp); err != nil {
					return err
				}
				copy(out.Bytes(), tmp.Bytes())
				return nil
			}
		}
		if err := b.ReduceScatter(ctx, op, src, out); err != nil {
			return err
		}
		return pg.postDivide(red, out)
	case backends.OpAllToAll:
		return b.AllToAll(ctx, op, in, out, req.inEl, req.outEl)
	case backends.OpBarrier:
		return b.Barrier(ctx, op)
	case backends.OpSend:
		return b.Send(ctx, op, in)
	case backends.OpRecv:
		return b.Recv(ctx, op, out)
	case backends.OpSendRecvBatch:
		return pg.sendRecvBatch(ctx, req)
	}
	return fmt.Errorf("gccl: internal: no dispatch for %s", op.Kind)
}
