package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/tensor"
)

// Sentinel errors a backend returns (wrapped, with %w) so that callers can branch on them.
// comm re-exports them as comm.ErrTimeout, comm.ErrAborted, ...
var (
	// ErrTimeout: the op did not complete before its deadline.
	ErrTimeout = errors.New("timeout")
	// ErrAborted: the group was aborted (by an earlier error, a peer's abort, or Abort).
	ErrAborted = errors.New("group aborted")
	// ErrPeerLost: a member of the group died or closed its connection.
	ErrPeerLost = errors.New("peer lost")
	// ErrMismatch: the ranks of a group called different ops, dtypes, counts, roots or reduce ops.
	ErrMismatch = errors.New("collective mismatch across ranks")
	// ErrUnsupported: the backend cannot run this op or dtype.
	ErrUnsupported = errors.New("not supported by backend")
)

// PeerLostError says which group rank was lost; it matches ErrPeerLost with errors.Is.
type PeerLostError struct {
	Rank       int    // group rank of the lost peer
	GlobalRank int    // its global rank
	Cause      string // what was seen (EOF, reset, reported by rank N, ...)
}

func (e *PeerLostError) Error() string {
	return fmt.Sprintf("peer lost: rank %d (global rank %d): %s", e.Rank, e.GlobalRank, e.Cause)
}

// Is reports whether target is ErrPeerLost.
func (e *PeerLostError) Is(target error) bool { return target == ErrPeerLost }

// OpKind names a collective or point-to-point operation.
type OpKind uint8

// The operations a backend implements.
const (
	OpAllReduce OpKind = iota + 1
	OpBroadcast
	OpReduce
	OpAllGather
	OpGather
	OpScatter
	OpReduceScatter
	OpAllToAll
	OpBarrier
	OpSend
	OpRecv
	// OpSendRecvBatch is a batch of sends and receives run together (torch's
	// batch_isend_irecv). comm hands it to a BatchSendRecver, or runs its sends, then its
	// receives; the flight recorder has an entry per send and receive.
	OpSendRecvBatch
)

var opNames = [...]string{
	OpAllReduce:     "all_reduce",
	OpBroadcast:     "broadcast",
	OpReduce:        "reduce",
	OpAllGather:     "all_gather",
	OpGather:        "gather",
	OpScatter:       "scatter",
	OpReduceScatter: "reduce_scatter",
	OpAllToAll:      "all_to_all",
	OpBarrier:       "barrier",
	OpSend:          "send",
	OpRecv:          "recv",
	OpSendRecvBatch: "batch_isend_irecv",
}

