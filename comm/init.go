package comm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/flightrecorder"

	_ "github.com/gccl/gccl/gloo" // the default backend
	_ "github.com/gccl/gccl/shm"  // shared memory within a host
)

// DefaultTimeout is the per-op timeout when none is configured (PyTorch's default).
const DefaultTimeout = 10 * time.Minute

// DefaultBackend is used when neither Options.Backend nor GCCL_BACKEND names one.
const DefaultBackend = "gloo"

// Options configure Init. Zero values mean "from the environment, else the default".
type Options struct {
	// Backend names the backend ("gloo", "shm", "auto", "xccl"). Default: GCCL_BACKEND, else
	// "gloo". "auto" picks shm, gloo or both (hierarchically) from where the ranks run.
	Backend string
	// Rank and WorldSize place this process in the job. WorldSize 0 means: discover both from
	// the environment (torchrun, OpenMPI, PMI, Slurm; see DiscoverEnv). A job with no
	// launcher variables at all is a single rank.
	Rank, WorldSize int
	// LocalRank and LocalWorldSize place this process on its host (default: from the
	// environment, else Rank and WorldSize).
	LocalRank, LocalWorldSize int
	// MasterAddr and MasterPort locate the rendezvous store (default: MASTER_ADDR, MASTER_PORT).
	// Unless StoreHosted (or GCCL_STORE_HOSTED=1, set by gccl run) says a launcher hosts it,
	// rank 0 starts the store there.
	MasterAddr string
	MasterPort int
	// StoreHosted: the store at MasterAddr:MasterPort is hosted by a launcher, not by rank 0.
	StoreHosted bool
	// Store, when set, is used as the rendezvous store; MasterAddr and MasterPort are ignored.
	Store store.Store
	// Token is the job token the store requires (default: GCCL_TOKEN).
	Token string
	// Timeout bounds every op and the connection setup (default: GCCL_TIMEOUT as a Go
	// duration, else DefaultTimeout).
	Timeout time.Duration
	// Recorder receives flight-recorder entries (default: a ring of CapacityFromEnv entries).
	Recorder *flightrecorder.Recorder
	// Logger (default slog.Default(), filtered by GCCL_LOG_LEVEL when set).
	Logger *slog.Logger
}

// world is what every group of one Init shares.
type world struct {
	rank, size           int
	localRank, localSize int
	hostname, masterAddr string
	hostID               string        // backends.HostID, for process
	exits                *store.Client // where ranks record their exits, once this one joined (see leaveWill)
	pidNS                string        // this process's pid namespace ("pid:[4026531836]"), for process
	store                store.Store   // root store; groups use prefixed views
	server               *store.Server
	client               *store.Client
	recorder             *flightrecorder.Recorder
	dumper               *dumper
	frStacks             bool // record each op's stack (GCCL_FR_STACKS=1)
	timeout              time.Duration
	log                  *slog.Logger
	backend              string
	nextGroupID          int
	initDeadline         time.Time
	desync               desyncWatch
}

// Init joins the job and returns the world process group. Every rank calls it with the same
// world size; it returns once every rank has connected, or fails with an error that says what
// is missing (a store that is not there, a wrong token, ranks that disagree on the world size).
func Init(ctx context.Context, opts Options) (*ProcessGroup, error) {
	w, err := newWorld(ctx, &opts)
	if err != nil {
		return nil, err
	}
	ranks := make([]int, w.size)
	for i := range ranks {
		ranks[i] = i
	}
	ctx, cancel := context.WithDeadline(ctx, w.initDeadline)
	defer cancel()
	// A rank that fails to initialize poisons the job's store, so the others stop waiting for it.
	wctx, stop := watchFailure(ctx, w.store, initFailedKey, w.size, "initialize")
	pg, err := w.newGroup(wctx, "0", "default_pg", ranks, w.backend, w.timeout)
	stop()
	if err != nil {
		if cause := context.Cause(wctx); cause != nil && cause != context.Canceled && cause != context.DeadlineExceeded {
			err = fmt.Errorf("gccl: init: rank %d of %d: %w", w.rank, w.size, cause)
		}
		w.close()
		return nil, err
	}
	pg.ownsWorld = true
	return pg, nil
}

