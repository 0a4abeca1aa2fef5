// Package bench measures collectives the way nccl-tests does: for each message size it times
// back-to-back ops, reports the median and the mean time and the algorithm and bus bandwidths,
// and with Check verifies every element of a separate run.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

// Ops lists the benchmarked collectives.
var Ops = []string{"allreduce", "allgather", "reducescatter", "broadcast", "reduce", "alltoall", "gather", "scatter", "sendrecv", "barrier"}

// Config selects what to measure.
type Config struct {
	Op         string
	DType      tensor.DType
	Reduce     tensor.ReduceOp
	MinBytes   int64
	MaxBytes   int64
	StepFactor int64
	Iters      int // 0: enough for ~0.2 s per size, between 5 and 100000 (as bench/peers' harness)
	Warmup     int // default 5
	Check      bool
	JSON       bool
	// FreshInput rewrites every cache line of the op's input before each timed op, outside
	// the timed region, as a program's new data would be. Without it the ops reread an input
	// that never changes, which a reader that copies straight from its peer's buffer (OpenMPI's
	// CMA, gccl's single copy) finds in its own cache from the op before.
	FreshInput bool
	// Dist, if set, gets rank 0's distribution of its own op times per size (min, p10, p50,
	// p90, max), one line each, as bench/peers' --verbose prints it.
	Dist io.Writer
}

// Row is one line of results, with the keys of `gccl bench --json`.
type Row struct {
	Op     string  `json:"op"`
	DType  string  `json:"dtype"`
	NRanks int     `json:"nranks"`
	Bytes  int64   `json:"bytes"`
	Count  int64   `json:"count"`
	TimeUs float64 `json:"time_us"` // median over the timed ops (slowest rank's)
	// MeanUs is the mean over the timed ops (slowest rank's): it also counts the rare slow ops
	// that the median leaves out (a preempted op, shm's periodic trials of its write modes).
	MeanUs float64 `json:"mean_us"`
	AlgBW  float64 `json:"algbw_gbps"`
	BusBW  float64 `json:"busbw_gbps"`
	Wrong  int64   `json:"wrong"`
}

// ParseBytes reads sizes like 8, 4K, 64M, 1G (powers of 1024).
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(s, "B"), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bench: %q is not a size (examples: 8, 4K, 64M)", s)
	}
	return n * mult, nil
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if !slices.Contains(Ops, c.Op) {
		return fmt.Errorf("bench: unknown op %q: pick one of %s", c.Op, strings.Join(Ops, ", "))
	}
	if !c.DType.Valid() {
		return fmt.Errorf("bench: invalid dtype")
	}
	if c.Op == "allreduce" || c.Op == "reduce" || c.Op == "reducescatter" {
		if err := tensor.CheckReduce(c.Reduce, c.DType); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if c.MinBytes < 0 || c.MaxBytes < c.MinBytes {
		return fmt.Errorf("bench: --min-bytes %d and --max-bytes %d: need 0 <= min <= max", c.MinBytes, c.MaxBytes)
	}
	if c.StepFactor < 2 {
		return fmt.Errorf("bench: --step-factor %d: need at least 2", c.StepFactor)
	}
	if c.Warmup == 0 {
		c.Warmup = 5
	}
	if c.Iters < 0 || c.Warmup < 0 {
		return fmt.Errorf("bench: --iters and --warmup must not be negative")
	}
	return nil
}

// busFactor is nccl-tests' ratio of bus bandwidth to algorithm bandwidth.
func busFactor(op string, n int) float64 {
	f := float64(n)
	switch op {
	case "allreduce":
		return 2 * (f - 1) / f
	case "allgather", "reducescatter", "alltoall", "gather", "scatter":
		return (f - 1) / f
	}
	return 1
}

// Run measures every size on pg and, on rank 0, writes the rows to out (a table, or JSON lines).
func Run(ctx context.Context, pg *comm.ProcessGroup, cfg Config, out io.Writer) ([]Row, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := pg.Size()
	es := int64(cfg.DType.Size())
	if pg.Rank() == 0 && !cfg.JSON {
		fmt.Fprintf(out, "# gccl bench: %s, %s, %s, %d ranks, backend %s\n", cfg.Op, cfg.DType, cfg.Reduce, n, pg.Backend())
		fmt.Fprintf(out, "#%12s %12s %9s %14s %8s %12s %12s %10s %10s %7s\n", "bytes", "count", "type", "op", "redop", "time(us)", "time(us)", "algbw", "busbw", "#wrong")
		fmt.Fprintf(out, "#%12s %12s %9s %14s %8s %12s %12s %10s %10s %7s\n", "", "(elements)", "", "", "", "(median)", "(mean)", "(GB/s)", "(GB/s)", "")
	}
	var rows []Row
	list := sizes(cfg.MinBytes, cfg.MaxBytes, cfg.StepFactor)
	if cfg.Op == "barrier" {
		list = []int64{0} // no data: the sync floor
	}
	for i, size := range list {
		count := size / es
		if needsDivisible(cfg.Op) {
			count = count / int64(n) * int64(n)
		}
		row, err := measure(ctx, pg, cfg, int(count), i == 0)
		if err != nil {
			return rows, err
		}
		row.Bytes = count * es
		row.AlgBW = 0
		if row.TimeUs > 0 {
			row.AlgBW = float64(row.Bytes) / (row.TimeUs * 1e-6) / 1e9
		}
		row.BusBW = row.AlgBW * busFactor(cfg.Op, n)
		rows = append(rows, row)
		if pg.Rank() == 0 {
			if cfg.JSON {
				b, _ := json.Marshal(row)
				fmt.Fprintln(out, string(b))
			} else {
				wrong := "N/A"
				if row.Wrong >= 0 {
					wrong = strconv.FormatInt(row.Wrong, 10)
				}
				fmt.Fprintf(out, " %12d %12d %9s %14s %8s %12.2f %12.2f %10.3f %10.3f %7s\n",
					row.Bytes, row.Count, cfg.DType, cfg.Op, redopName(cfg), row.TimeUs, row.MeanUs, row.AlgBW, row.BusBW, wrong)
			}
		}
	}
	return rows, nil
}

