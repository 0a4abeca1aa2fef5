package launch

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gccl/gccl/comm/store"
)

// StoreConfig configures ServeStore: a standalone rendezvous store for multi-node jobs
// (gccl store), for when no node's agent should host it.
type StoreConfig struct {
	// Listen is the HOST:PORT to listen on; the agents' --rdzv-endpoint.
	Listen string
	// Token is the job token; TokenFile, when set, is read for it.
	Token, TokenFile string
	// Ready, when set, is called with the address once the store listens.
	Ready  func(addr string)
	Logger *slog.Logger
}

// ServeStore serves a rendezvous store until ctx ends.
func ServeStore(ctx context.Context, cfg StoreConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TokenFile != "" {
		var err error
		if cfg.Token, err = readTokenFile("store", cfg.TokenFile); err != nil {
			return err
		}
	}
	if cfg.Token == "" {
		return fmt.Errorf("store: no job token: --token-file FILE (or GCCL_TOKEN), the same secret the agents use")
	}
	if cfg.Listen == "" {
		return fmt.Errorf("store: --listen HOST:PORT is required (an address every node reaches)")
	}
	srv, err := store.NewServer(store.ServerOptions{Addr: cfg.Listen, Token: cfg.Token, Logger: cfg.Logger})
	if err != nil {
		return fmt.Errorf("store: listening on %s: %w", cfg.Listen, err)
	}
	defer srv.Close()
	cfg.Logger.Info("store: serving", "addr", srv.Addr())
	if cfg.Ready != nil {
		cfg.Ready(srv.Addr())
	}
	<-ctx.Done()
	return nil
}