var errPeerInitFailed = errors.New("a peer failed")

// watchFailure returns a context cancelled when a member of a group of size ranks reports,
// under key in st, that it failed to set the group up (see poison): the others stop waiting for
// it at once instead of at the timeout.
func watchFailure(ctx context.Context, st store.Store, key string, size int, what string) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	if size == 1 {
		return wctx, func() { cancel(nil) }
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		v, err := st.Get(wctx, key)
		if err == nil {
			class, reason, _ := strings.Cut(string(v), "|")
			sentinel := errPeerInitFailed
			switch class {
			case "mismatch":
				sentinel = ErrMismatch
			case "invalid":
				sentinel = ErrInvalidArgument
			}
			cancel(fmt.Errorf("%w: another rank failed to %s: %s", sentinel, what, reason))
		}
	}()
	return wctx, func() {
		if context.Cause(wctx) == nil {
			cancel(nil)
		}
		<-done
	}
}

const (
	initFailedKey  = "init/failed"
	groupFailedKey = "setup/failed" // in the group's store
)

// poisonInit tells the other ranks that this one cannot join.
func (w *world) poisonInit(reason error) {
	if w.size > 1 {
		poison(w.store, initFailedKey, reason)
	}
}

// poison records under key in st why this rank failed to set a group up, for watchFailure.
func poison(st store.Store, key string, reason error) {
	if st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	class := "other"
	switch {
	case errors.Is(reason, ErrMismatch):
		class = "mismatch"
	case errors.Is(reason, ErrInvalidArgument):
		class = "invalid"
	}
	_ = st.Set(ctx, key, []byte(class+"|"+reason.Error()))
}

