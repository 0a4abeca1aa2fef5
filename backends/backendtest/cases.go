package backendtest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

type tcase struct {
	name string
	run  func(ctx context.Context, pg *comm.ProcessGroup) error
}

var smallCounts = []int{0, 1, 7, 1001}

func reduceDTypes() []tensor.DType {
	var out []tensor.DType
	for _, dt := range tensor.AllDTypes() {
		if tensor.CheckReduce(tensor.Sum, dt) == nil {
			out = append(out, dt)
		}
	}
	return out
}

// reductions lists the (op, factor) pairs valid for dt, PreMulSum for floats.
func reductions(dt tensor.DType) []comm.Reduction {
	var out []comm.Reduction
	for _, op := range tensor.AllReduceOps() {
		if op == tensor.PreMulSum {
			if dt.IsFloat() {
				out = append(out, comm.PreMulSum(0.5))
			}
			continue
		}
		if tensor.CheckReduce(op, dt) == nil {
			out = append(out, comm.Reduction{Op: op})
		}
	}
	return out
}

// roots picks the roots to try: every rank in small groups, first/middle/last in large ones.
func roots(n int) []int {
	if n <= 4 {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	return []int{0, n / 2, n - 1}
}

func mib(dt tensor.DType, m int) int { return m << 20 / dt.Size() }

// cases lists every case for a world of n ranks, identically on every rank.
func cases(n int, large bool) []tcase {
	var cs []tcase
	seen := map[string]bool{}
	add := func(name string, run func(ctx context.Context, pg *comm.ProcessGroup) error) {
		if seen[name] {
			panic("backendtest: duplicate case " + name)
		}
		seen[name] = true
		cs = append(cs, tcase{name: name, run: run})
	}
	salt := 0
	next := func() int { salt++; return salt }

	// AllReduce: every dtype x op x small size, then large buffers.
	for _, dt := range reduceDTypes() {
		for _, red := range reductions(dt) {
			for _, c := range smallCounts {
				add(fmt.Sprintf("all_reduce/%s/%s/n%d", dt, red.Op, c), allReduceCase(dt, red, c, next(), false))
			}
		}
	}
	// Sizes on either side of the small-message limits a backend may have (shm: 32 bytes, where
	// an inline payload spills into a second cache line, and 80, the inline limit), for element
	// sizes 4, 8 and 2.
	for _, e := range []struct {
		dt     tensor.DType
		counts []int
	}{{tensor.Float32, []int{8, 9, 16, 20, 21}}, {tensor.Float64, []int{10, 11}}, {tensor.BFloat16, []int{40, 41}}} {
		for _, c := range e.counts {
			add(fmt.Sprintf("all_reduce/edges/%s/n%d", e.dt, c), allReduceCase(e.dt, comm.Reduction{Op: tensor.Sum}, c, next(), false))
		}
	}
	add("all_reduce/float32/SUM/async", allReduceCase(tensor.Float32, comm.Reduction{Op: tensor.Sum}, 1001, next(), true))
	if large {
		add("all_reduce/float32/SUM/1MiB", allReduceCase(tensor.Float32, comm.Reduction{Op: tensor.Sum}, mib(tensor.Float32, 1), next(), false))
		add("all_reduce/float32/SUM/16MiB", allReduceCase(tensor.Float32, comm.Reduction{Op: tensor.Sum}, mib(tensor.Float32, 16), next(), false))
		add("all_reduce/bfloat16/SUM/1MiB", allReduceCase(tensor.BFloat16, comm.Reduction{Op: tensor.Sum}, mib(tensor.BFloat16, 1), next(), false))
		add("all_reduce/int32/MAX/1MiB", allReduceCase(tensor.Int32, comm.Reduction{Op: tensor.Max}, mib(tensor.Int32, 1), next(), false))
		add("all_reduce/float64/AVG/1MiB", allReduceCase(tensor.Float64, comm.Reduction{Op: tensor.Avg}, mib(tensor.Float64, 1), next(), false))
		add("all_reduce/int8/PRODUCT/1MiB+3", allReduceCase(tensor.Int8, comm.Reduction{Op: tensor.Product}, mib(tensor.Int8, 1)+3, next(), false))
	}

	// Broadcast: every dtype x size from root 0; every root at one size.
	for _, dt := range tensor.AllDTypes() {
		for _, c := range smallCounts {
			add(fmt.Sprintf("broadcast/%s/n%d/root0", dt, c), broadcastCase(dt, c, 0, next()))
		}
	}
	for _, root := range roots(n) {
		add(fmt.Sprintf("broadcast/each_root/float32/n1001/root%d", root), broadcastCase(tensor.Float32, 1001, root, next()))
	}
	if large {
		add("broadcast/float32/16MiB/rootlast", broadcastCase(tensor.Float32, mib(tensor.Float32, 16), n-1, next()))
		add("broadcast/uint8/1MiB+1/root0", broadcastCase(tensor.Uint8, mib(tensor.Uint8, 1)+1, 0, next()))
	}

	// Reduce: every dtype x op at root n-1; every root with SUM.
	for _, dt := range reduceDTypes() {
		for _, red := range reductions(dt) {
			add(fmt.Sprintf("reduce/%s/%s/n7/root%d", dt, red.Op, n-1), reduceCase(dt, red.Op, 7, n-1, next()))
		}
	}
	for _, root := range roots(n) {
		for _, c := range smallCounts {
			add(fmt.Sprintf("reduce/each_root/float32/SUM/n%d/root%d", c, root), reduceCase(tensor.Float32, tensor.Sum, c, root, next()))
		}
	}
	for _, root := range roots(n) {
		add(fmt.Sprintf("reduce/edges/float32/MAX/n20/root%d", root), reduceCase(tensor.Float32, tensor.Max, 20, root, next()))
	}
	if large {
		add("reduce/float32/SUM/16MiB/root0", reduceCase(tensor.Float32, tensor.Sum, mib(tensor.Float32, 16), 0, next()))
	}

	// AllGather: every dtype x size, in place and as a list.
	for _, dt := range tensor.AllDTypes() {
		for _, c := range smallCounts {
			add(fmt.Sprintf("all_gather/%s/n%d", dt, c), allGatherCase(dt, c, "out", next()))
		}
	}
	for _, c := range smallCounts {
		add(fmt.Sprintf("all_gather/float32/n%d/inplace", c), allGatherCase(tensor.Float32, c, "inplace", next()))
		add(fmt.Sprintf("all_gather/float32/n%d/list", c), allGatherCase(tensor.Float32, c, "list", next()))
	}
	if large {
		add("all_gather/float32/1MiB", allGatherCase(tensor.Float32, mib(tensor.Float32, 1), "out", next()))
		add("all_gather/bfloat16/16MiB/inplace", allGatherCase(tensor.BFloat16, mib(tensor.BFloat16, 16)/n, "inplace", next()))
	}

	// Gather and Scatter: every dtype at root 0; every root; in place.
	for _, dt := range tensor.AllDTypes() {
		add(fmt.Sprintf("gather/%s/n7/root0", dt), gatherCase(dt, 7, 0, false, next()))
		add(fmt.Sprintf("scatter/%s/n7/root0", dt), scatterCase(dt, 7, 0, false, next()))
	}
	for _, root := range roots(n) {
		for _, c := range []int{0, 1, 1001} {
			add(fmt.Sprintf("gather/int64/n%d/root%d", c, root), gatherCase(tensor.Int64, c, root, false, next()))
			add(fmt.Sprintf("scatter/int64/n%d/root%d", c, root), scatterCase(tensor.Int64, c, root, false, next()))
		}
		add(fmt.Sprintf("gather/float32/n1001/root%d/inplace", root), gatherCase(tensor.Float32, 1001, root, true, next()))
		add(fmt.Sprintf("scatter/float32/n1001/root%d/inplace", root), scatterCase(tensor.Float32, 1001, root, true, next()))
	}
	// Either side of shm's inline limits (see all_reduce/edges): bytes per rank for gather, in
	// all for scatter.
	for _, c := range []int{8, 9, 20, 21} {
		add(fmt.Sprintf("broadcast/edges/float32/n%d/rootlast", c), broadcastCase(tensor.Float32, c, n-1, next()))
		add(fmt.Sprintf("all_gather/edges/float32/n%d", c), allGatherCase(tensor.Float32, c, "out", next()))
		add(fmt.Sprintf("gather/edges/float32/n%d/rootlast", c), gatherCase(tensor.Float32, c, n-1, false, next()))
	}
	for _, c := range []int{1, 2, 3, 4, 5, 10, 11} {
		add(fmt.Sprintf("scatter/edges/float32/n%d/rootlast", c), scatterCase(tensor.Float32, c, n-1, false, next()))
	}
	if large {
		add("gather/float32/1MiB/rootlast", gatherCase(tensor.Float32, mib(tensor.Float32, 1), n-1, false, next()))
		add("scatter/float32/1MiB/root0", scatterCase(tensor.Float32, mib(tensor.Float32, 1), 0, false, next()))
	}

	// ReduceScatter: every dtype x op x size, in place and as a list.
	for _, dt := range reduceDTypes() {
		for _, red := range reductions(dt) {
			for _, c := range smallCounts {
				add(fmt.Sprintf("reduce_scatter/%s/%s/n%d", dt, red.Op, c), reduceScatterCase(dt, red, c, "out", next()))
			}
		}
	}
	for _, c := range smallCounts {
		add(fmt.Sprintf("reduce_scatter/float32/SUM/n%d/inplace", c), reduceScatterCase(tensor.Float32, comm.Reduction{Op: tensor.Sum}, c, "inplace", next()))
		add(fmt.Sprintf("reduce_scatter/int32/MAX/n%d/list", c), reduceScatterCase(tensor.Int32, comm.Reduction{Op: tensor.Max}, c, "list", next()))
	}
	for _, c := range []int{1, 2, 3, 4, 5, 10, 11} { // either side of shm's inline limits, in all
		add(fmt.Sprintf("reduce_scatter/edges/float32/SUM/n%d", c), reduceScatterCase(tensor.Float32, comm.Reduction{Op: tensor.Sum}, c, "out", next()))
		add(fmt.Sprintf("reduce_scatter/edges/float32/MAX/n%d/inplace", c), reduceScatterCase(tensor.Float32, comm.Reduction{Op: tensor.Max}, c, "inplace", next()))
	}
	add("reduce_scatter/float32/PREMUL_SUM/n1001/inplace", reduceScatterCase(tensor.Float32, comm.PreMulSum(0.5), 1001, "inplace", next()))
	if large {
		add("reduce_scatter/float32/SUM/1MiB", reduceScatterCase(tensor.Float32, comm.Reduction{Op: tensor.Sum}, mib(tensor.Float32, 1), "out", next()))
		add("reduce_scatter/bfloat16/SUM/16MiB/inplace", reduceScatterCase(tensor.BFloat16, comm.Reduction{Op: tensor.Sum}, mib(tensor.BFloat16, 16)/n, "inplace", next()))
	}

	// AllToAll: equal blocks for every dtype, uneven splits.
	for _, dt := range tensor.AllDTypes() {
		for _, c := range smallCounts {
			add(fmt.Sprintf("all_to_all/%s/n%d", dt, c), allToAllCase(dt, c, next()))
		}
	}
	mod3 := func(a, b, n int) int { return (a + b) % 3 }
	add("all_to_all/float32/uneven", allToAllUnevenCase(tensor.Float32, 3, mod3, next()))
	add("all_to_all/int64/uneven_rows5", allToAllUnevenCase(tensor.Int64, 5, mod3, next()))
	// One large block (rank 0 to the last) among blocks of one element: shm's ranks that have only
	// those could take its inline path alone, and must not.
	oneLarge := func(a, b, n int) int {
		if a == 0 && b == n-1 {
			return 20
		}
		return 1
	}
	add("all_to_all/float32/uneven_one_large", allToAllUnevenCase(tensor.Float32, 1, oneLarge, next()))
	if large {
		add("all_to_all/float32/1MiB", allToAllCase(tensor.Float32, mib(tensor.Float32, 1)/n, next()))
	}

	add("barrier/x5", func(ctx context.Context, pg *comm.ProcessGroup) error {
		for i := 0; i < 5; i++ {
			if err := pg.Barrier(ctx); err != nil {
				return err
			}
		}
		return nil
	})

	if n > 1 {
		add("send_recv/tags_reversed", sendRecvTagsCase(1001, next()))
		add("send_recv/async_both_ways_1MiB", sendRecvAsyncCase(mib(tensor.Float32, 1), next()))
		add("send_recv/async_sends_in_order", sendAsyncOrderCase(mib(tensor.Float32, 1), next()))
		add("send_recv/bfloat16/n0", sendRecvTagsCase(0, next()))
		add("send_recv/batch_all_pairs", batchAllPairsCase([]int{5, mib(tensor.Float32, 1), 0, 17}, next()))
		add("send_recv/batch_async_then_plain", batchThenPlainCase(next()))
		add("send_recv/many_small_in_order", sendManyInOrderCase(next()))
		if large {
			// Larger than a socket's buffers: every send blocks until its receiver drains it,
			// and each receiver is itself blocked sending around the ring.
			add("send_recv/async_ring_16MiB", sendRecvAsyncCase(mib(tensor.Float32, 16), next()))
			add("send_recv/batch_ring_16MiB", batchRingCase(mib(tensor.Float32, 16), next()))
		}
	}
	add("objects/all_gather_and_broadcast", objectsCase)
	add("objects/gather_and_scatter", gatherScatterObjectsCase(next()))
	if n > 1 {
		add("objects/send_recv", sendRecvObjectsCase(next()))
	}
	add("groups/new_group_even_ranks", newGroupCase(next()))
	add("groups/split_parity_reversed", splitCase(next()))
	add("groups/two_concurrent", concurrentGroupsCase(next()))
	add("async/mixed_order", asyncOrderCase(next()))
	add("shared_memory/write_read", sharedMemoryCase(next()))
	add("shared_memory/signals", sharedSignalsCase(next()))
	return cs
}

// sharedMemoryCase: on a backend with shared memory, every rank writes its part of two shared
// buffers and reads every peer's after a barrier; on one without, every rank gets
// ErrUnsupported. Either way the ranks must agree on the outcome.
func sharedMemoryCase(salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		if _, err := pg.AllocShared(ctx, 0); !errors.Is(err, comm.ErrInvalidArgument) {
			return wrongf("AllocShared of 0 bytes: %v, want ErrInvalidArgument", err)
		}
		const per = 3 << 10 // not a multiple of the page size
		a, err := pg.AllocShared(ctx, n*per)
		unsupported := errors.Is(err, comm.ErrUnsupported)
		if err != nil && !unsupported {
			return err
		}
		flag := tensor.New(tensor.Int64, 1)
		if unsupported {
			flag.Fill(1)
		}
		if err := pg.AllReduce(ctx, flag, comm.Sum); err != nil {
			return err
		}
		if got := int(flag.Int64s()[0]); got != 0 && got != n {
			return wrongf("%d of %d ranks got ErrUnsupported from AllocShared (this one: %v)", got, n, err)
		}
		if unsupported {
			if pg.Backend() == "shm" {
				return wrongf("shm has no shared memory: %v", err)
			}
			return nil
		}
		defer a.Close()
		b, err := pg.AllocShared(ctx, 4096)
		if err != nil {
			return err
		}
		defer b.Close()
		mine := a.Bytes()[r*per : (r+1)*per]
		for i := range mine {
			if mine[i] != 0 {
				return wrongf("fresh shared memory holds %d at byte %d, want zeroes", mine[i], r*per+i)
			}
			mine[i] = byte(salt + r*7 + i)
		}
		if r == n-1 {
			b.Bytes()[4095] = byte(salt)
		}
		if err := pg.Barrier(ctx); err != nil {
			return err
		}
		for p := range n {
			got := a.Bytes()[p*per : (p+1)*per]
			for i, v := range got {
				if v != byte(salt+p*7+i) {
					return wrongf("shared byte %d (rank %d's part) reads %d, want %d", p*per+i, p, v, byte(salt+p*7+i))
				}
			}
		}
		if v := b.Bytes()[4095]; v != byte(salt) {
			return wrongf("the second buffer's last byte reads %d, want %d: the buffers are not the same on every rank", v, byte(salt))
		}
		// Nobody unmaps before every rank has read.
		return pg.Barrier(ctx)
	}
}

