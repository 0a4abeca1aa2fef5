package comm_test

// Backend "auto": which mode it picks for which hosts, the conformance suite in hierarchical
// mode, and what ranks see when a peer dies or ranks disagree. Ranks are real processes that
// claim host ids with GCCL_HOST_ID.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/backends/backendtest"
	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/tensor"
)

// interleavedHosts gives rank r of n the host id "host<r mod k>" (k = 2 hosts up to 3 ranks,
// else 3): hosts hold interleaved ranks in unequal numbers, so backend "auto" runs worlds of 3
// ranks and more hierarchically (world 1 is one host: shm; world 2 is one rank per host: gloo).
func interleavedHosts(rank, size int) []string {
	hosts := 3
	if size <= 3 {
		hosts = 2
	}
	return []string{"GCCL_HOST_ID=host" + strconv.Itoa(rank%hosts)}
}

// consecutiveHosts puts ranks 2h and 2h+1 on host h: equal hosts of consecutive ranks, the
// layout where the hierarchical all-gather and reduce-scatter need no reordering.
func consecutiveHosts(rank, _ int) []string {
	return []string{"GCCL_HOST_ID=pair" + strconv.Itoa(rank/2)}
}

// TestAutoConformance runs the conformance suite over backend "auto" with interleaved hosts:
// hierarchical at world sizes 3, 4 and 8 (TestAutoMode checks that it is), and, through the
// suite's sub-groups, every mode.
func TestAutoConformance(t *testing.T) {
	backendtest.Run(t, backendtest.Config{Backend: "auto", RankEnv: interleavedHosts})
}

// TestAutoConformanceConsecutiveHosts runs the suite hierarchically over 2 hosts of 2
// consecutive ranks.
func TestAutoConformanceConsecutiveHosts(t *testing.T) {
	backendtest.Run(t, backendtest.Config{Backend: "auto", RankEnv: consecutiveHosts, WorldSizes: []int{4}})
}

const autoCaseEnv = "GCCL_AUTO_TEST_CASE"

// autoModeReport is what a rank of TestAutoMode prints, as "MODE <json>".
type autoModeReport struct {
	World   string `json:"world"`    // AutoMode of the world group
	Evens   string `json:"evens"`    // AutoMode of the group of even ranks ("-" on odd ranks)
	Gloo    string `json:"gloo"`     // AutoMode of a gloo group (must be "")
	Sum     int    `json:"sum"`      // an all-reduce of 1s
	Err     string `json:"err"`      // the first error
	DebugOK bool   `json:"debug_ok"` // the debug log named the mode
	Named   string `json:"named"`    // the profiling name the world's all-reduce was recorded under
}

