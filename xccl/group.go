package xccl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

func init() { backends.Register("xccl", Backend{}) }

// Backend is backend "xccl". Its NewGroup loads oneCCL on first use. The registered "xccl" is
// the zero Backend; a program that passes a SYCL queue registers its own under another name:
//
//	comm.Register("xccl-gpu", xccl.Backend{Device: tensor.Device{Type: "xpu", Index: local}, Stream: queue})
type Backend struct {
	// Device is the Intel GPU the group's communicators work on (onecclSetDevice): the group
	// then takes device tensors (tensor.FromDevicePointer) on that device, besides host tensors.
	// The zero value takes GCCL_XCCL_DEVICE ("xpu:0", "xpu:1", ...; unset: host tensors only).
	Device tensor.Device
	// Stream is the address of the sycl::queue passed as every op's stream (CommOptions.Stream).
	// 0, the default, passes NULL. An op on a queue may return once it is enqueued.
	Stream uintptr
}

// EnvDevice names the environment variable that gives the registered backend's device.
const EnvDevice = "GCCL_XCCL_DEVICE"

// Store keys of the unique ids, in the group's scoped store.
const (
	keyCollID = "xccl/unique_id/collectives"
	keyP2PID  = "xccl/unique_id/p2p"
)

// NewGroup creates the group's two communicators: one for collectives (Gather, Scatter and uneven
// AllToAll run on it as grouped sends and receives) and one for the tagged Send and Recv of
// users, so that a message left unreceived never meets a collective's receive.
func (b Backend) NewGroup(ctx context.Context, cfg backends.Config) (backends.Group, error) {
	dev := b.Device
	if v := os.Getenv(EnvDevice); dev.IsCPU() && v != "" {
		d, err := tensor.ParseDevice(v)
		if err != nil {
			return nil, fmt.Errorf("xccl: group %q rank %d: %s=%q: %w", cfg.Name, cfg.Rank, EnvDevice, v, err)
		}
		dev = d
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := CommOptions{Name: cfg.Name, Logger: cfg.Logger, LocalRanks: cfg.LocalSize, Device: dev, Stream: b.Stream}
	coll, err := NewComm(ctx, cfg.Store, keyCollID, cfg.Rank, cfg.Size, opts)
	if err != nil {
		return nil, err
	}
	opts.Name = cfg.Name + "/p2p"
	p2p, err := NewComm(ctx, cfg.Store, keyP2PID, cfg.Rank, cfg.Size, opts)
	if err != nil {
		_ = coll.Close()
		return nil, err
	}
	g := &group{cfg: cfg, coll: coll, p2p: p2p, stash: map[int][]message{}, barrier: HostBuffer(make([]byte, 4))}
	if !dev.IsCPU() && coll.lib.memAlloc != 0 {
		// A device communicator's barrier all-reduces device memory, like its other ops.
		p, err := coll.MemAlloc(ctx, 4)
		if err != nil {
			_ = errors.Join(coll.Close(), p2p.Close())
			return nil, err
		}
		g.barrier = DeviceBuffer(p)
	}
	if g.watch, err = newWatch(ctx, cfg, g.Abort); err != nil {
		_ = errors.Join(g.freeBarrier(), coll.Close(), p2p.Close())
		return nil, err
	}
	g.watch.start()
	return g, nil
}

var _ backends.DeviceGroup = (*group)(nil)

// group is a backends.Group over two communicators, for host tensors, and a liveness watch
// that aborts them when a member dies.
type group struct {
	cfg       backends.Config
	coll, p2p *Comm
	watch     *watch
	barrier   Buffer // 4 bytes: device memory on a device group where the library allocates it

	mu      sync.Mutex
	aborted error
	stash   map[int][]message // messages received from a peer ahead of the Recv that wants them
}

// message is a received tagged message waiting for its Recv.
type message struct {
	tag  int64
	data []byte
}

// header precedes every tagged message: tag, byte count, dtype.
const headerBytes = 24

// check fails an op on an aborted group. The collectives that reach a communicator leave it to
// the communicator (Comm.run), after their own argument checks, so that every rank reports a
// refusal they all make (a dtype, an op) as such, and not as the abort of a peer that refused
// first.
func (g *group) check(op backends.Op) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.aborted != nil {
		return fmt.Errorf("xccl: %s on rank %d: %w", op.Kind, g.cfg.Rank, backends.AbortedEarlier(g.aborted))
	}
	return nil
}