// sizes is min, min*step, ... up to max, and max itself when the series steps over it (so that
// 8 B to 64 MiB by 8 ends with 64 MiB).
func sizes(lo, hi, step int64) []int64 {
	var out []int64
	for s := lo; s <= hi; s *= step {
		out = append(out, s)
		if s == 0 {
			return out
		}
	}
	if out[len(out)-1] != hi {
		out = append(out, hi)
	}
	return out
}

func redopName(cfg Config) string {
	switch cfg.Op {
	case "allreduce", "reduce", "reducescatter":
		return strings.ToLower(cfg.Reduce.String())
	}
	return "none"
}

func needsDivisible(op string) bool {
	switch op {
	case "allgather", "reducescatter", "alltoall", "gather", "scatter":
		return true
	}
	return false
}

// buffers holds an op's tensors; count is the total elements (nccl-tests' count).
type buffers struct {
	in, out *tensor.Tensor
}

func makeBuffers(cfg Config, n, rank, count int) buffers {
	dt := cfg.DType
	switch cfg.Op {
	case "allreduce", "broadcast", "reduce", "sendrecv":
		b := tensor.New(dt, count)
		return buffers{in: b, out: tensor.New(dt, count)}
	case "allgather", "gather":
		return buffers{in: tensor.New(dt, count/n), out: tensor.New(dt, count)}
	case "reducescatter", "scatter":
		return buffers{in: tensor.New(dt, count), out: tensor.New(dt, count/n)}
	case "alltoall":
		return buffers{in: tensor.New(dt, count), out: tensor.New(dt, count)}
	case "barrier":
		return buffers{}
	}
	panic("bench: unknown op " + cfg.Op)
}

// runOnce issues the op once.
func runOnce(ctx context.Context, pg *comm.ProcessGroup, cfg Config, b buffers) error {
	switch cfg.Op {
	case "allreduce":
		return pg.AllReduce(ctx, b.in, cfg.Reduce)
	case "broadcast":
		return pg.Broadcast(ctx, b.in, 0)
	case "reduce":
		return pg.Reduce(ctx, b.in, 0, cfg.Reduce)
	case "allgather":
		return pg.AllGather(ctx, b.out, b.in)
	case "gather":
		return pg.Gather(ctx, b.out, b.in, 0)
	case "reducescatter":
		return pg.ReduceScatter(ctx, b.out, b.in, cfg.Reduce)
	case "scatter":
		return pg.Scatter(ctx, b.out, b.in, 0)
	case "alltoall":
		return pg.AllToAll(ctx, b.out, b.in)
	case "sendrecv":
		n, r := pg.Size(), pg.Rank()
		if n == 1 {
			return b.out.CopyFrom(b.in)
		}
		return pg.BatchSendRecv(ctx, []comm.P2POp{comm.SendOp(b.in, (r+1)%n, 0), comm.RecvOp(b.out, (r-1+n)%n, 0)})
	case "barrier":
		return pg.Barrier(ctx)
	}
	return fmt.Errorf("bench: unknown op %q", cfg.Op)
}

