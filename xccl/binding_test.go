package xccl

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/tensor"
)

// cptr spells an address as glibc's printf %p does.
func cptr(p uintptr) string {
	if p == 0 {
		return "(nil)"
	}
	return fmt.Sprintf("%#x", p)
}

func fnv(id *UniqueID) uint64 {
	h := uint64(1469598103934665603)
	for _, b := range id {
		h = (h ^ uint64(b)) * 1099511628211
	}
	return h
}

// TestCommInitRankPassesIDByValue calls onecclCommInitRank through libffi with a different
// random id each time, collecting garbage between calls, and checks that the fixture received
// all 4096 bytes, nranks and rank exactly (libffi 3.4.3-3.6.x reuses a stale id when its argument
// array is reused: this catches that).
func TestCommInitRankPassesIDByValue(t *testing.T) {
	f := openFixture(t)
	t.Setenv("GCCL_XCCL_FIXTURE_DIR", t.TempDir())
	runtime.LockOSThread() // the fixture's communicators belong to the thread that made them
	defer runtime.UnlockOSThread()
	for i := 0; i < 300; i++ {
		id := new(UniqueID)
		_, err := rand.Read(id[:])
		require.NoError(t, err)
		nranks, rank := 3+i%5, i%3
		comm, rc, err := f.lib.ffi.commInitRank(f.lib.commInitRank, nranks, id, rank)
		require.NoError(t, err)
		require.Equal(t, int32(0), rc, "call %d: %s", i, f.lib.describe(rc, 0))
		require.NotZero(t, comm, "call %d: no communicator written through the out-pointer", i)
		var got UniqueID
		f.lastID(&got[0])
		require.Equal(t, *id, got, "call %d: the id bytes changed on the way", i)
		assert.Contains(t, f.lastCall(), fmt.Sprintf("nranks=%d rank=%d idhash=%016x", nranks, rank, fnv(id)), "call %d", i)
		require.Equal(t, int32(0), f.lib.call(f.lib.commDestroy, comm))
		runtime.GC()
	}
}

// world creates one communicator per rank in this process, each on its own thread (a unit test:
// goroutines stand in for ranks; the multi-process runs are TestConformance's).
func world(t *testing.T, n int, opts CommOptions) []*Comm {
	t.Helper()
	st := store.NewMemory()
	comms := make([]*Comm, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			comms[r], errs[r] = NewComm(ctx, st, "id", r, n, opts)
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	t.Cleanup(func() {
		for _, c := range comms {
			assert.NoError(t, c.Close())
		}
	})
	return comms
}

// callLog makes the fixture append a line per call to a new file, and returns its path.
func callLog(t *testing.T) string {
	log := filepath.Join(t.TempDir(), "calls.log")
	t.Setenv("GCCL_XCCL_FIXTURE_LOG", log)
	return log
}

// onAll runs f(rank) on every rank at once and returns the errors.
func onAll(n int, f func(r int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[r] = f(r) }()
	}
	wg.Wait()
	return errs
}

