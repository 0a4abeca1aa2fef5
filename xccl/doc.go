// Package xccl is gccl's backend for Intel GPUs: it binds oneCCL's C API (oneCCL 2022.0,
// include/oneapi/ccl.h; the shared object libccl.so.2) with purego, so gccl still builds with
// CGO_ENABLED=0. Importing it registers backend "xccl", the name PyTorch uses:
//
//	import _ "github.com/gccl/gccl/xccl"
//
//	pg, err := comm.Init(ctx, comm.Options{Backend: "xccl"})
//	...
//	err = pg.AllReduce(ctx, t, comm.Sum) // onecclAllReduce on t's host memory, NULL stream
//
// # Loading
//
// oneCCL is loaded on the first use of the backend, not at import: a program that never picks
// "xccl" never touches it. Load tries GCCL_XCCL_LIBRARY alone when it is set, else
// $CCL_ROOT/lib/libccl.so.2, then libccl.so.2 through the dynamic loader; resolves every
// function; and checks onecclGetVersion (2022.0 or newer). A missing library or symbol is an
// error wrapping ErrLibrary that names what was looked for. onecclSetDevice, onecclMemAlloc,
// onecclMemFree and onecclCommAbort are optional. Errors of the library are spelled with
// onecclGetErrorString followed by onecclGetLastError, where the plugin's own message is.
//
// # The by-value unique id
//
// onecclCommInitRank takes the 4096-byte onecclUniqueId by value, which purego cannot pass on
// linux/amd64. That one call goes through libffi (Debian's libffi8, loaded with purego): see
// ffi.go for the facts it relies on. Every other call passes pointers and scalars only, through
// purego.SyscallN.
//
// # Communicators and threads
//
// oneCCL keeps per-thread state (the open group of onecclGroupStart, the device of
// onecclSetDevice), so each communicator (Comm) has one goroutine locked to its OS thread that
// makes every call on it, group start and end included, and asks for error messages there too.
// The one exception is onecclCommAbort, made by the aborting goroutine because it exists to
// interrupt a call blocked on that thread. An op gives up at its deadline (ErrTimeout) even while
// its oneCCL call still runs; the group is then aborted. Rank 0 calls onecclGetUniqueId and
// publishes the bytes in the group's store; the other ranks read them. A process group has two
// communicators: one for collectives and one for users' tagged Send and Recv (each message is a
// header, then the payload; messages with other tags are kept until asked for). Sub-groups get
// communicators of their own (never onecclCommSplit, which returns wrong ranks in some builds).
//
// # A dead peer
//
// oneCCL does not say when a member dies: its peers would wait for their op's deadline. So each
// process group (not a bare Comm) keeps a liveness watch: every pair of ranks holds a TCP
// connection, on the address backends.SocketHost picks (gloo's; GCCL_SOCKET_ADDR overrides),
// that carries nothing but a goodbye or an abort, and a goroutine per peer blocks reading it. A
// connection that ends without a goodbye (the kernel closes a killed process's sockets; TCP
// keepalive probes catch a host that vanished) aborts the group with a *backends.PeerLostError
// naming the rank: the blocked op returns at once, onecclCommAbort interrupts the library's call
// where the library has it, and every later op fails with ErrPeerLost too. Close says goodbye
// first, so a clean exit is not a death; Abort sends its class (timeout, mismatch, lost peer) to
// the peers, who fail with the same kind of error. A pid check (as shm makes) would add nothing:
// a dead process's sockets close as it dies.
//
// # Ops
//
// AllReduce, Reduce, Broadcast, AllGather, ReduceScatter and equal-split AllToAll map to oneCCL's
// collectives; uneven AllToAll, Gather and Scatter are grouped sends and receives; Barrier is a
// one-element all-reduce. AVG is tried as onecclAvg once and, when the plugin rejects it (the CPU
// plugin does), run as SUM then a division from then on, on host memory (comm lowers AVG and
// PREMUL_SUM of host tensors to SUM before they reach a backend; AVG of device tensors reaches
// it). BAND, BOR and BXOR have no oneCCL op and fail with an
// error wrapping backends.ErrUnsupported. bool travels as uint8 (SUM and MAX as MAX, PRODUCT and
// MIN as MIN); the float8 dtypes as uint8, for data movement only.
//
// # Intel GPUs
//
// Process groups take device tensors (tensor.FromDevicePointer) on the group's device: the
// registered "xccl" works on GCCL_XCCL_DEVICE (such as xpu:0) when that is set, and a program that
// has a sycl::queue registers a Backend{Device, Stream} of its own under another name. The
// group's communicators call onecclSetDevice on their threads, and comm hands the group device
// tensors on that device, whose pointers go to oneCCL unchanged, with the queue (or NULL) as the
// stream; host tensors keep working on the same group:
//
//	comm.Register("xccl-gpu", xccl.Backend{Device: tensor.Device{Type: "xpu"}, Stream: queue})
//	pg, _ := comm.Init(ctx, comm.Options{Backend: "xccl-gpu"})
//	g, _ := tensor.FromDevicePointer(tensor.BFloat16, tensor.Device{Type: "xpu"}, ptr, n)
//	err := pg.AllReduce(ctx, g, comm.Sum) // onecclAllReduce(ptr, ptr, n, bfloat16, sum, comm, queue)
//
// On device tensors AllReduce, Reduce, Broadcast, AllGather, ReduceScatter (in place too: slots
// are compared by device address), equal-split AllToAll and Barrier (on 4 bytes from
// onecclMemAlloc) run as oneCCL's collectives. AVG is passed to oneCCL as onecclAvg; a plugin that
// rejects it gives ErrUnsupported, since nothing here can divide device memory (pass SUM and
// divide on the device). gccl has no SYCL kernels, so whatever would have it read, scale or copy
// device memory is refused with an error naming the op, the rank and the fix: PREMUL_SUM and the
// list variants (comm), Gather, Scatter, uneven AllToAll, Send and Recv (here). A tensor on
// another device, or host and device tensors mixed in one op, are refused by comm. An op on a
// queue may return once it is enqueued: wait on the queue before reading the output.
//
// Comm gives the same path without comm: CommOptions.Device and Stream, Comm.MemAlloc and
// Comm.MemFree (onecclMemAlloc, onecclMemFree), and DeviceBuffer for a device pointer.
//
// All of this needs an Intel GPU and a oneCCL built with SYCL support to test for real. The tests
// here run it over the fixture, whose onecclMemAlloc returns host memory standing in for device
// memory: they check that the device index, the pointers (views included), counts, dtypes, ops
// and the queue reach the library unchanged and that the results are right, not that a GPU
// build of oneCCL accepts them (in particular that it takes a NULL stream, or host memory for the
// Send and Recv headers, on a device communicator).
//
// # Testing without oneCCL
//
// testdata/fixture.c is a stand-in libccl.so.2 that records every argument and performs the
// collectives across processes over files. The tests build it with the system C compiler (and
// fail without one), check every argument of every call, and run the backend conformance suite
// over it. With GCCL_XCCL_LIBRARY pointing at a real libccl.so.2, TestConformanceRealLibrary runs
// the same suite against it (see the README's xccl section for the environment a CPU-only oneCCL
// needs).
package xccl
