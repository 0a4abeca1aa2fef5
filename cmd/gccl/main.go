// Command gccl launches multi-rank jobs (gccl run), measures collectives (gccl bench), inspects
// flight-recorder dumps (gccl fr analyze, gccl fr show, gccl fr view) and prints its version
// (gccl version).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/gccl/gccl/comm"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// exitError carries a process exit status through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "gccl",
		Short:         "gccl: collective communication for Go",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(versionCmd(), runCmd(), storeCmd(), benchCmd(), frCmd())
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "gccl: ") { // the library's errors name it already
		msg = "gccl: " + msg
	}
	fmt.Fprintln(os.Stderr, msg)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(1)
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print gccl's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "gccl %s\n", version)
			return nil
		},
	}
}

// logLevel reads GCCL_LOG_LEVEL (debug, info, warn, error); the default is warn.
func logLevel() slog.Level {
	if lvl, ok := comm.ParseLogLevel(os.Getenv("GCCL_LOG_LEVEL")); ok {
		return lvl
	}
	return slog.LevelWarn
}