// TestArgumentsArrive runs every op on a one-rank communicator and checks the fixture's record of
// the call: buffers, counts, dtype and op enums, root, communicator and stream, exactly.
func TestArgumentsArrive(t *testing.T) {
	f := useFixture(t)
	const stream = 0x5eed5eed000
	c := world(t, 1, CommOptions{Stream: stream})[0]
	ctx := context.Background()
	h, s := cptr(c.handle), cptr(stream)
	for _, dt := range tensor.AllDTypes() {
		code, _ := dataType(dt)
		in, out := tensor.New(dt, 5), tensor.New(dt, 5)
		ib, ob := in.Bytes(), out.Bytes()
		ip, op := cptr(HostBuffer(ib).addr()), cptr(HostBuffer(ob).addr())
		t.Run(dt.String(), func(t *testing.T) {
			require.NoError(t, c.Broadcast(ctx, HostBuffer(ib), HostBuffer(ob), 5, dt, 0))
			assert.Equal(t, fmt.Sprintf("onecclBroadcast send=%s recv=%s count=5 datatype=%d root=0 comm=%s stream=%s", ip, op, code, h, s), f.lastCall())
			require.NoError(t, c.AllGather(ctx, HostBuffer(ib), HostBuffer(ob), 5, dt))
			assert.Equal(t, fmt.Sprintf("onecclAllGather send=%s recv=%s count=5 datatype=%d comm=%s stream=%s", ip, op, code, h, s), f.lastCall())
			require.NoError(t, c.AllToAll(ctx, HostBuffer(ib), HostBuffer(ob), 5, dt))
			assert.Equal(t, fmt.Sprintf("onecclAllToAll send=%s recv=%s count=5 datatype=%d comm=%s stream=%s", ip, op, code, h, s), f.lastCall())
			if !reducible(dt) {
				err := c.AllReduce(ctx, HostBuffer(ib), HostBuffer(ob), 5, dt, tensor.Sum)
				require.ErrorIs(t, err, backends.ErrUnsupported)
				assert.Contains(t, err.Error(), "data movement only")
				return
			}
			for _, red := range []tensor.ReduceOp{tensor.Sum, tensor.Product, tensor.Min, tensor.Max} {
				want, err := redOp(red, dt)
				require.NoError(t, err)
				require.NoError(t, c.AllReduce(ctx, HostBuffer(ib), HostBuffer(ob), 5, dt, red))
				assert.Equal(t, fmt.Sprintf("onecclAllReduce send=%s recv=%s count=5 datatype=%d op=%d comm=%s stream=%s", ip, op, code, want, h, s), f.lastCall())
				require.NoError(t, c.Reduce(ctx, HostBuffer(ib), HostBuffer(ob), 5, dt, red, 0))
				assert.Equal(t, fmt.Sprintf("onecclReduce send=%s recv=%s count=5 datatype=%d op=%d root=0 comm=%s stream=%s", ip, op, code, want, h, s), f.lastCall())
				require.NoError(t, c.ReduceScatter(ctx, HostBuffer(ib), HostBuffer(ob), 5, dt, red))
				assert.Equal(t, fmt.Sprintf("onecclReduceScatter send=%s recv=%s count=5 datatype=%d op=%d comm=%s stream=%s", ip, op, code, want, h, s), f.lastCall())
			}
		})
	}
}

// TestEnumValues pins the dtype and op codes to oneCCL's types.h, and bool's remapping.
func TestEnumValues(t *testing.T) {
	for dt, want := range map[tensor.DType]int32{tensor.Int8: 0, tensor.Uint8: 1, tensor.Int32: 2, tensor.Int64: 4,
		tensor.Float16: 6, tensor.Float32: 7, tensor.Float64: 8, tensor.BFloat16: 9, tensor.Bool: 1, tensor.Float8E5M2: 1} {
		got, ok := dataType(dt)
		assert.True(t, ok, dt.String())
		assert.Equal(t, want, got, dt.String())
	}
	for _, tc := range []struct {
		op   tensor.ReduceOp
		dt   tensor.DType
		want int32
	}{{tensor.Sum, tensor.Float32, 0}, {tensor.Product, tensor.Int32, 1}, {tensor.Max, tensor.Int8, 2}, {tensor.Min, tensor.Float64, 3},
		{tensor.Avg, tensor.Float32, 4}, {tensor.Sum, tensor.Bool, 2}, {tensor.Product, tensor.Bool, 3}} {
		got, err := redOp(tc.op, tc.dt)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, "%s on %s", tc.op, tc.dt)
	}
}

// TestP2PAndGroupArguments checks grouped sends and receives between two ranks: the records of
// both calls, and that the data crossed.
func TestP2PAndGroupArguments(t *testing.T) {
	useFixture(t)
	log := callLog(t)
	comms := world(t, 2, CommOptions{})
	ctx := context.Background()
	bufs := [2][]byte{[]byte("from rank 0!"), []byte("from rank 1!")}
	got := [2][]byte{make([]byte, 12), make([]byte, 12)}
	errs := onAll(2, func(r int) error {
		return comms[r].Group(ctx, "exchange", []P2P{
			{Buf: HostBuffer(bufs[r]), Count: 3, DType: tensor.Int32, Peer: 1 - r},
			{Recv: true, Buf: HostBuffer(got[r]), Count: 3, DType: tensor.Int32, Peer: 1 - r},
		})
	})
	require.NoError(t, errors.Join(errs...))
	assert.Equal(t, "from rank 1!", string(got[0]))
	assert.Equal(t, "from rank 0!", string(got[1]))
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	for r := 0; r < 2; r++ {
		h := cptr(comms[r].handle)
		assert.Contains(t, string(b), fmt.Sprintf("onecclSend send=%s count=3 datatype=2 peer=%d comm=%s stream=(nil) group=1", cptr(HostBuffer(bufs[r]).addr()), 1-r, h))
		assert.Contains(t, string(b), fmt.Sprintf("onecclRecv recv=%s count=3 datatype=2 peer=%d comm=%s stream=(nil) group=1", cptr(HostBuffer(got[r]).addr()), 1-r, h))
	}
	assert.Equal(t, 2, strings.Count(string(b), "onecclGroupEnd depth=1 pending=2"))
}

