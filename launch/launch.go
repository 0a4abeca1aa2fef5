package launch

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
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
	// store, before stopping them. "" means LogDir/fr when LogDir is set, else a new temporary
	// directory, removed when the job succeeds.
	DumpDir string
	// DumpWait bounds how long the launcher waits for the dumps before stopping the workers
	// (default 3s).
	DumpWait time.Duration

	// MasterAddr is the address the store listens on and the workers get as MASTER_ADDR
	// (default 127.0.0.1); MasterPort its port (0: a free port).
	MasterAddr string
	MasterPort int
	// Token is the job token (default: a random one).
	Token string
	// RunID is TORCHELASTIC_RUN_ID (default: the first 8 characters of the token).
	RunID string
	// Role is ROLE_NAME (default "default").
	Role string
	// MaxRestarts restarts the whole job, as a new generation with a new store, up to this many
	// times after a worker failure (torchrun's --max-restarts).
	MaxRestarts int
	// Timeout stops the job and reports a timeout when it runs longer (0: no limit).
	Timeout time.Duration
	// LogDir receives, per attempt, one directory per rank (LogDir/attempt_<n>/<rank>) with
	// stdout.log, stderr.log and error.json (the worker's TORCHELASTIC_ERROR_FILE), and
	// failure.json when the job fails. "" writes no log files.
	LogDir string
	// Redirects sends a rank's streams to its log files only, not to the console; Tee to both
	// (torchrun's --redirects and --tee). With LogDir set, gccl writes the log files either way.
	Redirects, Tee StdSpec
	// ConsoleRanks, when not nil, shows only these local ranks' output on the console
	// (torchrun's --local-ranks-filter).
	ConsoleRanks []int
	// ForwardSignals makes Run catch SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 and forward them
	// to every worker's process group. SIGINT, SIGTERM and SIGHUP also stop the job: workers still
	// running after GracePeriod get SIGKILL.
	ForwardSignals bool
	Logger         *slog.Logger

	// Several nodes (see agent.go): MinNodes..MaxNodes agents, one per node, each running
	// NProcs workers, meet at RdzvEndpoint (HOST:PORT of the rendezvous store: the agent on that
	// host hosts it, else gccl store must). MaxNodes > 1 makes a multi-node job; 0 means
	// MinNodes, and MinNodes 0 means 1. A multi-node job needs Token, the same on every node.
	MinNodes, MaxNodes int
	// NodeRank is this node's rank (GROUP_RANK); -1 lets the rendezvous number the nodes in the
	// order they join.
	NodeRank     int
	RdzvEndpoint string
	// LocalAddr is the address the other nodes reach this one at (default: this host's address
	// on the route to the rendezvous endpoint).
	LocalAddr string
	// JoinTimeout bounds the wait for the other nodes at each rendezvous (default
	// DefaultJoinTimeout); LastCall is how long a rendezvous that MinNodes but not MaxNodes
	// agents joined waits for more (default DefaultLastCall).
	JoinTimeout, LastCall time.Duration

	advertised string // LocalAddr, or the one found
	nodeRank   int    // this node's rank in the current generation
}

// Std selects a worker's output streams, as torchrun's Std: 0 none, 1 stdout, 2 stderr, 3 both.
type Std int

// The streams.
const (
	StdNone Std = 0
	StdOut  Std = 1
	StdErr  Std = 2
	StdAll  Std = 3
)

// StdSpec is a Std for all local ranks, or one per local rank (torchrun's "3" and "0:1,1:2").
type StdSpec struct {
	All     Std
	PerRank map[int]Std
}

// For returns the streams selected for a local rank.
func (s StdSpec) For(rank int) Std {
	if s.PerRank != nil {
		return s.PerRank[rank]
	}
	return s.All
}

func (s StdSpec) none() bool {
	for _, v := range s.PerRank {
		if v != StdNone {
			return false
		}
	}
	return s.All == StdNone
}

