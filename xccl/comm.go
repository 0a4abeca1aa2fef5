package xccl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/internal/wait"
	"github.com/gccl/gccl/tensor"
)

// thread is one goroutine locked to its OS thread for its whole life: oneCCL keeps per-thread
// state (the group started by onecclGroupStart, the device set by onecclSetDevice), so every call
// on a communicator, group start and end included, runs here.
//
// Handing a call to the thread and its result back must not cost a sleep and a wake-up (tens of
// µs, more than a small all-reduce): both sides spin, then yield, then park, as internal/wait's
// policy says for the ranks sharing this host.
type thread struct {
	policy wait.Policy
	next   atomic.Pointer[task] // the call waiting for the thread
	parked atomic.Bool          // the thread is blocked on wake
	wake   chan struct{}
	quit   atomic.Bool
}

// task is one call handed to the thread.
type task struct {
	f    func()
	done atomic.Bool
	ch   chan struct{} // closed when done
}

func newThread(policy wait.Policy) *thread {
	t := &thread{policy: policy, wake: make(chan struct{}, 1)}
	go t.loop()
	return t
}

func (t *thread) loop() {
	// Never unlocked: when the goroutine ends, the runtime ends the thread with it, and with it the
	// state oneCCL kept for the thread.
	runtime.LockOSThread()
	for {
		tk := t.take()
		if tk == nil {
			return
		}
		tk.f()
		tk.done.Store(true)
		close(tk.ch)
	}
}

// take waits for the next call; nil once stopped.
func (t *thread) take() *task {
	start := time.Now()
	for {
		if tk := t.next.Swap(nil); tk != nil {
			return tk
		}
		if t.quit.Load() {
			return nil
		}
		switch t.policy.At(time.Since(start)) {
		case wait.SpinPhase:
		case wait.YieldPhase:
			wait.Yield()
		default:
			// Announce the park before the last look, so that a caller who stores a call after
			// that look sees parked and wakes the thread.
			t.parked.Store(true)
			if tk := t.next.Swap(nil); tk != nil {
				t.parked.Store(false)
				return tk
			}
			if !t.quit.Load() {
				<-t.wake
			}
			t.parked.Store(false)
			start = time.Now()
		}
	}
}

// errStopped is what thread.do returns when its stop channel closed before the call returned.
var errStopped = errors.New("stopped")

// do runs f on the thread and waits for it, for ctx, or until stop closes (then errStopped).
// When ctx ends or stop closes first, f still runs to its end on the thread: everything it
// touches must be captured by f.
func (t *thread) do(ctx context.Context, stop <-chan struct{}, f func()) error {
	tk := &task{f: f, ch: make(chan struct{})}
	for !t.next.CompareAndSwap(nil, tk) {
		// A call whose caller gave up still waits for the thread, which is blocked in oneCCL.
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case <-stop:
			return errStopped
		case <-time.After(100 * time.Microsecond):
		}
	}
	if t.parked.Load() {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
	start := time.Now()
	for !tk.done.Load() {
		switch t.policy.At(time.Since(start)) {
		case wait.SpinPhase:
		case wait.YieldPhase:
			wait.Yield()
		default:
			return waitDone(ctx, stop, tk.ch)
		}
	}
	return nil
}

