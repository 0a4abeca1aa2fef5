package xccl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// fakeQueue stands for a sycl::queue's address: the fixture records the stream, never uses it.
const fakeQueue = uintptr(0x5eed000)

var xpu0 = tensor.Device{Type: "xpu"}

// TestDeviceTensorsThroughComm: real processes, two ranks, GCCL_XCCL_DEVICE=xpu:0. Device
// tensors (over the fixture's onecclMemAlloc, which returns host memory standing in for device
// memory) go through comm to oneCCL as their device pointers: the fixture's log shows the exact
// pointers, count, dtype, op and stream of each call, and the results are right. Ops that would
// need gccl to touch device memory, and bad input, are refused with errors naming the op, the
// rank and the fix.
func TestDeviceTensorsThroughComm(t *testing.T) {
	if ranktest.Child(t) {
		deviceChild(t)
		return
	}
	dir := t.TempDir()
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: time.Minute,
		Env: []string{
			EnvLibrary + "=" + buildFixture(t), "GCCL_XCCL_FIXTURE_DIR=" + t.TempDir(),
			EnvDevice + "=xpu:0",
		},
		RankEnv: func(r int) []string {
			return []string{"GCCL_XCCL_FIXTURE_LOG=" + filepath.Join(dir, "calls."+strconv.Itoa(r))}
		},
	})
	ranktest.AssertExitedZero(t, res)
	for _, r := range res {
		assert.Contains(t, r.Output, "RESULT device ops checked", "rank %d", r.Rank)
	}
}

