package comm_test

// Bad-input tests: what every rank sees when ranks disagree (mismatched collectives), when a
// call's arguments are wrong, when init cannot form the job (world sizes that disagree, a rank
// claimed twice, a store that is not there, a wrong token, a port that is not a store), when an
// op times out, and how async Work reports failures. Multi-rank tests run real processes through
// ranktest; a child reports each outcome as a "RESULT <tag> <json>" line and exits 0, and the
// parent asserts on those lines, so that a failure shows what every rank saw.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// biCaseEnv tells a child which case of a table-driven multi-rank test to run.
const biCaseEnv = "GCCL_BADINPUT_CASE"

// biOutcome is what a rank reports about one call.
type biOutcome struct {
	Tag      string    `json:"tag"`
	Rank     int       `json:"rank"`
	Err      string    `json:"err,omitempty"`
	Mismatch bool      `json:"mismatch,omitempty"`
	Aborted  bool      `json:"aborted,omitempty"`
	PeerLost bool      `json:"peer_lost,omitempty"`
	Timeout  bool      `json:"timeout,omitempty"`
	Invalid  bool      `json:"invalid,omitempty"`
	Closed   bool      `json:"closed,omitempty"`
	Canceled bool      `json:"canceled,omitempty"`
	Ms       int64     `json:"ms"`
	DataOK   *bool     `json:"data_ok,omitempty"`
	Data     []float64 `json:"data,omitempty"` // the first elements
	Done     *bool     `json:"done,omitempty"` // Work.IsCompleted, where it matters
}

// biReport prints one outcome line (in a child).
func biReport(tag string, rank int, err error, took time.Duration, fill func(o *biOutcome)) {
	o := biOutcome{Tag: tag, Rank: rank, Ms: took.Milliseconds()}
	if err != nil {
		o.Err = err.Error()
		o.Mismatch = errors.Is(err, comm.ErrMismatch)
		o.Aborted = errors.Is(err, comm.ErrAborted)
		o.PeerLost = errors.Is(err, comm.ErrPeerLost)
		o.Timeout = errors.Is(err, comm.ErrTimeout)
		o.Invalid = errors.Is(err, comm.ErrInvalidArgument)
		o.Closed = errors.Is(err, comm.ErrClosed)
		o.Canceled = errors.Is(err, context.Canceled)
	}
	if fill != nil {
		fill(&o)
	}
	b, _ := json.Marshal(o)
	fmt.Printf("RESULT %s %s\n", tag, b)
}

// biOutcomes parses the RESULT lines of one rank's output, by tag.
func biOutcomes(t *testing.T, out string) map[string]biOutcome {
	t.Helper()
	m := map[string]biOutcome{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, "RESULT ")
		if i < 0 {
			continue
		}
		j := strings.Index(line[i:], " {")
		if j < 0 {
			continue
		}
		js := line[i+j+1:]
		var o biOutcome
		if err := json.Unmarshal([]byte(js), &o); err != nil {
			t.Errorf("bad RESULT line %q: %v", line, err)
			continue
		}
		m[o.Tag] = o
	}
	return m
}

// biResults parses every rank's outcomes and checks that each rank exited 0.
func biResults(t *testing.T, res []ranktest.Result) []map[string]biOutcome {
	t.Helper()
	all := make([]map[string]biOutcome, len(res))
	for r, rr := range res {
		assert.Equal(t, 0, rr.ExitCode, "rank %d exited with %d (signal %v); output:\n%s", r, rr.ExitCode, rr.Signal, rr.Output)
		all[r] = biOutcomes(t, rr.Output)
	}
	return all
}

// biGet returns rank r's outcome for tag, failing the test (with the rank's output) if missing.
func biGet(t *testing.T, res []ranktest.Result, all []map[string]biOutcome, r int, tag string) (biOutcome, bool) {
	t.Helper()
	o, ok := all[r][tag]
	if !ok {
		t.Errorf("rank %d reported no %q outcome; output:\n%s", r, tag, res[r].Output)
	}
	return o, ok
}

// biNoRaceExitSleep keeps a -race child from sleeping a second at exit (the race runtime's
// atexit_sleep_ms), which would only slow the tests down.
func biNoRaceExitSleep() string {
	return "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")
}

// biChildInit joins the job from the environment ranktest set up.
func biChildInit() (*comm.ProcessGroup, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return comm.Init(ctx, comm.Options{})
}

// biJoin joins the job as biChildInit does, or reports why it could not (tag "init") and
// returns nil.
func biJoin() *comm.ProcessGroup {
	pg, err := biChildInit()
	if err != nil {
		biReport("init", -1, err, 0, nil)
		return nil
	}
	return pg
}

// biSyncExit waits (through the store, not the possibly aborted group) until every rank has
// reported, so that no rank's exit turns a peer's pending error into a lost peer; then it
// closes the group.
func biSyncExit(pg *comm.ProcessGroup) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := pg.Store()
	_ = s.Set(ctx, "badinput/done/"+strconv.Itoa(pg.Rank()), []byte("1"))
	keys := make([]string, pg.Size())
	for i := range keys {
		keys[i] = "badinput/done/" + strconv.Itoa(i)
	}
	if err := s.Wait(ctx, keys...); err != nil {
		fmt.Printf("sync before exit: %v\n", err)
	}
	_ = pg.Close()
}

func biFilled(dt tensor.DType, n int, v float64) *tensor.Tensor {
	t := tensor.New(dt, n)
	t.Fill(v)
	return t
}

// biHealth reports under tag whether an all-reduce works on pg, and sums right, after a failed
// call.
func biHealth(ctx context.Context, pg *comm.ProcessGroup, tag string) {
	n := pg.Size()
	x := biFilled(tensor.Float32, 5, float64(pg.Rank()+1))
	start := time.Now()
	err := pg.AllReduce(ctx, x, comm.Sum)
	biReport(tag, pg.Rank(), err, time.Since(start), func(o *biOutcome) {
		ok := err == nil && biAllEqual(x, float64(n*(n+1)/2))
		o.DataOK, o.Data = &ok, biHead(x)
	})
}

func biAllEqual(t *tensor.Tensor, v float64) bool {
	for _, x := range t.Float64s() {
		if x != v {
			return false
		}
	}
	return true
}

func biHead(t *tensor.Tensor) []float64 {
	if t == nil || t.Numel() == 0 {
		return nil
	}
	head := biMust(t.Reshape(t.Numel()))
	return biMust(head.Narrow(0, 0, min(t.Numel(), 4))).Float64s()
}

// --- 1 and 2: ranks that call different collectives ---

// biCall is one rank's side of a mismatch case: the op it calls (for the error message) and
// the call, which returns the tensor it filled.
type biCall struct {
	op  string
	run func(ctx context.Context, pg *comm.ProcessGroup) (*tensor.Tensor, error)
}

func biAllReduce(dt tensor.DType, n int, red comm.ReduceOp) biCall {
	return biCall{op: "all_reduce", run: func(ctx context.Context, pg *comm.ProcessGroup) (*tensor.Tensor, error) {
		t := biFilled(dt, n, float64(pg.Rank()+1))
		return t, pg.AllReduce(ctx, t, red)
	}}
}

func biBroadcast(dt tensor.DType, n, root int) biCall {
	return biCall{op: "broadcast", run: func(ctx context.Context, pg *comm.ProcessGroup) (*tensor.Tensor, error) {
		t := biFilled(dt, n, float64(pg.Rank()+1))
		return t, pg.Broadcast(ctx, t, root)
	}}
}

// biAllToAll runs an all-to-all of ones with the splits (rows of one element) that splits gives
// this rank; every element of the output must then be 1.
func biAllToAll(splits func(rank, n int) (ins, outs []int)) biCall {
	return biCall{op: "all_to_all", run: func(ctx context.Context, pg *comm.ProcessGroup) (*tensor.Tensor, error) {
		ins, outs := splits(pg.Rank(), pg.Size())
		sum := func(s []int) (n int) {
			for _, v := range s {
				n += v
			}
			return n
		}
		out := tensor.New(tensor.Float32, sum(outs))
		return out, pg.AllToAllSplits(ctx, out, biFilled(tensor.Float32, sum(ins), 1), outs, ins)
	}}
}

// biSend sends n elements of dt holding 1 to rank to; biRecv receives n elements of dt from rank
// from (every element must then be 1).
func biSend(dt tensor.DType, n, to int) biCall {
	return biCall{op: "send", run: func(ctx context.Context, pg *comm.ProcessGroup) (*tensor.Tensor, error) {
		t := biFilled(dt, n, 1)
		return t, pg.Send(ctx, t, to, 0)
	}}
}

func biRecv(dt tensor.DType, n, from int) biCall {
	return biCall{op: "recv", run: func(ctx context.Context, pg *comm.ProcessGroup) (*tensor.Tensor, error) {
		t := tensor.New(dt, n)
		return t, pg.Recv(ctx, t, from, 0)
	}}
}

// biTwos is two rows for every peer, both ways.
func biTwos(_, n int) (ins, outs []int) {
	ins, outs = make([]int, n), make([]int, n)
	for p := range n {
		ins[p], outs[p] = 2, 2
	}
	return ins, outs
}

type mismatchCase struct {
	name  string
	size  int
	odd   int    // the rank that calls something else
	same  biCall // what the other ranks call
	other biCall // what rank odd calls
	// want is the value every element must hold on a rank whose call returns without error
	// (from that rank's own view of the op); nil means every rank must get an error.
	want func(rank int) float64
	// deadlock: no rank sends anything, so the ranks can only time out (GCCL_TIMEOUT=3s).
	deadlock bool
}

func (c mismatchCase) call(rank int) biCall {
	if rank == c.odd {
		return c.other
	}
	return c.same
}

// broadcastWant: a rank that completes a broadcast must hold the data of the root it named
// (rank r's data is r+1 everywhere; rank odd names root 1, the others root 0).
func broadcastWant(odd int) func(rank int) float64 {
	return func(rank int) float64 {
		if rank == odd {
			return 2
		}
		return 1
	}
}