// measure times the op on count elements; first: it is the run's first size, which settles first.
func measure(ctx context.Context, pg *comm.ProcessGroup, cfg Config, count int, first bool) (Row, error) {
	n := pg.Size()
	row := Row{Op: cfg.Op, DType: cfg.DType.String(), NRanks: n, Count: int64(count), Wrong: -1}
	b := makeBuffers(cfg, n, pg.Rank(), count)
	if first {
		if err := settle(ctx, pg, cfg, b); err != nil {
			return row, err
		}
	}
	for i := 0; i < cfg.Warmup; i++ {
		if err := runOnce(ctx, pg, cfg, b); err != nil {
			return row, err
		}
	}
	iters := cfg.Iters
	if iters == 0 {
		// Same count everywhere: from the slowest rank's estimate.
		if err := pg.Barrier(ctx); err != nil {
			return row, err
		}
		t0 := time.Now()
		for i := 0; i < 3; i++ {
			if err := runOnce(ctx, pg, cfg, b); err != nil {
				return row, err
			}
		}
		est, err := maxOverRanks(ctx, pg, float64(time.Since(t0))/3)
		if err != nil {
			return row, err
		}
		// Up to 100000, as bench/peers' harness: a cap of 1000 timed only the first 0.4-0.8 ms
		// of a sub-microsecond op, whose first few thousand runs are twice as slow as the rest
		// (8 B on shm: median 0.83 µs over 1000, 0.36 µs once warm), which the peers never
		// measured.
		iters = int(math.Max(5, math.Min(100000, float64(200*time.Millisecond)/math.Max(est, 1))))
	}
	if err := pg.Barrier(ctx); err != nil {
		return row, err
	}
	// Each iteration timed on its own with two reads of the monotonic clock, as the peers'
	// harness does (clock_gettime): time.Now would also read the wall clock, ~20 ns more on the
	// critical path of every sub-microsecond iteration.
	times := make([]float64, iters)
	base := time.Now()
	for i := range times {
		if cfg.FreshInput {
			rewrite(b.in)
		}
		t0 := time.Since(base)
		if err := runOnce(ctx, pg, cfg, b); err != nil {
			return row, err
		}
		times[i] = float64(time.Since(base)-t0) / float64(time.Microsecond)
	}
	var err error
	if row.TimeUs, err = maxOverRanks(ctx, pg, Median(times)); err != nil {
		return row, err
	}
	if row.MeanUs, err = maxOverRanks(ctx, pg, mean(times)); err != nil {
		return row, err
	}
	if cfg.Dist != nil && pg.Rank() == 0 { // Median sorted times
		printDist(cfg.Dist, cfg, int64(count)*int64(cfg.DType.Size()), times)
	}
	if cfg.Check {
		if row.Wrong, err = check(ctx, pg, cfg, count); err != nil {
			return row, err
		}
	}
	return row, nil
}

// rewrite stores every cache line's first word of t (nil: none) back into it: the line is
// then modified in this core's cache, as if just written, with the data unchanged. The stores
// are atomic so that the compiler keeps them.
func rewrite(t *tensor.Tensor) {
	if t == nil {
		return
	}
	raw := t.Bytes()
	for o := 0; o+4 <= len(raw); o += 64 {
		w := (*uint32)(unsafe.Pointer(&raw[o]))
		atomic.StoreUint32(w, atomic.LoadUint32(w))
	}
}

// settleTime is how long the ranks run the first size before measuring anything. They have
// just started, and spent their start waiting on the store with idle cores; on the VMs this
// was tuned on, the first ~0.1 s of ops after that ran at a fraction of the steady speed (8 B
// all-reduce: 1.0-1.7 µs for the first size against 0.2-0.6 for the next).
var settleTime = func() time.Duration {
	if v, err := time.ParseDuration(os.Getenv("GCCL_BENCH_SETTLE")); err == nil {
		return v
	}
	return 200 * time.Millisecond
}()

// settle runs the op on b for at least settleTime on every rank, in rounds of 1, 2, 4, ... 1024
// ops, after each of which the ranks agree whether to go on (from the least time any has run).
func settle(ctx context.Context, pg *comm.ProcessGroup, cfg Config, b buffers) error {
	if settleTime <= 0 {
		return nil
	}
	start := time.Now()
	for round := 1; ; round = min(2*round, 1024) {
		for range round {
			if err := runOnce(ctx, pg, cfg, b); err != nil {
				return err
			}
		}
		negLeast, err := maxOverRanks(ctx, pg, -float64(time.Since(start)))
		if err != nil {
			return err
		}
		if -negLeast >= float64(settleTime) {
			return nil
		}
	}
}

// Median of xs (not empty), which it sorts in place.
func Median(xs []float64) float64 {
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// printDist writes the distribution of sorted, one size's op times in µs: what a median
// hides, such as a rank's op times alternating between short and long.
func printDist(w io.Writer, cfg Config, bytes int64, sorted []float64) {
	n := len(sorted)
	fmt.Fprintf(w, "# gccl %s %s bytes=%d iters=%d min=%.2f p10=%.2f p50=%.2f p90=%.2f max=%.1f us (rank 0)\n",
		cfg.Op, cfg.DType, bytes, n, sorted[0], sorted[n/10], sorted[n/2], sorted[n*9/10], sorted[n-1])
}

// mean of xs (not empty).
func mean(xs []float64) float64 {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// maxOverRanks is the largest v across the group (the slowest rank sets the time).
func maxOverRanks(ctx context.Context, pg *comm.ProcessGroup, v float64) (float64, error) {
	t := tensor.FromSlice([]float64{v})
	if err := pg.AllReduce(ctx, t, comm.Max); err != nil {
		return 0, err
	}
	return t.Float(0), nil
}