// TestAvgFallsBackToSum: the fixture rejects onecclAvg as the CPU plugin does; Comm then runs
// SUM and divides, and remembers not to try AVG again.
func TestAvgFallsBackToSum(t *testing.T) {
	useFixture(t)
	log := callLog(t)
	comms := world(t, 2, CommOptions{})
	ctx := context.Background()
	bufs := [2]*tensor.Tensor{}
	for it := 0; it < 2; it++ {
		for r := range bufs {
			var err error
			bufs[r], err = tensor.FromFloat64s(tensor.Float32, []float64{float64(2 * (r + 1)), float64(4 * (r + 1))}, 2)
			require.NoError(t, err)
		}
		errs := onAll(2, func(r int) error {
			b := bufs[r].Bytes()
			return comms[r].AllReduce(ctx, HostBuffer(b), HostBuffer(b), 2, tensor.Float32, tensor.Avg)
		})
		require.NoError(t, errors.Join(errs...))
		for r := range bufs {
			assert.Equal(t, []float64{3, 6}, bufs[r].Float64s(), "iteration %d rank %d", it, r)
		}
	}
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(string(b), "datatype=7 op=4"), "each rank tries AVG once")
	assert.Equal(t, 4, strings.Count(string(b), "datatype=7 op=0"), "then SUM, twice per rank")
}

// TestBadInput: clear errors naming the op, the rank and the fix, before anything reaches oneCCL.
func TestBadInput(t *testing.T) {
	f := useFixture(t)
	c := world(t, 1, CommOptions{Name: "g"})[0]
	ctx := context.Background()
	b := make([]byte, 16)
	for _, tc := range []struct {
		name string
		call func() error
		is   error
		says []string
	}{
		{"BAND", func() error { return c.AllReduce(ctx, HostBuffer(b), HostBuffer(b), 4, tensor.Int32, tensor.BAnd) },
			backends.ErrUnsupported, []string{"all_reduce on rank 0 of 1", "BAND", "gloo or shm"}},
		{"BXOR reduce_scatter", func() error { return c.ReduceScatter(ctx, HostBuffer(b), HostBuffer(b), 4, tensor.Int32, tensor.BXor) },
			backends.ErrUnsupported, []string{"reduce_scatter on rank 0", "BXOR"}},
		{"float8 sum", func() error {
			return c.AllReduce(ctx, HostBuffer(b), HostBuffer(b), 4, tensor.Float8E4M3FN, tensor.Sum)
		}, backends.ErrUnsupported, []string{"data movement only", "bfloat16 or float32"}},
		{"short buffer", func() error { return c.AllReduce(ctx, HostBuffer(b), HostBuffer(b), 5, tensor.Int32, tensor.Sum) },
			nil, []string{"all_reduce on rank 0", "holds 16 bytes but the op needs 20"}},
		{"root", func() error { return c.Broadcast(ctx, HostBuffer(b), HostBuffer(b), 4, tensor.Int32, 3) },
			nil, []string{"broadcast on rank 0", "root 3 is out of range"}},
		{"peer", func() error {
			return c.Group(ctx, "send", []P2P{{Buf: HostBuffer(b), Count: 1, DType: tensor.Int32, Peer: 0}})
		}, nil, []string{"send on rank 0", "peer 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.calls()
			err := tc.call()
			require.Error(t, err)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			for _, s := range tc.says {
				assert.Contains(t, err.Error(), s)
			}
			assert.Equal(t, before, f.calls(), "nothing reached the library")
		})
	}
}