func mismatchCases() []mismatchCase {
	var cases []mismatchCase
	for _, n := range []int{2, 3} {
		sfx := fmt.Sprintf("/%dranks", n)
		cases = append(cases,
			mismatchCase{name: "dtype" + sfx, size: n, odd: 1,
				same: biAllReduce(tensor.Float32, 10, comm.Sum), other: biAllReduce(tensor.Int32, 10, comm.Sum)},
			mismatchCase{name: "count" + sfx, size: n, odd: 1,
				same: biAllReduce(tensor.Float32, 10, comm.Sum), other: biAllReduce(tensor.Float32, 20, comm.Sum)},
			mismatchCase{name: "op" + sfx, size: n, odd: 1,
				same: biAllReduce(tensor.Float32, 10, comm.Sum), other: biBroadcast(tensor.Float32, 10, 0)},
			mismatchCase{name: "reduce_op" + sfx, size: n, odd: 1,
				same: biAllReduce(tensor.Float32, 10, comm.Sum), other: biAllReduce(tensor.Float32, 10, comm.Max)},
			// Avg runs as a Sum in the backends, with comm's division after it.
			mismatchCase{name: "reduce_op_avg" + sfx, size: n, odd: 1,
				same: biAllReduce(tensor.Float32, 10, comm.Sum), other: biAllReduce(tensor.Float32, 10, comm.Avg)},
		)
		// Root 0 on every rank but rank 1, which names itself root. Every rank then only sends
		// (or, with 3 ranks, rank 2 receives from root 0 as it expects): no rank receives data
		// from a rank that is not its root, so the broadcast may complete everywhere, and the
		// stray messages make the next op fail with ErrMismatch.
		c := mismatchCase{name: "root" + sfx, size: n, odd: 1,
			same: biBroadcast(tensor.Float32, 10, 0), other: biBroadcast(tensor.Float32, 10, 1)}
		c.want = broadcastWant(c.odd)
		cases = append(cases, c)
	}
	// All-to-all splits that disagree between ranks (each rank's own block is consistent, so no
	// rank can tell alone): rank 1 sends rank 0 one row and expects one from it, where rank 0
	// sends and expects two; with 3 ranks, rank 1 sends ranks 0 and 2 one row fewer and more.
	ones := func(int) float64 { return 1 }
	cases = append(cases,
		mismatchCase{name: "splits/2ranks", size: 2, odd: 1, want: ones, same: biAllToAll(biTwos),
			other: biAllToAll(func(int, int) ([]int, []int) { return []int{1, 3}, []int{1, 3} })},
		mismatchCase{name: "splits/3ranks", size: 3, odd: 1, want: ones, same: biAllToAll(biTwos),
			other: biAllToAll(func(int, int) ([]int, []int) { return []int{1, 2, 3}, []int{2, 2, 2} })},
	)
	// A receive that matches a send by tag but not by size or dtype (the same bytes, another
	// dtype: reinterpreting them would be silently wrong); small messages and, on shm, one
	// longer than a mailbox box.
	for _, n := range []int{4, 64} {
		sfx := fmt.Sprintf("/%d", n)
		cases = append(cases,
			mismatchCase{name: "p2p_dtype" + sfx, size: 2, odd: 1, want: ones,
				same: biSend(tensor.Float32, n, 1), other: biRecv(tensor.Int32, n, 0)},
			mismatchCase{name: "p2p_count" + sfx, size: 2, odd: 1, want: ones,
				same: biSend(tensor.Float32, n, 1), other: biRecv(tensor.Float32, n+1, 0)},
		)
	}
	// Large buffers: the pipelined ring, with more in flight than the socket buffers hold, so
	// that a rank is still writing to the rank that detects the mismatch and aborts. The
	// survivors must still see ErrMismatch, not a "peer lost" naming the live rank that closed
	// its connections after aborting. (These fail until gloo stops losing the abort reason to
	// the connection reset; see the report.)
	const big = 16 << 20 // float32 elements: 64 MiB
	cases = append(cases,
		mismatchCase{name: "count/3ranks_64MiB", size: 3, odd: 1,
			same: biAllReduce(tensor.Float32, big, comm.Sum), other: biAllReduce(tensor.Float32, big+3, comm.Sum)},
		mismatchCase{name: "dtype/3ranks_64MiB", size: 3, odd: 1,
			same: biAllReduce(tensor.Float32, big, comm.Sum), other: biAllReduce(tensor.Int32, big, comm.Sum)},
	)
	// Rank 0 names root 1, ranks 1 and 2 name root 0: in the binomial tree every rank then
	// waits for a parent and nobody sends, so no header ever arrives to compare; the ranks can
	// only time out. No rank may complete (it would hold data it never received).
	c := mismatchCase{name: "root/3ranks_nobody_sends", size: 3, odd: 0, deadlock: true,
		same: biBroadcast(tensor.Float32, 10, 0), other: biBroadcast(tensor.Float32, 10, 1)}
	c.want = func(int) float64 { return -1 } // never matches: completing is wrong
	cases = append(cases, c)
	return cases
}

// TestBadInputMismatch: ranks that disagree on the dtype, count, op, reduce op or root of a
// collective must all get an error (ErrMismatch, their own or carried by a peer's abort) within
// a few seconds, naming the op and its sequence number; no rank may return success with data
// it did not legitimately receive.
func TestBadInputMismatch(t *testing.T) {
	if ranktest.Child(t) {
		mismatchChild(os.Getenv(biCaseEnv))
		return
	}
	for _, tc := range mismatchCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			timeout := "GCCL_TIMEOUT=10s"
			if tc.deadlock {
				timeout = "GCCL_TIMEOUT=3s"
			}
			res := ranktest.Spawn(t, ranktest.Config{Ranks: tc.size, Timeout: 60 * time.Second,
				Env: []string{biCaseEnv + "=" + tc.name, timeout, biNoRaceExitSleep()}})
			all := biResults(t, res)
			for r := range res {
				op, ok1 := biGet(t, res, all, r, "op")
				next, ok2 := biGet(t, res, all, r, "next")
				if !ok1 || !ok2 {
					continue
				}
				t.Logf("rank %d: %s: err=%q after %d ms; next op: err=%q", r, tc.call(r).op, op.Err, op.Ms, next.Err)
				if op.Err == "" {
					if tc.want == nil {
						t.Errorf("rank %d: %s completed without error although the ranks disagree (data %v)", r, tc.call(r).op, op.Data)
						continue
					}
					if assert.NotNil(t, op.DataOK) {
						assert.True(t, *op.DataOK, "rank %d completed with wrong data %v", r, op.Data)
					}
					// The disagreement must surface no later than the next op.
					assert.True(t, next.Mismatch, "rank %d: after a mismatched %s that completed, the next op must fail with ErrMismatch; got %q", r, tc.call(r).op, next.Err)
					continue
				}
				if tc.deadlock {
					assert.True(t, op.Mismatch || op.Timeout, "rank %d: want ErrMismatch or ErrTimeout, got %q", r, op.Err)
				} else {
					assert.True(t, op.Mismatch, "rank %d: want errors.Is(err, comm.ErrMismatch), got %q", r, op.Err)
					// Well before the 10 s timeout, with room for -race on a loaded 2-core
					// machine (3.5 s seen there); how fast is for benchmarks, not tests.
					assert.Less(t, op.Ms, int64(8000), "rank %d took %d ms to report the mismatch", r, op.Ms)
				}
				assert.Contains(t, op.Err, tc.call(r).op, "rank %d: the error must name the op", r)
				assert.Contains(t, op.Err, "#1", "rank %d: the error must name the sequence number", r)
				assert.NotEmpty(t, next.Err, "rank %d: an op after a failed one must fail (the group is aborted)", r)
				assert.Less(t, next.Ms, int64(1000), "rank %d: the op after a failure must fail fast", r)
			}
		})
	}
}

func mismatchChild(name string) {
	var tc mismatchCase
	for _, c := range mismatchCases() {
		if c.name == name {
			tc = c
		}
	}
	if tc.name == "" {
		fmt.Printf("unknown case %q\n", name)
		return
	}
	pg := biJoin()
	if pg == nil {
		return
	}
	rank := pg.Rank()
	ctx := context.Background()
	start := time.Now()
	t, err := tc.call(rank).run(ctx, pg)
	biReport("op", rank, err, time.Since(start), func(o *biOutcome) {
		o.Data = biHead(t)
		if err == nil && tc.want != nil {
			ok := biAllEqual(t, tc.want(rank))
			o.DataOK = &ok
		}
	})
	start = time.Now()
	err = pg.Barrier(ctx)
	biReport("next", rank, err, time.Since(start), nil)
	biSyncExit(pg)
}

// --- 3: arguments that are wrong on this rank ---

type invalidCase struct {
	name    string
	minSize int
	// otherSlot: the call aliases another rank's slot; run after a health check of its own so
	// that a call that wrongly runs cannot hide the results of the others.
	otherSlot bool
	call      func(ctx context.Context, pg *comm.ProcessGroup) error
	want      func(rank, size int) []string // substrings of the error besides op and rank
	op        string                        // the op the error must name
}

func biF32(n int) *tensor.Tensor { return biFilled(tensor.Float32, n, 1) }

func biMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func biStrs(s ...string) func(int, int) []string { return func(int, int) []string { return s } }