// sharedSignalsCase: where the group has shared memory, rounds of a ring ordered by signals
// alone: each rank writes the round into its part, signals 0; reads its left neighbour's part
// once that one's signal 0 says it is written, then signals 1 ("read"); and writes the next round
// only once its right neighbour's signal 1 says the last one was read (WaitSignal, and WaitUntil
// on two signals at once). Bad signal numbers, ranks and values are errors.
func sharedSignalsCase(salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		const per = 1000 // bytes a rank writes per round, not a multiple of 8 or of a cache line
		buf, err := pg.AllocShared(ctx, n*per)
		if errors.Is(err, comm.ErrUnsupported) {
			return nil // sharedMemoryCase checks that every rank agrees
		}
		if err != nil {
			return err
		}
		defer buf.Close()
		for _, bad := range []struct {
			what string
			err  error
		}{
			{"Signal(-1, 1)", buf.Signal(-1, 1)},
			{"Signal(SharedSignals, 1)", buf.Signal(comm.SharedSignals, 1)},
			{"WaitSignal of rank Size()", buf.WaitSignal(ctx, n, 0, 1)},
			{"WaitSignal of rank -1", buf.WaitSignal(ctx, -1, 0, 1)},
		} {
			if !errors.Is(bad.err, comm.ErrInvalidArgument) {
				return wrongf("%s: %v, want ErrInvalidArgument", bad.what, bad.err)
			}
		}
		for p := range n {
			for i := range comm.SharedSignals {
				if v, err := buf.Signalled(p, i); err != nil || v != 0 {
					return wrongf("a fresh buffer's signal %d of rank %d reads %d (%v), want 0", i, p, v, err)
				}
			}
		}
		// Nobody signals before every rank has read the fresh signals.
		if err := pg.Barrier(ctx); err != nil {
			return err
		}
		left, right := (r+n-1)%n, (r+1)%n
		part := func(p int) []byte { return buf.Bytes()[p*per : (p+1)*per] }
		const rounds = 300
		for k := uint64(1); k <= rounds; k++ {
			if err := buf.WaitSignal(ctx, right, 1, k-1); err != nil {
				return err
			}
			mine := part(r)
			for i := range mine {
				mine[i] = byte(int(k) + salt + r*13 + i)
			}
			if err := buf.Signal(0, k); err != nil {
				return err
			}
			// WaitUntil on odd rounds: the written signal or, never true, a later read signal.
			if k%2 == 0 {
				err = buf.WaitSignal(ctx, left, 0, k)
			} else {
				err = buf.WaitUntil(ctx, left, func() bool {
					w, _ := buf.Signalled(left, 0)
					rd, _ := buf.Signalled(left, 1)
					return w >= k || rd > k
				})
			}
			if err != nil {
				return err
			}
			for i, v := range part(left) {
				if want := byte(int(k) + salt + left*13 + i); v != want {
					return wrongf("round %d: rank %d's byte %d reads %d, want %d, after its signal said it was written", k, left, i, v, want)
				}
			}
			if err := buf.Signal(1, k); err != nil {
				return err
			}
		}
		if err := buf.Signal(0, 1); !errors.Is(err, comm.ErrInvalidArgument) {
			return wrongf("moving signal 0 back from %d to 1: %v, want ErrInvalidArgument", rounds, err)
		}
		if v, err := buf.Signalled(right, 0); err != nil || v < rounds-1 {
			return wrongf("rank %d's signal 0 reads %d (%v), want at least %d", right, v, err, rounds-1)
		}
		// Nobody unmaps before every rank has read.
		return pg.Barrier(ctx)
	}
}

