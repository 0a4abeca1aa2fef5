package comm_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

// A one-rank job needs no launcher and no store; with more ranks the same code runs under
// gccl run, and every rank gets the sum of all ranks' tensors.
func ExampleInit() {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pg.Close()
	t := tensor.FromSlice([]float32{1, 2, 3})
	if err := pg.AllReduce(ctx, t, comm.Sum); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("rank", pg.Rank(), "of", pg.Size(), "on", pg.Backend(), ":", t.Float32s())
	// Output: rank 0 of 1 on gloo : [1 2 3]
}

// Bad arguments fail before anything is sent, with an error that names the op and the fix.
func ExampleProcessGroup_Broadcast_badRoot() {
	ctx := context.Background()
	pg, _ := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	defer pg.Close()
	err := pg.Broadcast(ctx, tensor.New(tensor.Float32, 4), 3)
	fmt.Println(err)
	// Output: gccl: broadcast on group "0" (default_pg) (rank 0 of 1): root 3 is out of range: the group has ranks 0..0: invalid argument
}

func ExampleAllGatherObject() {
	ctx := context.Background()
	pg, _ := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	defer pg.Close()
	type info struct{ Host string }
	all, err := comm.AllGatherObject(ctx, pg, info{Host: "node-a"})
	fmt.Println(all, err)
	// Output: [{node-a}] <nil>
}

// Root collects every rank's value, in rank order; other ranks get nil.
func ExampleGatherObject() {
	ctx := context.Background()
	pg, _ := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	defer pg.Close()
	type stats struct {
		Rank int
		Loss float64
	}
	all, err := comm.GatherObject(ctx, pg, stats{Rank: pg.Rank(), Loss: 0.25}, 0)
	fmt.Println(all, err)
	// Output: [{0 0.25}] <nil>
}

// Root hands every rank its entry of a list it alone fills (one value per rank).
func ExampleScatterObject() {
	ctx := context.Background()
	pg, _ := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1})
	defer pg.Close()
	type shard struct {
		Files []string
		Opts  map[string]int
	}
	var work []shard // read on the root only
	if pg.Rank() == 0 {
		for r := range pg.Size() {
			work = append(work, shard{Files: []string{fmt.Sprintf("part-%d", r)}, Opts: map[string]int{"batch": 32}})
		}
	}
	mine, err := comm.ScatterObject(ctx, pg, work, 0)
	fmt.Println(mine, err)
	// Output: {[part-0] map[batch:32]} <nil>
}

// Ranks on one host can share memory (backend shm): each writes its part, then signals; a peer
// waits for that signal, then reads the part in place, with no collective in between.
func ExampleSharedBuffer_Signal() {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1, Backend: "shm"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pg.Close()
	const part = 8
	buf, err := pg.AllocShared(ctx, pg.Size()*part)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer buf.Close()
	copy(buf.Bytes()[pg.Rank()*part:], fmt.Sprintf("rank %d", pg.Rank()))
	if err := buf.Signal(0, 1); err != nil { // signal 0 reaches 1: my part is written
		fmt.Println(err)
		return
	}
	for r := range pg.Size() {
		if err := buf.WaitSignal(ctx, r, 0, 1); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(strings.TrimRight(string(buf.Bytes()[r*part:(r+1)*part]), "\x00"))
	}
	// Output: rank 0
}
