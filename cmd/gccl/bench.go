package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/internal/bench"
	"github.com/gccl/gccl/launch"
	"github.com/gccl/gccl/tensor"
	_ "github.com/gccl/gccl/xccl" // backend xccl (oneCCL is loaded only when it is picked)
)

func benchCmd() *cobra.Command {
	var (
		backend, op, dtype, redop, minB, maxB string
		cpuProfile                            string
		nproc, iters, warmup                  int
		step                                  int64
		check, asJSON, verbose, fresh         bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a collective across message sizes (like nccl-tests)",
		Long: `gccl bench times one collective at every size from --min-bytes to --max-bytes, multiplying by
--step-factor, and prints per size: bytes, element count, dtype, reduce op, median and mean time
(the mean is nccl-tests' time), and the algorithm and bus bandwidths (nccl-tests' formulas, from
the median). --check verifies every element of a separate run and reports the number of wrong
elements (without it, the column says N/A and --json's "wrong" is -1). Outside gccl run it starts
--nproc ranks itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dt, err := tensor.ParseDType(dtype)
			if err != nil {
				return err
			}
			red, err := tensor.ParseReduceOp(redop)
			if err != nil {
				return err
			}
			lo, err := bench.ParseBytes(minB)
			if err != nil {
				return err
			}
			hi, err := bench.ParseBytes(maxB)
			if err != nil {
				return err
			}
			cfg := bench.Config{Op: op, DType: dt, Reduce: red, MinBytes: lo, MaxBytes: hi, StepFactor: step,
				Iters: iters, Warmup: warmup, Check: check, JSON: asJSON, FreshInput: fresh}
			if verbose {
				cfg.Dist = os.Stderr
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if _, inJob := os.LookupEnv("RANK"); !inJob {
				return launchSelf(cmd.Context(), nproc, backend)
			}
			return benchRank(cmd.Context(), backend, cfg, cpuProfile)
		},
	}
	f := cmd.Flags()
	f.StringVar(&backend, "backend", "gloo", "backend: gloo, shm, auto (shm within a host, gloo across), xccl")
	f.IntVar(&nproc, "nproc", 2, "ranks to start (when not already inside gccl run)")
	f.StringVar(&op, "op", "allreduce", "collective: allreduce, allgather, reducescatter, broadcast, reduce, alltoall, gather, scatter, sendrecv (one batch: send to the next rank, receive from the previous), barrier (the sync floor: one row, no data)")
	f.StringVar(&dtype, "dtype", "float32", "element type: float32, float64, float16, bfloat16, int8, uint8, int32, int64, bool, ...")
	f.StringVar(&redop, "redop", "sum", "reduce op for allreduce/reduce/reducescatter: sum, prod, min, max, avg, band, bor, bxor")
	f.StringVar(&minB, "min-bytes", "8", "smallest message (suffixes K, M, G)")
	f.StringVar(&maxB, "max-bytes", "64M", "largest message (suffixes K, M, G)")
	f.Int64Var(&step, "step-factor", 8, "multiply the size by this between rows")
	f.IntVar(&iters, "iters", 0, "timed iterations per size (0: enough for ~0.2 s, 5 to 100000)")
	f.IntVar(&warmup, "warmup", 5, "untimed iterations per size")
	f.BoolVar(&check, "check", false, "verify every element and report #wrong")
	f.BoolVar(&asJSON, "json", false, "print one JSON object per size")
	f.BoolVar(&fresh, "fresh-input", false, "rewrite the input before each timed op (untimed), as new data would be, so that no reader finds it in its cache from the op before")
	f.BoolVar(&verbose, "verbose", false, "also print rank 0's distribution of op times per size on stderr (min, p10, median, p90, max)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write each rank's CPU profile to FILE.<rank> (for go tool pprof)")
	return cmd
}

// launchSelf re-runs this very command as nproc ranks.
func launchSelf(ctx context.Context, nproc int, backend string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	res, err := launch.Run(ctx, launch.Config{
		NProcs: nproc, Program: exe, Args: os.Args[1:], Backend: backend, NoPrefix: true, Bind: true,
		Env: []string{"GCCL_LOG_LEVEL=warn"},
	})
	if err != nil {
		return err
	}
	return jobError(res)
}

func benchRank(ctx context.Context, backend string, cfg bench.Config, cpuProfile string) error {
	pg, err := comm.Init(ctx, comm.Options{Backend: backend, Timeout: benchTimeout()})
	if err != nil {
		return err
	}
	defer pg.Close()
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile + "." + strconv.Itoa(pg.Rank()))
		if err != nil {
			return fmt.Errorf("bench: rank %d: --cpuprofile: %w", pg.Rank(), err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: rank %d: --cpuprofile: %w", pg.Rank(), err)
		}
		defer pprof.StopCPUProfile()
	}
	_, err = bench.Run(ctx, pg, cfg, os.Stdout)
	if err != nil {
		return fmt.Errorf("bench: rank %d: %w", pg.Rank(), err)
	}
	return nil
}

func benchTimeout() time.Duration {
	if v, err := strconv.Atoi(os.Getenv("GCCL_BENCH_TIMEOUT_S")); err == nil && v > 0 {
		return time.Duration(v) * time.Second
	}
	return 5 * time.Minute
}