func allReduceCase(dt tensor.DType, red comm.Reduction, count, salt int, async bool) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		t := input(dt, red.Op, pg.Rank(), count, salt)
		if async {
			extra := input(dt, red.Op, pg.Rank(), count, salt)
			w1 := pg.AllReduceAsync(t, red.Op)
			w2 := pg.AllReduceAsync(extra, red.Op)
			if err := errors.Join(w1.Wait(ctx), w2.Wait(ctx)); err != nil {
				return err
			}
			if !tensor.Equal(t, extra) {
				return wrongf("two async all-reduces of the same input differ")
			}
		} else if err := pg.AllReduceWith(ctx, t, red); err != nil {
			return err
		}
		want, tol := reduced(dt, red.Op, red.Factor, pg.Size(), count, salt, 0)
		if err := check("result", t, want, tol); err != nil {
			return err
		}
		return sameEverywhere(ctx, pg, t)
	}
}

// sameEverywhere checks that every rank holds bitwise the same tensor.
func sameEverywhere(ctx context.Context, pg *comm.ProcessGroup, t *tensor.Tensor) error {
	hashes, err := comm.AllGatherObject(ctx, pg, hashOf(t))
	if err != nil {
		return err
	}
	for r, h := range hashes {
		if h != hashes[0] {
			return wrongf("rank %d's result differs bitwise from rank 0's", r)
		}
	}
	return nil
}