// String returns PyTorch's spelling of the op (all_reduce, reduce_scatter, ...), as used in
// flight-recorder profiling names.
func (k OpKind) String() string {
	if int(k) < len(opNames) && opNames[k] != "" {
		return opNames[k]
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// IsP2P reports whether the op is point-to-point.
func (k OpKind) IsP2P() bool { return k == OpSend || k == OpRecv || k == OpSendRecvBatch }

// Op describes one operation as comm issued it. comm has validated every field against the
// tensors before the backend sees it. Every rank of the group issues collectives in the same
// order, so (Seq, Kind, DType, Count, Root, Reduce) must agree across ranks; a backend that can
// check this (by carrying it in its message headers) reports disagreement as ErrMismatch.
type Op struct {
	Kind   OpKind
	Seq    uint64          // collective sequence number in the group, from 1; for p2p, the group's p2p count
	DType  tensor.DType    // element type
	Count  int             // elements contributed per rank (AllReduce/Broadcast/Reduce: buffer size; AllGather/Gather: input; Scatter/ReduceScatter: output; AllToAll: input total; Send/Recv: buffer)
	Root   int             // group rank of the root for Broadcast, Reduce, Gather, Scatter
	Reduce tensor.ReduceOp // for AllReduce, Reduce, ReduceScatter: Sum, Product, Min, Max, BAnd, BOr or BXor (comm lowers Avg and PreMulSum to Sum; for device tensors Avg stays, see DeviceGroup)
	Peer   int             // group rank of the peer for Send and Recv
	Tag    int             // user tag for Send and Recv
	// AskedReduce is the reduce op the caller asked for, where comm lowered it to Reduce (Avg
	// and PreMulSum on host tensors run as Sum with comm's scaling around them); else Reduce.
	// Backends that compare fingerprints compare it too: ranks that asked for Avg and Sum must
	// not sum each other's data silently.
	AskedReduce tensor.ReduceOp
	// EqualSplits, for AllToAll: the caller gave no split sizes, so every rank's blocks are equal
	// (the API's contract). A backend that takes another path for equal blocks must decide on
	// this, not on this rank's splits: a rank whose blocks happen to be equal in an uneven
	// all-to-all does not know that the others' are not.
	EqualSplits bool
}

func (o Op) String() string {
	switch {
	case o.Kind.IsP2P():
		return fmt.Sprintf("%s (p2p #%d, peer %d, tag %d, %d x %s)", o.Kind, o.Seq, o.Peer, o.Tag, o.Count, o.DType)
	default:
		return fmt.Sprintf("%s (seq %d, %d x %s, op %s, root %d)", o.Kind, o.Seq, o.Count, o.DType, o.Reduce, o.Root)
	}
}

// Config is what a backend gets to build one group.
type Config struct {
	Rank        int           // this process's rank in the group
	Size        int           // number of ranks in the group
	GlobalRanks []int         // GlobalRanks[r] is the global rank of group rank r
	Name        string        // group name, unique in the job ("0" for the world)
	Store       store.Store   // scoped to this group: keys written here are seen only by members
	Timeout     time.Duration // default per-op timeout; also bounds connection setup
	Logger      *slog.Logger
	// LocalRank and LocalSize describe this process's place on its host (for shared-memory backends).
	LocalRank, LocalSize int
	// Hostname identifies the host (for shared-memory backends).
	Hostname string
	// MasterAddr is the rendezvous host: a TCP backend binds the interface that reaches it.
	MasterAddr string
}

// GlobalRank maps group rank r to its global rank (-1 when r is not a member).
func (c Config) GlobalRank(r int) int {
	if r >= 0 && r < len(c.GlobalRanks) {
		return c.GlobalRanks[r]
	}
	return -1
}

// Backend is a factory for groups, registered under a name with comm.Register.
type Backend interface {
	// NewGroup connects this rank to the other members. Every member calls it concurrently.
	NewGroup(ctx context.Context, cfg Config) (Group, error)
}

// Group moves bytes between the members of one process group. comm guarantees:
//   - tensors are contiguous host tensors of Op.DType with the sizes the op needs (or, for a
//     DeviceGroup, device tensors on a device it supports: see DeviceGroup);
//   - at most one op runs on a Group at a time, in the order comm issued them;
//   - ctx carries the op's deadline; when it passes, the op must return an error wrapping
//     ErrTimeout (or ctx.Err()) promptly.
//
// After an error the Group is considered aborted: later ops fail fast with ErrAborted.
type Group interface {
	// AllReduce reduces in over all ranks into out. out may be in (in-place).
	AllReduce(ctx context.Context, op Op, in, out *tensor.Tensor) error
	// Broadcast copies root's buf into every rank's buf.
	Broadcast(ctx context.Context, op Op, buf *tensor.Tensor) error
	// Reduce reduces in over all ranks into out on root; out is nil on other ranks. out may be in.
	Reduce(ctx context.Context, op Op, in, out *tensor.Tensor) error
	// AllGather concatenates every rank's in, in rank order, into out (Size x len(in)). in may be
	// the view of out at this rank's slot (in-place).
	AllGather(ctx context.Context, op Op, in, out *tensor.Tensor) error
	// Gather concatenates every rank's in into out on root; out is nil elsewhere.
	Gather(ctx context.Context, op Op, in, out *tensor.Tensor) error
	// Scatter sends slot r of root's in (Size x len(out)) to rank r's out; in is nil elsewhere.
	Scatter(ctx context.Context, op Op, in, out *tensor.Tensor) error
	// ReduceScatter reduces in (Size x len(out)) over all ranks and leaves slot r in rank r's out.
	// out may be the view of in at this rank's slot (in-place).
	ReduceScatter(ctx context.Context, op Op, in, out *tensor.Tensor) error
	// AllToAll sends inSplits[r] elements (consecutive, in rank order) of in to rank r and receives
	// outSplits[r] elements from rank r into out. Splits are in elements and never nil.
	AllToAll(ctx context.Context, op Op, in, out *tensor.Tensor, inSplits, outSplits []int) error
	// Barrier returns once every rank has entered it.
	Barrier(ctx context.Context, op Op) error
	// Send sends buf to op.Peer with op.Tag. It may return once buf can be reused.
	Send(ctx context.Context, op Op, buf *tensor.Tensor) error
	// Recv receives into buf the next message from op.Peer with op.Tag.
	Recv(ctx context.Context, op Op, buf *tensor.Tensor) error
	// Abort fails every pending and later op with ErrAborted wrapping cause, and tells the
	// peers. It is safe to call concurrently with a running op.
	Abort(cause error)
	// Close releases the group's resources. Pending ops fail.
	Close() error
}

// DeviceGroup is implemented by a Group that moves tensors in device memory (an Intel GPU's,
// say). comm gives a Group that does not implement it host tensors only.
//
// For device tensors (tensor.FromDevicePointer) comm never touches their memory: every tensor of
// one op is on the same device, one the group supports; Op.Reduce may be Avg, which the group
// must run itself or refuse with ErrUnsupported (comm divides host tensors only), and is never
// PreMulSum (comm refuses it); the list variants (AllGatherList, ReduceScatterList) are refused
// by comm, since they would copy between device buffers. In-place overlaps are checked by device
// address.
type DeviceGroup interface {
	// SupportsDevice reports whether the group can move tensors on dev.
	SupportsDevice(dev tensor.Device) bool
}

// EagerSender is implemented by a Group whose sends can finish before the peer receives (into
// a buffer the peer reads later). comm then runs an asynchronous send on the caller's goroutine,
// with no hand-off to the group's worker, when no op of the group is pending and SendFits says
// the send would not wait; otherwise the worker runs it, as any other asynchronous op.
type EagerSender interface {
	// SendFits reports whether a Send of nbytes to peer, run now, would return without waiting
	// for the peer. comm calls it only while no op runs on the group.
	SendFits(peer, nbytes int) bool
}

// PacedSender is implemented by a Group whose sends, once they wait, wait for their receiver to
// run a point-to-point op with the sender (shm's ranks read their incoming mailboxes only in
// their own sends and receives), so that a receiver inside a collective never lets them finish.
// comm's desync watch reports such a send, waiting for a peer whose collective waits for the
// sender, as a deadlock; without it (gloo's ranks read every connection in any op) it assumes
// a send that waits will finish.
type PacedSender interface {
	// SendsWaitForReceiver reports whether the group's sends have this property. It may be
	// called while an op runs.
	SendsWaitForReceiver() bool
}

// P2P is one send (Op.Kind OpSend: Buf goes to Op.Peer) or receive (OpRecv: Buf is filled from
// Op.Peer) of a batch.
type P2P struct {
	Op  Op
	Buf *tensor.Tensor
}

// BatchSendRecver is implemented by a Group that can run the sends and receives of a batch at
// once, so that a message can land straight in its receive's buffer while this rank still sends
// (shm, gloo). comm runs a batch on any other Group as its sends in order, then its receives in order,
// which relies on Send not waiting for the peer's receive forever (it may wait for the peer to
// drain it, as long as a rank blocked in Send drains what is sent to it).
type BatchSendRecver interface {
	// SendRecv runs every op of ops. Messages to or from one peer with one tag keep their order:
	// the sends' in ops, and the receives' in ops. It returns once every send's buffer can be
	// reused and every receive's buffer is filled.
	SendRecv(ctx context.Context, ops []P2P) error
}

// SharedMemory is implemented by a Group whose members can all map one piece of memory (shm):
// what they write there the others read, with no collective in between (comm.SharedBuffer).
type SharedMemory interface {
	// AllocShared maps nbytes (> 0, which comm checks) of memory shared by every member
	// (zeroed). Every member calls it with the same nbytes, in the same order relative to its other AllocShared calls; it is not
	// an op (it neither waits for nor delays the group's ops). It returns once every member has
	// mapped the memory, or with an error on every member if one could not. free (called once:
	// comm.SharedBuffer.Close) unmaps this member's mapping; the memory goes when the last
	// member has unmapped it (or exited).
	AllocShared(ctx context.Context, nbytes int) (mem []byte, free func(), err error)
	// SignalShared advances word, a counter in memory from AllocShared that only this member
	// writes, by one, and wakes the members waiting on it in WaitShared. It is ordered after
	// this member's earlier writes to shared memory.
	SignalShared(word *uint64)
	// WaitShared returns once done reports true, calling it again whenever *word, member peer's
	// counter (SignalShared), moves: spinning, then yielding, then sleeping until peer's
	// SignalShared wakes it. It returns an error wrapping ErrPeerLost if peer dies, ErrAborted
	// if a member aborts the group, ErrTimeout when ctx's deadline passes. It is not an op: it
	// may run while the group runs ops (on other goroutines).
	WaitShared(ctx context.Context, peer int, word *uint64, done func() bool) error
}
