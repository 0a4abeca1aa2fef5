package launch

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/gccl/gccl/comm/store"
)

// Flags are gccl run's command-line flags: torchrun's names and meanings, plus gccl's own. Register adds them to a flag set; Config turns them into a Config.
type Flags struct {
	NProcPerNode     string
	NNodes           string
	NodeRank         int
	MasterAddr       string
	MasterPort       int
	RdzvEndpoint     string
	RdzvID           string
	RdzvBackend      string
	RdzvConf         string
	LocalAddr        string
	Standalone       bool
	MaxRestarts      int
	MonitorInterval  time.Duration
	LogDir           string
	Tee              string
	Redirects        string
	LocalRanksFilter string
	Role             string
	RunPath          bool
	NoPython         bool
	Backend          string
	BindTo           string
	Timeout          time.Duration
	TokenFile        string
}

// Register adds the flags to fs. Underscores in flag names are accepted as dashes, as torchrun
// accepts both (--nproc_per_node), and as with torchrun the first argument that is not a flag is
// the program: the flags after it are the program's (no "--" needed).
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.SetInterspersed(false)
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		return pflag.NormalizedName(strings.ReplaceAll(name, "_", "-"))
	})
	fs.StringVar(&f.NProcPerNode, "nproc-per-node", "1", "number of ranks to start: N, or auto (one per CPU)")
	fs.StringVar(&f.NNodes, "nnodes", "1", "number of nodes, N or MIN:MAX (elastic: start with MIN..MAX nodes, whichever joined by the last call)")
	fs.IntVar(&f.NodeRank, "node-rank", -1, "rank of this node, GROUP_RANK (default: numbered by the rendezvous in join order)")
	fs.StringVar(&f.MasterAddr, "master-addr", "127.0.0.1", "address the store listens on, given to the ranks as MASTER_ADDR")
	fs.IntVar(&f.MasterPort, "master-port", 0, "port of the store, MASTER_PORT (0: a free port)")
	fs.StringVar(&f.RdzvEndpoint, "rdzv-endpoint", "", "HOST:PORT of the rendezvous store (instead of --master-addr and --master-port): on several nodes, the same on every node; the agent on that host (or gccl store) hosts it")
	fs.StringVar(&f.RdzvID, "rdzv-id", "", "job id, TORCHELASTIC_RUN_ID (default: random)")
	fs.StringVar(&f.RdzvBackend, "rdzv-backend", "static", "rendezvous backend (accepted for torchrun's scripts; gccl hosts its own store)")
	fs.StringVar(&f.RdzvConf, "rdzv-conf", "", "rendezvous settings KEY=VALUE,...: join_timeout (seconds to wait for the other nodes, default 600), last_call_timeout (seconds an elastic rendezvous waits for more than MIN nodes, default 30)")
	fs.StringVar(&f.LocalAddr, "local-addr", "", "address the other nodes reach this one at (default: this host's address on the route to the rendezvous endpoint)")
	fs.BoolVar(&f.Standalone, "standalone", false, "single-node job with a store on a free local port (the default here)")
	fs.IntVar(&f.MaxRestarts, "max-restarts", 0, "restart the whole job up to this many times after a worker fails")
	fs.DurationVar(&f.MonitorInterval, "monitor-interval", 100*time.Millisecond, "accepted for torchrun's scripts: gccl notices a worker's exit at once")
	fs.StringVar(&f.LogDir, "log-dir", "", "directory for the job's logs: DIR/attempt_N/RANK/{stdout,stderr}.log and error.json, DIR/failure.json, flight-recorder dumps in DIR/fr")
	fs.StringVar(&f.Tee, "tee", "0", "also write these streams to the log files: 0 none, 1 stdout, 2 stderr, 3 both, or per local rank 0:1,1:2 (with --log-dir they are always written)")
	fs.StringVar(&f.Redirects, "redirects", "0", "send these streams to the log files only, not to the console: 0 none, 1 stdout, 2 stderr, 3 both, or per local rank 0:1,1:2")
	fs.StringVar(&f.LocalRanksFilter, "local-ranks-filter", "", "show only these local ranks' output on the console, e.g. 0 or 0,2")
	fs.StringVar(&f.Role, "role", "default", "role of the workers, ROLE_NAME")
	fs.BoolVar(&f.RunPath, "run-path", false, "accepted for torchrun's scripts: gccl always runs PROGRAM as a program")
	fs.BoolVar(&f.NoPython, "no-python", false, "run PROGRAM as it is even when it ends in .py (else: python3 -u PROGRAM)")
	fs.StringVar(&f.Backend, "backend", "", "backend for the ranks (sets GCCL_BACKEND): gloo, shm, auto, xccl")
	fs.StringVar(&f.BindTo, "bind-to", "core", "core: pin rank r to core r mod cores (like mpirun --bind-to core); none: let the OS place them")
	fs.DurationVar(&f.Timeout, "timeout", 0, "stop the job and report a timeout after this long (0: no limit)")
	fs.StringVar(&f.TokenFile, "token-file", "", "read the job token from this file instead of generating one")
}

