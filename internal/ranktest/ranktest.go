// Package ranktest runs a test as several ranks, each a real OS process: the test binary
// re-executes itself once per rank, with torchrun's environment and a store hosted by the
// parent test.
//
//	func TestSomething(t *testing.T) {
//		if ranktest.Child(t) {
//			pg, err := comm.Init(ctx, comm.Options{})
//			... // runs in every rank; a non-zero exit or a panic fails the parent
//			return
//		}
//		res := ranktest.Spawn(t, ranktest.Config{Ranks: 4})
//		... // assert on res[r].Output and res[r].ExitCode
//	}
package ranktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/gccl/gccl/comm/store"
)

const (
	envChild = "GCCL_RANKTEST_CHILD"
	envCase  = "GCCL_RANKTEST_CASE"
)

// Token is the job token of the store Spawn hosts.
const Token = "ranktest-token"

// Child reports whether this process is a rank spawned for test t (and not the parent).
func Child(t *testing.T) bool { return os.Getenv(envChild) == topName(t) }

func topName(t *testing.T) string { return strings.SplitN(t.Name(), "/", 2)[0] }

// Config describes the ranks to start.
type Config struct {
	Ranks   int
	Env     []string             // extra KEY=VALUE for every rank
	RankEnv func(r int) []string // extra per-rank variables
	Timeout time.Duration        // kill every rank after this (default 2 minutes)
	// NoStore: do not host a store (the test sets MASTER_ADDR/MASTER_PORT itself, or wants none).
	NoStore bool
	// Started, if set, is called once every rank has started, with their processes.
	Started func(procs []*os.Process)
	// Case, if set, is handed to every rank as JSON; a rank reads it with ReadCase.
	Case any
}

// ReadCase decodes into c the Config.Case this rank was started with.
func ReadCase(t *testing.T, c any) {
	t.Helper()
	if err := json.Unmarshal([]byte(os.Getenv(envCase)), c); err != nil {
		t.Fatalf("ranktest: reading the case in %s: %v", envCase, err)
	}
}

// Result is how one rank ended.
type Result struct {
	Rank     int
	ExitCode int // -1 when killed by a signal
	Signal   syscall.Signal
	Output   string // stdout and stderr, interleaved
	Elapsed  time.Duration
}

// Spawn starts cfg.Ranks copies of the test binary, each running only the current top-level
// test as one rank, and waits for all of them.
func Spawn(t *testing.T, cfg Config) []Result {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	// Flight-recorder dumps of failing ops go to the test's directory, not /tmp, unless cfg.Env
	// says where (a later KEY=VALUE wins).
	env := append(os.Environ(), envChild+"="+topName(t), "WORLD_SIZE="+strconv.Itoa(cfg.Ranks),
		"LOCAL_WORLD_SIZE="+strconv.Itoa(cfg.Ranks), "GOMAXPROCS=2",
		"GCCL_FR_DUMP_PREFIX="+filepath.Join(t.TempDir(), "fr_rank_"))
	if !cfg.NoStore {
		srv, err := store.NewServer(store.ServerOptions{Token: Token})
		if err != nil {
			t.Fatalf("ranktest: store: %v", err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		host, port, _ := net.SplitHostPort(srv.Addr())
		env = append(env, "MASTER_ADDR="+host, "MASTER_PORT="+port, "GCCL_STORE_HOSTED=1", "GCCL_TOKEN="+Token)
	}
	if cfg.Case != nil {
		js, err := json.Marshal(cfg.Case)
		if err != nil {
			t.Fatalf("ranktest: Config.Case: %v", err)
		}
		env = append(env, envCase+"="+string(js))
	}
	env = append(env, cfg.Env...)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	res := make([]Result, cfg.Ranks)
	bufs := make([]*bytes.Buffer, cfg.Ranks)
	cmds := make([]*exec.Cmd, cfg.Ranks)
	procs := make([]*os.Process, cfg.Ranks)
	start := time.Now()
	for r := range cmds {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+regexp.QuoteMeta(topName(t))+"$", "-test.timeout=0")
		cmd.Env = append(append([]string(nil), env...), "RANK="+strconv.Itoa(r), "LOCAL_RANK="+strconv.Itoa(r))
		if cfg.RankEnv != nil {
			cmd.Env = append(cmd.Env, cfg.RankEnv(r)...)
		}
		bufs[r] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = bufs[r], bufs[r]
		if err := cmd.Start(); err != nil {
			t.Fatalf("ranktest: starting rank %d: %v", r, err)
		}
		cmds[r], procs[r] = cmd, cmd.Process
	}
	if cfg.Started != nil {
		cfg.Started(procs)
	}
	errs := make([]error, cfg.Ranks)
	var wg sync.WaitGroup
	for r, cmd := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = cmd.Wait()
			res[r].Elapsed = time.Since(start)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		res[r].Rank, res[r].Output = r, bufs[r].String()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			res[r].ExitCode = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				res[r].ExitCode, res[r].Signal = -1, ws.Signal()
			}
		} else if err != nil {
			t.Fatalf("ranktest: rank %d: %v", r, err)
		}
	}
	if ctx.Err() != nil {
		t.Errorf("ranktest: ranks still running after %v were killed", cfg.Timeout)
	}
	return res
}

// AssertExitedZero fails t for every rank that did not exit with status 0, showing its output.
func AssertExitedZero(t *testing.T, res []Result) {
	t.Helper()
	for _, r := range res {
		assert.Equal(t, 0, r.ExitCode, "rank %d:\n%s", r.Rank, r.Output)
	}
}