func newWorld(ctx context.Context, opts *Options) (*world, error) {
	w := &world{log: opts.Logger, recorder: opts.Recorder, timeout: opts.Timeout, backend: opts.Backend}
	if w.log == nil {
		w.log = defaultLogger()
	}
	if w.recorder == nil {
		w.recorder = flightrecorder.New(flightrecorder.CapacityFromEnv())
	}
	if w.backend == "" {
		w.backend = os.Getenv("GCCL_BACKEND")
	}
	if w.backend == "" {
		w.backend = DefaultBackend
	}
	if _, err := backends.Lookup(w.backend); err != nil {
		return nil, fmt.Errorf("gccl: init: %w", err)
	}
	if w.timeout == 0 {
		if v := os.Getenv("GCCL_TIMEOUT"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("gccl: init: GCCL_TIMEOUT=%q is not a positive duration (e.g. 30s, 10m)", v)
			}
			w.timeout = d
		} else {
			w.timeout = DefaultTimeout
		}
	}
	env, err := DiscoverEnv()
	if err != nil {
		return nil, err
	}
	w.initDeadline = time.Now().Add(w.timeout) // one deadline for all of Init
	ctx, cancelInit := context.WithDeadline(ctx, w.initDeadline)
	defer cancelInit()
	if opts.WorldSize > 0 {
		if opts.Rank < 0 || opts.Rank >= opts.WorldSize {
			return nil, fmt.Errorf("gccl: init: rank %d is out of range for world size %d: %w", opts.Rank, opts.WorldSize, ErrInvalidArgument)
		}
		if env.Source != "" && (env.Rank != opts.Rank || env.WorldSize != opts.WorldSize) {
			return nil, fmt.Errorf("gccl: init: options say rank %d of %d but the %s environment says rank %d of %d: pass matching options or unset the variables",
				opts.Rank, opts.WorldSize, env.Source, env.Rank, env.WorldSize)
		}
		w.rank, w.size = opts.Rank, opts.WorldSize
		w.localRank, w.localSize = opts.LocalRank, opts.LocalWorldSize
		if w.localSize == 0 {
			if env.Source != "" {
				w.localRank, w.localSize = env.LocalRank, env.LocalWorldSize
			} else {
				w.localRank, w.localSize = w.rank, w.size
			}
		}
	} else if env.Source != "" {
		w.rank, w.size = env.Rank, env.WorldSize
		w.localRank, w.localSize = env.LocalRank, env.LocalWorldSize
	} else {
		w.rank, w.size, w.localRank, w.localSize = 0, 1, 0, 1
	}
	w.hostname, _ = os.Hostname()
	w.hostID = backends.HostID(w.hostname)
	w.pidNS, _ = os.Readlink("/proc/self/ns/pid")
	w.masterAddr = opts.MasterAddr
	if w.masterAddr == "" {
		w.masterAddr = env.MasterAddr
	}
	port := opts.MasterPort
	if port == 0 {
		port = env.MasterPort
	}
	token := opts.Token
	if token == "" {
		token = os.Getenv("GCCL_TOKEN")
	}
	hosted := opts.StoreHosted || os.Getenv("GCCL_STORE_HOSTED") == "1" || os.Getenv("TORCHELASTIC_USE_AGENT_STORE") == "True"

	switch {
	case opts.Store != nil:
		w.store = opts.Store
	case w.size == 1 && port == 0:
		w.store = store.NewMemory()
	default:
		if w.masterAddr == "" {
			w.masterAddr = "127.0.0.1"
		}
		if port == 0 {
			return nil, fmt.Errorf("gccl: init: rank %d of %d: no rendezvous store: set MASTER_ADDR and MASTER_PORT (rank 0 hosts the store there), or launch with gccl run", w.rank, w.size)
		}
		addr := net.JoinHostPort(w.masterAddr, strconv.Itoa(port))
		if w.rank == 0 && !hosted {
			srv, err := store.NewServer(store.ServerOptions{Addr: listenAddr(w.masterAddr, port), Token: token, Logger: w.log})
			if err != nil {
				return nil, fmt.Errorf("gccl: init: rank 0 cannot host the store at %s: %w (is the port taken? pick another MASTER_PORT)", addr, err)
			}
			w.server = srv
		}
		c, err := store.Dial(ctx, addr, store.ClientOptions{Token: token, Logger: w.log})
		if err != nil {
			w.close()
			return nil, fmt.Errorf("gccl: init: rank %d of %d: %w", w.rank, w.size, err)
		}
		w.client = c
		w.store = c
	}
	if err := w.checkMembership(ctx); err != nil {
		w.poisonInit(err)
		w.close()
		return nil, err
	}
	w.leaveWill(ctx)
	w.frStacks = os.Getenv("GCCL_FR_STACKS") == "1"
	w.dumper = newDumper(w)
	w.dumper.start(w.size)
	return w, nil
}