func deviceChild(t *testing.T) {
	ctx := context.Background()
	comm.Register("xccl-queue-test", Backend{Device: xpu0, Stream: fakeQueue})
	pg, err := comm.Init(ctx, comm.Options{Backend: "xccl", Timeout: 30 * time.Second})
	require.NoError(t, err)
	rank, n := pg.Rank(), pg.Size()
	logPath := os.Getenv("GCCL_XCCL_FIXTURE_LOG")

	// The all-reduce: rank r contributes r+1, r+2, r+3, r+4.
	x := devFloat32s(t, float32(rank+1), float32(rank+2), float32(rank+3), float32(rank+4))
	require.NoError(t, pg.AllReduce(ctx, x, comm.Sum))
	assert.Equal(t, []float32{3, 5, 7, 9}, devRead(x))
	p := x.DevicePointer()
	assertCalled(t, logPath, fmt.Sprintf("onecclAllReduce send=%#x recv=%#x count=4 datatype=7 op=0 ", p, p), "stream=(nil)")
	// MAX, in place on a Narrow view: the pointer is the view's.
	tail, err := x.Narrow(0, 2, 2)
	require.NoError(t, err)
	require.NoError(t, pg.AllReduce(ctx, tail, comm.Max))
	assertCalled(t, logPath, fmt.Sprintf("onecclAllReduce send=%#x recv=%#x count=2 datatype=7 op=2 ", p+8, p+8), "stream=(nil)")

	// The all-gather: out holds every rank's 3 int32.
	in := devAlloc(t, tensor.Int32, 3)
	copy(devBytes(in), tensor.FromSlice([]int32{int32(10 * rank), int32(10*rank + 1), int32(10*rank + 2)}).Bytes())
	out := devAlloc(t, tensor.Int32, 3*n)
	require.NoError(t, pg.AllGather(ctx, out, in))
	assert.Equal(t, []int32{0, 1, 2, 10, 11, 12}, as32(devBytes(out)))
	assertCalled(t, logPath, fmt.Sprintf("onecclAllGather send=%#x recv=%#x count=3 datatype=2 ", in.DevicePointer(), out.DevicePointer()), "stream=(nil)")
	// In place: the input is this rank's slot of the output, by device address.
	slot, err := out.Narrow(0, 3*rank, 3)
	require.NoError(t, err)
	require.NoError(t, pg.AllGather(ctx, out, slot))

	// The broadcast, from rank 1, of bfloat16.
	b := devAlloc(t, tensor.BFloat16, 2)
	if rank == 1 {
		copy(devBytes(b), tensor.FromBFloat16Bits([]uint16{tensor.Float32ToBFloat16(1.5), tensor.Float32ToBFloat16(-2)}).Bytes())
	}
	require.NoError(t, pg.Broadcast(ctx, b, 1))
	assert.Equal(t, []uint16{tensor.Float32ToBFloat16(1.5), tensor.Float32ToBFloat16(-2)}, as16(devBytes(b)))
	assertCalled(t, logPath, fmt.Sprintf("onecclBroadcast send=%#x recv=%#x count=2 datatype=9 root=1 ", b.DevicePointer(), b.DevicePointer()), "stream=(nil)")

	// The device communicators: onecclSetDevice(0) on each one's thread, and a barrier that
	// all-reduces 4 bytes of device memory from onecclMemAlloc.
	require.NoError(t, pg.Barrier(ctx))
	assertCalled(t, logPath, "onecclSetDevice index=0")
	assertCalled(t, logPath, "onecclMemAlloc ", "size=4 device=0")

	// Host tensors still work on a device group, with comm's own AVG.
	h, err := tensor.FromFloat64s(tensor.Float32, []float64{float64(rank), 4}, 2)
	require.NoError(t, err)
	require.NoError(t, pg.AllReduce(ctx, h, comm.Avg))
	assert.Equal(t, []float64{0.5, 4}, h.Float64s())

	// Bad input, refused before anything is sent (the group stays usable).
	invalid := func(err error, op string, want ...string) {
		t.Helper()
		require.ErrorIs(t, err, comm.ErrInvalidArgument)
		for _, s := range append([]string{op, fmt.Sprintf("rank %d of %d", rank, n)}, want...) {
			assert.Contains(t, err.Error(), s)
		}
	}
	unsupported := func(err error, op string, want ...string) {
		t.Helper()
		require.ErrorIs(t, err, comm.ErrUnsupported)
		for _, s := range append([]string{op, fmt.Sprintf("rank %d", rank)}, want...) {
			assert.Contains(t, err.Error(), s)
		}
	}
	invalid(pg.AllGather(ctx, tensor.New(tensor.Int32, 3*n), in), "all_gather",
		"the input is on xpu:0 but the output is on cpu", "pass the tensors of one op on one device")
	invalid(pg.ReduceScatter(ctx, in, tensor.New(tensor.Int32, 3*n), comm.Sum), "reduce_scatter", "the input is on cpu but the output is on xpu:0")
	other, err := tensor.FromDevicePointer(tensor.Float32, tensor.Device{Type: "xpu", Index: 1}, x.DevicePointer(), 4)
	require.NoError(t, err)
	invalid(pg.AllReduce(ctx, other, comm.Sum), "all_reduce", "is on device xpu:1, which this xccl group does not run on", "GCCL_XCCL_DEVICE")
	unsupported(pg.AllReduceWith(ctx, x, comm.PreMulSum(0.5)), "all_reduce", "PREMUL_SUM on xpu:0 tensors", "multiply the input by 0.5 on the device, then pass SUM")
	unsupported(pg.AllGatherList(ctx, []*tensor.Tensor{in, in}, in), "all_gather", "AllGatherList of xpu:0 tensors", "Chunk(2, 0)")
	unsupported(pg.ReduceScatterList(ctx, in, []*tensor.Tensor{in, in}, comm.Sum), "reduce_scatter", "lay the inputs out in one tensor")
	require.NoError(t, pg.AllReduce(ctx, x, comm.Sum), "nothing was sent: the group still works")

	// A backend with a SYCL queue passes it as every op's stream.
	q, err := pg.NewGroup(ctx, []int{0, 1}, comm.GroupOptions{Backend: "xccl-queue-test"})
	require.NoError(t, err)
	require.NoError(t, q.AllReduce(ctx, x, comm.Min))
	assertCalled(t, logPath, fmt.Sprintf("onecclAllReduce send=%#x recv=%#x count=4 datatype=7 op=3 ", p, p), fmt.Sprintf("stream=%#x", fakeQueue))
	// Ops that would need xccl to copy device memory itself fail on the backend, naming the fix.
	// (On a group of their own: the failure aborts the group, on the peer too, which may still
	// be finishing the op before.)
	g, err := pg.NewGroup(ctx, []int{0, 1}, comm.GroupOptions{})
	require.NoError(t, err)
	unsupported(g.Gather(ctx, out, in, 0), "gather", "gather of device tensors (xpu:0)", "all-gather on the device instead")
	require.NoError(t, g.Close())
	require.NoError(t, q.Close())

	// AVG goes to oneCCL as onecclAvg (comm cannot divide device memory); the fixture, like
	// oneCCL's CPU plugin, rejects it, and xccl cannot fall back to SUM and a division.
	// The peer, refusing first, may abort this rank's group before its own call: then its
	// reason is in the error.
	err = pg.AllReduce(ctx, x, comm.Avg)
	if errors.Is(err, comm.ErrUnsupported) {
		assertCalled(t, logPath, fmt.Sprintf("onecclAllReduce send=%#x recv=%#x count=4 datatype=7 op=4 ", p, p))
	} else {
		require.ErrorIs(t, err, comm.ErrAborted)
		assert.Contains(t, err.Error(), fmt.Sprintf("aborted by rank %d", 1-rank))
	}
	for _, s := range []string{"all_reduce", "rejects AVG", fmt.Sprintf("pass SUM and divide by %d on the device", n)} {
		assert.Contains(t, err.Error(), s)
	}
	_ = pg.Close()
	fmt.Println("RESULT device ops checked")
}