// TestAutoMode: shm on one host, gloo with one rank per host, hierarchical otherwise, the same
// on every rank, for the world and for a sub-group of even ranks.
func TestAutoMode(t *testing.T) {
	if ranktest.Child(t) {
		autoModeChild()
		return
	}
	cases := []struct {
		name        string
		ranks       int
		hosts       func(rank, size int) []string
		world, even string
	}{
		{"one_host", 4, func(int, int) []string { return []string{"GCCL_HOST_ID=same"} }, "shm", "shm"},
		{"host_per_rank", 3, func(r, _ int) []string { return []string{"GCCL_HOST_ID=h" + strconv.Itoa(r)} }, "gloo", "gloo"},
		// The even ranks of 3 interleaved over 2 hosts are 0 and 2, both on host 0.
		{"interleaved3", 3, interleavedHosts, "hierarchical", "shm"},
		// Evens 0 and 2 are on hosts 0 and 2.
		{"interleaved4", 4, interleavedHosts, "hierarchical", "gloo"},
		// Evens 0, 2, 4, 6 are on hosts 0, 2, 1, 0.
		{"interleaved8", 8, interleavedHosts, "hierarchical", "hierarchical"},
		{"consecutive4", 4, consecutiveHosts, "hierarchical", "gloo"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := ranktest.Spawn(t, ranktest.Config{Ranks: tc.ranks, Timeout: time.Minute,
				Env:     []string{"GCCL_BACKEND=auto", autoCaseEnv + "=" + tc.name},
				RankEnv: func(r int) []string { return tc.hosts(r, tc.ranks) }})
			for r, rr := range res {
				require.Equal(t, 0, rr.ExitCode, "rank %d; output:\n%s", r, rr.Output)
				var rep autoModeReport
				ok := false
				for _, line := range strings.Split(rr.Output, "\n") {
					if i := strings.Index(line, "MODE {"); i >= 0 {
						ok = json.Unmarshal([]byte(line[i+len("MODE "):]), &rep) == nil
					}
				}
				require.True(t, ok, "rank %d reported nothing; output:\n%s", r, rr.Output)
				assert.Empty(t, rep.Err, "rank %d", r)
				assert.Equal(t, tc.world, rep.World, "rank %d: the world's mode", r)
				wantName := "auto:all_reduce" // hierarchical: no single backend moves the bytes
				if tc.world != "hierarchical" {
					wantName = tc.world + ":all_reduce"
				}
				assert.Equal(t, wantName, rep.Named, "rank %d: the flight recorder names the backend that ran", r)
				want := tc.even
				if r%2 == 1 {
					want = "-"
				}
				assert.Equal(t, want, rep.Evens, "rank %d: the even ranks' group's mode", r)
				assert.Equal(t, "", rep.Gloo, "rank %d: AutoMode of a gloo group", r)
				assert.Equal(t, tc.ranks, rep.Sum, "rank %d: all-reduce of 1s", r)
				assert.True(t, rep.DebugOK, "rank %d: the debug log must name the mode; output:\n%s", r, rr.Output)
			}
		})
	}
}