// Config checks the flags and returns the job's Config for PROGRAM ARGS (args).
func (f *Flags) Config(args []string) (Config, error) {
	var cfg Config
	if len(args) == 0 {
		return cfg, fmt.Errorf("run: no program given")
	}
	n, err := ParseNProcs(f.NProcPerNode)
	if err != nil {
		return cfg, err
	}
	if cfg.MinNodes, cfg.MaxNodes, err = ParseNNodes(f.NNodes); err != nil {
		return cfg, err
	}
	if f.Standalone {
		cfg.MinNodes, cfg.MaxNodes = 1, 1
	}
	if f.NodeRank < -1 || f.NodeRank >= cfg.MaxNodes {
		return cfg, fmt.Errorf("run: --node-rank %d: want 0..%d for --nnodes %s (or leave it out: the rendezvous numbers the nodes)", f.NodeRank, cfg.MaxNodes-1, f.NNodes)
	}
	cfg.NodeRank, cfg.LocalAddr = f.NodeRank, f.LocalAddr
	if err := parseRdzvConf(f.RdzvConf, &cfg); err != nil {
		return cfg, err
	}
	cfg.NProcs, cfg.Program, cfg.Args = n, args[0], args[1:]
	if strings.HasSuffix(cfg.Program, ".py") && !f.NoPython {
		cfg.Program, cfg.Args = "python3", append([]string{"-u", args[0]}, args[1:]...)
	}
	cfg.MasterAddr, cfg.MasterPort = f.MasterAddr, f.MasterPort
	if f.RdzvEndpoint != "" && !f.Standalone {
		host, port, err := net.SplitHostPort(f.RdzvEndpoint)
		if err != nil {
			return cfg, fmt.Errorf("run: --rdzv-endpoint %q: want HOST:PORT", f.RdzvEndpoint)
		}
		if cfg.MasterPort, err = strconv.Atoi(port); err != nil {
			return cfg, fmt.Errorf("run: --rdzv-endpoint %q: the port is not a number", f.RdzvEndpoint)
		}
		cfg.MasterAddr = host
	}
	if cfg.MasterPort < 0 || cfg.MasterPort > 65535 {
		return cfg, fmt.Errorf("run: port %d: want 0..65535", cfg.MasterPort)
	}
	if cfg.multiNode() {
		// torchrun's static rendezvous: the store at --master-addr:--master-port (29500 by default).
		port := cfg.MasterPort
		if port == 0 {
			port = 29500
		}
		if f.RdzvEndpoint == "" && cfg.MasterAddr == "127.0.0.1" {
			return cfg, fmt.Errorf("run: --nnodes %s: give every node the rendezvous endpoint, --rdzv-endpoint HOST:PORT (node 0's address, or gccl store's)", f.NNodes)
		}
		cfg.RdzvEndpoint = net.JoinHostPort(cfg.MasterAddr, strconv.Itoa(port))
		cfg.MasterPort = 0
	}
	if f.MaxRestarts < 0 {
		return cfg, fmt.Errorf("run: --max-restarts %d: must not be negative", f.MaxRestarts)
	}
	if f.Timeout < 0 {
		return cfg, fmt.Errorf("run: --timeout %v: must not be negative", f.Timeout)
	}
	cfg.RunID, cfg.Role, cfg.MaxRestarts, cfg.Timeout = f.RdzvID, f.Role, f.MaxRestarts, f.Timeout
	cfg.Backend, cfg.LogDir = f.Backend, f.LogDir
	switch f.BindTo {
	case "core":
		cfg.Bind = true
	case "none":
	default:
		return cfg, fmt.Errorf("run: --bind-to %q: use core or none", f.BindTo)
	}
	if cfg.Redirects, err = ParseStd(f.Redirects); err != nil {
		return cfg, fmt.Errorf("run: --redirects: %w", err)
	}
	if cfg.Tee, err = ParseStd(f.Tee); err != nil {
		return cfg, fmt.Errorf("run: --tee: %w", err)
	}
	if f.LocalRanksFilter != "" {
		cfg.ConsoleRanks = []int{}
		for _, s := range strings.Split(f.LocalRanksFilter, ",") {
			r, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || r < 0 || r >= n {
				return cfg, fmt.Errorf("run: --local-ranks-filter %q: want local ranks in 0..%d separated by commas", f.LocalRanksFilter, n-1)
			}
			cfg.ConsoleRanks = append(cfg.ConsoleRanks, r)
		}
	}
	if f.TokenFile != "" {
		if cfg.Token, err = readTokenFile("run", f.TokenFile); err != nil {
			return cfg, err
		}
		if cfg.Token == "" {
			return cfg, fmt.Errorf("run: --token-file %s is empty", f.TokenFile)
		}
	} else if cfg.multiNode() {
		cfg.Token = os.Getenv(store.TokenEnv)
	}
	if cfg.multiNode() && cfg.Token == "" {
		return cfg, fmt.Errorf("run: --nnodes %s: every node needs the same job token: --token-file FILE (the same secret on every node) or GCCL_TOKEN", f.NNodes)
	}
	cfg.ForwardSignals = true
	return cfg, nil
}