// devAlloc makes a device tensor over the fixture's onecclMemAlloc (host memory standing in for
// device memory, so that the test can read it), freed at the end of the test.
func devAlloc(t *testing.T, dt tensor.DType, n int) *tensor.Tensor {
	t.Helper()
	lib, err := load()
	require.NoError(t, err)
	var p uintptr
	r, _, _ := purego.SyscallN(lib.memAlloc, uintptr(unsafe.Pointer(&p)), uintptr(n*dt.Size()))
	require.Zero(t, int32(r), "onecclMemAlloc")
	t.Cleanup(func() { purego.SyscallN(lib.memFree, p) })
	d, err := tensor.FromDevicePointer(dt, xpu0, p, n)
	require.NoError(t, err)
	return d
}

func devFloat32s(t *testing.T, v ...float32) *tensor.Tensor {
	d := devAlloc(t, tensor.Float32, len(v))
	copy(devBytes(d), tensor.FromSlice(v).Bytes())
	return d
}

// devBytes is the fixture's "device memory" of d, which the test may read (a real device's may not).
// The address is C memory, which Go's collector neither moves nor frees.
func devBytes(d *tensor.Tensor) []byte {
	p := d.DevicePointer()
	return unsafe.Slice(*(**byte)(unsafe.Pointer(&p)), d.NBytes())
}

func devRead(d *tensor.Tensor) []float32 { return as32f(devBytes(d)) }

func as32f(b []byte) []float32 {
	t, _ := tensor.FromBytes(tensor.Float32, append([]byte(nil), b...))
	return t.Float32s()
}

func as32(b []byte) []int32 {
	t, _ := tensor.FromBytes(tensor.Int32, append([]byte(nil), b...))
	return t.Int32s()
}

func as16(b []byte) []uint16 {
	t, _ := tensor.FromBytes(tensor.BFloat16, append([]byte(nil), b...))
	return t.Uint16s()
}

// assertCalled checks that a line of the fixture's call log starts with prefix and contains
// every one of want.
func assertCalled(t *testing.T, logPath, prefix string, want ...string) {
	t.Helper()
	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return
		}
	}
	t.Errorf("no call %q with %q in the fixture's log:\n%s", prefix, want, b)
}
