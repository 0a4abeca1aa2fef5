// Package launch starts the ranks of a job on this host: it hosts the rendezvous store, gives
// every worker torchrun's environment, prefixes each output line with its rank, and as soon as
// one worker fails stops the others and reports which rank failed and how.
package launch

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/flightrecorder"
)

// Config describes a single-host job.
type Config struct {
	NProcs  int      // number of ranks
	Program string   // executable
	Args    []string // its arguments
	Env     []string // extra environment (KEY=VALUE), on top of os.Environ()
	Backend string   // GCCL_BACKEND for the workers ("" leaves it unset)
	// Stdout and Stderr receive the workers' output, each line prefixed "[rank N] ".
	// nil means os.Stdout / os.Stderr.
	Stdout, Stderr io.Writer
	// NoPrefix passes output through without rank prefixes.
	NoPrefix bool
	// GracePeriod between SIGTERM and SIGKILL when stopping workers (default 5s).
	GracePeriod time.Duration
	// Bind pins worker r to core r mod cores (like mpirun's --bind-to core, round-robin when
	// oversubscribed). Ranks that wait for each other by spinning need a core each: two ranks the
	// scheduler puts on one core turn every wait into a context switch. With more workers than
	// cores, fixed pairs that take turns on one core beat migrating workers (4 ranks on 2 cores,
	// 8-byte all-reduce on shm: 7.7-9.2 µs pinned against 9.4-14.7 µs unpinned).
	Bind bool
	// DumpDir receives the workers' flight-recorder dumps when the job fails: workers write
	// them to DumpDir/rank_<r> (GCCL_FR_DUMP_PREFIX, unless Env or the environment sets a
	// prefix), and when a worker fails the launcher asks every other one to dump, through the
	// store, before stopping them. "" means a new temporary directory, removed when the job
	// succeeds.
	DumpDir string
	// DumpWait bounds how long the launcher waits for the dumps before stopping the workers
	// (default 3s).
	DumpWait time.Duration
	Logger   *slog.Logger
}

// RankResult is how one worker ended.
type RankResult struct {
	Rank     int
	Pid      int
	ExitCode int    // -1 when killed by a signal
	Signal   string // e.g. "killed", "terminated"
	Err      error  // start failure
	Stopped  bool   // stopped by the launcher because another rank failed
	Tail     []string
}

// Failed reports whether the worker ended unsuccessfully on its own.
func (r RankResult) Failed() bool { return !r.Stopped && (r.Err != nil || r.ExitCode != 0) }

func (r RankResult) String() string {
	switch {
	case r.Err != nil:
		return fmt.Sprintf("rank %d failed to start: %v", r.Rank, r.Err)
	case r.Signal != "":
		return fmt.Sprintf("rank %d (pid %d) was killed by signal: %s", r.Rank, r.Pid, r.Signal)
	}
	return fmt.Sprintf("rank %d (pid %d) exited with status %d", r.Rank, r.Pid, r.ExitCode)
}

// Result is the outcome of a job.
type Result struct {
	Ranks []RankResult
	// First is the first rank that failed on its own (nil when the job succeeded).
	First *RankResult
	// DumpDir holds the workers' flight-recorder dumps of a failed job ("" when the job
	// succeeded or the workers write their dumps elsewhere), Dumps the files found there.
	DumpDir string
	Dumps   []string
}

// Err summarises a failed job, naming the first failed rank and its exit status.
func (r *Result) Err() error {
	if r.First == nil {
		return nil
	}
	msg := "job failed: " + r.First.String()
	if len(r.First.Tail) > 0 {
		msg += "; its last output:\n  " + strings.Join(r.First.Tail, "\n  ")
	}
	if r.DumpDir != "" {
		msg += fmt.Sprintf("\nflight-recorder dumps of %d rank(s) are in %s: run gccl fr analyze %s", len(r.Dumps), r.DumpDir, r.DumpDir)
	}
	return errors.New(msg)
}

