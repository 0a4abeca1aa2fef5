package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/launch"
)

func storeCmd() *cobra.Command {
	var cfg launch.StoreConfig
	cmd := &cobra.Command{
		Use:   "store --listen HOST:PORT --token-file FILE",
		Short: "Serve a rendezvous store for multi-node gccl run jobs",
		Long: `gccl store serves the rendezvous store of multi-node jobs, for when no node's agent should host
it: start every node's gccl run with --rdzv-endpoint HOST:PORT and the same token. It prints the
address it listens on and serves until SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.TokenFile == "" {
				cfg.Token = os.Getenv(store.TokenEnv)
			}
			cfg.Ready = func(addr string) { fmt.Fprintf(cmd.OutOrStdout(), "gccl store: listening on %s\n", addr) }
			return launch.ServeStore(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&cfg.Listen, "listen", "", "HOST:PORT to listen on (an address every node reaches)")
	cmd.Flags().StringVar(&cfg.TokenFile, "token-file", "", "file holding the job token (default: GCCL_TOKEN)")
	return cmd
}