func broadcastCase(dt tensor.DType, count, root, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		t := input(dt, tensor.Sum, pg.Rank(), count, salt)
		if err := pg.Broadcast(ctx, t, root); err != nil {
			return err
		}
		return expectBlocks("result", t, dt, []int{root}, count, salt)
	}
}

func reduceCase(dt tensor.DType, op tensor.ReduceOp, count, root, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		t := input(dt, op, pg.Rank(), count, salt)
		if err := pg.Reduce(ctx, t, root, op); err != nil {
			return err
		}
		if pg.Rank() != root {
			return check("non-root input (must be unchanged)", t, input(dt, op, pg.Rank(), count, salt).Float64s(), make([]float64, count))
		}
		want, tol := reduced(dt, op, 0, pg.Size(), count, salt, 0)
		return check("result on root", t, want, tol)
	}
}

func allRanks(n int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = i
	}
	return r
}

func allGatherCase(dt tensor.DType, count int, mode string, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		in := input(dt, tensor.Sum, r, count, salt)
		out := tensor.New(dt, n*count)
		switch mode {
		case "inplace":
			slot, err := out.Narrow(0, r*count, count)
			if err != nil {
				return err
			}
			if err := slot.CopyFrom(in); err != nil {
				return err
			}
			if err := pg.AllGather(ctx, out, slot); err != nil {
				return err
			}
		case "list":
			list := make([]*tensor.Tensor, n)
			for i := range list {
				list[i] = tensor.New(dt, count)
			}
			if err := pg.AllGatherList(ctx, list, in); err != nil {
				return err
			}
			for i, t := range list {
				if err := expectBlocks(fmt.Sprintf("list[%d]", i), t, dt, []int{i}, count, salt); err != nil {
					return err
				}
			}
			return nil
		default:
			if err := pg.AllGather(ctx, out, in); err != nil {
				return err
			}
		}
		return expectBlocks("result", out, dt, allRanks(n), count, salt)
	}
}

