package xccl_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
	"github.com/gccl/gccl/xccl"
)

// A process group over oneCCL: the same calls as over any backend. (Needs a oneCCL: see the
// README's xccl section. Run every rank, for instance with gccl run --backend xccl.)
func Example() {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Backend: "xccl"})
	if err != nil {
		log.Fatal(err) // names the libraries looked for when oneCCL is missing
	}
	defer pg.Close()
	t := tensor.New(tensor.BFloat16, 1024)
	t.Fill(1)
	if err := pg.AllReduce(ctx, t, comm.Sum); err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Float64s()[0] == float64(pg.Size()))
}

// A communicator on an Intel GPU: device memory from onecclMemAlloc, the caller's sycl::queue as
// the stream. (Needs an Intel GPU and a oneCCL built with SYCL.)
func ExampleNewComm() {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Backend: "gloo"}) // any group, for its store and ranks
	if err != nil {
		log.Fatal(err)
	}
	defer pg.Close()
	var queue uintptr // the address of the caller's sycl::queue, from the SYCL side of the program
	c, err := xccl.NewComm(ctx, pg.Store(), "gpu-comm", pg.Rank(), pg.Size(), xccl.CommOptions{
		Device: tensor.Device{Type: "xpu", Index: 0},
		Stream: queue,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	const n = 1 << 20
	buf, err := c.MemAlloc(ctx, n*2)
	if err != nil {
		log.Fatal(err)
	}
	defer c.MemFree(ctx, buf)
	if err := c.AllReduce(ctx, xccl.DeviceBuffer(buf), xccl.DeviceBuffer(buf), n, tensor.BFloat16, tensor.Sum); err != nil {
		log.Fatal(err)
	}
}

// Device tensors through a process group: a backend on the GPU with the caller's sycl::queue,
// and a tensor over device memory. (Needs an Intel GPU and a oneCCL built with SYCL.)
func ExampleBackend() {
	ctx := context.Background()
	var queue, ptr uintptr // the sycl::queue and a sycl::malloc_device allocation, from the SYCL side
	xpu := tensor.Device{Type: "xpu", Index: 0}
	comm.Register("xccl-gpu", xccl.Backend{Device: xpu, Stream: queue})
	pg, err := comm.Init(ctx, comm.Options{Backend: "xccl-gpu"})
	if err != nil {
		log.Fatal(err)
	}
	defer pg.Close()
	g, err := tensor.FromDevicePointer(tensor.BFloat16, xpu, ptr, 4096)
	if err != nil {
		log.Fatal(err)
	}
	if err := pg.AllReduce(ctx, g, comm.Sum); err != nil { // enqueued on queue: wait on it before reading g
		log.Fatal(err)
	}
}