// listenAddr is where rank 0's store listens: loopback for a local master address, all
// interfaces otherwise (other hosts must reach it).
func listenAddr(master string, port int) string {
	host := "0.0.0.0"
	if master == "localhost" {
		host = "127.0.0.1"
	} else if ip := net.ParseIP(master); ip != nil && ip.IsLoopback() {
		host = master
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// checkMembership makes ranks that disagree on the world size, or claim the same rank, fail at
// init with an error naming both.
func (w *world) checkMembership(ctx context.Context) error {
	if w.size == 1 && w.client == nil {
		return nil
	}
	mine := []byte(strconv.Itoa(w.size))
	got, err := w.store.CompareAndSet(ctx, "init/world_size", nil, mine)
	if err != nil {
		return fmt.Errorf("gccl: init: rank %d: store: %w", w.rank, err)
	}
	if string(got) != string(mine) {
		return fmt.Errorf("gccl: init: rank %d says the world size is %d but another rank said %s: %w; launch every rank with the same WORLD_SIZE",
			w.rank, w.size, got, ErrMismatch)
	}
	who := []byte(w.process(os.Getpid()))
	got, err = w.store.CompareAndSet(ctx, "init/rank/"+strconv.Itoa(w.rank), nil, who)
	if err != nil {
		return fmt.Errorf("gccl: init: rank %d: store: %w", w.rank, err)
	}
	if string(got) != string(who) {
		return fmt.Errorf("gccl: init: rank %d is claimed twice (by %s and by %s): %w; give every process its own RANK",
			w.rank, got, who, ErrInvalidArgument)
	}
	return nil
}

func (w *world) close() {
	w.desync.stop()
	if w.dumper != nil {
		w.dumper.close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	w.recordClosed(ctx)
	cancel()
	if w.client != nil {
		_ = w.client.Close()
	}
	if w.server != nil {
		_ = w.server.Close()
	}
}

// newGroup creates a group over the given global ranks (this rank among them) with its own
// store namespace and backend state.
func (w *world) newGroup(ctx context.Context, name, desc string, ranks []int, backendName string, timeout time.Duration) (*ProcessGroup, error) {
	rank := -1
	for i, r := range ranks {
		if r == w.rank {
			rank = i
		}
	}
	if rank < 0 {
		return nil, errors.New("gccl: internal: newGroup on a non-member")
	}
	b, err := backends.Lookup(backendName)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		// The other members may know the name: tell them, so that they fail now too.
		poison(store.WithPrefix(w.store, "pg/"+name), groupFailedKey, err)
		return nil, fmt.Errorf("gccl: creating group %q (rank %d of %d): %w", name, rank, len(ranks), err)
	}
	pg := &ProcessGroup{
		w: w, name: name, desc: desc, rank: rank, size: len(ranks), globalRanks: ranks,
		backendName: backendName, timeout: timeout,
		store: store.WithPrefix(w.store, "pg/"+name),
	}
	pg.label = groupLabel(name, desc)
	pg.cond.L = &pg.mu
	pg.idle.L = &pg.mu
	w.nextGroupID++
	pg.id = w.nextGroupID - 1
	w.recorder.RegisterGroup(flightrecorder.GroupInfo{ID: pg.id, Name: name, Desc: desc, Ranks: ranks})
	cfg := backends.Config{
		Rank: rank, Size: len(ranks), GlobalRanks: ranks, Name: name, Store: pg.store,
		Timeout: timeout, Logger: w.log, LocalRank: w.localRank, LocalSize: w.localSize,
		Hostname: w.hostname, MasterAddr: w.masterAddr,
	}
	// A member that fails to set the group up says so in the group's store, so that the others
	// fail at once instead of waiting for it until the timeout.
	gctx, stop := watchFailure(ctx, pg.store, groupFailedKey, len(ranks), fmt.Sprintf("set up group %q", name))
	// And so does a member that exits meanwhile (see watchMembers).
	gctx, stopWatch := w.watchMembers(gctx, ranks, name != "0")
	bg, err := b.NewGroup(gctx, cfg)
	stopWatch()
	stop()
	if err != nil {
		if cause := context.Cause(gctx); cause != nil && cause != context.Canceled && cause != context.DeadlineExceeded {
			err = cause
		} else {
			poison(pg.store, groupFailedKey, err)
		}
		if name != "0" && (errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded)) {
			// A sub-group: its members are running (they joined the world), so a member that is
			// late most likely never calls NewGroup or Split for it, or not with these arguments.
			const hint = "not every member set the group up in time: check that each calls NewGroup or Split with the same arguments (ranks, backend) and is alive, or raise the timeout (GCCL_TIMEOUT)"
			if errors.Is(err, ErrTimeout) {
				err = fmt.Errorf("%w; %s", err, hint)
			} else {
				err = fmt.Errorf("%w: %s: %w", ErrTimeout, hint, err)
			}
		}
		return nil, fmt.Errorf("gccl: creating group %q (rank %d of %d) on backend %s: %w", name, rank, len(ranks), backendName, err)
	}
	pg.backend = bg
	_, pg.posts = bg.(backends.Poster)
	pg.eager, _ = bg.(backends.EagerSender)
	if ps, ok := bg.(backends.PacedSender); ok {
		pg.pacedSends = ps.SendsWaitForReceiver()
	}
	// Flight-recorder entries name the backend that moves the bytes: backend "auto" records as
	// shm or gloo when it picked one of them.
	pg.recordedBackend = backendName
	if m := pg.AutoMode(); m == autoShm || m == autoGloo {
		pg.recordedBackend = m
	}
	for k := backends.OpAllReduce; k <= backends.OpRecv; k++ {
		pg.names[k] = pg.recordedBackend + ":" + k.String()
	}
	w.watchDesync(pg)
	return pg, nil
}
