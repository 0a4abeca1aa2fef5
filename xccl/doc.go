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
// plugin does), run as SUM then a division from then on (comm lowers AVG and PREMUL_SUM to SUM
// before they reach a backend in any case). BAND, BOR and BXOR have no oneCCL op and fail with an
// error wrapping backends.ErrUnsupported. bool travels as uint8 (SUM and MAX as MAX, PRODUCT and
// MIN as MIN); the float8 dtypes as uint8, for data movement only.
//
// # Intel GPUs
//
// Comm works on device memory too: CommOptions.Device (xpu:N) calls onecclSetDevice on the
// communicator's thread, Comm.MemAlloc and Comm.MemFree call onecclMemAlloc and onecclMemFree, a
// DeviceBuffer passes a device pointer through, and CommOptions.Stream passes the caller's
// sycl::queue as the stream. This path needs an Intel GPU and a oneCCL built with SYCL support
// to test for real: the tests here check only that the device index, pointers and queue reach the
// library unchanged. Process groups (comm) hand xccl host tensors only, because gccl's tensors
// cannot yet point at device memory.
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