func invalidCases() []invalidCase {
	peer := func(pg *comm.ProcessGroup) int { return (pg.Rank() + 1) % pg.Size() }
	return []invalidCase{
		{name: "broadcast root out of range", op: "broadcast",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.Broadcast(ctx, biF32(4), 5) },
			want: func(_, n int) []string { return []string{"root 5 is out of range", fmt.Sprintf("ranks 0..%d", n-1)} }},
		{name: "broadcast negative root", op: "broadcast",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.Broadcast(ctx, biF32(4), -1) },
			want: biStrs("root -1 is out of range")},
		{name: "reduce root out of range", op: "reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.Reduce(ctx, biF32(4), pg.Size(), comm.Sum)
			},
			want: func(_, n int) []string { return []string{fmt.Sprintf("root %d is out of range", n)} }},
		{name: "gather root out of range", op: "gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.Gather(ctx, biF32(4*pg.Size()), biF32(4), pg.Size()+3)
			},
			want: func(_, n int) []string { return []string{fmt.Sprintf("root %d is out of range", n+3)} }},
		{name: "scatter negative root", op: "scatter",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.Scatter(ctx, biF32(4), biF32(4*pg.Size()), -2)
			},
			want: biStrs("root -2 is out of range")},
		{name: "send to rank 9", op: "send",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.Send(ctx, biF32(4), 9, 0) },
			want: biStrs("destination 9 is out of range")},
		{name: "recv from rank 9", op: "recv",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.Recv(ctx, biF32(4), 9, 0) },
			want: biStrs("source 9 is out of range")},
		{name: "recv from self", op: "recv",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.Recv(ctx, biF32(4), pg.Rank(), 0) },
			want: biStrs("itself")},
		{name: "send to self", op: "send",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.Send(ctx, biF32(4), pg.Rank(), 0) },
			want: biStrs("itself")},
		{name: "GatherObject root out of range", op: "gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				_, err := comm.GatherObject(ctx, pg, "x", pg.Size())
				return err
			},
			want: func(_, n int) []string {
				return []string{fmt.Sprintf("root %d is out of range", n), "(in GatherObject)"}
			}},
		{name: "ScatterObject negative root", op: "scatter",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				_, err := comm.ScatterObject(ctx, pg, make([]string, pg.Size()), -1)
				return err
			},
			want: biStrs("root -1 is out of range", "(in ScatterObject)")},
		{name: "BroadcastObject root out of range", op: "broadcast",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				v := "x"
				return comm.BroadcastObject(ctx, pg, &v, 7)
			},
			want: biStrs("root 7 is out of range", "(in BroadcastObject)")},
		{name: "SendObject to rank 9", op: "send",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return comm.SendObject(ctx, pg, "x", 9, 0) },
			want: biStrs("destination 9 is out of range", "(in SendObject)")},
		{name: "RecvObject from self", op: "recv",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				_, err := comm.RecvObject[string](ctx, pg, pg.Rank(), 0)
				return err
			},
			want: biStrs("itself", "(in RecvObject)")},
		{name: "RecvObject with a negative tag", op: "recv", minSize: 2,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				_, err := comm.RecvObject[string](ctx, pg, peer(pg), -3)
				return err
			},
			want: biStrs("tag -3 is negative", "(in RecvObject)")},
		{name: "batch with no op", op: "batch_isend_irecv",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.BatchSendRecv(ctx, nil) },
			want: biStrs("no op given")},
		{name: "batch with a send to rank 9", op: "send", minSize: 2,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.BatchSendRecv(ctx, []comm.P2POp{comm.RecvOp(biF32(4), peer(pg), 0), comm.SendOp(biF32(4), 9, 0)})
			},
			want: biStrs("destination 9 is out of range", "op 1 of the 2 of a batch_isend_irecv")},
		{name: "batch receiving into overlapping buffers", op: "batch_isend_irecv", minSize: 2,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				x := biF32(8)
				return pg.BatchSendRecv(ctx, []comm.P2POp{
					comm.SendOp(biF32(2), peer(pg), 0), comm.RecvOp(biMust(x.Narrow(0, 0, 4)), peer(pg), 0), comm.RecvOp(biMust(x.Narrow(0, 2, 4)), peer(pg), 1),
				})
			},
			want: biStrs("ops 1 and 2 overlap")},
		{name: "async batch receiving into what it sends", op: "batch_isend_irecv", minSize: 2,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				x := biF32(8)
				return pg.BatchSendRecvAsync([]comm.P2POp{comm.SendOp(x, peer(pg), 0), comm.RecvOp(x, peer(pg), 0)}).Wait(ctx)
			},
			want: biStrs("ops 0 and 1 overlap")},
		{name: "send with a negative tag", op: "send", minSize: 2,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.Send(ctx, biF32(4), peer(pg), -1) },
			want: biStrs("tag -1 is negative")},
		{name: "all_gather output too large", op: "all_gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllGather(ctx, biF32(4*pg.Size()+1), biF32(4))
			},
			want: func(_, n int) []string {
				return []string{fmt.Sprintf("the output has %d elements but must have %d", 4*n+1, 4*n)}
			}},
		{name: "all_gather output too small", op: "all_gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllGather(ctx, biF32(4*pg.Size()-1), biF32(4))
			},
			want: func(_, n int) []string {
				return []string{fmt.Sprintf("the output has %d elements but must have %d", 4*n-1, 4*n)}
			}},
		{name: "reduce_scatter input not size x output", op: "reduce_scatter",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.ReduceScatter(ctx, biF32(4), biF32(4*pg.Size()+2), comm.Sum)
			},
			want: func(_, n int) []string {
				return []string{fmt.Sprintf("the input has %d elements but must have %d", 4*n+2, 4*n)}
			}},
		{name: "gather root output wrong size", op: "gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.Gather(ctx, biF32(4*pg.Size()+4), biF32(4), pg.Rank())
			},
			want: biStrs("must have")},
		{name: "scatter root input wrong size", op: "scatter",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.Scatter(ctx, biF32(4), biF32(4*pg.Size()+1), pg.Rank())
			},
			want: biStrs("must have")},
		{name: "all_to_all not divisible", op: "all_to_all", minSize: 2,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				n := 2*pg.Size() + 1
				return pg.AllToAll(ctx, biF32(n), biF32(n))
			},
			want: func(_, n int) []string {
				return []string{fmt.Sprintf("%d elements, not divisible by the group size %d", 2*n+1, n), "pass split sizes"}
			}},
		{name: "all_to_all equal blocks, output of another size", op: "all_to_all",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				n := pg.Size()
				return pg.AllToAll(ctx, biF32(3*n), biF32(2*n))
			},
			want: func(_, n int) []string {
				return []string{fmt.Sprintf("the input has %d elements and the output %d", 2*n, 3*n), "pass split sizes"}
			}},
		{name: "all_to_all own block of two sizes", op: "all_to_all", minSize: 2,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				n, r := pg.Size(), pg.Rank()
				ins, outs := make([]int, n), make([]int, n)
				for i := range ins {
					ins[i], outs[i] = 2, 2
				}
				ins[r], ins[(r+1)%n] = 1, 3 // the same total, but one element fewer for itself
				return pg.AllToAllSplits(ctx, biF32(2*n), biF32(2*n), outs, ins)
			},
			want: func(r, _ int) []string {
				return []string{fmt.Sprintf("inSplits[%d] gives it 1 elements of the input, outSplits[%d] 2 of the output", r, r)}
			}},
		{name: "all_to_all input split sizes do not add up", op: "all_to_all",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				n := pg.Size()
				in, out := tensor.New(tensor.Float32, 2*n, 2), tensor.New(tensor.Float32, 2*n, 2)
				ones, twos := make([]int, n), make([]int, n)
				for i := range ones {
					ones[i], twos[i] = 1, 2
				}
				return pg.AllToAllSplits(ctx, out, in, twos, ones)
			},
			want: func(_, n int) []string {
				return []string{fmt.Sprintf("input split sizes add up to %d rows but the input has %d", n, 2*n)}
			}},
		{name: "all_to_all output split sizes do not add up", op: "all_to_all",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				n := pg.Size()
				in, out := tensor.New(tensor.Float32, n, 3), tensor.New(tensor.Float32, n, 3)
				ones, threes := make([]int, n), make([]int, n)
				for i := range ones {
					ones[i], threes[i] = 1, 3
				}
				return pg.AllToAllSplits(ctx, out, in, threes, ones)
			},
			want: func(_, n int) []string {
				return []string{fmt.Sprintf("output split sizes add up to %d rows but the output has %d", 3*n, n)}
			}},
		{name: "all_to_all one split size too many", op: "all_to_all",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				n := pg.Size()
				in, out := tensor.New(tensor.Float32, n+1), tensor.New(tensor.Float32, n+1)
				splits := make([]int, n+1)
				for i := range splits {
					splits[i] = 1
				}
				return pg.AllToAllSplits(ctx, out, in, splits, splits)
			},
			want: func(_, n int) []string {
				return []string{fmt.Sprintf("%d input split sizes for a group of %d", n+1, n), "one per rank"}
			}},
		{name: "all_to_all negative split size", op: "all_to_all",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				n := pg.Size()
				in, out := tensor.New(tensor.Float32, n), tensor.New(tensor.Float32, n)
				splits := make([]int, n)
				for i := range splits {
					splits[i] = 1
				}
				splits[0] = -1
				return pg.AllToAllSplits(ctx, out, in, nil, splits)
			},
			want: biStrs("split size -1 for rank 0 is negative")},
		{name: "all_to_all in place", op: "all_to_all",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				t := biF32(2 * pg.Size())
				return pg.AllToAll(ctx, t, t)
			},
			want: biStrs("cannot run in place", "pass a separate output")},
		{name: "all_reduce nil tensor", op: "all_reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.AllReduce(ctx, nil, comm.Sum) },
			want: biStrs("tensor is nil")},
		{name: "broadcast nil tensor", op: "broadcast",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.Broadcast(ctx, nil, 0) },
			want: biStrs("tensor is nil")},
		{name: "all_gather nil output", op: "all_gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.AllGather(ctx, nil, biF32(4)) },
			want: biStrs("output is nil")},
		{name: "reduce_scatter nil input", op: "reduce_scatter",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.ReduceScatter(ctx, biF32(4), nil, comm.Sum)
			},
			want: biStrs("input is nil")},
		{name: "send nil tensor", op: "send", minSize: 2,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.Send(ctx, nil, peer(pg), 0) },
			want: biStrs("tensor is nil")},
		{name: "all_reduce transposed view", op: "all_reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				tr := biMust(tensor.New(tensor.Float32, 2, 3).Transpose(0, 1))
				return pg.AllReduce(ctx, tr, comm.Sum)
			},
			want: biStrs("not contiguous", "t.Contiguous()")},
		{name: "all_gather transposed input", op: "all_gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				tr := biMust(tensor.New(tensor.Float32, 2, 3).Transpose(0, 1))
				return pg.AllGather(ctx, biF32(6*pg.Size()), tr)
			},
			want: biStrs("input ([3 2]) is not contiguous")},
		{name: "broadcast strided narrow view", op: "broadcast",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				v := biMust(tensor.New(tensor.Float32, 4, 4).Narrow(1, 1, 2))
				return pg.Broadcast(ctx, v, 0)
			},
			want: biStrs("not contiguous")},
		{name: "all_gather dtype of input and output differ", op: "all_gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllGather(ctx, tensor.New(tensor.Int32, 4*pg.Size()), biF32(4))
			},
			want: biStrs("the input is float32 but the output is int32", "one dtype")},
		{name: "reduce_scatter dtype of input and output differ", op: "reduce_scatter",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.ReduceScatter(ctx, tensor.New(tensor.BFloat16, 4), biF32(4*pg.Size()), comm.Sum)
			},
			want: biStrs("the input is float32 but the output is bfloat16")},
		{name: "all_to_all dtype of input and output differ", op: "all_to_all",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllToAll(ctx, tensor.New(tensor.Float64, 2*pg.Size()), biF32(2*pg.Size()))
			},
			want: biStrs("the input is float32 but the output is float64")},
		{name: "all_reduce MAX with a factor", op: "all_reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllReduceWith(ctx, biF32(4), comm.Reduction{Op: comm.Max, Factor: 2})
			},
			want: biStrs("a Factor (2) with reduce op MAX", "PreMulSum(2)")},
		{name: "all_gather list outputs alias each other", op: "all_gather", minSize: 2,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				shared := biF32(4)
				outs := make([]*tensor.Tensor, pg.Size())
				for i := range outs {
					outs[i] = shared
				}
				return pg.AllGatherList(ctx, outs, biF32(4))
			},
			want: biStrs("outputs 0 and 1 overlap in memory", "a tensor of its own")},
		{name: "all_reduce BAND on float32", op: "all_reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error { return pg.AllReduce(ctx, biF32(4), comm.BAnd) },
			want: biStrs("BAND on float32", "integer or bool dtype")},
		{name: "reduce_scatter BXOR on float64", op: "reduce_scatter",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.ReduceScatter(ctx, tensor.New(tensor.Float64, 2), tensor.New(tensor.Float64, 2*pg.Size()), comm.BXor)
			},
			want: biStrs("BXOR on float64")},
		{name: "all_reduce SUM on float8", op: "all_reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllReduce(ctx, tensor.New(tensor.Float8E4M3FN, 4), comm.Sum)
			},
			want: biStrs("SUM on float8_e4m3fn", "convert to bfloat16 or float32")},
		{name: "reduce MAX on float8_e5m2", op: "reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.Reduce(ctx, tensor.New(tensor.Float8E5M2, 4), 0, comm.Max)
			},
			want: biStrs("MAX on float8_e5m2")},
		{name: "all_reduce AVG on bool", op: "all_reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllReduce(ctx, tensor.New(tensor.Bool, 4), comm.Avg)
			},
			want: biStrs("AVG on bool")},
		{name: "all_reduce PreMulSum on bool", op: "all_reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllReduceWith(ctx, tensor.New(tensor.Bool, 4), comm.PreMulSum(2))
			},
			want: biStrs("on bool")},
		{name: "all_reduce unknown reduce op", op: "all_reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllReduce(ctx, biF32(4), comm.ReduceOp(200))
			},
			want: biStrs("unknown reduce op")},
		{name: "all_gather input and output partially overlap", op: "all_gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				n := pg.Size()
				base := biF32(4*n + 1)
				out := biMust(base.Narrow(0, 0, 4*n))
				in := biMust(base.Narrow(0, 1, 4))
				return pg.AllGather(ctx, out, in)
			},
			want: biStrs("overlap", "slot")},
		{name: "reduce_scatter input and output partially overlap", op: "reduce_scatter",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				n := pg.Size()
				base := biF32(4*n + 1)
				in := biMust(base.Narrow(0, 0, 4*n))
				out := biMust(base.Narrow(0, 1, 4))
				return pg.ReduceScatter(ctx, out, in, comm.Sum)
			},
			want: biStrs("overlap", "slot")},
		{name: "all_gather_list one tensor too many", op: "all_gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				outs := make([]*tensor.Tensor, pg.Size()+1)
				for i := range outs {
					outs[i] = biF32(4)
				}
				return pg.AllGatherList(ctx, outs, biF32(4))
			},
			want: func(_, n int) []string {
				return []string{fmt.Sprintf("the output list has %d tensors; it needs one per rank (%d)", n+1, n)}
			}},
		{name: "all_gather_list nil element", op: "all_gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				outs := make([]*tensor.Tensor, pg.Size())
				return pg.AllGatherList(ctx, outs, biF32(4))
			},
			want: biStrs("output list[0] is nil")},
		{name: "all_gather_list element of the wrong size", op: "all_gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				outs := make([]*tensor.Tensor, pg.Size())
				for i := range outs {
					outs[i] = biF32(4)
				}
				outs[len(outs)-1] = biF32(5)
				return pg.AllGatherList(ctx, outs, biF32(4))
			},
			want: biStrs("is 5 x float32 but must match the single tensor (4 x float32)")},
		{name: "reduce_scatter_list one tensor too few", op: "reduce_scatter",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				ins := make([]*tensor.Tensor, pg.Size()-1)
				for i := range ins {
					ins[i] = biF32(4)
				}
				return pg.ReduceScatterList(ctx, biF32(4), ins, comm.Sum)
			},
			want: biStrs("needs one per rank")},
		// Device tensors reach only a backend for their device (backends.DeviceGroup); the
		// pointer is never dereferenced.
		{name: "all_reduce device tensor on a host backend", op: "all_reduce",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllReduce(ctx, biDevice(4), comm.Sum)
			},
			want: biStrs("tensor is on device xpu:0", "cannot move it: copy it to the host first, or use a backend for the device (xccl for xpu)")},
		{name: "all_gather device output on a host backend", op: "all_gather",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				return pg.AllGather(ctx, biDevice(4*pg.Size()), biF32(4))
			},
			want: biStrs("output is on device xpu:0", "copy it to the host first")},
		// In place is allowed only as the view of this rank's own slot. These alias the next
		// rank's slot; on a rank whose own slot is not the first, that slot starts where the
		// output starts.
		{name: "all_gather input is another rank's slot", op: "all_gather", minSize: 2, otherSlot: true,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				out := biF32(4 * pg.Size())
				in := biMust(out.Narrow(0, 4*peer(pg), 4))
				return pg.AllGather(ctx, out, in)
			},
			want: biStrs("overlap")},
		{name: "reduce_scatter output is another rank's slot", op: "reduce_scatter", minSize: 2, otherSlot: true,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				in := biF32(4 * pg.Size())
				out := biMust(in.Narrow(0, 4*peer(pg), 4))
				return pg.ReduceScatter(ctx, out, in, comm.Sum)
			},
			want: biStrs("overlap")},
	}
}