// TestLibraryErrorsCarryLastError: an error from the library spells the code with
// onecclGetErrorString and appends onecclGetLastError's message.
func TestLibraryErrorsCarryLastError(t *testing.T) {
	useFixture(t)
	comms := world(t, 2, CommOptions{})
	ctx := context.Background()
	errs := onAll(2, func(r int) error {
		b := make([]byte, 4*(r+1)) // the ranks disagree on the count
		return comms[r].AllReduce(ctx, HostBuffer(b), HostBuffer(b), r+1, tensor.Float32, tensor.Sum)
	})
	for r, err := range errs {
		require.Error(t, err, "rank %d", r)
		assert.Contains(t, err.Error(), fmt.Sprintf("all_reduce on rank %d of 2", r))
		assert.Contains(t, err.Error(), "oneCCL error 5: onecclInvalidUsage: invalid usage: collective 1: rank")
	}
	assert.ErrorIs(t, openFixture(t).lib.resultError("onecclAllReduce", resPluginException, 0), backends.ErrUnsupported)
}

// TestOneThreadPerCommunicator: the fixture refuses a communicator's calls from any thread but
// its creator's, so every op passing elsewhere shows that Comm keeps its calls on one thread.
func TestOneThreadPerCommunicator(t *testing.T) {
	useFixture(t)
	c := world(t, 1, CommOptions{})[0]
	done := make(chan int32)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var size int32
		done <- c.lib.call(c.lib.commCount, c.handle, uintptr(unsafe.Pointer(&size)))
	}()
	rc := <-done
	assert.Equal(t, int32(5), rc, "a call from another thread must be refused")
	var msg string
	require.NoError(t, c.th.do(context.Background(), nil, func() { msg = c.lib.lastError(c.handle) }))
	assert.Contains(t, msg, "used from thread", "the message, asked for on the communicator's thread")
	assert.Contains(t, c.lib.lastError(c.handle), "not the communicator's", "asked for elsewhere")
	// On its own thread it works, many times over, with goroutines of any thread calling.
	errs := onAll(8, func(int) error {
		b := make([]byte, 8)
		return c.AllReduce(context.Background(), HostBuffer(b), HostBuffer(b), 2, tensor.Int32, tensor.Sum)
	})
	require.NoError(t, errors.Join(errs...))
}

// TestTimeoutAndAbort: a rank whose peer never arrives gets ErrTimeout at its deadline, not a
// hang; Abort releases the blocked call and Close returns promptly.
func TestTimeoutAndAbort(t *testing.T) {
	useFixture(t)
	st := store.NewMemory()
	ctx := context.Background()
	// Rank 1 never calls anything after init: make both, then use rank 0 alone.
	var c1 *Comm
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c1, _ = NewComm(ctx, st, "id", 1, 2, CommOptions{}) }()
	c0, err := NewComm(ctx, st, "id", 0, 2, CommOptions{})
	require.NoError(t, err)
	wg.Wait()
	require.NotNil(t, c1)
	defer c1.Close()
	b := make([]byte, 4)
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c0.AllReduce(tctx, HostBuffer(b), HostBuffer(b), 1, tensor.Float32, tensor.Sum)
	require.ErrorIs(t, err, backends.ErrTimeout)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Contains(t, err.Error(), "all_reduce on rank 0 of 2")
	c0.Abort(err)
	err = c0.AllReduce(ctx, HostBuffer(b), HostBuffer(b), 1, tensor.Float32, tensor.Sum)
	assert.ErrorIs(t, err, backends.ErrAborted, "later ops fail fast")
	start = time.Now()
	assert.NoError(t, c0.Close())
	assert.Less(t, time.Since(start), 5*time.Second, "Close after an abort returns promptly")
}