// RankResult is how one worker ended.
type RankResult struct {
	Rank      int
	LocalRank int
	Pid       int
	ExitCode  int    // -1 when killed by a signal
	Signal    string // e.g. "killed", "terminated"
	Err       error  // start failure
	Stopped   bool   // stopped by the launcher because another rank failed
	Tail      []string
	Time      time.Time // when it ended
	// ErrorFile is the worker's TORCHELASTIC_ERROR_FILE ("" without a log directory).
	ErrorFile string
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

// Result is the outcome of a job (of its last attempt, when it was restarted).
type Result struct {
	Ranks []RankResult
	// First is the first rank that failed on its own (nil when none did).
	First *RankResult
	// RestartCount is the number of restarts (the last attempt's TORCHELASTIC_RESTART_COUNT).
	RestartCount int
	// TimedOut says the job ran longer than Config.Timeout and was stopped.
	TimedOut bool
	// SignalNum is the signal that stopped the job, when one did (ForwardSignals): a launcher
	// exits with 128 + it, as shells do. Signal names it.
	SignalNum syscall.Signal
	// DumpDir holds the workers' flight-recorder dumps of a failed job ("" when the job
	// succeeded or the workers write their dumps elsewhere), Dumps the files found there.
	DumpDir string
	Dumps   []string
	// Report describes a failed job (nil when it succeeded); it is also in LogDir/failure.json.
	Report *FailureReport
}

// Err summarises a failed job: the failure report as text, root cause first.
func (r *Result) Err() error {
	if r.Report == nil {
		return nil
	}
	var b strings.Builder
	r.Report.WriteText(&b)
	return errors.New(strings.TrimRight(b.String(), "\n"))
}

// Signal names the signal that stopped the job, such as "SIGTERM" ("" when none did).
func (r *Result) Signal() string { return unix.SignalName(r.SignalNum) }

func (r *Result) failed() bool { return r.First != nil || r.TimedOut || r.SignalNum != 0 }

// forwarded are the signals Run forwards to the workers with ForwardSignals; the first three
// stop the job.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2}

// Run hosts a store, starts cfg.NProcs workers and waits for them. When one fails, the others
// are sent SIGTERM, then SIGKILL after the grace period, and the job restarts as a new
// generation while restarts are left. Cancelling ctx stops every worker.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.NProcs < 1 {
		return nil, fmt.Errorf("launch: %d processes requested: need at least 1", cfg.NProcs)
	}
	if cfg.MaxRestarts < 0 {
		return nil, fmt.Errorf("launch: max restarts %d: must not be negative", cfg.MaxRestarts)
	}
	if err := cfg.checkNodes(); err != nil {
		return nil, err
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
	if cfg.MasterAddr == "" {
		cfg.MasterAddr = "127.0.0.1"
	}
	if cfg.Token == "" {
		cfg.Token = newToken()
	}
	if cfg.RunID == "" {
		cfg.RunID = cfg.Token[:min(8, len(cfg.Token))]
	}
	if cfg.Role == "" {
		cfg.Role = "default"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LogDir == "" && (!cfg.Redirects.none() || !cfg.Tee.none()) {
		dir, err := os.MkdirTemp("", "gccl-run-logs-")
		if err != nil {
			return nil, fmt.Errorf("launch: a log directory: %w", err)
		}
		cfg.LogDir = dir
		cfg.Logger.Warn("launch: no log directory given: the workers' logs go to "+dir, "dir", dir)
	}
	if cfg.DumpDir == "" && cfg.LogDir != "" {
		cfg.DumpDir = filepath.Join(cfg.LogDir, "fr")
	}
	dumpDir, cleanup, err := prepareDumps(&cfg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var sigs chan os.Signal
	if cfg.ForwardSignals {
		sigs = make(chan os.Signal, 8)
		signal.Notify(sigs, forwarded...)
		defer signal.Stop(sigs)
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, cfg.Timeout, errJobTimeout)
		defer cancel()
	}
	if cfg.multiNode() {
		return runAgent(ctx, &cfg, dumpDir, sigs)
	}
	var res *Result
	var spec genSpec
	for gen := 0; ; gen++ {
		srv, err := store.NewServer(store.ServerOptions{
			Addr: net.JoinHostPort(cfg.MasterAddr, strconv.Itoa(cfg.MasterPort)), Token: cfg.Token, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("launch: starting the store: %w", err)
		}
		_, port, _ := net.SplitHostPort(srv.Addr())
		spec = genSpec{
			gen: gen, world: cfg.NProcs, groupWorld: 1,
			masterAddr: cfg.MasterAddr, masterPort: port, storeAddr: srv.Addr(),
		}
		if spec.dumpPrefix, err = attemptDumpPrefix(dumpDir, gen); err != nil {
			srv.Close()
			return nil, err
		}
		res, err = runGeneration(ctx, &cfg, &spec, sigs)
		srv.Close()
		if err != nil {
			return nil, err
		}
		if !res.failed() || cfg.noRestart(ctx, res, gen) {
			break
		}
		cfg.Logger.Warn("launch: restarting the job", "failure", res.First.String(), "restart", gen+1, "max_restarts", cfg.MaxRestarts)
	}
	if !res.failed() {
		if spec.dumpPrefix != "" {
			res.Dumps = foundDumps(spec.dumpPrefix, 0, cfg.NProcs)
		}
		return res, nil
	}
	cfg.reportFailure(res, &spec, localFailures(&cfg, res), nil)
	return res, nil
}

// noRestart says that attempt gen (res), when it failed, is the job's last: a timeout or a signal
// stopped it, ctx ended, or no restart is left.
func (cfg *Config) noRestart(ctx context.Context, res *Result, gen int) bool {
	return res.TimedOut || res.SignalNum != 0 || ctx.Err() != nil || gen >= cfg.MaxRestarts
}

// reportFailure completes the Result of a failed job from its last attempt (spec): the
// flight-recorder dumps found, the failure report (from the ranks that failed, this node's
// first, and on several nodes why the attempt failed) and where it was written
// (LogDir/failure.json).
func (cfg *Config) reportFailure(res *Result, spec *genSpec, failures []RankFailure, cause *remoteFailure) {
	if spec.dumpPrefix != "" {
		res.Dumps = foundDumps(spec.dumpPrefix, 0, spec.world) // on several nodes: this node's and those the others shared
		if len(res.Dumps) > 0 {
			res.DumpDir = filepath.Dir(spec.dumpPrefix)
		}
	}
	res.Report = newFailureReport(cfg, res, failures, cause)
	// On several nodes the root cause may be a rank this node did not see fail first.
	if res.First == nil && res.Report.RootCause != nil {
		rc := res.Report.RootCause
		res.First = &RankResult{Rank: rc.Rank, LocalRank: rc.LocalRank, Pid: rc.Pid, ExitCode: rc.ExitCode, Signal: rc.Signal, Time: rc.Time}
	}
	cfg.writeReport(res.Report)
}

// writeReport writes the failure report to LogDir/failure.json, when there is a log directory.
func (cfg *Config) writeReport(rep *FailureReport) {
	if cfg.LogDir == "" {
		return
	}
	path := filepath.Join(cfg.LogDir, "failure.json")
	if err := rep.writeJSONFile(path); err != nil {
		cfg.Logger.Warn("launch: writing the failure report", "path", path, "err", err)
	} else {
		rep.Path = path
	}
}

// attemptDumpPrefix is the dump prefix of attempt gen, DIR/attempt_<gen>/rank_, so that a later
// attempt does not overwrite an earlier one's dumps ("" when dir is: the launcher leaves dumps
// alone).
func attemptDumpPrefix(dir string, gen int) (string, error) {
	if dir == "" {
		return "", nil
	}
	d := filepath.Join(dir, fmt.Sprintf("attempt_%d", gen))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("launch: the dump directory: %w", err)
	}
	return filepath.Join(d, "rank_"), nil
}

// genSpec places one attempt of the job: this node's ranks in the whole job, where the workers
// find the store, and (on several nodes) how the agent hears of failures elsewhere and tells
// the other nodes of its own.
type genSpec struct {
	gen                    int
	offset, world          int // global rank of local rank 0; ranks in the whole job
	groupRank, groupWorld  int // node rank, nodes
	masterAddr, masterPort string
	storeAddr              string // the workers' store, for dump requests
	dumpPrefix             string // "": the launcher leaves dumps alone
	// remote delivers a failure on another node (or of another node): the local workers are
	// stopped. nil on a single node.
	remote <-chan remoteFailure
	// onFailure is called once, before the workers are stopped, with the first local failure
	// (a failed rank, or the reason the agent stops: timeout, signal).
	onFailure func(f remoteFailure)
}

// remoteFailure is why a generation fails, as the agents tell each other.
type remoteFailure struct {
	Node    int    `json:"node"`
	Host    string `json:"host"`
	Reason  string `json:"reason"` // "worker failed", "node lost", "timeout", "signal", "store lost"
	Message string `json:"message"`
	// Final: the agents stop without restarting (a signal or a timeout stopped the job).
	Final bool `json:"final,omitempty"`
}

var errJobTimeout = errors.New("job timed out")

// runGeneration runs one attempt of the job: this node's workers.
func runGeneration(ctx context.Context, cfg *Config, spec *genSpec, sigs <-chan os.Signal) (*Result, error) {
	log := cfg.Logger
	gen, dumpPrefix := spec.gen, spec.dumpPrefix
	world := strconv.Itoa(spec.world)
	local := strconv.Itoa(cfg.NProcs)

	base := append(os.Environ(), cfg.Env...)
	base = append(base,
		"MASTER_ADDR="+spec.masterAddr, "MASTER_PORT="+spec.masterPort,
		"WORLD_SIZE="+world, "LOCAL_WORLD_SIZE="+local, "ROLE_WORLD_SIZE="+world,
		"GROUP_RANK="+strconv.Itoa(spec.groupRank), "GROUP_WORLD_SIZE="+strconv.Itoa(spec.groupWorld), "ROLE_NAME="+cfg.Role,
		"GCCL_STORE_HOSTED=1", "GCCL_TOKEN="+cfg.Token,
		"TORCHELASTIC_RUN_ID="+cfg.RunID, "TORCHELASTIC_RESTART_COUNT="+strconv.Itoa(gen),
		"TORCHELASTIC_MAX_RESTARTS="+strconv.Itoa(cfg.MaxRestarts),
	)
	if cfg.Backend != "" {
		base = append(base, "GCCL_BACKEND="+cfg.Backend)
	}
	if dumpPrefix != "" {
		base = append(base, "GCCL_FR_DUMP_PREFIX="+dumpPrefix)
	}
	base = append(base, threadDefaults(cfg.NProcs, cfg.Env)...)

	res := &Result{Ranks: make([]RankResult, cfg.NProcs), RestartCount: gen}
	cmds := make([]*exec.Cmd, cfg.NProcs)
	exited := make([]atomic.Bool, cfg.NProcs)
	tails := make([]*tail, cfg.NProcs)
	var outMu sync.Mutex // one line at a time on the console
	var wg sync.WaitGroup
	exits := make(chan int, cfg.NProcs)
	for r := 0; r < cfg.NProcs; r++ {
		rr := &res.Ranks[r]
		rank := spec.offset + r
		rr.Rank, rr.LocalRank = rank, r
		cmd := exec.Command(cfg.Program, cfg.Args...)
		env := append(append([]string(nil), base...),
			"RANK="+strconv.Itoa(rank), "LOCAL_RANK="+strconv.Itoa(r), "ROLE_RANK="+strconv.Itoa(rank))
		outs, err := rankOutputs(cfg, gen, r, rank)
		if err != nil {
			stopAll(cmds, exited, syscall.SIGTERM, cfg.GracePeriod)
			wg.Wait()
			return nil, err
		}
		if outs.errorFile != "" {
			env = append(env, "TORCHELASTIC_ERROR_FILE="+outs.errorFile)
			rr.ErrorFile = outs.errorFile
		}
		cmd.Env = env
		// The worker is its own process group (the launcher signals the group) and gets
		// SIGKILL when the thread that started it ends: that thread stays locked to the
		// goroutine below until the worker has been reaped, and ends with the launcher.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		tails[r] = &tail{max: 20}
		prefix := fmt.Sprintf("[rank %d] ", rank)
		if cfg.NoPrefix {
			prefix = ""
		}
		stdout, _ := cmd.StdoutPipe()
		stderr, _ := cmd.StderrPipe()
		started := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			defer outs.close()
			if err := startBound(cmd, r%runtime.NumCPU(), cfg.Bind); err != nil {
				started <- err
				return
			}
			started <- nil
			var copies sync.WaitGroup
			copies.Add(2)
			go func() {
				defer copies.Done()
				pump(stdout, outs.stdout, fileWriter(outs.stdoutFile), prefix, &outMu, nil)
			}()
			go func() {
				defer copies.Done()
				pump(stderr, outs.stderr, fileWriter(outs.stderrFile), prefix, &outMu, tails[r])
			}()
			copies.Wait()
			err := cmd.Wait()
			exited[r].Store(true)
			rr.Time = time.Now()
			fillExit(rr, cmd, err)
			exits <- r
		}()
		if err := <-started; err != nil {
			rr.Err, rr.ExitCode, rr.Time = err, -1, time.Now()
			res.First = rr
			if spec.onFailure != nil {
				spec.onFailure(remoteFailure{Reason: "worker failed", Message: rr.String()})
			}
			stopAll(cmds, exited, syscall.SIGTERM, cfg.GracePeriod)
			wg.Wait()
			return res, nil
		}
		cmds[r] = cmd
		rr.Pid = cmd.Process.Pid
	}

	// A rank that ends after the launcher began stopping the job was stopped; one that ended
	// before, even while the launcher was collecting dumps, failed on its own.
	stopping := false
	var stopAt time.Time
	stop := func(sig syscall.Signal) {
		if !stopping {
			stopping, stopAt = true, time.Now()
			go stopAll(cmds, exited, sig, cfg.GracePeriod)
		}
	}
	tell := func(f remoteFailure) {
		if spec.onFailure != nil {
			spec.onFailure(f)
			spec.onFailure = nil
		}
	}
	// failedHere: the job failed on this node (f). Every worker, on every node, is asked for its
	// flight-recorder dump, the other nodes are told, and the local workers get DumpWait to dump.
	failedHere := func(f remoteFailure) {
		if dumpPrefix != "" {
			requestDumps(spec.storeAddr, cfg.Token, f.Message, log)
		}
		tell(f)
		if dumpPrefix != "" {
			waitDumps(dumpPrefix, spec.offset, exited, cfg.DumpWait)
		}
	}
	for done := 0; done < cfg.NProcs; {
		select {
		case r := <-exits:
			done++
			rr := &res.Ranks[r]
			rr.Tail = tails[r].lines()
			if rr.ExitCode != 0 || rr.Signal != "" {
				if stopping && rr.Time.After(stopAt) {
					rr.Stopped = true
					continue
				}
				if res.First != nil || stopping {
					continue // failed on its own, after the root cause
				}
				res.First = rr
				log.Debug("launch: rank failed; stopping the others", "rank", rr.Rank, "status", rr.String())
				failedHere(remoteFailure{Reason: "worker failed", Message: rr.String()})
				stop(syscall.SIGTERM)
			}
		case f := <-spec.remote:
			spec.remote = nil
			if stopping || res.First != nil {
				continue
			}
			log.Debug("launch: the job failed elsewhere; stopping the workers", "node", f.Node, "reason", f.Message)
			// The node that saw a rank fail or the job time out asked every worker for its dump
			// before telling the others; a lost node or a signal stops the workers at once.
			if dumpPrefix != "" && (f.Reason == "worker failed" || f.Reason == "timeout") {
				waitDumps(dumpPrefix, spec.offset, exited, cfg.DumpWait)
			}
			stop(syscall.SIGTERM)
		case sig := <-sigs:
			s := sig.(syscall.Signal)
			if s == syscall.SIGUSR1 || s == syscall.SIGUSR2 {
				signalAll(cmds, exited, s)
				continue
			}
			if res.SignalNum == 0 {
				res.SignalNum = s
			}
			log.Debug("launch: forwarding a signal and stopping the job", "signal", res.Signal())
			tell(remoteFailure{Reason: "signal", Message: "the agent was stopped by " + res.Signal(), Final: true})
			stop(s)
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), errJobTimeout) {
				res.TimedOut = true
				failedHere(remoteFailure{Reason: "timeout", Message: fmt.Sprintf("the job timed out after %v", cfg.Timeout), Final: true})
			}
			stop(syscall.SIGTERM)
			ctx = context.Background() // keep collecting exits
		}
	}
	wg.Wait()
	return res, nil
}