// biDevice is a float32 tensor of n elements on xpu:0, at an address nothing may read.
func biDevice(n int) *tensor.Tensor {
	return biMust(tensor.FromDevicePointer(tensor.Float32, tensor.Device{Type: "xpu"}, 0xdead0000, n))
}

// checkInvalid asserts that err is the ErrInvalidArgument tc wants, on rank r of n.
func checkInvalid(t *testing.T, tc invalidCase, r, n int, errMsg string, invalid bool) {
	t.Helper()
	if !assert.True(t, invalid, "rank %d: %s: want errors.Is(err, comm.ErrInvalidArgument), got %q", r, tc.name, errMsg) {
		return
	}
	assert.Contains(t, errMsg, tc.op, "rank %d: %s: the error must name the op", r, tc.name)
	assert.Contains(t, errMsg, fmt.Sprintf("rank %d of %d", r, n), "rank %d: %s: the error must name the rank", r, tc.name)
	for _, s := range tc.want(r, n) {
		assert.Contains(t, errMsg, s, "rank %d: %s", r, tc.name)
	}
}

// TestBadInputInvalidArguments: wrong arguments fail at once with ErrInvalidArgument, with a
// message that names the op, the rank and what to fix, and send nothing: in a world of one (in
// this process) and of two (where a collective afterwards still works, and sees no stray
// message).
func TestBadInputInvalidArguments(t *testing.T) {
	if ranktest.Child(t) {
		invalidChild()
		return
	}
	t.Run("world1", func(t *testing.T) {
		ctx := context.Background()
		pg, err := comm.Init(ctx, comm.Options{})
		require.NoError(t, err)
		defer pg.Close()
		require.Equal(t, 1, pg.Size())
		for _, tc := range invalidCases() {
			if tc.minSize > 1 {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				start := time.Now()
				err := tc.call(cctx, pg)
				require.Error(t, err)
				checkInvalid(t, tc, 0, 1, err.Error(), errors.Is(err, comm.ErrInvalidArgument))
				assert.Less(t, time.Since(start), time.Second)
			})
		}
		// Nothing was issued: the next op is collective #1 and works.
		x := biFilled(tensor.Float32, 3, 2)
		require.NoError(t, pg.AllReduce(ctx, x, comm.Sum))
		assert.Equal(t, []float64{2, 2, 2}, x.Float64s())
	})
	t.Run("world2", func(t *testing.T) {
		res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: 60 * time.Second, Env: []string{"GCCL_TIMEOUT=10s", biNoRaceExitSleep()}})
		all := biResults(t, res)
		for r := range res {
			for _, tc := range invalidCases() {
				o, ok := biGet(t, res, all, r, "case/"+tc.name)
				if !ok {
					continue
				}
				checkInvalid(t, tc, r, 2, o.Err, o.Invalid)
				assert.Less(t, o.Ms, int64(100), "rank %d: %s must fail at once", r, tc.name)
			}
			for _, tag := range []string{"health", "health2"} {
				if o, ok := biGet(t, res, all, r, tag); ok {
					assert.Empty(t, o.Err, "rank %d: %s: a collective after the invalid calls must work (nothing was sent)", r, tag)
					if assert.NotNil(t, o.DataOK, "rank %d: %s", r, tag) {
						assert.True(t, *o.DataOK, "rank %d: %s: wrong sum %v", r, tag, o.Data)
					}
				}
			}
		}
	})
}