func autoModeChild() {
	var logBuf strings.Builder
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rep := autoModeReport{Evens: "-"}
	defer func() {
		b, _ := json.Marshal(rep)
		fmt.Printf("MODE %s\n", b)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pg, err := comm.Init(ctx, comm.Options{Logger: log})
	if err != nil {
		rep.Err = err.Error()
		return
	}
	defer pg.Close()
	rep.World = pg.AutoMode()
	rep.DebugOK = strings.Contains(logBuf.String(), "mode="+rep.World)
	x := tensor.New(tensor.Int64, 3)
	x.Fill(1)
	if err := pg.AllReduce(ctx, x, comm.Sum); err != nil {
		rep.Err = err.Error()
		return
	}
	rep.Sum = int(x.Float(0))
	if es := pg.Recorder().Snapshot().Entries; len(es) > 0 {
		rep.Named = es[len(es)-1].ProfilingName
	}
	var evens []int
	for r := 0; r < pg.Size(); r += 2 {
		evens = append(evens, r)
	}
	sub, err := pg.NewGroup(ctx, evens, comm.GroupOptions{})
	if err != nil {
		rep.Err = err.Error()
		return
	}
	if sub != nil {
		rep.Evens = sub.AutoMode()
		defer sub.Close()
	}
	g, err := pg.NewGroup(ctx, pg.GlobalRanks(), comm.GroupOptions{Backend: "gloo"})
	if err != nil {
		rep.Err = err.Error()
		return
	}
	defer g.Close()
	rep.Gloo = g.AutoMode()
}

// Peer loss in hierarchical mode, 4 ranks on hosts {0, 3}, {1}, {2}: whichever rank dies, and
// whichever sub-group the others wait in, they fail with ErrPeerLost naming it within 2 s.

// A host's leader: rank 3 sees it through shm, ranks 1 and 2 through gloo.
func TestAutoPeerLostLeader(t *testing.T) {
	backendtest.PeerLossWith(t, backendtest.PeerLossConfig{Backend: "auto", Mode: "allreduce", Kill: 0, RankEnv: interleavedHosts})
}

// A member that leads nothing: only rank 0 sees it; ranks 1 and 2 learn it from rank 0's abort.
func TestAutoPeerLostMember(t *testing.T) {
	backendtest.PeerLossWith(t, backendtest.PeerLossConfig{Backend: "auto", Mode: "allreduce", Kill: 3, RankEnv: interleavedHosts})
}

// A rank alone on its host: rank 3 learns it from rank 0's abort of their host's group.
func TestAutoPeerLostBarrier(t *testing.T) {
	backendtest.PeerLossWith(t, backendtest.PeerLossConfig{Backend: "auto", Mode: "barrier", Kill: 2, RankEnv: interleavedHosts})
}

// autoMismatchCase: rank odd calls other, the rest call same, over 4 ranks on hosts {0, 3},
// {1}, {2}.
type autoMismatchCase struct {
	name        string
	odd         int
	same, other func(ctx context.Context, pg *comm.ProcessGroup) error
}

func autoAllReduce(n int, op comm.ReduceOp) func(ctx context.Context, pg *comm.ProcessGroup) error {
	return func(ctx context.Context, pg *comm.ProcessGroup) error {
		return pg.AllReduce(ctx, tensor.New(tensor.Float32, n), op)
	}
}

func autoAllToAll(ctx context.Context, pg *comm.ProcessGroup) error {
	return pg.AllToAll(ctx, tensor.New(tensor.Float32, 4*pg.Size()), tensor.New(tensor.Float32, 4*pg.Size()))
}

func autoGather(ctx context.Context, pg *comm.ProcessGroup) error {
	var out *tensor.Tensor
	if pg.Rank() == 0 {
		out = tensor.New(tensor.Float32, 4*pg.Size())
	}
	return pg.Gather(ctx, out, tensor.New(tensor.Float32, 4), 0)
}

func autoScatter(ctx context.Context, pg *comm.ProcessGroup) error {
	return pg.Scatter(ctx, tensor.New(tensor.Float32, 4), tensor.New(tensor.Float32, 4*pg.Size()), 0)
}

func autoMismatchCases() []autoMismatchCase {
	return []autoMismatchCase{
		// Rank 3 shares host 0 with rank 0: the host's reduce sees it.
		{name: "count_same_host", odd: 3, same: autoAllReduce(10, comm.Sum), other: autoAllReduce(20, comm.Sum)},
		// Rank 1 is alone on its host: the leaders' all-reduce sees it.
		{name: "count_other_host", odd: 1, same: autoAllReduce(10, comm.Sum), other: autoAllReduce(20, comm.Sum)},
		{name: "reduce_op_other_host", odd: 2, same: autoAllReduce(10, comm.Sum), other: autoAllReduce(10, comm.Max)},
		{name: "op_broadcast", odd: 1, same: autoAllReduce(10, comm.Sum), other: func(ctx context.Context, pg *comm.ProcessGroup) error {
			return pg.Broadcast(ctx, tensor.New(tensor.Float32, 10), 0)
		}},
		// An all-to-all runs on the flat group; the check inside host 0 catches rank 3.
		{name: "op_flat_same_host", odd: 3, same: autoAllReduce(16, comm.Sum), other: autoAllToAll},
		// Rank 2 alone on its host calls all-to-all: the check between the leaders catches it
		// (without it, rank 2 would wait in the flat group and the others between the leaders).
		{name: "op_flat_other_host", odd: 2, same: autoAllReduce(16, comm.Sum), other: autoAllToAll},
		{name: "gather_vs_scatter", odd: 1, same: autoGather, other: autoScatter},
	}
}

// TestAutoMismatch: ranks that disagree in hierarchical mode all get ErrMismatch within a few
// seconds, whichever sub-groups their ops use, and the next op fails fast.
func TestAutoMismatch(t *testing.T) {
	if ranktest.Child(t) {
		autoMismatchChild(os.Getenv(autoCaseEnv))
		return
	}
	for _, tc := range autoMismatchCases() {
		t.Run(tc.name, func(t *testing.T) {
			res := ranktest.Spawn(t, ranktest.Config{Ranks: 4, Timeout: time.Minute,
				Env: []string{"GCCL_BACKEND=auto", "GCCL_TIMEOUT=10s", autoCaseEnv + "=" + tc.name,
					"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")},
				RankEnv: func(r int) []string { return interleavedHosts(r, 4) }})
			for r, rr := range res {
				require.Equal(t, 0, rr.ExitCode, "rank %d; output:\n%s", r, rr.Output)
				op, next, ok := autoMismatchResults(rr.Output)
				require.True(t, ok, "rank %d reported nothing; output:\n%s", r, rr.Output)
				t.Logf("rank %d: %q after %d ms; next: %q", r, op.Err, op.Ms, next.Err)
				if op.Err == "" {
					// A rank that only sends (a non-root of a gather) may complete; the
					// disagreement must surface no later than its next op.
					assert.True(t, next.Mismatch, "rank %d: after a mismatched op that completed, the next op must fail with ErrMismatch; got %q", r, next.Err)
					continue
				}
				assert.True(t, op.Mismatch, "rank %d: want ErrMismatch, got %q", r, op.Err)
				assert.Less(t, op.Ms, int64(2000), "rank %d took %d ms to report the mismatch", r, op.Ms)
				assert.Contains(t, op.Err, "#1", "rank %d: the error must name the op's sequence number", r)
				assert.NotEmpty(t, next.Err, "rank %d: the op after a failed one must fail", r)
				assert.Less(t, next.Ms, int64(1000), "rank %d: the op after a failure must fail fast", r)
			}
		})
	}
}