// fail aborts the group after an op's error.
func (g *group) fail(err error) error {
	if err != nil {
		g.Abort(err)
	}
	return err
}

// buffer is t's memory: its device pointer for a device tensor (comm has checked that it is on
// the group's device), else its host bytes.
func buffer(t *tensor.Tensor) Buffer {
	if t == nil {
		return Buffer{}
	}
	if t.IsDevice() {
		return DeviceBuffer(t.DevicePointer())
	}
	return HostBuffer(t.Bytes())
}

// SupportsDevice reports whether dev is the device the group's communicators were created on
// (Backend.Device, GCCL_XCCL_DEVICE): comm then hands it device tensors on dev.
func (g *group) SupportsDevice(dev tensor.Device) bool {
	d := g.coll.opts.Device // the zero Device for host only
	return !d.IsCPU() && dev == d
}

// hostOnly refuses device tensors in the ops that would have to copy device memory on the host
// (the root's own slot of Gather and Scatter, uneven AllToAll) or read it (Send and Recv's
// header check), which xccl cannot do without SYCL.
func (g *group) hostOnly(op backends.Op, fix string, ts ...*tensor.Tensor) error {
	for _, t := range ts {
		if t != nil && t.IsDevice() {
			return fmt.Errorf("xccl: %s on rank %d: %w: %s of device tensors (%v): xccl moves device memory only in oneCCL's collectives and cannot copy it itself (no SYCL): %s",
				op.Kind, g.cfg.Rank, backends.ErrUnsupported, op.Kind, t.Device(), fix)
		}
	}
	return nil
}

func (g *group) AllReduce(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	if op.Count == 0 {
		return g.check(op)
	}
	return g.fail(g.coll.AllReduce(ctx, buffer(in), buffer(out), op.Count, op.DType, op.Reduce))
}

func (g *group) Broadcast(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	if op.Count == 0 {
		return g.check(op)
	}
	return g.fail(g.coll.Broadcast(ctx, buffer(buf), buffer(buf), op.Count, op.DType, op.Root))
}

func (g *group) Reduce(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	if op.Count == 0 {
		return g.check(op)
	}
	return g.fail(g.coll.Reduce(ctx, buffer(in), buffer(out), op.Count, op.DType, op.Reduce, op.Root))
}

func (g *group) AllGather(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	if op.Count == 0 {
		return g.check(op)
	}
	return g.fail(g.coll.AllGather(ctx, buffer(in), buffer(out), op.Count, op.DType))
}

func (g *group) ReduceScatter(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	if op.Count == 0 {
		return g.check(op)
	}
	return g.fail(g.coll.ReduceScatter(ctx, buffer(in), buffer(out), op.Count, op.DType, op.Reduce))
}

// Gather: the root receives every other rank's input in one group of receives.
func (g *group) Gather(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.rooted(ctx, op, "gather", "all-gather on the device instead (comm's AllGather), or gather host copies", true, in, out)
}

// Scatter: the root sends every other rank its slot in one group of sends.
func (g *group) Scatter(ctx context.Context, op backends.Op, in, out *tensor.Tensor) error {
	return g.rooted(ctx, op, "scatter", "broadcast on the device and take this rank's slot (comm's Broadcast), or scatter host copies", false, in, out)
}

