package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gccl/gccl/launch"
)

func runCmd() *cobra.Command {
	var nproc int
	var backend, bindTo, logDir string
	cmd := &cobra.Command{
		Use:   "run [flags] -- PROGRAM [ARGS...]",
		Short: "Launch PROGRAM as N ranks on this machine (like torchrun)",
		Long: `gccl run hosts the rendezvous store and starts --nproc-per-node copies of PROGRAM with
torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
plus GCCL_TOKEN. Every output line is prefixed with its rank. As soon as one rank fails, the
others are asked for their flight-recorder dumps, then stopped, and gccl run exits non-zero,
naming the rank, its exit status and the directory of the dumps (--log-dir/fr, else a temporary
directory kept only when the job failed): inspect them with gccl fr analyze.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if nproc < 1 {
				return fmt.Errorf("run: --nproc-per-node %d: need at least 1", nproc)
			}
			bind, err := parseBind(bindTo)
			if err != nil {
				return err
			}
			cfg := launch.Config{
				NProcs: nproc, Program: args[0], Args: args[1:], Backend: backend,
				Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(), Bind: bind,
			}
			if logDir != "" {
				cfg.DumpDir = filepath.Join(logDir, "fr")
			}
			res, err := launch.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return jobError(res)
		},
	}
	cmd.Flags().IntVar(&nproc, "nproc-per-node", 1, "number of ranks to start")
	cmd.Flags().StringVar(&backend, "backend", "", "backend for the ranks (sets GCCL_BACKEND): gloo, shm, auto, xccl")
	cmd.Flags().StringVar(&logDir, "log-dir", "", "directory for the job's logs: flight-recorder dumps of a failed job go to DIR/fr")
	cmd.Flags().StringVar(&bindTo, "bind-to", "core", "core: pin rank r to core r mod cores (like mpirun --bind-to core); none: let the OS place them")
	return cmd
}

func parseBind(v string) (bool, error) {
	switch v {
	case "core":
		return true, nil
	case "none":
		return false, nil
	}
	return false, fmt.Errorf("run: --bind-to %q: use core or none", v)
}

// jobError turns a failed job into an error naming the first failed rank, with its exit status
// as gccl's own.
func jobError(res *launch.Result) error {
	err := res.Err()
	if err == nil {
		return nil
	}
	code := 1
	if res.First != nil && res.First.ExitCode > 0 {
		code = res.First.ExitCode
	}
	_ = os.Stdout.Sync()
	return &exitError{code: code, err: err}
}
