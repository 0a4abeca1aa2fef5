package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/gccl/gccl/launch"
)

func runCmd() *cobra.Command {
	var flags launch.Flags
	cmd := &cobra.Command{
		Use:   "run [flags] -- PROGRAM [ARGS...]",
		Short: "Launch PROGRAM as N ranks on this machine, or on several (like torchrun)",
		Long: `gccl run hosts the rendezvous store and starts --nproc-per-node copies of PROGRAM with
torchrun's flags and environment (RANK, LOCAL_RANK, GROUP_RANK, ROLE_RANK, ROLE_NAME,
ROLE_WORLD_SIZE, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_RUN_ID,
TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_MAX_RESTARTS, TORCHELASTIC_ERROR_FILE) plus GCCL_TOKEN.
Every output line is prefixed with its rank. As soon as one rank fails, the others are asked for
their flight-recorder dumps, then stopped; with --max-restarts the job starts again, else gccl run
exits non-zero and prints a failure report last: the root cause (the earliest failed rank, its
exit status, error file and last stderr lines), every other failed rank and the flight recorder's
verdict on the dumps (--log-dir/fr, else a temporary directory kept only when the job failed).
With --log-dir the report is also written to DIR/failure.json. SIGINT, SIGTERM, SIGHUP, SIGUSR1
and SIGUSR2 are forwarded to every rank; the first three stop the job.

On several nodes, run gccl run on each with --nnodes N (or MIN:MAX), --rdzv-endpoint HOST:PORT
(node 0's address, or gccl store's), the same --rdzv-id and --token-file; --node-rank is
optional (else nodes are numbered in join order). The agents agree on the rank layout, watch
each other (a lost node is noticed in seconds), stop every node's workers when one fails and
restart the whole job with --max-restarts.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := flags.Config(args)
			if err != nil {
				return err
			}
			cfg.Stdout, cfg.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			// The launcher forwards signals itself: main's signal context must not stop it first.
			res, err := launch.Run(context.WithoutCancel(cmd.Context()), cfg)
			if err != nil {
				return err
			}
			return jobError(res)
		},
	}
	flags.Register(cmd.Flags())
	return cmd
}

// jobError turns a failed job into an error carrying the failure report, with the first failed
// rank's exit status as gccl's own.
func jobError(res *launch.Result) error {
	err := res.Err()
	if err == nil {
		return nil
	}
	code := 1
	switch {
	case res.SignalNum != 0: // stopped by a signal: 128 + its number, as shells report it
		code = 128 + int(res.SignalNum)
	case res.First != nil && res.First.ExitCode > 0:
		code = res.First.ExitCode
	}
	_ = os.Stdout.Sync()
	return &exitError{code: code, err: err}
}