func gatherCase(dt tensor.DType, count, root int, inPlace bool, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		in := input(dt, tensor.Sum, r, count, salt)
		var out *tensor.Tensor
		if r == root {
			out = tensor.New(dt, n*count)
			if inPlace {
				slot, _ := out.Narrow(0, r*count, count)
				_ = slot.CopyFrom(in)
				in = slot
			}
		}
		if err := pg.Gather(ctx, out, in, root); err != nil {
			return err
		}
		if r != root {
			return nil
		}
		return expectBlocks("result on root", out, dt, allRanks(n), count, salt)
	}
}

func scatterCase(dt tensor.DType, count, root int, inPlace bool, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		var in *tensor.Tensor
		out := tensor.New(dt, count)
		if r == root {
			// Slot i holds what rank i must get: rank i's values for this salt.
			in = tensor.New(dt, n*count)
			for i := 0; i < n; i++ {
				slot, _ := in.Narrow(0, i*count, count)
				_ = slot.CopyFrom(input(dt, tensor.Sum, i, count, salt))
			}
			if inPlace {
				out, _ = in.Narrow(0, r*count, count)
			}
		}
		if err := pg.Scatter(ctx, out, in, root); err != nil {
			return err
		}
		return expectBlocks("result", out, dt, []int{r}, count, salt)
	}
}

func reduceScatterCase(dt tensor.DType, red comm.Reduction, count int, mode string, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		in := input(dt, red.Op, r, n*count, salt)
		out := tensor.New(dt, count)
		var err error
		switch mode {
		case "inplace":
			out, _ = in.Narrow(0, r*count, count)
			err = pg.ReduceScatterWith(ctx, out, in, red)
		case "list":
			list, _ := in.Chunk(n, 0)
			if count == 0 {
				list = make([]*tensor.Tensor, n)
				for i := range list {
					list[i] = tensor.New(dt, 0)
				}
			}
			err = pg.ReduceScatterList(ctx, out, list, red.Op)
		default:
			err = pg.ReduceScatterWith(ctx, out, in, red)
		}
		if err != nil {
			return err
		}
		want, tol := reduced(dt, red.Op, red.Factor, n, count, salt, r*count)
		return check("result", out, want, tol)
	}
}

func allToAllCase(dt tensor.DType, per, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		// Block p of rank r's input is input(r) elements [p*per, (p+1)*per).
		in := input(dt, tensor.Sum, r, n*per, salt)
		out := tensor.New(dt, n*per)
		if err := pg.AllToAll(ctx, out, in); err != nil {
			return err
		}
		want := make([]float64, 0, n*per)
		for p := 0; p < n; p++ {
			for i := 0; i < per; i++ {
				want = append(want, value(dt, tensor.Sum, p, r*per+i, salt))
			}
		}
		return check("result", out, want, make([]float64, len(want)))
	}
}

// allToAllUnevenCase: rank a sends rows(a, b, n) rows of `row` elements to rank b.
func allToAllUnevenCase(dt tensor.DType, row int, rowsOf func(a, b, n int) int, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		rows := func(a, b int) int { return rowsOf(a, b, n) }
		inSplits, outSplits := make([]int, n), make([]int, n)
		inRows, outRows := 0, 0
		for p := 0; p < n; p++ {
			inSplits[p], outSplits[p] = rows(r, p), rows(p, r)
			inRows += inSplits[p]
			outRows += outSplits[p]
		}
		// Rank a's rows for b carry value(a, b*100+j).
		vals := make([]float64, 0, inRows*row)
		for p := 0; p < n; p++ {
			for j := 0; j < inSplits[p]*row; j++ {
				vals = append(vals, value(dt, tensor.Sum, r, p*100+j, salt))
			}
		}
		in, err := tensor.FromFloat64s(dt, vals, inRows, row)
		if err != nil {
			return err
		}
		out := tensor.New(dt, outRows, row)
		if err := pg.AllToAllSplits(ctx, out, in, outSplits, inSplits); err != nil {
			return err
		}
		want := make([]float64, 0, outRows*row)
		for p := 0; p < n; p++ {
			for j := 0; j < outSplits[p]*row; j++ {
				want = append(want, value(dt, tensor.Sum, p, r*100+j, salt))
			}
		}
		return check("result", out, want, make([]float64, len(want)))
	}
}