// waitDone blocks until done is closed, ctx ends or stop closes. It also wakes at ctx's
// deadline: comm's op contexts do not close Done when their deadline passes (backends must watch
// Deadline).
func waitDone(ctx context.Context, stop, done <-chan struct{}) error {
	var expired <-chan time.Time
	if d, ok := ctx.Deadline(); ok {
		tm := time.NewTimer(time.Until(d))
		defer tm.Stop()
		expired = tm.C
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		select {
		case <-done:
			return nil
		default:
		}
		return errStopped
	case <-expired:
		select {
		case <-done: // finished just in time
			return nil
		default:
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return context.DeadlineExceeded
	}
}

// stop ends the thread once it has nothing to do.
func (t *thread) stop() {
	t.quit.Store(true)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Buffer is the memory an op reads or writes: host memory (a Go byte slice) or device memory (a
// pointer from onecclMemAlloc or SYCL, on the communicator's device).
type Buffer struct {
	host []byte
	dev  uintptr
	// onDevice marks a device buffer (dev may be 0 only for empty ops).
	onDevice bool
}

// HostBuffer is host memory.
func HostBuffer(b []byte) Buffer { return Buffer{host: b} }

// DeviceBuffer is device memory at p (from Comm.MemAlloc, or a SYCL USM allocation on the
// communicator's device).
func DeviceBuffer(p uintptr) Buffer { return Buffer{dev: p, onDevice: true} }

// addr is the address oneCCL gets: 0 for an empty host buffer.
func (b Buffer) addr() uintptr {
	if b.onDevice {
		return b.dev
	}
	if len(b.host) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b.host[0]))
}

// CommOptions configure NewComm.
type CommOptions struct {
	// Name labels the communicator in errors (a group name). Default "xccl".
	Name string
	// Device is the Intel GPU the communicator works on, such as {Type: "xpu", Index: 1}:
	// onecclSetDevice(Index) is called on the communicator's thread before onecclCommInitRank.
	// The zero value (host) calls no onecclSetDevice and passes host buffers.
	Device tensor.Device
	// Stream is passed as the stream of every op: the address of the caller's sycl::queue for
	// device buffers. 0 (the default) passes NULL, which oneCCL requires for host buffers. An op
	// on a queue may return once it is enqueued: wait on the queue before reading its output.
	Stream uintptr
	// Logger receives debug messages (default slog.Default()).
	Logger *slog.Logger
	// LocalRanks is how many ranks share this host's cores (default 1): it sets how long the
	// communicator's thread and its callers spin before they sleep (see internal/wait).
	LocalRanks int
}

// Comm is one oneCCL communicator and the OS thread that makes every call on it. Its methods
// are safe for concurrent use but run one at a time.
type Comm struct {
	lib        *library
	th         *thread
	handle     uintptr
	rank, size int
	opts       CommOptions
	log        *slog.Logger

	mu        sync.Mutex // one op at a time; held by the running op
	aborted   atomic.Pointer[error]
	abortCh   chan struct{} // closed by Abort: a waiting op returns at once
	handleMu  sync.Mutex    // orders onecclCommAbort before onecclCommDestroy
	destroyed bool          // under handleMu: the handle is (being) destroyed
	stuck     atomic.Bool   // an op timed out while its oneCCL call kept running
	closed    bool
	avgNative atomic.Int32 // 0: untried, 1: the plugin runs onecclAvg, -1: it rejected it
}

// NewComm creates a communicator of size ranks: rank 0 calls onecclGetUniqueId and stores the
// 4096 bytes under key in st; the other ranks read them; all call onecclCommInitRank. Every rank
// must call it with the same key. ctx bounds the wait for the id.
func NewComm(ctx context.Context, st store.Store, key string, rank, size int, opts CommOptions) (*Comm, error) {
	if opts.Name == "" {
		opts.Name = "xccl"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("xccl: communicator %q: rank %d is out of range for %d ranks: pass 0 <= rank < size", opts.Name, rank, size)
	}
	if !opts.Device.IsCPU() && opts.Device.Type != "xpu" {
		return nil, fmt.Errorf("xccl: communicator %q on rank %d: device %v: %w: xccl runs on host memory or Intel GPUs (xpu:N)", opts.Name, rank, opts.Device, backends.ErrUnsupported)
	}
	lib, err := load()
	if err != nil {
		return nil, err
	}
	c := &Comm{lib: lib, th: newThread(wait.NewPolicy(max(opts.LocalRanks, 1))), rank: rank, size: size, opts: opts, log: opts.Logger,
		abortCh: make(chan struct{})}
	if err := c.init(ctx, st, key); err != nil {
		c.th.stop()
		return nil, err
	}
	return c, nil
}

func (c *Comm) init(ctx context.Context, st store.Store, key string) error {
	lib := c.lib
	if !c.opts.Device.IsCPU() {
		if lib.setDevice == 0 {
			return c.errorf("init", "%w: %s has no onecclSetDevice: use a oneCCL built with SYCL (GPU) support for device %v", backends.ErrUnsupported, lib.path, c.opts.Device)
		}
		if err := c.onThread(ctx, "init", func() error {
			return lib.resultError("onecclSetDevice", lib.call(lib.setDevice, uintptr(uint32(c.opts.Device.Index))), 0)
		}); err != nil {
			return err
		}
	}
	id := new(UniqueID)
	if c.rank == 0 {
		if err := c.onThread(ctx, "init", func() error {
			r, _, _ := purego.SyscallN(lib.getUniqueID, uintptr(unsafe.Pointer(id)))
			return lib.resultError("onecclGetUniqueId", int32(r), 0)
		}); err != nil {
			return err
		}
		if err := st.Set(ctx, key, id[:]); err != nil {
			return c.errorf("init", "publishing the unique id: %w", err)
		}
	} else {
		b, err := st.Get(ctx, key)
		if err != nil {
			return c.errorf("init", "waiting for rank 0's unique id (is rank 0 running, with backend xccl?): %w", err)
		}
		if len(b) != UniqueIDBytes {
			return c.errorf("init", "the unique id under %q has %d bytes, want %d: another program wrote that key", key, len(b), UniqueIDBytes)
		}
		copy(id[:], b)
	}
	var handle uintptr
	if err := c.onThread(ctx, "init", func() error {
		h, rc, err := lib.ffi.commInitRank(lib.commInitRank, c.size, id, c.rank)
		if err != nil {
			return err
		}
		handle = h
		return lib.resultError("onecclCommInitRank", rc, 0)
	}); err != nil {
		return err
	}
	c.handle = handle
	// Check that the library sees the communicator we asked for.
	var got [2]int32
	if err := c.onThread(ctx, "init", func() error {
		r1, _, _ := purego.SyscallN(lib.commCount, handle, uintptr(unsafe.Pointer(&got[0])))
		r2, _, _ := purego.SyscallN(lib.commUserRank, handle, uintptr(unsafe.Pointer(&got[1])))
		return errors.Join(lib.resultError("onecclCommCount", int32(r1), handle), lib.resultError("onecclCommUserRank", int32(r2), handle))
	}); err != nil {
		return err
	}
	if int(got[0]) != c.size || int(got[1]) != c.rank {
		return c.errorf("init", "oneCCL made a communicator of rank %d of %d, not rank %d of %d", got[1], got[0], c.rank, c.size)
	}
	return nil
}

// onThread runs f on the communicator's thread: f makes oneCCL calls and turns their results into
// errors there too, since onecclGetLastError may keep its message per thread.
func (c *Comm) onThread(ctx context.Context, op string, f func() error) error {
	var err error
	if terr := c.th.do(ctx, c.abortCh, func() { err = f() }); terr != nil {
		return c.interrupted(op, terr)
	}
	if err != nil {
		return c.errorf(op, "%w", err)
	}
	return nil
}

// Rank is this process's rank in the communicator.
func (c *Comm) Rank() int { return c.rank }

// Size is the number of ranks.
func (c *Comm) Size() int { return c.size }

// errorf names the op, the rank and the communicator.
func (c *Comm) errorf(op, format string, args ...any) error {
	return fmt.Errorf("xccl: %s on rank %d of %d (communicator %q): %w", op, c.rank, c.size, c.opts.Name, fmt.Errorf(format, args...))
}

// interrupted is the error of an op whose ctx ended, or whose communicator was aborted, while
// its oneCCL call ran.
func (c *Comm) interrupted(op string, err error) error {
	c.stuck.Store(true)
	if errors.Is(err, errStopped) {
		return c.errorf(op, "%w", backends.AbortedEarlier(*c.aborted.Load()))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", backends.ErrTimeout, err)
	}
	return c.errorf(op, "%w (the oneCCL call was still running; the communicator is aborted: check that every rank issued the same ops)", err)
}

// run makes one oneCCL call on the thread: call returns the onecclResult_t; keep is whatever the
// call reads or writes, kept alive until it returns even if ctx ends first.
func (c *Comm) run(ctx context.Context, op, fn string, call func() int32, keep ...Buffer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(op); err != nil {
		return err
	}
	var err error
	if terr := c.th.do(ctx, c.abortCh, func() {
		err = c.lib.resultError(fn, call(), c.handle)
		runtime.KeepAlive(keep)
	}); terr != nil {
		return c.interrupted(op, terr)
	}
	if err != nil {
		if a := c.aborted.Load(); a != nil {
			return c.errorf(op, "%w (%v)", backends.AbortedEarlier(*a), err)
		}
		return c.errorf(op, "%w", err)
	}
	return nil
}

func (c *Comm) usable(op string) error {
	if c.closed {
		return c.errorf(op, "%w: the communicator is closed", backends.ErrAborted)
	}
	if a := c.aborted.Load(); a != nil {
		return c.errorf(op, "%w", backends.AbortedEarlier(*a))
	}
	return nil
}

// needBytes checks that a host buffer holds n bytes.
func (c *Comm) needBytes(op, what string, b Buffer, n int) error {
	if !b.onDevice && len(b.host) < n {
		return c.errorf(op, "the %s holds %d bytes but the op needs %d: pass a larger buffer, or a smaller count", what, len(b.host), n)
	}
	return nil
}

func (c *Comm) dtype(op string, dt tensor.DType) (int32, error) {
	code, ok := dataType(dt)
	if !ok {
		return 0, c.errorf(op, "%w: dtype %s has no oneCCL type: use one of float32, float64, float16, bfloat16, int8, uint8, int32, int64, bool", backends.ErrUnsupported, dt)
	}
	return code, nil
}

func (c *Comm) reduceArgs(op string, dt tensor.DType, red tensor.ReduceOp) (int32, int32, error) {
	code, err := c.dtype(op, dt)
	if err != nil {
		return 0, 0, err
	}
	if !reducible(dt) {
		return 0, 0, c.errorf(op, "%w: %s is for data movement only: convert to bfloat16 or float32 before reducing", backends.ErrUnsupported, dt)
	}
	r, err := redOp(red, dt)
	if err != nil {
		return 0, 0, c.errorf(op, "%w", err)
	}
	return code, r, nil
}

func (c *Comm) checkRoot(op string, root int) error {
	if root < 0 || root >= c.size {
		return c.errorf(op, "root %d is out of range: the communicator has ranks 0..%d", root, c.size-1)
	}
	return nil
}

// reduction runs a reducing call with dt's oneCCL code and op; for AVG the first time it tries
// onecclAvg, and when the plugin rejects it (oneCCL's CPU plugin does) it runs SUM and divides by
// the size from then on (host buffers only: with a device buffer among keep, that is an error).
func (c *Comm) reduction(ctx context.Context, opName, fn string, dt tensor.DType, red tensor.ReduceOp, out Buffer, outCount int, call func(code, op int32) int32, keep ...Buffer) error {
	code, r, err := c.reduceArgs(opName, dt, red)
	if err != nil {
		return err
	}
	if red != tensor.Avg || c.avgNative.Load() == 1 {
		return c.run(ctx, opName, fn, func() int32 { return call(code, r) }, keep...)
	}
	if c.avgNative.Load() == 0 {
		err := c.run(ctx, opName, fn, func() int32 { return call(code, cclAvg) }, keep...)
		if !errors.Is(err, backends.ErrUnsupported) {
			if err == nil {
				c.avgNative.Store(1)
			}
			return err
		}
		c.avgNative.Store(-1)
		c.log.Debug("xccl: the oneCCL plugin rejects AVG; running SUM then dividing", "communicator", c.opts.Name, "error", err)
	}
	for _, b := range keep { // out is one of them
		if b.onDevice {
			return c.errorf(opName, "%w: the oneCCL plugin (%s) rejects AVG, and xccl cannot divide device memory (it has no SYCL kernels): pass SUM and divide by %d on the device", backends.ErrUnsupported, c.lib.path, c.size)
		}
	}
	if err := c.run(ctx, opName, fn, func() int32 { return call(code, cclSum) }, keep...); err != nil {
		return err
	}
	if out.host == nil {
		return nil
	}
	return tensor.DivideBy(dt, out.host[:outCount*dt.Size()], c.size)
}

// AllReduce reduces count elements of send over every rank into recv (recv may be send).
func (c *Comm) AllReduce(ctx context.Context, send, recv Buffer, count int, dt tensor.DType, op tensor.ReduceOp) error {
	const name = "all_reduce"
	n := count * dt.Size()
	if err := errors.Join(c.needBytes(name, "send buffer", send, n), c.needBytes(name, "receive buffer", recv, n)); err != nil {
		return err
	}
	return c.reduction(ctx, name, "onecclAllReduce", dt, op, recv, count, func(code, r int32) int32 {
		return c.lib.call(c.lib.allReduce, send.addr(), recv.addr(), uintptr(count), uintptr(code), uintptr(r), c.handle, c.opts.Stream)
	}, send, recv)
}

// Reduce reduces count elements of send over every rank into recv on root (recv is ignored
// elsewhere).
func (c *Comm) Reduce(ctx context.Context, send, recv Buffer, count int, dt tensor.DType, op tensor.ReduceOp, root int) error {
	const name = "reduce"
	if err := c.checkRoot(name, root); err != nil {
		return err
	}
	n := count * dt.Size()
	if err := c.needBytes(name, "send buffer", send, n); err != nil {
		return err
	}
	if c.rank == root {
		if err := c.needBytes(name, "receive buffer", recv, n); err != nil {
			return err
		}
	}
	return c.reduction(ctx, name, "onecclReduce", dt, op, recv, count, func(code, r int32) int32 {
		return c.lib.call(c.lib.reduce, send.addr(), recv.addr(), uintptr(count), uintptr(code), uintptr(r), uintptr(root), c.handle, c.opts.Stream)
	}, send, recv)
}

// ReduceScatter reduces size*count elements of send over every rank and leaves block rank of the
// result (count elements) in recv.
func (c *Comm) ReduceScatter(ctx context.Context, send, recv Buffer, count int, dt tensor.DType, op tensor.ReduceOp) error {
	const name = "reduce_scatter"
	n := count * dt.Size()
	if err := errors.Join(c.needBytes(name, "send buffer", send, n*c.size), c.needBytes(name, "receive buffer", recv, n)); err != nil {
		return err
	}
	return c.reduction(ctx, name, "onecclReduceScatter", dt, op, recv, count, func(code, r int32) int32 {
		return c.lib.call(c.lib.reduceScatter, send.addr(), recv.addr(), uintptr(count), uintptr(code), uintptr(r), c.handle, c.opts.Stream)
	}, send, recv)
}

// Broadcast copies count elements of root's send into every rank's recv.
func (c *Comm) Broadcast(ctx context.Context, send, recv Buffer, count int, dt tensor.DType, root int) error {
	const name = "broadcast"
	if err := c.checkRoot(name, root); err != nil {
		return err
	}
	code, err := c.dtype(name, dt)
	if err != nil {
		return err
	}
	n := count * dt.Size()
	if err := c.needBytes(name, "receive buffer", recv, n); err != nil {
		return err
	}
	if c.rank == root {
		if err := c.needBytes(name, "send buffer", send, n); err != nil {
			return err
		}
	}
	return c.run(ctx, name, "onecclBroadcast", func() int32 {
		return c.lib.call(c.lib.broadcast, send.addr(), recv.addr(), uintptr(count), uintptr(code), uintptr(root), c.handle, c.opts.Stream)
	}, send, recv)
}

// AllGather concatenates every rank's count elements of send, in rank order, into recv.
func (c *Comm) AllGather(ctx context.Context, send, recv Buffer, count int, dt tensor.DType) error {
	const name = "all_gather"
	code, err := c.dtype(name, dt)
	if err != nil {
		return err
	}
	n := count * dt.Size()
	if err := errors.Join(c.needBytes(name, "send buffer", send, n), c.needBytes(name, "receive buffer", recv, n*c.size)); err != nil {
		return err
	}
	return c.run(ctx, name, "onecclAllGather", func() int32 {
		return c.lib.call(c.lib.allGather, send.addr(), recv.addr(), uintptr(count), uintptr(code), c.handle, c.opts.Stream)
	}, send, recv)
}

// AllToAll sends block r (count elements) of send to rank r and receives rank r's block into
// block r of recv.
func (c *Comm) AllToAll(ctx context.Context, send, recv Buffer, count int, dt tensor.DType) error {
	const name = "all_to_all"
	code, err := c.dtype(name, dt)
	if err != nil {
		return err
	}
	n := count * dt.Size() * c.size
	if err := errors.Join(c.needBytes(name, "send buffer", send, n), c.needBytes(name, "receive buffer", recv, n)); err != nil {
		return err
	}
	return c.run(ctx, name, "onecclAllToAll", func() int32 {
		return c.lib.call(c.lib.allToAll, send.addr(), recv.addr(), uintptr(count), uintptr(code), c.handle, c.opts.Stream)
	}, send, recv)
}

// P2P is one send or receive of a grouped point-to-point exchange.
type P2P struct {
	Recv  bool // false: send Buf to Peer; true: receive Buf from Peer
	Buf   Buffer
	Count int
	DType tensor.DType
	Peer  int
}

// Group runs ops between onecclGroupStart and onecclGroupEnd, so that they progress together (a
// rank may send to and receive from the same peer). op names the exchange in errors.
func (c *Comm) Group(ctx context.Context, op string, ops []P2P) error {
	codes := make([]int32, len(ops))
	keep := make([]Buffer, len(ops))
	for i, o := range ops {
		code, err := c.dtype(op, o.DType)
		if err != nil {
			return err
		}
		if o.Peer < 0 || o.Peer >= c.size || o.Peer == c.rank {
			return c.errorf(op, "peer %d is out of range or this rank: pass another rank of 0..%d", o.Peer, c.size-1)
		}
		if err := c.needBytes(op, "buffer", o.Buf, o.Count*o.DType.Size()); err != nil {
			return err
		}
		codes[i], keep[i] = code, o.Buf
	}
	// The call that failed, for the message; written on the communicator's thread, which may
	// still run after an interrupted run returns, so atomically.
	var fn atomic.Pointer[string]
	fn.Store(ptr("onecclGroupStart"))
	err := c.run(ctx, op, "oneCCL group", func() int32 {
		lib := c.lib
		if rc := lib.call(lib.groupStart); rc != resSuccess {
			return rc
		}
		for i, o := range ops {
			f, name := lib.send, "onecclSend"
			if o.Recv {
				f, name = lib.recv, "onecclRecv"
			}
			if rc := lib.call(f, o.Buf.addr(), uintptr(o.Count), uintptr(codes[i]), uintptr(o.Peer), c.handle, c.opts.Stream); rc != resSuccess {
				fn.Store(&name)
				lib.call(lib.groupEnd)
				return rc
			}
		}
		fn.Store(ptr("onecclGroupEnd"))
		return lib.call(lib.groupEnd)
	}, keep...)
	if err != nil {
		return fmt.Errorf("%w (in %s)", err, *fn.Load())
	}
	return nil
}

// MemAlloc allocates n bytes of device memory with onecclMemAlloc, on the communicator's thread
// (so on its device).
func (c *Comm) MemAlloc(ctx context.Context, n int) (uintptr, error) {
	if c.lib.memAlloc == 0 {
		return 0, c.errorf("mem_alloc", "%w: %s has no onecclMemAlloc: allocate with SYCL (sycl::malloc_device) instead", backends.ErrUnsupported, c.lib.path)
	}
	p := new(uintptr)
	err := c.run(ctx, "mem_alloc", "onecclMemAlloc", func() int32 {
		return c.lib.call(c.lib.memAlloc, uintptr(unsafe.Pointer(p)), uintptr(n))
	})
	return *p, err
}

// MemFree frees memory from MemAlloc. It works on an aborted communicator too (not on a closed
// one); while an op that timed out still blocks the communicator's thread, it waits for ctx.
func (c *Comm) MemFree(ctx context.Context, p uintptr) error {
	if c.lib.memFree == 0 {
		return c.errorf("mem_free", "%w: %s has no onecclMemFree", backends.ErrUnsupported, c.lib.path)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.errorf("mem_free", "%w: the communicator is closed", backends.ErrAborted)
	}
	_, err := c.release(ctx, "mem_free", "onecclMemFree", func() int32 { return c.lib.call(c.lib.memFree, p) })
	return err
}

// release makes one oneCCL call of MemFree or Close on the thread: unlike run it does not give up
// when the communicator is aborted (what an aborted communicator holds must still be freed), and
// when ctx ends first it fails with ErrTimeout. returned reports whether the call returned.
func (c *Comm) release(ctx context.Context, op, fn string, call func() int32) (returned bool, err error) {
	var callErr error
	if terr := c.th.do(ctx, nil, func() { callErr = c.lib.resultError(fn, call(), 0) }); terr != nil {
		return false, c.errorf(op, "%w: %w", backends.ErrTimeout, terr)
	}
	if callErr != nil {
		return true, c.errorf(op, "%w", callErr)
	}
	return true, nil
}

// Abort fails the running op at once and every later one. When the library has
// onecclCommAbort it is called too, from the caller's thread (it exists to interrupt a call
// blocked on the communicator's thread); without it a blocked call keeps the thread until it
// returns, and Close waits for it at most 10 s.
func (c *Comm) Abort(cause error) {
	if cause == nil {
		cause = errors.New("aborted")
	}
	if !c.aborted.CompareAndSwap(nil, &cause) {
		return
	}
	close(c.abortCh)
	c.handleMu.Lock()
	defer c.handleMu.Unlock()
	if c.lib.commAbort != 0 && c.handle != 0 && !c.destroyed {
		c.lib.call(c.lib.commAbort, c.handle)
	}
}

// Close destroys the communicator and ends its thread. After an op timed out, the thread may
// still be blocked in oneCCL: Close then waits at most 10 s for it and leaves it behind.
func (c *Comm) Close() error {
	if c.stuck.Load() {
		c.Abort(errors.New("closed after a timed-out op"))
	}
	wait := context.Background()
	if c.stuck.Load() {
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(wait, 10*time.Second)
		defer cancel()
	}
	c.mu.Lock() // ops release it when they return, even when their oneCCL call outlives them
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.handleMu.Lock()
	c.destroyed = true
	c.handleMu.Unlock()
	returned, err := c.release(wait, "close", "onecclCommDestroy", func() int32 { return c.lib.call(c.lib.commDestroy, c.handle) })
	if returned {
		c.th.stop()
	}
	return err
}

func ptr[T any](v T) *T { return &v }