func invalidChild() {
	pg := biJoin()
	if pg == nil {
		return
	}
	rank := pg.Rank()
	run := func(tc invalidCase) {
		// A call that wrongly passes validation must not hang the test.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		err := tc.call(ctx, pg)
		biReport("case/"+tc.name, rank, err, time.Since(start), nil)
	}
	for _, tc := range invalidCases() {
		if !tc.otherSlot {
			run(tc)
		}
	}
	biHealth(context.Background(), pg, "health")
	for _, tc := range invalidCases() {
		if tc.otherSlot {
			run(tc)
		}
	}
	biHealth(context.Background(), pg, "health2")
	biSyncExit(pg)
}

// --- 3b: object collectives with a value that cannot be encoded, or a wrong list ---

// objectCase is one call of TestBadInputObjects: what each rank calls, and the substrings its
// error must hold besides the function, the group and the rank (nil: it must succeed).
type objectCase struct {
	name string
	fn   string // the function every failing rank's error must name, unless fnOf says
	fnOf func(rank int) string
	call func(ctx context.Context, pg *comm.ProcessGroup) error
	want func(rank int) []string
	// mismatch: the error is ErrMismatch (values that do not decode), not ErrInvalidArgument.
	mismatch bool
}

// biUnregistered is a type gob cannot encode inside an interface: it is never gob.Register'ed.
type biUnregistered struct{ A int }

// biObjectRanks is the world size of TestBadInputObjects: a root, a failing rank and a
// bystander can all differ.
const biObjectRanks = 3

func biAll(s ...string) func(int) []string { return func(int) []string { return s } }

func objectCases() []objectCase {
	// What rank r passes: bad[r] if set, else a value gob encodes.
	values := func(r int, bad map[int]any) any {
		if v, ok := bad[r]; ok {
			return v
		}
		return fmt.Sprintf("value of rank %d", r)
	}
	const fix = "gob.Register each concrete type held in an interface"
	return []objectCase{
		{name: "AllGatherObject of different types", fn: "AllGatherObject", mismatch: true,
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				if pg.Rank() == 1 {
					_, err := comm.AllGatherObject(ctx, pg, struct{ Name string }{"one"})
					return err
				}
				_, err := comm.AllGatherObject(ctx, pg, 42)
				return err
			},
			want: biAll("decoding rank", "pass values of the same type on every rank")},
		{name: "AllGatherObject func on rank 1", fn: "AllGatherObject",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				_, err := comm.AllGatherObject(ctx, pg, values(pg.Rank(), map[int]any{1: func() {}}))
				return err
			},
			want: biAll("rank 1 cannot encode its value", "type not registered for interface: func()", fix)},
		{name: "AllGatherObject chan on rank 0 and unregistered type on rank 2", fn: "AllGatherObject",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				_, err := comm.AllGatherObject(ctx, pg, values(pg.Rank(), map[int]any{0: make(chan int), 2: biUnregistered{7}}))
				return err
			},
			want: biAll("rank 0 cannot encode its value", "chan int", "rank 2 cannot encode its value", "comm_test.biUnregistered")},
		{name: "BroadcastObject chan on root 2", fn: "BroadcastObject",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				v := values(pg.Rank(), map[int]any{2: make(chan int)})
				return comm.BroadcastObject(ctx, pg, &v, 2)
			},
			want: biAll("rank 2 (the root) cannot encode its value", "type not registered for interface: chan int", fix)},
		{name: "BroadcastObject nil pointer on root 1", fn: "BroadcastObject",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				v := new(any)
				if pg.Rank() == 1 {
					v = nil
				}
				return comm.BroadcastObject(ctx, pg, v, 1)
			},
			want: biAll("rank 1 (the root) cannot encode its value", "nil *interface {}", "pass a pointer")},
		{name: "GatherObject unregistered type on rank 2, root 1", fn: "GatherObject",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				_, err := comm.GatherObject(ctx, pg, values(pg.Rank(), map[int]any{2: biUnregistered{1}}), 1)
				return err
			},
			want: biAll("rank 2 cannot encode its value", "type not registered for interface: comm_test.biUnregistered", fix)},
		{name: "GatherObject func on the root", fn: "GatherObject",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				_, err := comm.GatherObject(ctx, pg, values(pg.Rank(), map[int]any{0: func() {}}), 0)
				return err
			},
			want: biAll("rank 0 cannot encode its value", "func()", fix)},
		{name: "ScatterObject func for rank 2 on root 1", fn: "ScatterObject",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				var vs []any
				if pg.Rank() == 1 {
					vs = []any{"a", "b", func() {}}
				}
				_, err := comm.ScatterObject(ctx, pg, vs, 1)
				return err
			},
			want: biAll("rank 1 (the root) cannot encode the value for rank 2", "type not registered for interface: func()", fix)},
		{name: "ScatterObject 2 values for 3 ranks on root 2", fn: "ScatterObject",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				vs := []string{"a", "b", "c"} // ignored: not the root
				if pg.Rank() == 2 {
					vs = []string{"a", "b"}
				}
				_, err := comm.ScatterObject(ctx, pg, vs, 2)
				return err
			},
			want: func(r int) []string {
				if r == 2 {
					return []string{"vs has 2 values for a group of 3 ranks", "pass one value per rank"}
				}
				return []string{"root 2 passed 2 values for 3 ranks", "one value per rank"}
			}},
		{name: "ScatterObject nil list on root 0", fn: "ScatterObject",
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				_, err := comm.ScatterObject[int](ctx, pg, nil, 0)
				return err
			},
			want: func(r int) []string {
				if r == 0 {
					return []string{"vs has 0 values for a group of 3 ranks", "pass one value per rank"}
				}
				return []string{"root 0 passed 0 values for 3 ranks"}
			}},
		{name: "SendObject func from rank 0 to RecvObject on rank 1",
			fnOf: func(r int) string { return []string{"SendObject", "RecvObject", ""}[r] },
			call: func(ctx context.Context, pg *comm.ProcessGroup) error {
				switch pg.Rank() {
				case 0:
					return comm.SendObject[any](ctx, pg, func() {}, 1, 5)
				case 1:
					_, err := comm.RecvObject[any](ctx, pg, 0, 5)
					return err
				}
				return nil
			},
			want: func(r int) []string {
				switch r {
				case 0:
					return []string{"rank 0 cannot encode its value for rank 1", "type not registered for interface: func()", fix}
				case 1:
					return []string{"rank 0 (the source) cannot encode its value", "type not registered for interface: func()", fix}
				}
				return nil
			}},
	}
}

// TestBadInputObjects: when a rank cannot encode its value for an object collective, or
// ScatterObject's root passes a list of the wrong length, every rank taking part fails at once
// (not at the group's timeout) with ErrInvalidArgument, and its error names the function, the
// group, this rank, the rank at fault, why and the fix; the group still works afterwards.
func TestBadInputObjects(t *testing.T) {
	if ranktest.Child(t) {
		objectsChild()
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: biObjectRanks, Timeout: 90 * time.Second,
		Env: []string{"GCCL_TIMEOUT=20s", biNoRaceExitSleep()}})
	all := biResults(t, res)
	for _, tc := range objectCases() {
		t.Run(tc.name, func(t *testing.T) {
			for r := range res {
				o, ok := biGet(t, res, all, r, "case/"+tc.name)
				if !ok {
					continue
				}
				t.Logf("rank %d: err=%q after %d ms", r, o.Err, o.Ms)
				want := tc.want(r)
				if want == nil {
					assert.Empty(t, o.Err, "rank %d takes no part, and must not fail", r)
					continue
				}
				fn := tc.fn
				if tc.fnOf != nil {
					fn = tc.fnOf(r)
				}
				if tc.mismatch {
					assert.True(t, o.Mismatch, "rank %d: want errors.Is(err, comm.ErrMismatch), got %q", r, o.Err)
				} else {
					assert.True(t, o.Invalid, "rank %d: want errors.Is(err, comm.ErrInvalidArgument), got %q", r, o.Err)
				}
				// Far below the 20 s timeout the other ranks would wait for without the sentinel.
				assert.Less(t, o.Ms, int64(8000), "rank %d took %d ms to fail", r, o.Ms)
				assert.Contains(t, o.Err, fmt.Sprintf("gccl: %s on group %q", fn, "0"), "rank %d: the error must name the function and the group", r)
				assert.Contains(t, o.Err, fmt.Sprintf("(rank %d)", r), "rank %d: the error must name this rank", r)
				for _, s := range want {
					assert.Contains(t, o.Err, s, "rank %d", r)
				}
				if h, ok := biGet(t, res, all, r, "health/"+tc.name); ok {
					assert.Empty(t, h.Err, "rank %d: a collective after the failed call must work", r)
					if assert.NotNil(t, h.DataOK, "rank %d", r) {
						assert.True(t, *h.DataOK, "rank %d: wrong sum %v after the failed call", r, h.Data)
					}
				}
			}
		})
	}
}

func objectsChild() {
	pg := biJoin()
	if pg == nil {
		return
	}
	rank := pg.Rank()
	for _, tc := range objectCases() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		err := tc.call(ctx, pg)
		biReport("case/"+tc.name, rank, err, time.Since(start), nil)
		biHealth(ctx, pg, "health/"+tc.name)
		cancel()
	}
	biSyncExit(pg)
}

// --- 4: ranks that disagree at init ---

