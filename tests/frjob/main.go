// Command frjob is a job that goes wrong on purpose, for the flight-recorder scenario tests:
// every rank runs five all-reduces, then at the sixth op one rank does the scenario's wrong
// thing, then every rank runs five more.
//
//	gccl run --nproc-per-node 4 -- frjob skip|op|size|dtype|kill|none
//
// skip: rank 1 never calls the sixth all-reduce (it sleeps); op: rank 1 calls all_gather;
// size: rank 2 passes twice the elements; dtype: rank 3 passes float64; kill: rank 2 kills
// itself with SIGKILL; none: nothing goes wrong.
package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

const count = 1024

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: frjob skip|op|size|dtype|kill|none")
		os.Exit(2)
	}
	scenario := os.Args[1]
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	if err != nil {
		fail(err)
	}
	defer pg.Close()
	t := tensor.New(tensor.Float32, count)
	for i := 0; i < 5; i++ {
		if err := pg.AllReduce(ctx, t, comm.Sum); err != nil {
			fail(err)
		}
	}
	if err := step(ctx, pg, scenario, t); err != nil {
		fail(err)
	}
	for i := 0; i < 5; i++ {
		if err := pg.AllReduce(ctx, t, comm.Sum); err != nil {
			fail(err)
		}
	}
}

// step is the sixth op, where the scenario's rank goes wrong.
func step(ctx context.Context, pg *comm.ProcessGroup, scenario string, t *tensor.Tensor) error {
	switch r := pg.Rank(); {
	case scenario == "skip" && r == 1:
		time.Sleep(time.Minute) // the others time out; the launcher stops this rank
		return nil
	case scenario == "op" && r == 1:
		return pg.AllGather(ctx, tensor.New(tensor.Float32, pg.Size()*count), t)
	case scenario == "size" && r == 2:
		return pg.AllReduce(ctx, tensor.New(tensor.Float32, 2*count), comm.Sum)
	case scenario == "dtype" && r == 3:
		return pg.AllReduce(ctx, tensor.New(tensor.Float64, count), comm.Sum)
	case scenario == "kill" && r == 2:
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return pg.AllReduce(ctx, t, comm.Sum)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "frjob:", err)
	os.Exit(1)
}