// sendRecvTagsCase: every rank sends three tagged messages to the next rank, which receives them
// in reverse tag order, so two wait at once for their receives; twice, so that a backend that
// reuses the buffers of such messages is checked on its second round too.
func sendRecvTagsCase(count, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		next, prev := (r+1)%n, (r-1+n)%n
		for round := range 2 {
			s := salt + 10*round
			for tag := 0; tag < 3; tag++ {
				if err := pg.Send(ctx, input(tensor.Float32, tensor.Sum, r, count, s+tag), next, tag); err != nil {
					return err
				}
			}
			for tag := 2; tag >= 0; tag-- {
				got := tensor.New(tensor.Float32, count)
				if err := pg.Recv(ctx, got, prev, tag); err != nil {
					return err
				}
				if err := expectBlocks(fmt.Sprintf("round %d, message with tag %d", round, tag), got, tensor.Float32, []int{prev}, count, s+tag); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// sendRecvAsyncCase: every pair exchanges large messages both ways at once with async ops, which
// deadlocks unless sends make progress while the peer is sending too.
func sendRecvAsyncCase(count, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		next, prev := (r+1)%n, (r-1+n)%n
		got := tensor.New(tensor.Float32, count)
		ws := pg.SendAsync(input(tensor.Float32, tensor.Sum, r, count, salt), next, 7)
		wr := pg.RecvAsync(got, prev, 7)
		if err := errors.Join(ws.Wait(ctx), wr.Wait(ctx)); err != nil {
			return err
		}
		return expectBlocks("received", got, tensor.Float32, []int{prev}, count, salt)
	}
}

// batchAllPairsCase: in one BatchSendRecv, every rank sends len(counts) messages to every other
// rank (tags alternating 0, 1) and receives theirs: receives listed first, peers in descending
// order, tag 1 before tag 0, so that messages arrive before their receives come up, and large
// ones (beyond shm's mailbox) both ways at once.
func batchAllPairsCase(counts []int, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		msgSalt := func(src, dst, m int) int { return salt + 1000*m + 32*src + dst }
		var ops []comm.P2POp
		type recv struct {
			got       *tensor.Tensor
			src, m, c int
		}
		var recvs []recv
		for p := n - 1; p >= 0; p-- {
			for _, tag := range []int{1, 0} {
				for m, c := range counts {
					if p == r || m%2 != tag {
						continue
					}
					got := tensor.New(tensor.Float32, c)
					ops = append(ops, comm.RecvOp(got, p, tag))
					recvs = append(recvs, recv{got, p, m, c})
				}
			}
		}
		for p := range n {
			for m, c := range counts {
				if p != r {
					ops = append(ops, comm.SendOp(input(tensor.Float32, tensor.Sum, r, c, msgSalt(r, p, m)), p, m%2))
				}
			}
		}
		if err := pg.BatchSendRecv(ctx, ops); err != nil {
			return err
		}
		for _, rv := range recvs {
			if err := expectBlocks(fmt.Sprintf("message %d from rank %d", rv.m, rv.src), rv.got, tensor.Float32, []int{rv.src}, rv.c, msgSalt(rv.src, r, rv.m)); err != nil {
				return err
			}
		}
		return nil
	}
}

// batchRingCase: every rank receives from the previous rank and sends to the next in one batch,
// messages larger than a socket's buffers and shm's mailbox.
func batchRingCase(count, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		next, prev := (r+1)%n, (r-1+n)%n
		got := tensor.New(tensor.Float32, count)
		if err := pg.BatchSendRecv(ctx, []comm.P2POp{comm.RecvOp(got, prev, 2), comm.SendOp(input(tensor.Float32, tensor.Sum, r, count, salt), next, 2)}); err != nil {
			return err
		}
		return expectBlocks("received", got, tensor.Float32, []int{prev}, count, salt)
	}
}

// batchThenPlainCase: a batch is one op in the group's order. Each rank sends the next rank a
// message in an async batch, then one with Send (same tag), and receives its two in one batch:
// they arrive in the order sent.
func batchThenPlainCase(salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		next, prev := (r+1)%n, (r-1+n)%n
		w := pg.BatchSendRecvAsync([]comm.P2POp{comm.SendOp(input(tensor.Float32, tensor.Sum, r, 9, salt), next, 4)})
		if err := pg.Send(ctx, input(tensor.Float32, tensor.Sum, r, 9, salt+1), next, 4); err != nil {
			return err
		}
		if !w.IsCompleted() {
			return wrongf("a Send issued after an async batch finished before the batch")
		}
		first, second := tensor.New(tensor.Float32, 9), tensor.New(tensor.Float32, 9)
		if err := pg.BatchSendRecv(ctx, []comm.P2POp{comm.RecvOp(first, prev, 4), comm.RecvOp(second, prev, 4)}); err != nil {
			return err
		}
		if err := w.Wait(ctx); err != nil {
			return err
		}
		return errors.Join(expectBlocks("the batch's message", first, tensor.Float32, []int{prev}, 9, salt),
			expectBlocks("the Send's message", second, tensor.Float32, []int{prev}, 9, salt+1))
	}
}