// TestInitMembership: ranks started with different world sizes, or two processes claiming the
// same rank, fail at init, the culprit with a clear error, the other at worst by timeout, and
// nothing hangs.
func TestInitMembership(t *testing.T) {
	if ranktest.Child(t) {
		start := time.Now()
		pg, err := biChildInit()
		biReport("init", -1, err, time.Since(start), nil)
		if err == nil {
			_ = pg.Close()
		}
		return
	}
	const timeout = 5 * time.Second
	tests := []struct {
		name    string
		rankEnv func(r int) []string
		check   func(t *testing.T, errs []biOutcome)
	}{
		{
			name: "world size disagrees",
			rankEnv: func(r int) []string {
				if r == 1 {
					return []string{"WORLD_SIZE=3", "LOCAL_WORLD_SIZE=3"}
				}
				return nil
			},
			check: func(t *testing.T, errs []biOutcome) {
				re := regexp.MustCompile(`world size is (\d+) but another rank said (\d+)`)
				found := false
				for _, o := range errs {
					if m := re.FindStringSubmatch(o.Err); m != nil {
						found = true
						assert.ElementsMatch(t, []string{"2", "3"}, m[1:], "the error must name both world sizes: %q", o.Err)
						assert.True(t, o.Mismatch, "want errors.Is(err, comm.ErrMismatch): %q", o.Err)
						assert.Contains(t, o.Err, "WORLD_SIZE", "the error must say what to fix")
					}
				}
				assert.True(t, found, "no rank reported the disagreeing world sizes: %+v", errs)
			},
		},
		{
			name: "rank claimed twice",
			rankEnv: func(r int) []string {
				if r == 1 {
					return []string{"RANK=0", "LOCAL_RANK=0"}
				}
				return nil
			},
			check: func(t *testing.T, errs []biOutcome) {
				found := false
				for _, o := range errs {
					if strings.Contains(o.Err, "claimed twice") {
						found = true
						assert.Contains(t, o.Err, "rank 0 is claimed twice")
						assert.Contains(t, o.Err, "RANK", "the error must say what to fix")
						assert.True(t, o.Invalid, "want errors.Is(err, comm.ErrInvalidArgument): %q", o.Err)
					}
				}
				assert.True(t, found, "no rank reported the rank claimed twice: %+v", errs)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: 60 * time.Second, RankEnv: tc.rankEnv,
				Env: []string{biCaseEnv + "=" + tc.name, "GCCL_TIMEOUT=" + timeout.String(), biNoRaceExitSleep()}})
			all := biResults(t, res)
			var errs []biOutcome
			for r := range res {
				o, ok := biGet(t, res, all, r, "init")
				if !ok {
					continue
				}
				t.Logf("rank %d: Init failed after %d ms: %s", r, o.Ms, o.Err)
				assert.NotEmpty(t, o.Err, "rank %d: Init must fail", r)
				assert.Less(t, o.Ms, (timeout + 3*time.Second).Milliseconds(), "rank %d: Init must fail by its timeout: %q", r, o.Err)
				assert.Less(t, res[r].Elapsed, timeout+10*time.Second, "rank %d ran too long", r)
				errs = append(errs, o)
			}
			tc.check(t, errs)
		})
	}
}

// --- 5: a store that is not there, refuses the token, or is not a store ---

// TestInitStoreNotThere: nothing listens at MASTER_ADDR:MASTER_PORT; Init gives up after its
// timeout (GCCL_TIMEOUT) with an error that names the address, instead of hanging.
func TestInitStoreNotThere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, ln.Close())
	for k, v := range map[string]string{
		"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
		"GCCL_STORE_HOSTED": "1", "GCCL_TIMEOUT": "2s", "GCCL_TOKEN": "t",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	pg, err := comm.Init(ctx, comm.Options{})
	took := time.Since(start)
	if pg != nil {
		_ = pg.Close()
	}
	require.Error(t, err)
	t.Logf("after %v: %v", took, err)
	assert.Contains(t, err.Error(), "127.0.0.1:"+port, "the error must name the address")
	assert.Contains(t, err.Error(), "no gccl store")
	assert.Contains(t, err.Error(), "MASTER_ADDR/MASTER_PORT", "the error must say what to check")
	assert.Contains(t, err.Error(), "rank 1 of 2")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, took, 1500*time.Millisecond, "Init gave up before its timeout")
	assert.Less(t, took, 4*time.Second, "Init must give up about when its timeout (2s) passes")
}

// TestInitStoreWrongToken: the store refuses a wrong token at once, with store.ErrUnauthorized.
func TestInitStoreWrongToken(t *testing.T) {
	srv, err := store.NewServer(store.ServerOptions{Token: "right"})
	require.NoError(t, err)
	defer srv.Close()
	host, portS, _ := net.SplitHostPort(srv.Addr())
	port, _ := strconv.Atoi(portS)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	pg, err := comm.Init(ctx, comm.Options{Rank: 1, WorldSize: 2, MasterAddr: host, MasterPort: port,
		StoreHosted: true, Token: "wrong", Timeout: 5 * time.Second})
	took := time.Since(start)
	if pg != nil {
		_ = pg.Close()
	}
	require.Error(t, err)
	t.Logf("after %v: %v", took, err)
	assert.ErrorIs(t, err, store.ErrUnauthorized)
	assert.Contains(t, err.Error(), "GCCL_TOKEN", "the error must say which token to fix")
	assert.NotContains(t, err.Error(), "right", "the error must not leak the server's token")
	assert.Less(t, took, 2*time.Second, "a refused token must fail at once, not at the timeout")
}

// TestInitStoreNotAStore: something that is not a gccl store answers at the address.
func TestInitStoreNotAStore(t *testing.T) {
	tests := []struct {
		name    string
		greet   string // what the listener writes before closing
		timeout time.Duration
		fast    bool // fails at once (a foreign answer), not at the timeout
	}{
		{name: "ssh banner", greet: "SSH-2.0-OpenSSH_9.6\r\n", timeout: 5 * time.Second, fast: true},
		{name: "http/1", greet: "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", timeout: 5 * time.Second, fast: true},
		{name: "junk", greet: "\x00\x01\x02garbage garbage garbage\n", timeout: 5 * time.Second, fast: true},
		{name: "closes silently", greet: "", timeout: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					_, _ = c.Write([]byte(tc.greet))
					_ = c.Close()
				}
			}()
			_, portS, _ := net.SplitHostPort(ln.Addr().String())
			port, _ := strconv.Atoi(portS)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			pg, err := comm.Init(ctx, comm.Options{Rank: 1, WorldSize: 2, MasterAddr: "127.0.0.1", MasterPort: port,
				StoreHosted: true, Token: "t", Timeout: tc.timeout})
			took := time.Since(start)
			if pg != nil {
				_ = pg.Close()
			}
			require.Error(t, err)
			t.Logf("after %v: %v", took, err)
			assert.ErrorIs(t, err, store.ErrNotAStore)
			assert.Contains(t, err.Error(), ln.Addr().String())
			if tc.fast {
				assert.Less(t, took, time.Second, "a foreign answer must fail at once")
			} else {
				assert.Less(t, took, tc.timeout+2*time.Second, "must fail by the timeout")
			}
		})
	}
}

// --- 7: an op that times out ---

// absentRank1Child joins the job in a child; rank 1 then stays away from the group's ops for
// absent and the child ends (nil), the others get the group.
func absentRank1Child(absent time.Duration) *comm.ProcessGroup {
	pg := biJoin()
	if pg == nil {
		return nil
	}
	if pg.Rank() == 1 {
		time.Sleep(absent)
		return nil
	}
	return pg
}

// TestTimeoutOp: rank 1 never calls the collective; rank 0's AllReduce fails with ErrTimeout
// after GCCL_TIMEOUT (1s), naming the group, the sequence number and the op, and later ops on
// the group fail fast, sync and async alike.
func TestTimeoutOp(t *testing.T) {
	if ranktest.Child(t) {
		pg := absentRank1Child(5 * time.Second)
		if pg == nil {
			return
		}
		ctx := context.Background()
		x := biFilled(tensor.Float32, 4, 1)
		start := time.Now()
		err := pg.AllReduce(ctx, x, comm.Sum)
		biReport("first", 0, err, time.Since(start), nil)
		start = time.Now()
		err = pg.AllReduce(ctx, x, comm.Sum)
		biReport("second", 0, err, time.Since(start), nil)
		start = time.Now()
		w := pg.AllReduceAsync(x, comm.Sum)
		err = w.Wait(ctx)
		biReport("async", 0, err, time.Since(start), func(o *biOutcome) {
			done := w.IsCompleted() && w.Err() != nil && w.Err().Error() == err.Error()
			o.Done = &done
		})
		_ = pg.Close()
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: 60 * time.Second, Env: []string{"GCCL_TIMEOUT=1s", biNoRaceExitSleep()}})
	all := biResults(t, res)
	for _, tag := range []string{"first", "second", "async"} {
		t.Logf("rank 0: %s: %+v", tag, all[0][tag])
	}
	if o, ok := biGet(t, res, all, 0, "first"); ok {
		assert.True(t, o.Timeout, "want errors.Is(err, comm.ErrTimeout), got %q", o.Err)
		assert.Contains(t, o.Err, `group "0"`, "the error must name the group")
		assert.Contains(t, o.Err, "#1", "the error must name the sequence number")
		assert.Contains(t, o.Err, "all_reduce", "the error must name the op")
		assert.GreaterOrEqual(t, o.Ms, int64(900), "timed out before the timeout")
		assert.Less(t, o.Ms, int64(2500), "must time out about 1s after the op started")
	}
	for _, tag := range []string{"second", "async"} {
		if o, ok := biGet(t, res, all, 0, tag); ok {
			assert.True(t, o.Aborted || o.Timeout, "%s: want ErrAborted or ErrTimeout, got %q", tag, o.Err)
			assert.Less(t, o.Ms, int64(200), "%s: an op on a timed-out group must fail fast", tag)
		}
	}
	if o, ok := all[0]["second"]; ok {
		assert.Contains(t, o.Err, "all_reduce #2", "the later op's error names its own sequence number")
	}
	if o, ok := all[0]["async"]; ok {
		assert.Contains(t, o.Err, "all_reduce #3", "the async op's error names its own sequence number")
	}
	if o, ok := all[0]["async"]; ok && assert.NotNil(t, o.Done) {
		assert.True(t, *o.Done, "a failed async op is completed and Err returns what Wait returned")
	}
}