// rooted runs Gather (gather true: out holds a slot of op.Count elements per rank, which the root
// receives from every other rank's in) or Scatter (in holds the slots, and the root sends every
// other rank its slot, into that rank's out): the root copies its own slot and makes one group
// of receives or sends; every other rank one receive or send. name names the op in errors, fix
// says what to do instead with device tensors.
func (g *group) rooted(ctx context.Context, op backends.Op, name, fix string, gather bool, in, out *tensor.Tensor) error {
	if op.Count == 0 {
		return g.check(op)
	}
	if err := g.hostOnly(op, fix, in, out); err != nil {
		return g.fail(err)
	}
	if err := g.check(op); err != nil {
		return err
	}
	own, slots := in, out // this rank's slot, and the root's slots of every rank
	if !gather {
		own, slots = out, in
	}
	n, r := g.cfg.Size, g.cfg.Rank
	if r != op.Root {
		return g.fail(g.coll.Group(ctx, name, []P2P{{Recv: !gather, Buf: buffer(own), Count: op.Count, DType: op.DType, Peer: op.Root}}))
	}
	per := op.Count * op.DType.Size()
	sb := slots.Bytes()
	if gather {
		copy(sb[r*per:(r+1)*per], own.Bytes())
	} else {
		copy(own.Bytes(), sb[r*per:(r+1)*per])
	}
	ops := make([]P2P, 0, n-1)
	for p := 0; p < n; p++ {
		if p != r {
			ops = append(ops, P2P{Recv: gather, Buf: HostBuffer(sb[p*per : (p+1)*per]), Count: op.Count, DType: op.DType, Peer: p})
		}
	}
	return g.fail(g.coll.Group(ctx, name, ops))
}

// AllToAll: onecclAllToAll when the caller gave no splits (op.EqualSplits: every rank's blocks
// are equal), else one group of sends and receives, even where this rank's splits are equal: the
// other ranks' may not be, and every rank must make the same oneCCL calls.
func (g *group) AllToAll(ctx context.Context, op backends.Op, in, out *tensor.Tensor, inSplits, outSplits []int) error {
	n, r := g.cfg.Size, g.cfg.Rank
	if op.EqualSplits {
		if inSplits[0] == 0 {
			return g.check(op)
		}
		return g.fail(g.coll.AllToAll(ctx, buffer(in), buffer(out), inSplits[0], op.DType))
	}
	if err := g.hostOnly(op, "pad the blocks to equal sizes (equal all-to-all is oneCCL's own), or exchange host copies", in, out); err != nil {
		return g.fail(err)
	}
	if err := g.check(op); err != nil {
		return err
	}
	es := op.DType.Size()
	ib, ob := in.Bytes(), out.Bytes()
	var ops []P2P
	inOff, outOff := 0, 0
	for p := 0; p < n; p++ {
		src := ib[inOff*es : (inOff+inSplits[p])*es]
		dst := ob[outOff*es : (outOff+outSplits[p])*es]
		switch {
		case p == r:
			if len(src) != len(dst) {
				return g.fail(fmt.Errorf("xccl: all_to_all on rank %d: %w: it sends itself %d elements but expects %d: make inSplits[%d] equal outSplits[%d]",
					r, backends.ErrMismatch, inSplits[p], outSplits[p], r, r))
			}
			copy(dst, src)
		default:
			if inSplits[p] > 0 {
				ops = append(ops, P2P{Buf: HostBuffer(src), Count: inSplits[p], DType: op.DType, Peer: p})
			}
			if outSplits[p] > 0 {
				ops = append(ops, P2P{Recv: true, Buf: HostBuffer(dst), Count: outSplits[p], DType: op.DType, Peer: p})
			}
		}
		inOff += inSplits[p]
		outOff += outSplits[p]
	}
	if len(ops) == 0 {
		return nil
	}
	return g.fail(g.coll.Group(ctx, "all_to_all", ops))
}

// Barrier is an all-reduce of one int32.
func (g *group) Barrier(ctx context.Context, op backends.Op) error {
	return g.fail(g.coll.AllReduce(ctx, g.barrier, g.barrier, 1, tensor.Int32, tensor.Sum))
}

// Send sends a header (tag, byte count, dtype) and the payload to the peer in one group on the
// p2p communicator.
func (g *group) Send(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	if err := g.hostOnly(op, "send a host copy", buf); err != nil {
		return g.fail(err)
	}
	if err := g.check(op); err != nil {
		return err
	}
	data := buf.Bytes()
	hdr := make([]byte, headerBytes)
	binary.LittleEndian.PutUint64(hdr[0:], uint64(op.Tag))
	binary.LittleEndian.PutUint64(hdr[8:], uint64(len(data)))
	binary.LittleEndian.PutUint64(hdr[16:], uint64(op.DType))
	ops := []P2P{{Buf: HostBuffer(hdr), Count: headerBytes, DType: tensor.Uint8, Peer: op.Peer}}
	if len(data) > 0 {
		ops = append(ops, P2P{Buf: HostBuffer(data), Count: len(data), DType: tensor.Uint8, Peer: op.Peer})
	}
	return g.fail(g.p2p.Group(ctx, "send", ops))
}