// sendAsyncOrderCase: each even rank sends to the next rank, with one tag, async messages of
// mixed sizes (large: beyond shm's mailbox, so that it waits for its receiver), with an async
// all-reduce among them; the odd rank receives them in order. Whatever a backend finishes at
// once (backends.EagerSender) must not pass what was issued before it: once the last send is
// done, every op issued before it on the group is done.
func sendAsyncOrderCase(large, salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		counts := []int{16, 16, large, 16, 3} // the all-reduce goes before the last
		sum := tensor.New(tensor.Int64, 4)
		sum.Fill(1)
		var ar error
		switch {
		case r%2 == 0 && r+1 < n:
			var ws []*comm.Work
			var wa *comm.Work
			for i, c := range counts {
				if i == len(counts)-1 {
					wa = pg.AllReduceAsync(sum, comm.Sum)
				}
				ws = append(ws, pg.SendAsync(input(tensor.Float32, tensor.Sum, r, c, salt+i), r+1, 5))
			}
			if err := ws[len(ws)-1].Wait(ctx); err != nil {
				return err
			}
			for i, w := range append(ws[:len(ws)-1:len(ws)-1], wa) {
				if !w.IsCompleted() {
					return wrongf("the last send finished before op %d of the %d issued before it", i, len(ws))
				}
				if err := w.Err(); err != nil {
					return err
				}
			}
		case r%2 == 1:
			for i, c := range counts {
				if i == len(counts)-1 {
					ar = pg.AllReduce(ctx, sum, comm.Sum)
				}
				got := tensor.New(tensor.Float32, c)
				if err := pg.Recv(ctx, got, r-1, 5); err != nil {
					return err
				}
				if err := expectBlocks(fmt.Sprintf("message %d of %d", i, len(counts)), got, tensor.Float32, []int{r - 1}, c, salt+i); err != nil {
					return err
				}
			}
		default: // the last of an odd number of ranks: the all-reduce only
			ar = pg.AllReduce(ctx, sum, comm.Sum)
		}
		if ar != nil {
			return ar
		}
		for i, v := range sum.Int64s() {
			if v != int64(n) {
				return wrongf("all-reduce element %d is %d, want %d", i, v, n)
			}
		}
		return nil
	}
}

// sendManyInOrderCase: every rank sends the next rank 100 small async messages with one tag
// (more than shm's box holds; of 0 to 160 bytes, on both sides of the box's slot size, so that
// some go through the box and some through the ring, and the box fills) before it receives any
// of its own; they arrive in the order sent.
func sendManyInOrderCase(salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		next, prev := (r+1)%n, (r-1+n)%n
		const msgs = 100
		count := func(i int) int { return []int{1, 26, 27, 0, 40, 2}[i%6] }
		ws := make([]*comm.Work, msgs)
		for i := range ws {
			ws[i] = pg.SendAsync(input(tensor.Float32, tensor.Sum, r, count(i), salt+i), next, 3)
		}
		for i := range msgs {
			got := tensor.New(tensor.Float32, count(i))
			if err := pg.Recv(ctx, got, prev, 3); err != nil {
				return err
			}
			if err := expectBlocks(fmt.Sprintf("message %d of %d", i, msgs), got, tensor.Float32, []int{prev}, count(i), salt+i); err != nil {
				return err
			}
		}
		for _, w := range ws {
			if err := w.Wait(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

type object struct {
	Rank  int
	Name  string
	Items map[string][]float64
}

func objectsCase(ctx context.Context, pg *comm.ProcessGroup) error {
	n, r := pg.Size(), pg.Rank()
	all, err := comm.AllGatherObject(ctx, pg, object{Rank: r, Name: fmt.Sprintf("rank-%d", r), Items: map[string][]float64{"x": {float64(r)}}})
	if err != nil {
		return err
	}
	if len(all) != n {
		return wrongf("got %d objects, want %d", len(all), n)
	}
	for i, o := range all {
		if o.Rank != i || o.Name != fmt.Sprintf("rank-%d", i) || o.Items["x"][0] != float64(i) {
			return wrongf("object %d is %+v", i, o)
		}
	}
	var v object
	root := n - 1
	if r == root {
		v = object{Rank: root, Name: "from the root", Items: map[string][]float64{"y": {1, 2, 3}}}
	}
	if err := comm.BroadcastObject(ctx, pg, &v, root); err != nil {
		return err
	}
	if v.Rank != root || v.Name != "from the root" || len(v.Items["y"]) != 3 {
		return wrongf("broadcast object is %+v", v)
	}
	return nil
}

// objectFor is rank r's value in the object cases: a struct with a map of slices, whose encoded
// size grows with r and salt, with no empty field (gob leaves those out, and they decode as nil).
func objectFor(r, salt int) object {
	items := map[string][]float64{}
	for k := range r + 1 + salt%3 {
		vals := make([]float64, 1+k+r)
		for i := range vals {
			vals[i] = float64(salt+r*100+k) + float64(i)/4
		}
		items[fmt.Sprintf("k%d", k)] = vals
	}
	return object{Rank: r, Name: fmt.Sprintf("rank-%d-salt-%d-%s", r, salt, strings.Repeat("z", 13*r)), Items: items}
}

// gatherScatterObjectsCase: GatherObject and ScatterObject of values of different sizes per rank,
// from every root (first, middle and last in large groups). Ranks other than the root get nil
// from GatherObject, and pass ScatterObject a list of the wrong length, which they must ignore.
func gatherScatterObjectsCase(salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		for _, root := range roots(n) {
			s := salt + 10*root
			got, err := comm.GatherObject(ctx, pg, objectFor(r, s), root)
			if err != nil {
				return err
			}
			if r != root {
				if got != nil {
					return wrongf("root %d: GatherObject returned %d values on a rank other than the root, want nil", root, len(got))
				}
			} else {
				if len(got) != n {
					return wrongf("root %d: GatherObject returned %d values, want %d", root, len(got), n)
				}
				for i, o := range got {
					if want := objectFor(i, s); !reflect.DeepEqual(o, want) {
						return wrongf("root %d: GatherObject value %d is %+v, want %+v", root, i, o, want)
					}
				}
			}
			vs := []object{objectFor(0, -1)} // not read on other ranks
			if r == root {
				vs = make([]object, n)
				for i := range vs {
					vs[i] = objectFor(n-1-i, s+1) // the largest values to the first ranks
				}
			}
			v, err := comm.ScatterObject(ctx, pg, vs, root)
			if err != nil {
				return err
			}
			if want := objectFor(n-1-r, s+1); !reflect.DeepEqual(v, want) {
				return wrongf("root %d: ScatterObject gave %+v, want %+v", root, v, want)
			}
		}
		return nil
	}
}

// sendRecvObjectsCase: every rank sends three values (tags 0, 1, 2) to the next rank, then
// receives the previous rank's in reverse tag order; then the last rank sends one to rank 0.
func sendRecvObjectsCase(salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		next, prev := (r+1)%n, (r-1+n)%n
		for tag := range 3 {
			if err := comm.SendObject(ctx, pg, objectFor(r, salt+tag), next, tag); err != nil {
				return err
			}
		}
		for tag := 2; tag >= 0; tag-- {
			got, err := comm.RecvObject[object](ctx, pg, prev, tag)
			if err != nil {
				return err
			}
			if want := objectFor(prev, salt+tag); !reflect.DeepEqual(got, want) {
				return wrongf("value with tag %d from rank %d is %+v, want %+v", tag, prev, got, want)
			}
		}
		switch r {
		case n - 1:
			return comm.SendObject(ctx, pg, objectFor(2*n, salt), 0, 9)
		case 0:
			got, err := comm.RecvObject[object](ctx, pg, n-1, 9)
			if err != nil {
				return err
			}
			if want := objectFor(2*n, salt); !reflect.DeepEqual(got, want) {
				return wrongf("value with tag 9 from rank %d is %+v, want %+v", n-1, got, want)
			}
		}
		return nil
	}
}

func newGroupCase(salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		var even []int
		for i := 0; i < pg.Size(); i += 2 {
			even = append(even, pg.GlobalRank(i))
		}
		sub, err := pg.NewGroup(ctx, even, comm.GroupOptions{Desc: "even ranks"})
		if err != nil {
			return err
		}
		if pg.Rank()%2 == 1 {
			if sub != nil {
				return wrongf("a non-member got a group")
			}
			return nil
		}
		defer sub.Close()
		if sub.Size() != len(even) || sub.Rank() != pg.Rank()/2 {
			return wrongf("sub-group rank %d of %d, want %d of %d", sub.Rank(), sub.Size(), pg.Rank()/2, len(even))
		}
		t := input(tensor.Int64, tensor.Sum, sub.Rank(), 1001, salt)
		if err := sub.AllReduce(ctx, t, comm.Sum); err != nil {
			return err
		}
		want, tol := reduced(tensor.Int64, tensor.Sum, 0, sub.Size(), 1001, salt, 0)
		return check("sub-group sum", t, want, tol)
	}
}