// TestTimeoutNamesTheAbsent: with 3 ranks, rank 1 never calls the all-reduce. Ranks 0 and 2
// time out, one of them first, and the other may learn it from that one's abort; either way
// each error names rank 1, the rank they were waiting for, and says what to check.
func TestTimeoutNamesTheAbsent(t *testing.T) {
	if ranktest.Child(t) {
		pg := absentRank1Child(4 * time.Second)
		if pg == nil {
			return
		}
		start := time.Now()
		err := pg.AllReduce(context.Background(), biFilled(tensor.Float32, 4, 1), comm.Sum)
		biReport("op", pg.Rank(), err, time.Since(start), nil)
		_ = pg.Close()
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 3, Timeout: 60 * time.Second, Env: []string{"GCCL_TIMEOUT=1s", biNoRaceExitSleep()}})
	all := biResults(t, res)
	for _, r := range []int{0, 2} {
		if o, ok := biGet(t, res, all, r, "op"); ok {
			t.Logf("rank %d: %s", r, o.Err)
			assert.True(t, o.Timeout, "rank %d: want ErrTimeout, got %q", r, o.Err)
			assert.Contains(t, o.Err, "group rank(s) [1]", "rank %d: the error names the rank it waited for", r)
			assert.Contains(t, o.Err, "GCCL_TIMEOUT", "rank %d: the error says what to check", r)
		}
	}
}

// --- 8: async ops ---

// TestAsyncWait: Work.Wait with a cancelled context returns at once while the op carries on;
// an async op that fails (ranks disagree on the dtype) reports the error through Wait and Err.
func TestAsyncWait(t *testing.T) {
	if ranktest.Child(t) {
		asyncChild()
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: 60 * time.Second, Env: []string{"GCCL_TIMEOUT=10s", biNoRaceExitSleep()}})
	all := biResults(t, res)
	if o, ok := biGet(t, res, all, 0, "wait_cancelled"); ok {
		assert.True(t, o.Canceled, "want errors.Is(err, context.Canceled), got %q", o.Err)
		assert.Contains(t, o.Err, "waiting for all_reduce #1 on group", "the error names the op it waited for")
		assert.Less(t, o.Ms, int64(100), "Wait with a cancelled context must return at once")
		if assert.NotNil(t, o.Done) {
			assert.False(t, *o.Done, "the op is still running (rank 1 has not joined)")
		}
	}
	for r := range res {
		if o, ok := biGet(t, res, all, r, "wait"); ok {
			assert.Empty(t, o.Err, "rank %d", r)
			if assert.NotNil(t, o.DataOK) {
				assert.True(t, *o.DataOK, "rank %d: wrong sum %v", r, o.Data)
			}
		}
		if o, ok := biGet(t, res, all, r, "async_mismatch"); ok {
			assert.True(t, o.Mismatch, "rank %d: want ErrMismatch from Wait, got %q", r, o.Err)
			assert.Contains(t, o.Err, "all_reduce #2", "rank %d", r)
			assert.Less(t, o.Ms, int64(8000), "rank %d: well before the 10 s timeout", r)
			if assert.NotNil(t, o.Done) {
				assert.True(t, *o.Done, "rank %d: IsCompleted and Err must agree with Wait", r)
			}
		}
		if o, ok := biGet(t, res, all, r, "after"); ok {
			assert.NotEmpty(t, o.Err, "rank %d: the group is aborted", r)
			assert.Less(t, o.Ms, int64(1000), "rank %d", r)
		}
	}
}

func asyncChild() {
	pg := biJoin()
	if pg == nil {
		return
	}
	rank := pg.Rank()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	x := biFilled(tensor.Float32, 8, float64(rank+1))
	if rank == 1 {
		time.Sleep(time.Second) // rank 0's op stays pending meanwhile
	}
	w := pg.AllReduceAsync(x, comm.Sum)
	if rank == 0 {
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		start := time.Now()
		err := w.Wait(cctx)
		done := w.IsCompleted()
		biReport("wait_cancelled", rank, err, time.Since(start), func(o *biOutcome) { o.Done = &done })
	}
	start := time.Now()
	err := w.Wait(ctx)
	biReport("wait", rank, err, time.Since(start), func(o *biOutcome) {
		ok := err == nil && biAllEqual(x, 3)
		o.DataOK, o.Data = &ok, biHead(x)
	})

	dt := tensor.Float32
	if rank == 1 {
		dt = tensor.Int32
	}
	y := biFilled(dt, 8, 1)
	start = time.Now()
	w = pg.AllReduceAsync(y, comm.Sum)
	err = w.Wait(ctx)
	biReport("async_mismatch", rank, err, time.Since(start), func(o *biOutcome) {
		done := w.IsCompleted() && err != nil && w.Err() != nil && w.Err().Error() == err.Error()
		o.Done = &done
	})
	start = time.Now()
	err = pg.Barrier(ctx)
	biReport("after", rank, err, time.Since(start), nil)
	biSyncExit(pg)
}

// TestAsyncInvalidArgument: an async op with bad arguments returns a completed Work whose Wait
// and Err give ErrInvalidArgument; after Close, async and sync ops fail with ErrClosed.
func TestAsyncInvalidArgument(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	require.NoError(t, err)

	works := map[string]*comm.Work{
		"all_reduce nil":        pg.AllReduceAsync(nil, comm.Sum),
		"broadcast root 3":      pg.BroadcastAsync(biF32(2), 3),
		"all_gather wrong size": pg.AllGatherAsync(biF32(3), biF32(2)),
		"recv from self":        pg.RecvAsync(biF32(2), 0, 0),
		"all_to_all in place": func() *comm.Work {
			x := biF32(2)
			return pg.AllToAllAsync(x, x, nil, nil)
		}(),
	}
	for name, w := range works {
		assert.True(t, w.IsCompleted(), "%s: a rejected call's Work is completed at once", name)
		err := w.Wait(ctx)
		assert.ErrorIs(t, err, comm.ErrInvalidArgument, name)
		assert.Equal(t, err, w.Err(), name)
		// Wait on a cancelled context returns at once too (with either error).
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		start := time.Now()
		assert.Error(t, w.Wait(cctx), name)
		assert.Less(t, time.Since(start), time.Second, name)
	}

	w := pg.AllReduceAsync(biF32(2), comm.Sum)
	require.NoError(t, w.Wait(ctx))

	require.NoError(t, pg.Close())
	w = pg.AllReduceAsync(biF32(2), comm.Sum)
	assert.ErrorIs(t, w.Wait(ctx), comm.ErrClosed)
	assert.ErrorIs(t, w.Err(), comm.ErrClosed)
	assert.ErrorIs(t, pg.AllReduce(ctx, biF32(2), comm.Sum), comm.ErrClosed)
	assert.ErrorIs(t, pg.Barrier(ctx), comm.ErrClosed)
}