// Recv takes the oldest stashed message from the peer with the tag, else receives headers and
// payloads from the peer in order, stashing messages with other tags, until one has the tag.
func (g *group) Recv(ctx context.Context, op backends.Op, buf *tensor.Tensor) error {
	if err := g.hostOnly(op, "receive into a host tensor and copy it to the device", buf); err != nil {
		return g.fail(err)
	}
	if err := g.check(op); err != nil {
		return err
	}
	data := buf.Bytes()
	want := int64(op.Tag)
	deliver := func(m message) error {
		if len(m.data) != len(data) {
			return g.fail(fmt.Errorf("xccl: recv on rank %d from rank %d with tag %d: %w: the message has %d bytes but the receive buffer %d: post a Recv of the size the peer sent",
				g.cfg.Rank, op.Peer, op.Tag, backends.ErrMismatch, len(m.data), len(data)))
		}
		copy(data, m.data)
		return nil
	}
	g.mu.Lock()
	for i, m := range g.stash[op.Peer] {
		if m.tag == want {
			g.stash[op.Peer] = append(g.stash[op.Peer][:i:i], g.stash[op.Peer][i+1:]...)
			g.mu.Unlock()
			return deliver(m)
		}
	}
	g.mu.Unlock()
	hdr := make([]byte, headerBytes)
	for {
		if err := g.p2p.Group(ctx, "recv", []P2P{{Recv: true, Buf: HostBuffer(hdr), Count: headerBytes, DType: tensor.Uint8, Peer: op.Peer}}); err != nil {
			return g.fail(err)
		}
		tag := int64(binary.LittleEndian.Uint64(hdr[0:]))
		size := int(binary.LittleEndian.Uint64(hdr[8:]))
		dt := tensor.DType(binary.LittleEndian.Uint64(hdr[16:]))
		var payload []byte
		if tag == want && size == len(data) {
			if dt != op.DType {
				return g.fail(fmt.Errorf("xccl: recv on rank %d from rank %d with tag %d: %w: the peer sent %s, this rank receives %s",
					g.cfg.Rank, op.Peer, op.Tag, backends.ErrMismatch, dt, op.DType))
			}
			payload = data
		} else {
			payload = make([]byte, size)
		}
		if size > 0 {
			if err := g.p2p.Group(ctx, "recv", []P2P{{Recv: true, Buf: HostBuffer(payload), Count: size, DType: tensor.Uint8, Peer: op.Peer}}); err != nil {
				return g.fail(err)
			}
		}
		if tag == want {
			if size == len(data) {
				return nil
			}
			return deliver(message{tag: tag, data: payload})
		}
		g.mu.Lock()
		g.stash[op.Peer] = append(g.stash[op.Peer], message{tag: tag, data: payload})
		g.mu.Unlock()
	}
}

// Abort fails the running op and every later one (through onecclCommAbort too, where the
// library has it), and tells the peers why, over the liveness watch.
func (g *group) Abort(cause error) {
	g.mu.Lock()
	first := g.aborted == nil
	if first {
		g.aborted = backends.AsAbort(cause)
	}
	cause = g.aborted
	g.mu.Unlock()
	g.coll.Abort(cause)
	g.p2p.Abort(cause)
	if first {
		g.watch.abort(cause)
	}
}

// Close says goodbye to the peers (so that they do not take this rank for dead), stops the
// watch, then destroys both communicators.
func (g *group) Close() error {
	g.watch.close()
	return errors.Join(g.freeBarrier(), g.coll.Close(), g.p2p.Close())
}

// freeBarrier frees the barrier's device memory, if it has any (and leaves it when a timed-out
// op still holds the communicator's thread).
func (g *group) freeBarrier() error {
	if !g.barrier.onDevice || g.coll.stuck.Load() {
		return nil
	}
	p := g.barrier.dev
	g.barrier = Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return g.coll.MemFree(ctx, p)
}