func splitCase(salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n, r := pg.Size(), pg.Rank()
		sub, err := pg.Split(ctx, r%2, -r, comm.GroupOptions{})
		if err != nil {
			return err
		}
		defer sub.Close()
		members := 0
		for i := r % 2; i < n; i += 2 {
			members++
		}
		// Keys are -rank: the highest rank of each color is group rank 0.
		wantRank := members - 1 - r/2
		if sub.Size() != members || sub.Rank() != wantRank {
			return wrongf("split: rank %d of %d, want %d of %d", sub.Rank(), sub.Size(), wantRank, members)
		}
		in := tensor.New(tensor.Int32, 1)
		in.SetFloat(float64(r), 0)
		out := tensor.New(tensor.Int32, sub.Size())
		if err := sub.AllGather(ctx, out, in); err != nil {
			return err
		}
		for i, v := range out.Float64s() {
			if int(v) != sub.GlobalRank(i) {
				return wrongf("split all-gather: slot %d holds rank %v, want %d", i, v, sub.GlobalRank(i))
			}
		}
		return nil
	}
}

func concurrentGroupsCase(salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		ranks := pg.GlobalRanks()
		a, err := pg.NewGroup(ctx, ranks, comm.GroupOptions{Desc: "concurrent a"})
		if err != nil {
			return err
		}
		defer a.Close()
		b, err := pg.NewGroup(ctx, ranks, comm.GroupOptions{Desc: "concurrent b"})
		if err != nil {
			return err
		}
		defer b.Close()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for gi, g := range []*comm.ProcessGroup{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for it := 0; it < 20 && errs[gi] == nil; it++ {
					s := salt*100 + gi*50 + it
					t := input(tensor.Float64, tensor.Sum, g.Rank(), 4099, s)
					if err := g.AllReduce(ctx, t, comm.Sum); err != nil {
						errs[gi] = err
						return
					}
					want, tol := reduced(tensor.Float64, tensor.Sum, 0, g.Size(), 4099, s, 0)
					errs[gi] = check(fmt.Sprintf("group %d iteration %d", gi, it), t, want, tol)
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}

// asyncOrderCase issues a mix of async and sync ops and checks they ran in issue order.
func asyncOrderCase(salt int) func(context.Context, *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		n := pg.Size()
		t := tensor.New(tensor.Int64, 5)
		t.Fill(1)
		w1 := pg.AllReduceAsync(t, comm.Sum)                   // n
		w2 := pg.AllReduceAsync(t, comm.Sum)                   // n*n
		if err := pg.AllReduce(ctx, t, comm.Sum); err != nil { // n*n*n, after both
			return err
		}
		if !w1.IsCompleted() || !w2.IsCompleted() {
			return wrongf("a sync op finished before the async ops issued before it")
		}
		if err := errors.Join(w1.Err(), w2.Err()); err != nil {
			return err
		}
		want := float64(n * n * n)
		for i, v := range t.Float64s() {
			if v != want {
				return wrongf("element %d is %v, want %v: ops ran out of order", i, v, want)
			}
		}
		return nil
	}
}