// Run hosts a store, starts cfg.NProcs workers and waits for them. When one fails, the others
// are sent SIGTERM, then SIGKILL after the grace period. Cancelling ctx stops every worker.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.NProcs < 1 {
		return nil, fmt.Errorf("launch: %d processes requested: need at least 1", cfg.NProcs)
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.GracePeriod == 0 {
		cfg.GracePeriod = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	dumpDir, dumpPrefix, cleanup, err := prepareDumps(&cfg)
	if err != nil {
		return nil, err
	}
	token := newToken()
	srv, err := store.NewServer(store.ServerOptions{Addr: "127.0.0.1:0", Token: token, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("launch: starting the store: %w", err)
	}
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Addr())

	base := append(os.Environ(), cfg.Env...)
	base = append(base,
		"MASTER_ADDR="+host, "MASTER_PORT="+port,
		"WORLD_SIZE="+strconv.Itoa(cfg.NProcs), "LOCAL_WORLD_SIZE="+strconv.Itoa(cfg.NProcs),
		"GROUP_RANK=0", "GCCL_STORE_HOSTED=1", "GCCL_TOKEN="+token,
		"TORCHELASTIC_RUN_ID="+token[:8], "TORCHELASTIC_RESTART_COUNT=0",
	)
	if cfg.Backend != "" {
		base = append(base, "GCCL_BACKEND="+cfg.Backend)
	}
	if dumpPrefix != "" {
		base = append(base, "GCCL_FR_DUMP_PREFIX="+dumpPrefix)
	}
	base = append(base, threadDefaults(cfg.NProcs, cfg.Env)...)

	res := &Result{Ranks: make([]RankResult, cfg.NProcs)}
	cmds := make([]*exec.Cmd, cfg.NProcs)
	exited := make([]atomic.Bool, cfg.NProcs)
	tails := make([]*tail, cfg.NProcs)
	var outMu sync.Mutex // one line at a time on the console
	var wg sync.WaitGroup
	type exit struct{ rank int }
	exits := make(chan exit, cfg.NProcs)
	for r := 0; r < cfg.NProcs; r++ {
		cmd := exec.Command(cfg.Program, cfg.Args...)
		cmd.Env = append(append([]string(nil), base...), "RANK="+strconv.Itoa(r), "LOCAL_RANK="+strconv.Itoa(r))
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		tails[r] = &tail{max: 20}
		prefix := fmt.Sprintf("[rank %d] ", r)
		if cfg.NoPrefix {
			prefix = ""
		}
		stdout, _ := cmd.StdoutPipe()
		stderr, _ := cmd.StderrPipe()
		res.Ranks[r].Rank = r
		if err := startBound(cmd, r%runtime.NumCPU(), cfg.Bind); err != nil {
			res.Ranks[r].Err = err
			res.First = &res.Ranks[r]
			stopAll(cmds, exited, cfg.GracePeriod)
			wg.Wait()
			return res, nil
		}
		cmds[r] = cmd
		res.Ranks[r].Pid = cmd.Process.Pid
		var copies sync.WaitGroup
		copies.Add(2)
		go func() { defer copies.Done(); pump(stdout, cfg.Stdout, prefix, &outMu, nil) }()
		go func() { defer copies.Done(); pump(stderr, cfg.Stderr, prefix, &outMu, tails[r]) }()
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			copies.Wait()
			err := cmd.Wait()
			exited[r].Store(true)
			fillExit(&res.Ranks[r], cmd, err)
			exits <- exit{r}
		}(r)
	}

	stopping := false
	stop := func() {
		if !stopping {
			stopping = true
			go stopAll(cmds, exited, cfg.GracePeriod)
		}
	}
	for done := 0; done < cfg.NProcs; {
		select {
		case e := <-exits:
			done++
			rr := &res.Ranks[e.rank]
			rr.Tail = tails[e.rank].lines()
			if stopping && !rr.Failed() {
				continue
			}
			if rr.ExitCode != 0 || rr.Signal != "" {
				if stopping {
					rr.Stopped = true
					continue
				}
				res.First = rr
				log.Debug("launch: rank failed; stopping the others", "rank", e.rank, "status", rr.String())
				if dumpPrefix != "" {
					collectDumps(srv.Addr(), token, rr.String(), dumpPrefix, exited, cfg.DumpWait, log)
				}
				stop()
			}
		case <-ctx.Done():
			stop()
			ctx = context.Background() // keep collecting exits
		}
	}
	wg.Wait()
	if dumpPrefix != "" {
		res.Dumps = foundDumps(dumpPrefix, cfg.NProcs)
	}
	if res.First == nil {
		cleanup()
	} else if len(res.Dumps) > 0 {
		res.DumpDir = dumpDir
	}
	return res, nil
}

// prepareDumps picks where the workers' flight-recorder dumps go: the prefix to give them, ""
// when the environment sets one already (the launcher then leaves dumps alone), and a cleanup
// for a successful job.
func prepareDumps(cfg *Config) (dir, prefix string, cleanup func(), err error) {
	cleanup = func() {}
	for _, kv := range append(os.Environ(), cfg.Env...) {
		name, _, _ := strings.Cut(kv, "=")
		if slices.Contains(flightrecorder.DumpPrefixEnvVars, name) {
			return "", "", cleanup, nil
		}
	}
	if cfg.DumpWait == 0 {
		cfg.DumpWait = 3 * time.Second
	}
	dir = cfg.DumpDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "gccl-run-"); err != nil {
			return "", "", cleanup, fmt.Errorf("launch: a directory for flight-recorder dumps: %w", err)
		}
		cleanup = func() { _ = os.RemoveAll(dir) }
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", cleanup, fmt.Errorf("launch: the dump directory: %w", err)
	}
	return dir, filepath.Join(dir, "rank_"), cleanup, nil
}