type autoOutcome struct {
	Err      string `json:"err"`
	Mismatch bool   `json:"mismatch"`
	Timeout  bool   `json:"timeout"`
	Ms       int64  `json:"ms"`
}

func autoMismatchResults(out string) (op, next autoOutcome, ok bool) {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		for tag, dst := range map[string]*autoOutcome{"OP ": &op, "NEXT ": &next} {
			if i := strings.Index(line, tag+"{"); i >= 0 && json.Unmarshal([]byte(line[i+len(tag):]), dst) == nil {
				n++
			}
		}
	}
	return op, next, n == 2
}

func autoMismatchChild(name string) {
	var tc autoMismatchCase
	for _, c := range autoMismatchCases() {
		if c.name == name {
			tc = c
		}
	}
	ctx := context.Background()
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	pg, err := comm.Init(ictx, comm.Options{})
	cancel()
	if err != nil || tc.name == "" {
		fmt.Printf("init failed or unknown case %q: %v\n", name, err)
		return
	}
	report := func(tag string, err error, took time.Duration) {
		o := autoOutcome{Ms: took.Milliseconds()}
		if err != nil {
			o.Err, o.Mismatch, o.Timeout = err.Error(), errors.Is(err, comm.ErrMismatch), errors.Is(err, comm.ErrTimeout)
		}
		b, _ := json.Marshal(o)
		fmt.Printf("%s %s\n", tag, b)
	}
	call := tc.same
	if pg.Rank() == tc.odd {
		call = tc.other
	}
	start := time.Now()
	report("OP", call(ctx, pg), time.Since(start))
	start = time.Now()
	report("NEXT", pg.Barrier(ctx), time.Since(start))
	// Wait (through the store, not the aborted group) until every rank has reported, so that
	// no rank's exit turns a peer's pending error into a lost peer.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = pg.Store().Set(sctx, "done/"+strconv.Itoa(pg.Rank()), []byte("1"))
	for r := 0; r < pg.Size(); r++ {
		_ = pg.Store().Wait(sctx, "done/"+strconv.Itoa(r))
	}
	_ = pg.Close()
}

// Backend "auto" picks shm when every member of a group is on one host, gloo when each is
// alone on its host, and the hierarchical mode (shm inside hosts, gloo between them) otherwise.
func ExampleProcessGroup_AutoMode() {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Rank: 0, WorldSize: 1, Backend: "auto"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pg.Close()
	fmt.Println(pg.Backend(), "runs as", pg.AutoMode())
	// Output: auto runs as shm
}