// TestBadInputAliasingThatIsFine: the overlap checks must not reject what is legal: the
// smaller tensor as the view of this rank's own slot (in place), and input and output that are
// disjoint views of one buffer (an arena or workspace), which do not overlap at all.
func TestBadInputAliasingThatIsFine(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	require.NoError(t, err)
	defer pg.Close()
	require.Equal(t, 1, pg.Size())
	tests := []struct {
		name string
		call func(base *tensor.Tensor) (got, want []float64, err error)
	}{
		{name: "all_gather in place", call: func(base *tensor.Tensor) ([]float64, []float64, error) {
			out := biMust(base.Narrow(0, 0, 4))
			in := biMust(out.Narrow(0, 0, 4))
			want := in.Float64s()
			err := pg.AllGather(ctx, out, in)
			return out.Float64s(), want, err
		}},
		{name: "all_gather disjoint views of one buffer", call: func(base *tensor.Tensor) ([]float64, []float64, error) {
			out, in := biMust(base.Narrow(0, 0, 4)), biMust(base.Narrow(0, 4, 4))
			want := in.Float64s()
			err := pg.AllGather(ctx, out, in)
			return out.Float64s(), want, err
		}},
		{name: "reduce_scatter disjoint views of one buffer", call: func(base *tensor.Tensor) ([]float64, []float64, error) {
			in, out := biMust(base.Narrow(0, 0, 4)), biMust(base.Narrow(0, 4, 4))
			want := in.Float64s()
			err := pg.ReduceScatter(ctx, out, in, comm.Sum)
			return out.Float64s(), want, err
		}},
		{name: "all_to_all disjoint views of one buffer", call: func(base *tensor.Tensor) ([]float64, []float64, error) {
			in, out := biMust(base.Narrow(0, 0, 4)), biMust(base.Narrow(0, 4, 4))
			want := in.Float64s()
			err := pg.AllToAll(ctx, out, in)
			return out.Float64s(), want, err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := tensor.New(tensor.Float32, 8)
			for i := range 8 {
				base.SetFloat(float64(i+1), i)
			}
			got, want, err := tc.call(base)
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}

// setupReport prints, in a child, how setting a group up ended, for readSetup in the parent.
func setupReport(start time.Time, err error) {
	fmt.Printf("SETUP ms=%d timeout=%v invalid=%v mismatch=%v lost=%v err=%v\n", time.Since(start).Milliseconds(),
		errors.Is(err, comm.ErrTimeout), errors.Is(err, comm.ErrInvalidArgument), errors.Is(err, comm.ErrMismatch), errors.Is(err, comm.ErrPeerLost), err)
}

// setupResult is what a child's setupReport printed.
type setupResult struct {
	ms                               int
	timeout, invalid, mismatch, lost bool
	err                              string
}

var setupLine = regexp.MustCompile(`SETUP ms=(\d+) timeout=(\w+) invalid=(\w+) mismatch=(\w+) lost=(\w+) err=(.*)`)

func readSetup(t *testing.T, r ranktest.Result) setupResult {
	t.Helper()
	m := setupLine.FindStringSubmatch(r.Output)
	require.NotNil(t, m, "rank %d:\n%s", r.Rank, r.Output)
	ms, _ := strconv.Atoi(m[1])
	return setupResult{ms: ms, timeout: m[2] == "true", invalid: m[3] == "true", mismatch: m[4] == "true", lost: m[5] == "true", err: m[6]}
}

// TestNewGroupSetupFailure: one rank fails to set a new group up (its shm settings differ from
// rank 0's, so it cannot map rank 0's segment) while rank 0 waits for it to map. Rank 0 must
// fail at once with the other's reason, not sit out the 60 s timeout.
func TestNewGroupSetupFailure(t *testing.T) {
	if ranktest.Child(t) {
		ctx := context.Background()
		pg, err := comm.Init(ctx, comm.Options{Backend: "gloo"})
		require.NoError(t, err)
		defer pg.Close()
		start := time.Now()
		sub, err := pg.NewGroup(ctx, []int{0, 1}, comm.GroupOptions{Backend: "shm"})
		if sub != nil {
			_ = sub.Close()
		}
		setupReport(start, err)
		return
	}
	res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: 90 * time.Second,
		Env: []string{"GCCL_TIMEOUT=60s"},
		RankEnv: func(r int) []string {
			if r == 1 {
				return []string{"GCCL_SHM_SLOT_BYTES=8192"}
			}
			return nil
		}})
	for _, r := range res {
		o := readSetup(t, r)
		t.Logf("rank %d: NewGroup failed after %d ms: %s", r.Rank, o.ms, o.err)
		assert.NotEqual(t, "<nil>", o.err, "rank %d: NewGroup must fail", r.Rank)
		assert.Less(t, o.ms, 30_000, "rank %d must not wait for the 60 s timeout", r.Rank)
	}
	assert.Contains(t, res[0].Output, "another rank failed to set up group", "rank 0 must say its peer failed, and why")
	assert.Contains(t, res[0].Output, "GCCL_SHM", "rank 0's error carries the peer's reason")
}

// TestGroupBackendsDisagree: rank 1 asks for another backend than rank 0 (gloo) when they set
// a group up. Both fail at once instead of waiting out the 30 s timeout:
//   - NewGroup, with a backend nobody registered: rank 1 gets ErrInvalidArgument naming the
//     registered ones, and rank 0 fails with its reason;
//   - Split, with shm: both get ErrMismatch naming the other's choice, before setting up groups
//     that cannot meet.
func TestGroupBackendsDisagree(t *testing.T) {
	if ranktest.Child(t) {
		ctx := context.Background()
		pg, err := comm.Init(ctx, comm.Options{Backend: "gloo"})
		require.NoError(t, err)
		defer pg.Close()
		opts := comm.GroupOptions{Backend: "gloo"}
		if pg.Rank() == 1 {
			opts.Backend = os.Getenv("GROUP_OTHER_BACKEND")
		}
		start := time.Now()
		if os.Getenv("GROUP_BY") == "split" {
			_, err = pg.Split(ctx, 0, 0, opts)
		} else {
			_, err = pg.NewGroup(ctx, []int{0, 1}, opts)
		}
		setupReport(start, err)
		return
	}
	for _, c := range []struct {
		by, other, want string
		check           func(t *testing.T, r int, o setupResult)
	}{
		{by: "newgroup", other: "glooo", want: `no backend named "glooo"`, check: func(t *testing.T, r int, o setupResult) {
			assert.NotEqual(t, "<nil>", o.err, "rank %d: NewGroup must fail", r)
			if r == 1 {
				assert.True(t, o.invalid, "rank 1: want ErrInvalidArgument")
			}
		}},
		{by: "split", other: "shm", want: "pass the same GroupOptions.Backend", check: func(t *testing.T, r int, o setupResult) {
			assert.True(t, o.mismatch, "rank %d: want ErrMismatch", r)
		}},
	} {
		t.Run(c.by, func(t *testing.T) {
			res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: 60 * time.Second,
				Env: []string{"GCCL_TIMEOUT=30s", "GROUP_BY=" + c.by, "GROUP_OTHER_BACKEND=" + c.other}})
			for _, r := range res {
				o := readSetup(t, r)
				t.Logf("rank %d after %d ms: %s", r.Rank, o.ms, o.err)
				c.check(t, r.Rank, o)
				assert.Less(t, o.ms, 10_000, "rank %d must not wait for the 30 s timeout", r.Rank)
				assert.Contains(t, o.err, c.want, "rank %d", r.Rank)
			}
		})
	}
}

// TestNewGroupMemberAbsent: rank 1 never calls NewGroup for the group {0, 1}. Rank 0 must get
// ErrTimeout (on every backend) that says what to check, once the group's timeout has passed.
func TestNewGroupMemberAbsent(t *testing.T) {
	if ranktest.Child(t) {
		ctx := context.Background()
		pg, err := comm.Init(ctx, comm.Options{Backend: "gloo"})
		require.NoError(t, err)
		defer pg.Close()
		if pg.Rank() == 0 {
			start := time.Now()
			_, err = pg.NewGroup(ctx, []int{0, 1}, comm.GroupOptions{Backend: os.Getenv("NEWGROUP_BACKEND"), Timeout: 2 * time.Second})
			setupReport(start, err)
		}
		require.NoError(t, pg.Barrier(ctx))
		return
	}
	for _, backend := range []string{"gloo", "shm"} {
		t.Run(backend, func(t *testing.T) {
			res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: 60 * time.Second,
				Env: []string{"GCCL_TIMEOUT=30s", "NEWGROUP_BACKEND=" + backend}})
			o := readSetup(t, res[0])
			assert.True(t, o.timeout, "rank 0: want ErrTimeout, got %s", o.err)
			assert.Contains(t, o.err, "creating group")
			assert.Contains(t, o.err, "with the same arguments", "the error says what to check: %s", o.err)
		})
	}
}

// TestNewGroupMemberExited: rank 1 leaves right after init, and rank 0 then creates the group
// {0, 1}. Rank 0 must get ErrPeerLost naming rank 1 within seconds, not the group's 30 s
// timeout, on every backend: when rank 1 is on another host (GCCL_HOST_ID), the store's exit
// records tell it, whether rank 1 died (its will: the store lost its connection) or closed its
// world group. The first cases take the records away (a store comm did not dial, so no will
// is left) to check what sees rank 1 on their own host: its process gone.
func TestNewGroupMemberExited(t *testing.T) {
	if ranktest.Child(t) {
		ctx := context.Background()
		opts := comm.Options{Backend: "gloo"}
		if os.Getenv("MEMBER_STORE") == "own" {
			c, err := store.Dial(ctx, net.JoinHostPort(os.Getenv("MASTER_ADDR"), os.Getenv("MASTER_PORT")),
				store.ClientOptions{Token: os.Getenv("GCCL_TOKEN")})
			require.NoError(t, err)
			defer c.Close()
			opts.Store = store.WithPrefix(c, "job")
		}
		pg, err := comm.Init(ctx, opts)
		require.NoError(t, err)
		if pg.Rank() == 1 {
			if os.Getenv("MEMBER_LEAVES") == "close" {
				require.NoError(t, pg.Close())
			}
			os.Exit(0)
		}
		defer pg.Close()
		start := time.Now()
		_, err = pg.NewGroup(ctx, []int{0, 1}, comm.GroupOptions{Backend: os.Getenv("NEWGROUP_BACKEND")})
		setupReport(start, err)
		return
	}
	for _, tc := range []struct {
		name, backend, leaves, store string
		remote                       bool
		want                         string
	}{
		{"this_host_gloo", "gloo", "exit", "own", false, "exited before the group was set up"},
		{"this_host_shm", "shm", "exit", "own", false, "exited before the group was set up"},
		{"other_host_died", "gloo", "exit", "", true, "the job's store lost its connection"},
		{"other_host_closed", "gloo", "close", "", true, "it closed its world group"},
		{"other_host_died_auto", "auto", "exit", "", true, "the job's store lost its connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := ranktest.Spawn(t, ranktest.Config{Ranks: 2, Timeout: 60 * time.Second,
				Env: []string{"GCCL_TIMEOUT=30s", "NEWGROUP_BACKEND=" + tc.backend, "MEMBER_LEAVES=" + tc.leaves,
					"MEMBER_STORE=" + tc.store},
				RankEnv: func(r int) []string {
					if tc.remote {
						return []string{"GCCL_HOST_ID=host" + strconv.Itoa(r)}
					}
					return nil
				}})
			o := readSetup(t, res[0])
			t.Logf("rank 0 after %d ms: %s", o.ms, o.err)
			assert.True(t, o.lost, "rank 0: want ErrPeerLost, got %s", o.err)
			assert.Contains(t, o.err, "rank 1 (global rank 1)")
			assert.Contains(t, o.err, tc.want)
			assert.Less(t, o.ms, 10000, "rank 0 notices in seconds, well before the 30 s timeout")
		})
	}
}

// A shared buffer's signals when its group closes, or after it or its group was closed:
// ErrAborted for a wait in progress, ErrClosed after; no crash (the group's segment is gone).
func TestSharedBufferAfterClose(t *testing.T) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1, Backend: "shm"})
	require.NoError(t, err)
	buf, err := pg.AllocShared(ctx, 100)
	require.NoError(t, err)
	require.NoError(t, buf.Signal(0, 1))
	require.NoError(t, buf.WaitSignal(ctx, 0, 0, 1))
	// A wait in progress when the group closes returns (aborted) rather than touch the
	// unmapped segment.
	waited := make(chan error, 1)
	go func() { waited <- buf.WaitUntil(ctx, 0, func() bool { return false }) }()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, pg.Close())
	select {
	case err := <-waited:
		assert.ErrorIs(t, err, comm.ErrAborted)
	case <-time.After(10 * time.Second):
		t.Fatal("a WaitUntil in progress did not return when its group closed")
	}
	err = buf.Signal(0, 2)
	assert.ErrorIs(t, err, comm.ErrClosed)
	assert.ErrorContains(t, err, "close the buffer before the group")
	assert.ErrorIs(t, buf.WaitSignal(ctx, 0, 0, 2), comm.ErrClosed)
	buf.Close()
	assert.ErrorIs(t, buf.Signal(0, 2), comm.ErrClosed)
}