// collectDumps asks every worker to dump its flight recorder (a request in the store, which
// each worker watches) and waits until every worker still running has written its dump, or
// wait passed.
func collectDumps(addr, token, reason, prefix string, exited []atomic.Bool, wait time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	c, err := store.Dial(ctx, addr, store.ClientOptions{Token: token, Logger: log})
	if err != nil {
		return
	}
	defer c.Close()
	n, err := c.Add(ctx, comm.DumpGenerationKey, 1)
	if err == nil {
		err = c.Set(ctx, comm.DumpRequestKey(n), []byte("launcher: "+reason))
	}
	if err != nil {
		log.Debug("launch: requesting flight-recorder dumps", "err", err)
		return
	}
	for ctx.Err() == nil {
		missing := 0
		for r := range exited {
			if fi, err := os.Stat(flightrecorder.DumpPath(prefix, r)); (err != nil || fi.ModTime().Before(start)) && !exited[r].Load() {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// foundDumps lists the dump files of the job's ranks.
func foundDumps(prefix string, n int) []string {
	var out []string
	for r := 0; r < n; r++ {
		if p := flightrecorder.DumpPath(prefix, r); fileExists(p) {
			out = append(out, p)
		}
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func fillExit(rr *RankResult, cmd *exec.Cmd, err error) {
	if err == nil {
		return
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			rr.ExitCode = -1
			rr.Signal = ws.Signal().String()
			return
		}
		rr.ExitCode = ee.ExitCode()
		return
	}
	rr.Err = err
	rr.ExitCode = -1
}

// stopAll sends SIGTERM to every running worker's process group, then SIGKILL to those still
// running after the grace period.
func stopAll(cmds []*exec.Cmd, exited []atomic.Bool, grace time.Duration) {
	if signalAll(cmds, exited, syscall.SIGTERM) == 0 {
		return
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		running := 0
		for i := range cmds {
			if cmds[i] != nil && !exited[i].Load() {
				running++
			}
		}
		if running == 0 {
			return
		}
	}
	signalAll(cmds, exited, syscall.SIGKILL)
}

// signalAll signals the process group of every worker still running; it returns how many.
func signalAll(cmds []*exec.Cmd, exited []atomic.Bool, sig syscall.Signal) int {
	n := 0
	for i, c := range cmds {
		if c != nil && c.Process != nil && !exited[i].Load() {
			_ = syscall.Kill(-c.Process.Pid, sig)
			n++
		}
	}
	return n
}

// pump copies lines from r to w with a prefix, one whole line at a time.
func pump(r io.Reader, w io.Writer, prefix string, mu *sync.Mutex, t *tail) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if t != nil {
			t.add(line)
		}
		mu.Lock()
		fmt.Fprintf(w, "%s%s\n", prefix, line)
		mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// tail keeps the last lines of a stream.
type tail struct {
	mu  sync.Mutex
	max int
	buf []string
}

func (t *tail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, s)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
}

func (t *tail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.buf...)
}

// startBound starts cmd, pinned to core `core` when bind is set: the launcher pins the thread
// that forks, and the child inherits that thread's CPU mask (Go's runtime threads in the child
// are all created from it).
func startBound(cmd *exec.Cmd, core int, bind bool) error {
	if !bind {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var orig, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return cmd.Start()
	}
	one.Set(core)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return cmd.Start()
	}
	defer unix.SchedSetaffinity(0, &orig)
	return cmd.Start()
}

// threadDefaults shares the host's cores between the workers, like torchrun's
// OMP_NUM_THREADS=1: each Go worker gets GOMAXPROCS = cores / workers (at least 1). Ranks spin
// while they wait for each other, and idle Go processors looking for work steal the very cores
// the peers spin on (measured here: an 8-byte all-reduce between 2 ranks on 2 cores takes ~12 µs
// with GOMAXPROCS=2 and ~8.5 µs with 1). A value the user set is kept.
func threadDefaults(nprocs int, extra []string) []string {
	var out []string
	for _, k := range []string{"GOMAXPROCS", "OMP_NUM_THREADS"} {
		if _, set := os.LookupEnv(k); set || hasKey(extra, k) {
			continue
		}
		if k == "OMP_NUM_THREADS" && nprocs == 1 {
			continue
		}
		out = append(out, fmt.Sprintf("%s=%d", k, max(1, runtime.NumCPU()/nprocs)))
	}
	return out
}

func hasKey(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