// TestDevicePath: onecclSetDevice on the communicator's thread before init, device memory from
// onecclMemAlloc, device pointers and the caller's queue passed through unchanged. (The fixture's
// "device" memory is host memory: the real path needs an Intel GPU.)
func TestDevicePath(t *testing.T) {
	f := useFixture(t)
	log := callLog(t)
	const queue = 0x51c1a000
	c := world(t, 1, CommOptions{Device: tensor.Device{Type: "xpu", Index: 3}, Stream: queue})[0]
	ctx := context.Background()
	p, err := c.MemAlloc(ctx, 4096)
	require.NoError(t, err)
	require.NotZero(t, p)
	assert.Equal(t, "onecclMemAlloc ptr="+strings.Split(strings.TrimPrefix(f.lastCall(), "onecclMemAlloc ptr="), " ")[0]+" size=4096 device=3", f.lastCall(),
		"allocated on the communicator's thread, whose device is 3")
	require.NoError(t, c.AllReduce(ctx, DeviceBuffer(p), DeviceBuffer(p), 1024, tensor.BFloat16, tensor.Sum))
	assert.Equal(t, fmt.Sprintf("onecclAllReduce send=%s recv=%s count=1024 datatype=9 op=0 comm=%s stream=%s", cptr(p), cptr(p), cptr(c.handle), cptr(queue)), f.lastCall())
	require.NoError(t, c.MemFree(ctx, p))
	assert.Equal(t, "onecclMemFree ptr="+cptr(p), f.lastCall())
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	require.GreaterOrEqual(t, len(lines), 2)
	assert.Equal(t, "onecclSetDevice index=3", lines[0], "the device is set before the communicator is made")
	assert.True(t, strings.HasPrefix(lines[1], "onecclGetUniqueId"), lines[1])

	_, err = NewComm(ctx, store.NewMemory(), "id", 0, 1, CommOptions{Device: tensor.Device{Type: "cuda"}})
	assert.ErrorIs(t, err, backends.ErrUnsupported)
}

// TestDeviceWithoutDeviceFunctions: a library without onecclSetDevice/onecclMemAlloc loads (they
// are optional) but refuses device communicators and allocations clearly.
func TestDeviceWithoutDeviceFunctions(t *testing.T) {
	useFixture(t)
	lib, err := open(buildFixture(t, "-DFIXTURE_NO_DEVICE"))
	require.NoError(t, err)
	assert.Zero(t, lib.setDevice)
	loaded = lib
	_, err = NewComm(context.Background(), store.NewMemory(), "id", 0, 1, CommOptions{Device: tensor.Device{Type: "xpu"}})
	require.ErrorIs(t, err, backends.ErrUnsupported)
	assert.Contains(t, err.Error(), "no onecclSetDevice")
	c := world(t, 1, CommOptions{})[0]
	_, err = c.MemAlloc(context.Background(), 16)
	require.ErrorIs(t, err, backends.ErrUnsupported)
	assert.Contains(t, err.Error(), "no onecclMemAlloc")
}

// TestLoadErrors: a missing library, a missing symbol and a too-old version are errors that name
// what was looked for.
func TestLoadErrors(t *testing.T) {
	_, err := loadFirst([]string{"/nonexistent/a/libccl.so.2", "libccl-not-here.so.2"})
	require.ErrorIs(t, err, ErrLibrary)
	for _, s := range []string{"/nonexistent/a/libccl.so.2", "libccl-not-here.so.2", EnvLibrary, "CCL_ROOT"} {
		assert.Contains(t, err.Error(), s)
	}

	noA2A := buildFixture(t, "-DFIXTURE_OMIT_ALLTOALL")
	_, err = loadFirst([]string{noA2A, buildFixture(t)})
	require.ErrorIs(t, err, ErrLibrary)
	assert.Contains(t, err.Error(), noA2A+" has no onecclAllToAll")
	assert.NotContains(t, err.Error(), buildFixture(t)+";", "a found but unusable library stops the search")

	t.Setenv("GCCL_XCCL_FIXTURE_VERSION", "20210500")
	_, err = open(buildFixture(t))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "oneCCL 2021.5.0, older than 2022.0.0")

	t.Setenv("GCCL_XCCL_FIXTURE_VERSION", "20220100")
	lib, err := open(buildFixture(t))
	require.NoError(t, err)
	assert.Equal(t, 20220100, lib.version)
}

// TestCandidates: GCCL_XCCL_LIBRARY alone, else $CCL_ROOT/lib/libccl.so.2, then the soname.
func TestCandidates(t *testing.T) {
	t.Setenv(EnvLibrary, "")
	t.Setenv("CCL_ROOT", "/opt/ccl")
	assert.Equal(t, []string{"/opt/ccl/lib/libccl.so.2", "libccl.so.2"}, Candidates())
	t.Setenv("CCL_ROOT", "")
	assert.Equal(t, []string{"libccl.so.2"}, Candidates())
	t.Setenv(EnvLibrary, "/x/libccl.so.2")
	assert.Equal(t, []string{"/x/libccl.so.2"}, Candidates())
}