// prepareDumps picks the directory for the workers' flight-recorder dumps (one subdirectory per
// attempt): "" when the environment sets a dump prefix already (the launcher then leaves dumps
// alone); and the cleanup to run when the job ends, which removes a directory the launcher made
// unless a worker wrote a dump in it.
func prepareDumps(cfg *Config) (dir string, cleanup func(), err error) {
	cleanup = func() {}
	for _, kv := range append(os.Environ(), cfg.Env...) {
		name, _, _ := strings.Cut(kv, "=")
		if slices.Contains(flightrecorder.DumpPrefixEnvVars, name) {
			return "", cleanup, nil
		}
	}
	if cfg.DumpWait == 0 {
		cfg.DumpWait = 3 * time.Second
	}
	dir = cfg.DumpDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "gccl-run-"); err != nil {
			return "", cleanup, fmt.Errorf("launch: a directory for flight-recorder dumps: %w", err)
		}
		cleanup = func() {
			if holdsFile(dir) {
				cfg.Logger.Info("launch: flight-recorder dumps kept in "+dir, "dir", dir)
				return
			}
			_ = os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", cleanup, fmt.Errorf("launch: the dump directory: %w", err)
	}
	return dir, cleanup, nil
}

// holdsFile says whether the tree under dir holds a file.
func holdsFile(dir string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// requestDumps asks every worker of the job, on every node, to dump its flight recorder: a
// request in the workers' store, which each worker watches.
func requestDumps(addr, token, reason string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := store.Dial(ctx, addr, store.ClientOptions{Token: token, Logger: log})
	if err != nil {
		log.Debug("launch: requesting flight-recorder dumps", "err", err)
		return
	}
	defer c.Close()
	if err := comm.RequestDumps(ctx, c, "launcher: "+reason); err != nil {
		log.Debug("launch: requesting flight-recorder dumps", "err", err)
	}
}

// waitDumps waits until every local worker still running (local rank r is rank offset+r) has
// written a dump in the last seconds, or wait passed.
func waitDumps(prefix string, offset int, exited []atomic.Bool, wait time.Duration) {
	start := time.Now().Add(-2 * time.Second) // the request may have been made on another node
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		missing := 0
		for r := range exited {
			if fi, err := os.Stat(flightrecorder.DumpPath(prefix, offset+r)); (err != nil || fi.ModTime().Before(start)) && !exited[r].Load() {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// foundDumps lists the dump files of ranks offset..offset+n-1.
func foundDumps(prefix string, offset, n int) []string {
	var out []string
	for r := offset; r < offset+n; r++ {
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

// stopAll sends sig to every running worker's process group, then SIGKILL to those still
// running after the grace period.
func stopAll(cmds []*exec.Cmd, exited []atomic.Bool, sig syscall.Signal, grace time.Duration) {
	if signalAll(cmds, exited, sig) == 0 {
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

// pump copies lines from r to the console w (nil: not to the console) with a prefix, one whole
// line at a time, and to file (nil: no file) without it.
func pump(r io.Reader, w io.Writer, file io.Writer, prefix string, mu *sync.Mutex, t *tail) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if t != nil {
			t.add(line)
		}
		if file != nil {
			_, _ = fmt.Fprintf(file, "%s\n", line)
		}
		if w != nil {
			mu.Lock()
			fmt.Fprintf(w, "%s%s\n", prefix, line)
			mu.Unlock()
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// outputs are where one rank's streams go.
type outputs struct {
	stdout, stderr         io.Writer // console, or nil
	stdoutFile, stderrFile *os.File  // log files, or nil
	errorFile              string    // TORCHELASTIC_ERROR_FILE, or ""
}

// fileWriter is f as a writer, nil (not a typed nil) when f is.
func fileWriter(f *os.File) io.Writer {
	if f == nil {
		return nil
	}
	return f
}

func (o *outputs) close() {
	for _, f := range []*os.File{o.stdoutFile, o.stderrFile} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// rankOutputs opens the log files of local rank r (rank `rank` of the job) of attempt gen,
// LogDir/attempt_<gen>/<rank>/, and picks which streams reach the console.
func rankOutputs(cfg *Config, gen, r, rank int) (*outputs, error) {
	o := &outputs{stdout: cfg.Stdout, stderr: cfg.Stderr}
	redirect := cfg.Redirects.For(r)
	if cfg.ConsoleRanks != nil && !slices.Contains(cfg.ConsoleRanks, r) {
		redirect = StdAll
	}
	if redirect&StdOut != 0 {
		o.stdout = nil
	}
	if redirect&StdErr != 0 {
		o.stderr = nil
	}
	if cfg.LogDir == "" {
		return o, nil
	}
	dir := filepath.Join(cfg.LogDir, fmt.Sprintf("attempt_%d", gen), strconv.Itoa(rank))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("launch: the log directory of rank %d: %w", rank, err)
	}
	o.errorFile = filepath.Join(dir, "error.json")
	_ = os.Remove(o.errorFile)
	var err error
	if o.stdoutFile, err = os.Create(filepath.Join(dir, "stdout.log")); err == nil {
		o.stderrFile, err = os.Create(filepath.Join(dir, "stderr.log"))
	}
	if err != nil {
		o.close()
		return nil, fmt.Errorf("launch: the log files of rank %d: %w", rank, err)
	}
	return o, nil
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
// with GOMAXPROCS=2 and ~8.5 µs with 1). GCCL_LOCAL_CPUS tells the workers how many cores the
// job has, which one pinned to a core cannot see (its backends spin only when the local ranks
// have a core each). A value the user set is kept.
func threadDefaults(nprocs int, extra []string) []string {
	var out []string
	for _, k := range []string{"GOMAXPROCS", "OMP_NUM_THREADS", "GCCL_LOCAL_CPUS"} {
		if _, set := os.LookupEnv(k); set || hasKey(extra, k) {
			continue
		}
		switch {
		case k == "GCCL_LOCAL_CPUS":
			out = append(out, fmt.Sprintf("%s=%d", k, runtime.NumCPU()))
		case k == "OMP_NUM_THREADS" && nprocs == 1:
		default:
			out = append(out, fmt.Sprintf("%s=%d", k, max(1, runtime.NumCPU()/nprocs)))
		}
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
