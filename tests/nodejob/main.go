// Command nodejob is the job of the multi-node tests and of the launcher benchmarks:
//
//	gccl run ... nodejob check|long|idle|failfirst|longfirst|once
//
// check: every rank all-reduces, all-gathers and broadcasts and checks the results on every
// element, then prints "rank R of W node G local L restart C: ok". long: prints "ready rank=R
// pid=P" after a first all-reduce, then all-reduces every 20 ms for two minutes (a job to kill
// in the middle). idle: prints the ready line after one all-reduce, then sleeps two minutes
// without talking to its peers (only the launcher can stop it early). failfirst: rank 3 exits with status 3 on the first attempt
// (TORCHELASTIC_RESTART_COUNT=0), then check. longfirst: long on the first attempt, then check.
// once: one 8-byte all-reduce, then exit (the startup benchmark).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: nodejob check|long|idle|failfirst|longfirst|once")
		os.Exit(2)
	}
	mode := os.Args[1]
	restart := os.Getenv("TORCHELASTIC_RESTART_COUNT")
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	if err != nil {
		fail("init: %v", err)
	}
	defer pg.Close()
	switch {
	case mode == "once":
		t := tensor.New(tensor.Float32, 2)
		if err := pg.AllReduce(ctx, t, comm.Sum); err != nil {
			fail("all_reduce: %v", err)
		}
		return
	case mode == "long" || (mode == "longfirst" && restart == "0"):
		long(ctx, pg)
		return
	case mode == "idle":
		if err := pg.AllReduce(ctx, tensor.New(tensor.Float32, 2), comm.Sum); err != nil {
			fail("all_reduce: %v", err)
		}
		fmt.Printf("ready rank=%d pid=%d\n", pg.Rank(), os.Getpid())
		time.Sleep(2 * time.Minute)
		return
	case mode == "failfirst" && restart == "0" && pg.Rank() == 3:
		fail("rank 3 fails on purpose on the first attempt")
	}
	check(ctx, pg, restart)
}

func long(ctx context.Context, pg *comm.ProcessGroup) {
	t := tensor.New(tensor.Float32, 256)
	for i, end := 0, time.Now().Add(2*time.Minute); time.Now().Before(end); i++ {
		if err := pg.AllReduce(ctx, t, comm.Sum); err != nil {
			fail("all_reduce %d: %v", i, err)
		}
		if i == 0 {
			fmt.Printf("ready rank=%d pid=%d\n", pg.Rank(), os.Getpid())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func check(ctx context.Context, pg *comm.ProcessGroup, restart string) {
	rank, n := pg.Rank(), pg.Size()
	t := tensor.New(tensor.Float32, 1024)
	t.Fill(float64(rank + 1))
	if err := pg.AllReduce(ctx, t, comm.Sum); err != nil {
		fail("all_reduce: %v", err)
	}
	want := float64(n * (n + 1) / 2)
	for i, v := range t.Float32s() {
		if float64(v) != want {
			fail("all_reduce: element %d is %v, want %v", i, v, want)
		}
	}
	in := tensor.FromSlice([]int64{int64(rank * 10), int64(rank*10 + 1)})
	out := tensor.New(tensor.Int64, 2*n)
	if err := pg.AllGather(ctx, out, in); err != nil {
		fail("all_gather: %v", err)
	}
	for i, v := range out.Int64s() {
		if w := int64(i/2*10 + i%2); v != w {
			fail("all_gather: slot %d is %d, want %d", i, v, w)
		}
	}
	b := tensor.New(tensor.Float64, 8)
	if rank == n-1 {
		b.Fill(2.5)
	}
	if err := pg.Broadcast(ctx, b, n-1); err != nil {
		fail("broadcast: %v", err)
	}
	for i, v := range b.Float64s() {
		if v != 2.5 {
			fail("broadcast: element %d is %v, want 2.5", i, v)
		}
	}
	if err := pg.Barrier(ctx); err != nil {
		fail("barrier: %v", err)
	}
	fmt.Printf("rank %d of %d node %s local %s restart %s: ok\n", rank, n, os.Getenv("GROUP_RANK"), os.Getenv("LOCAL_RANK"), restart)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "nodejob: "+format+"\n", args...)
	os.Exit(3)
}