// readTokenFile reads the job token from the --token-file of gccl command (run, store): the
// file's content without surrounding white space.
func readTokenFile(command, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: --token-file: %w", command, err)
	}
	return strings.TrimSpace(string(data)), nil
}

// ParseNProcs reads --nproc-per-node: a positive number, or auto (the number of CPUs, as torchrun
// does without GPUs).
func ParseNProcs(s string) (int, error) {
	if s == "auto" || s == "cpu" {
		return runtime.NumCPU(), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("run: --nproc-per-node %q: need a number, at least 1, or auto", s)
	}
	return n, nil
}

// ParseNNodes reads --nnodes: N, or MIN:MAX.
func ParseNNodes(s string) (lo, hi int, err error) {
	los, his, ranged := strings.Cut(s, ":")
	if !ranged {
		his = los
	}
	lo, err1 := strconv.Atoi(los)
	hi, err2 := strconv.Atoi(his)
	if err1 != nil || err2 != nil || lo < 1 || hi < lo {
		return 0, 0, fmt.Errorf("run: --nnodes %q: want N or MIN:MAX with 1 <= MIN <= MAX", s)
	}
	return lo, hi, nil
}

// parseRdzvConf reads torchrun's --rdzv-conf KEY=VALUE pairs: join_timeout and
// last_call_timeout in seconds; other keys are accepted and ignored, as gccl has no use for them.
func parseRdzvConf(s string, cfg *Config) error {
	if s == "" {
		return nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return fmt.Errorf("run: --rdzv-conf %q: want KEY=VALUE pairs separated by commas", s)
		}
		var d *time.Duration
		switch k {
		case "join_timeout":
			d = &cfg.JoinTimeout
		case "last_call_timeout":
			d = &cfg.LastCall
		default:
			continue
		}
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil || sec <= 0 {
			return fmt.Errorf("run: --rdzv-conf %s=%q: want a number of seconds above 0", k, v)
		}
		*d = time.Duration(sec * float64(time.Second))
	}
	return nil
}

// ParseStd reads torchrun's --redirects / --tee value: 0-3 for every local rank, or
// LOCAL_RANK:STD pairs separated by commas (0:1,1:2) for some.
func ParseStd(s string) (StdSpec, error) {
	one := func(v string) (Std, error) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 3 {
			return 0, fmt.Errorf("%q: want 0 (none), 1 (stdout), 2 (stderr) or 3 (both)", v)
		}
		return Std(n), nil
	}
	if !strings.Contains(s, ":") {
		v, err := one(s)
		return StdSpec{All: v}, err
	}
	spec := StdSpec{PerRank: map[int]Std{}}
	for _, pair := range strings.Split(s, ",") {
		rs, vs, ok := strings.Cut(pair, ":")
		r, err := strconv.Atoi(strings.TrimSpace(rs))
		if !ok || err != nil || r < 0 {
			return spec, fmt.Errorf("%q: want LOCAL_RANK:STD pairs such as 0:1,1:2", s)
		}
		if spec.PerRank[r], err = one(vs); err != nil {
			return spec, err
		}
	}
	return spec, nil
}
