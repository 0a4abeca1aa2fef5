package launch

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/flightrecorder"
)

// Multi-node jobs: one agent (one Run) per node. The agents meet in the rendezvous store at
// Config.RdzvEndpoint, hosted by the agent whose address it is or by gccl store, under keys
// rdzv/<run id>/gen/<generation>/...:
//
//	joined          how many agents joined (Add): an agent's slot is the value its Add returned - 1
//	node/<slot>     the agent's nodeInfo
//	closed          how many agents the generation has: set once (CompareAndSet) when MaxNodes
//	                joined, or MinNodes did and the last call passed
//	master          HOST:PORT of the workers' store, hosted by node 0 for this generation only
//	failed          the first failure anywhere (a remoteFailure): every agent watches it
//	result/<node>   how each node's workers ended (a nodeResult)
//
// Node ranks are the ones asked for (--node-rank), the others by join order; global ranks are
// the sum of the lower nodes' workers plus the local rank. The agents also form a memberlist
// cluster (addresses exchanged in node/<slot>): a node that stops answering is declared dead in
// a few seconds, and a dead node fails the generation.

// Defaults of the multi-node settings.
const (
	DefaultJoinTimeout = 10 * time.Minute
	DefaultLastCall    = 30 * time.Second
)

// nodeInfo is what an agent tells the others when it joins a generation.
type nodeInfo struct {
	Slot   int    `json:"slot"`
	Want   int    `json:"want"` // the node rank asked for, -1 for any
	Addr   string `json:"addr"` // the address the agent and its workers are reached at
	Host   string `json:"host"`
	NProcs int    `json:"nprocs"`
	Member string `json:"member"` // memberlist node name
	Gossip string `json:"gossip"` // memberlist HOST:PORT
	Pid    int    `json:"pid"`
}

func (n nodeInfo) String() string { return fmt.Sprintf("%s (%s, pid %d)", n.Addr, n.Host, n.Pid) }

// nodeResult is how one node's workers ended in a generation.
type nodeResult struct {
	Node     int           `json:"node"`
	Failures []RankFailure `json:"failures"`
	// Dumps are the ranks whose flight-recorder dumps the node put in the store (dump/<rank>)
	// when the generation failed, so that every node's report analyses all of them.
	Dumps []int `json:"dumps,omitempty"`
	// Final: a signal or a timeout stopped this node's workers, so no agent restarts the job
	// (the failed key may already hold another, earlier failure).
	Final bool `json:"final,omitempty"`
}

// agent is this node's side of a multi-node job.
type agent struct {
	cfg    *Config
	log    *slog.Logger
	server *store.Server // the rendezvous store, when this agent hosts it
	client *store.Client
	ml     *memberlist.Memberlist
	name   string // memberlist name
	gossip string

	last    *layout // the last generation that ran, when one did
	lastGen int

	mu   sync.Mutex
	dead map[string]bool        // memberlist names gone (dead, or left after their last result)
	subs map[string]chan string // per generation: members gone
}

// multiNode says the job spans several nodes (or may: --nnodes MIN:MAX).
func (cfg *Config) multiNode() bool { return cfg.MaxNodes > 1 }

// checkNodes validates the multi-node settings and fills in their defaults.
func (cfg *Config) checkNodes() error {
	if cfg.MinNodes == 0 {
		cfg.MinNodes = 1
	}
	if cfg.MaxNodes == 0 {
		cfg.MaxNodes = cfg.MinNodes
	}
	if cfg.MinNodes < 1 || cfg.MaxNodes < cfg.MinNodes {
		return fmt.Errorf("launch: nodes %d:%d: want 1 <= MIN <= MAX", cfg.MinNodes, cfg.MaxNodes)
	}
	if !cfg.multiNode() {
		return nil
	}
	if cfg.NodeRank >= cfg.MaxNodes {
		return fmt.Errorf("launch: node rank %d is out of range for %d node(s): node ranks run from 0 to %d", cfg.NodeRank, cfg.MaxNodes, cfg.MaxNodes-1)
	}
	if cfg.RdzvEndpoint == "" {
		return fmt.Errorf("launch: a multi-node job needs a rendezvous endpoint: --rdzv-endpoint HOST:PORT (the address of node 0, or of gccl store), the same on every node")
	}
	if _, _, err := net.SplitHostPort(cfg.RdzvEndpoint); err != nil {
		return fmt.Errorf("launch: rendezvous endpoint %q: want HOST:PORT", cfg.RdzvEndpoint)
	}
	if cfg.Token == "" {
		return fmt.Errorf("launch: a multi-node job needs the same token on every node: --token-file FILE (or GCCL_TOKEN) with the same secret everywhere")
	}
	if cfg.JoinTimeout == 0 {
		cfg.JoinTimeout = DefaultJoinTimeout
	}
	if cfg.LastCall == 0 {
		cfg.LastCall = DefaultLastCall
	}
	if cfg.RunID == "" {
		cfg.RunID = "none" // torchrun's default --rdzv-id
	}
	return nil
}

// runAgent runs this node's part of a multi-node job: rendezvous, workers, restarts.
func runAgent(ctx context.Context, cfg *Config, dumpDir string, sigs <-chan os.Signal) (*Result, error) {
	a, err := newAgent(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer a.close()
	var (
		res           *Result
		local, others []RankFailure
		cause         *remoteFailure
		spec          genSpec
	)
	// An agent that starts while the job runs (a node replaced after a failure) joins the
	// current generation, and when that one runs without it, the next.
	for gen := a.currentGen(ctx); ; gen++ {
		lay, err := a.rendezvous(ctx, gen, sigs)
		var late *lateError
		if errors.As(err, &late) {
			if err := a.waitOut(ctx, late, sigs); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		cfg.nodeRank = lay.me
		spec = genSpec{
			gen: gen, offset: lay.offset, world: lay.world, groupRank: lay.me, groupWorld: len(lay.nodes),
		}
		if spec.dumpPrefix, err = attemptDumpPrefix(dumpDir, gen); err != nil {
			return nil, err
		}
		workers, err := a.workerStore(ctx, gen, lay)
		if err != nil {
			return nil, err
		}
		spec.masterAddr, spec.masterPort, _ = net.SplitHostPort(workers.addr)
		spec.storeAddr = workers.addr
		w := a.watch(gen, lay)
		spec.remote, spec.onFailure = w.failures, w.publish
		cfg.Logger.Info("launch: starting the workers", "generation", gen, "node", lay.me, "nodes", len(lay.nodes),
			"ranks", fmt.Sprintf("%d-%d", lay.offset, lay.offset+cfg.NProcs-1), "world", lay.world, "master", workers.addr)
		res, err = runGeneration(ctx, cfg, &spec, sigs)
		if err != nil {
			w.stop()
			workers.close()
			return nil, err
		}
		local, others, cause = a.finish(gen, lay, res, w, spec.dumpPrefix)
		w.stop()
		workers.close()
		failed := res.failed() || len(others) > 0 || cause != nil
		if !failed || cfg.noRestart(ctx, res, gen) || (cause != nil && cause.Final) {
			if !failed {
				return res, nil
			}
			a.markEnded(gen)
			break
		}
		why := "a worker failed"
		if cause != nil {
			why = cause.Message
		}
		cfg.Logger.Warn("launch: restarting the job on every node", "failure", why, "restart", gen+1, "max_restarts", cfg.MaxRestarts)
		if cause != nil && cause.Reason == "node lost" {
			cfg.Logger.Warn(fmt.Sprintf("launch: the restart waits up to %v for %d node(s) (--nnodes MIN): start gccl run again on the lost node, or give --nnodes MIN:MAX to go on without it",
				cfg.JoinTimeout, cfg.MinNodes))
		}
	}
	cfg.reportFailure(res, &spec, append(local, others...), cause)
	return res, nil
}

// newAgent connects to the rendezvous store (hosting it when the endpoint is this host's) and
// starts this node's memberlist.
func newAgent(ctx context.Context, cfg *Config) (*agent, error) {
	a := &agent{cfg: cfg, log: cfg.Logger, dead: map[string]bool{}, subs: map[string]chan string{}}
	host, _, _ := net.SplitHostPort(cfg.RdzvEndpoint)
	var hostErr error
	if hostsStore(ctx, host, cfg.NodeRank == 0) {
		a.server, hostErr = store.NewServer(store.ServerOptions{Addr: cfg.RdzvEndpoint, Token: cfg.Token, Logger: cfg.Logger})
		if hostErr == nil {
			cfg.Logger.Info("launch: hosting the rendezvous store", "addr", a.server.Addr())
		}
	}
	dialCtx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	c, err := store.Dial(dialCtx, cfg.RdzvEndpoint, store.ClientOptions{Token: cfg.Token, Logger: cfg.Logger})
	if err != nil {
		a.close()
		if hostErr != nil {
			return nil, fmt.Errorf("launch: the rendezvous store at %s: this node could not host it (%v) and no store answers there: %w (start gccl run on node 0, or gccl store, at that address)", cfg.RdzvEndpoint, hostErr, err)
		}
		return nil, fmt.Errorf("launch: the rendezvous store at %s: %w (start gccl run on node 0, or gccl store, at that address, with the same token)", cfg.RdzvEndpoint, err)
	}
	a.client = c
	if cfg.advertised == "" {
		cfg.advertised = cfg.LocalAddr
	}
	if cfg.advertised == "" {
		cfg.advertised = routeTo(host)
	}
	if err := a.startMemberlist(); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *agent) close() {
	a.waitDone()
	if a.ml != nil {
		_ = a.ml.Leave(100 * time.Millisecond)
		_ = a.ml.Shutdown()
	}
	if a.client != nil {
		_ = a.client.Close()
	}
	if a.server != nil {
		_ = a.server.Close()
	}
}

// Memberlist timings: a node that stops answering is suspected after a missed probe and
// declared dead SuspicionMult..SuspicionMult*SuspicionMaxTimeoutMult probe intervals later,
// 1-3 s in all, where memberlist's LAN defaults take 5-30 s.
const (
	probeInterval  = 250 * time.Millisecond
	probeTimeout   = 200 * time.Millisecond
	suspicionMult  = 4
	suspicionMaxTM = 3
)

func (a *agent) startMemberlist() error {
	cfg := a.cfg
	mc := memberlist.DefaultLANConfig()
	a.name = fmt.Sprintf("%s-%s-%d-%s", cfg.RunID, cfg.advertised, os.Getpid(), newToken()[:6])
	mc.Name = a.name
	mc.BindAddr, mc.BindPort = cfg.advertised, 0
	mc.AdvertiseAddr = cfg.advertised
	mc.ProbeInterval, mc.ProbeTimeout = probeInterval, probeTimeout
	mc.SuspicionMult, mc.SuspicionMaxTimeoutMult = suspicionMult, suspicionMaxTM
	mc.GossipInterval = 50 * time.Millisecond
	mc.TCPTimeout = time.Second
	mc.PushPullInterval = 5 * time.Second
	key := sha256.Sum256([]byte("gccl-memberlist/" + cfg.Token))
	mc.SecretKey = key[:] // only agents with the job token understand each other
	mc.Events = &memberEvents{a: a}
	mc.LogOutput = io.Discard
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		mc.Logger = log.New(slogWriter{a.log}, "", 0)
		mc.LogOutput = nil
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("launch: starting failure detection (memberlist) on %s: %w (is --local-addr an address of this host?)", cfg.advertised, err)
	}
	a.ml = ml
	a.gossip = net.JoinHostPort(cfg.advertised, strconv.Itoa(int(ml.LocalNode().Port)))
	return nil
}

// slogWriter passes memberlist's log lines to slog at debug level.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("memberlist: " + strings.TrimSpace(string(p)))
	return len(p), nil
}

// memberEvents hears memberlist's verdicts.
type memberEvents struct{ a *agent }

// NotifyJoin forgets a node declared dead that came back (it refuted a false suspicion).
func (e *memberEvents) NotifyJoin(n *memberlist.Node) {
	e.a.mu.Lock()
	defer e.a.mu.Unlock()
	delete(e.a.dead, n.Name)
}

func (e *memberEvents) NotifyUpdate(*memberlist.Node) {}

// NotifyLeave hears of a node gone, dead or left on purpose (memberlist's Node.State does not
// say which here): an agent leaves on purpose only after it published its generation's result,
// which the watcher checks.
func (e *memberEvents) NotifyLeave(n *memberlist.Node) {
	a := e.a
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dead[n.Name] = true
	for _, ch := range a.subs {
		select {
		case ch <- n.Name:
		default:
		}
	}
}

func (a *agent) isDead(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dead[name]
}

// layout is a generation's nodes, by node rank, and where this node sits.
type layout struct {
	nodes         []nodeInfo
	me            int
	offset, world int
}

func (a *agent) key(gen int, k string) string {
	return fmt.Sprintf("rdzv/%s/gen/%d/%s", a.cfg.RunID, gen, k)
}

var errSignalled = errors.New("stopped by a signal")

// rendezvous joins generation gen and returns its layout once it closes.
func (a *agent) rendezvous(ctx context.Context, gen int, sigs <-chan os.Signal) (*layout, error) {
	cfg, c := a.cfg, a.client
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	n, err := c.Add(ctx, a.key(gen, "joined"), 1)
	if err != nil {
		return nil, fmt.Errorf("launch: joining the rendezvous at %s: %w", cfg.RdzvEndpoint, err)
	}
	slot := int(n - 1)
	a.raiseCurrent(ctx, gen)
	host, _ := os.Hostname()
	info := nodeInfo{Slot: slot, Want: cfg.NodeRank, Addr: cfg.advertised, Host: host, NProcs: cfg.NProcs, Member: a.name, Gossip: a.gossip, Pid: os.Getpid()}
	data, _ := json.Marshal(info)
	if err := c.Set(ctx, a.key(gen, "node/"+strconv.Itoa(slot)), data); err != nil {
		return nil, fmt.Errorf("launch: joining the rendezvous at %s: %w", cfg.RdzvEndpoint, err)
	}
	a.log.Debug("launch: joined the rendezvous", "generation", gen, "slot", slot)
	var enough time.Time // when MinNodes had joined
	closed := 0
	for closed == 0 {
		joined, err := c.Add(ctx, a.key(gen, "joined"), 0)
		if err != nil {
			return nil, a.rendezvousError(gen, start, int(n), err)
		}
		var v []byte
		if int(joined) >= cfg.MinNodes && enough.IsZero() {
			enough = time.Now()
		}
		if int(joined) >= cfg.MaxNodes || (!enough.IsZero() && time.Since(enough) >= cfg.LastCall) {
			v, err = c.CompareAndSet(ctx, a.key(gen, "closed"), nil, []byte(strconv.Itoa(min(int(joined), cfg.MaxNodes))))
		} else {
			v, err = a.peek(ctx, a.key(gen, "closed"))
		}
		if err != nil {
			return nil, a.rendezvousError(gen, start, int(joined), err)
		}
		if len(v) > 0 {
			closed, _ = strconv.Atoi(string(v))
			break
		}
		if v, err := a.peek(ctx, a.endedKey()); err == nil && len(v) > 0 {
			return nil, fmt.Errorf("launch: rendezvous %q: the job ended (it failed in generation %s and was not restarted) while this node waited for generation %d: see the other nodes' failure report", cfg.RunID, v, gen)
		}
		select {
		case <-ctx.Done():
			return nil, a.rendezvousError(gen, start, int(joined), ctx.Err())
		case s := <-sigs:
			if s == syscall.SIGUSR1 || s == syscall.SIGUSR2 {
				continue
			}
			return nil, fmt.Errorf("launch: rendezvous %q: %w (%v) while waiting for the other nodes", cfg.RunID, errSignalled, s)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if slot >= closed {
		return nil, &lateError{gen: gen, closed: closed}
	}
	nodes := make([]nodeInfo, closed)
	for s := 0; s < closed; s++ {
		getCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		data, err := c.Get(getCtx, a.key(gen, "node/"+strconv.Itoa(s)))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("launch: rendezvous %q: the node that joined %d-th never said who it is: %w", cfg.RunID, s+1, err)
		}
		if err := json.Unmarshal(data, &nodes[s]); err != nil {
			return nil, fmt.Errorf("launch: rendezvous %q: node %d's record: %w", cfg.RunID, s, err)
		}
	}
	ranked, err := assignNodeRanks(nodes)
	if err != nil {
		return nil, fmt.Errorf("launch: rendezvous %q generation %d: %w", cfg.RunID, gen, err)
	}
	lay := &layout{nodes: ranked}
	for r, nd := range ranked {
		if nd.Slot == slot {
			lay.me, lay.offset = r, lay.world
		}
		lay.world += nd.NProcs
	}
	a.log.Info("launch: rendezvous complete", "generation", gen, "nodes", closed, "node_rank", lay.me, "world", lay.world, "took", time.Since(start).Round(time.Millisecond))
	return lay, nil
}

func (a *agent) endedKey() string { return fmt.Sprintf("rdzv/%s/ended", a.cfg.RunID) }

// markEnded tells agents waiting for a next generation that there will be none.
func (a *agent) markEnded(gen int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.client.Set(ctx, a.endedKey(), []byte(strconv.Itoa(gen)))
}

// lateError: the generation closed before this agent joined it.
type lateError struct{ gen, closed int }

func (e *lateError) Error() string {
	return fmt.Sprintf("generation %d closed with %d node(s) before this node joined it", e.gen, e.closed)
}

// currentGen is the job's latest generation (0 for a new job): where a starting agent joins.
func (a *agent) currentGen(ctx context.Context) int {
	v, err := a.peek(ctx, fmt.Sprintf("rdzv/%s/current", a.cfg.RunID))
	n, _ := strconv.Atoi(string(v))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// raiseCurrent records that generation gen started, unless a later one did.
func (a *agent) raiseCurrent(ctx context.Context, gen int) {
	key := fmt.Sprintf("rdzv/%s/current", a.cfg.RunID)
	for i := 0; i < 10; i++ {
		v, err := a.peek(ctx, key)
		if err != nil {
			return
		}
		if cur, err := strconv.Atoi(string(v)); err == nil && cur >= gen {
			return
		}
		if got, err := a.client.CompareAndSet(ctx, key, v, []byte(strconv.Itoa(gen))); err != nil || string(got) == strconv.Itoa(gen) {
			return
		}
	}
}

// waitOut waits, for an agent that came late to a generation, until that generation fails (the
// agents then restart and meet in the next one, which this agent joins) or ends.
func (a *agent) waitOut(ctx context.Context, late *lateError, sigs <-chan os.Signal) error {
	cfg := a.cfg
	a.log.Warn(fmt.Sprintf("launch: generation %d of rendezvous %q runs with %d node(s), without this one: waiting for it to fail and restart with this node", late.gen, cfg.RunID, late.closed))
	ctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	for {
		if v, err := a.peek(ctx, a.key(late.gen, "failed")); err == nil && len(v) > 0 {
			return nil
		}
		if v, err := a.peek(ctx, a.key(late.gen, "done")); err == nil {
			if n, _ := strconv.Atoi(string(v)); n >= late.closed {
				return fmt.Errorf("launch: rendezvous %q: the job ran (generation %d, %d node(s)) and ended without this node; "+
					"a job that ran before with the same --rdzv-id on the same store also does this: use a new --rdzv-id", cfg.RunID, late.gen, late.closed)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("launch: rendezvous %q: waited %v for generation %d, which runs without this node, to end: %w", cfg.RunID, cfg.JoinTimeout, late.gen, ctx.Err())
		case s := <-sigs:
			if s == syscall.SIGUSR1 || s == syscall.SIGUSR2 {
				continue
			}
			return fmt.Errorf("launch: rendezvous %q: %w (%v) while waiting for a generation that runs without this node", cfg.RunID, errSignalled, s)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rendezvousError says which nodes joined and which are missing.
func (a *agent) rendezvousError(gen int, start time.Time, joined int, err error) error {
	cfg := a.cfg
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var who []string
	var ranks []int
	for s := 0; s < joined; s++ {
		data, gerr := a.client.Get(ctx, a.key(gen, "node/"+strconv.Itoa(s)))
		var nd nodeInfo
		if gerr != nil || json.Unmarshal(data, &nd) != nil {
			continue
		}
		who = append(who, nd.String())
		if nd.Want >= 0 {
			ranks = append(ranks, nd.Want)
		}
	}
	missing := ""
	if len(ranks) == joined {
		var m []string
		for r := 0; r < cfg.MinNodes; r++ {
			if !slices.Contains(ranks, r) {
				m = append(m, strconv.Itoa(r))
			}
		}
		if len(m) > 0 {
			missing = "; missing node rank(s) " + strings.Join(m, ", ")
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("launch: rendezvous %q (generation %d) at %s timed out after %v: %d of %d node(s) joined [%s]%s: "+
			"start gccl run on the other nodes with the same --rdzv-endpoint, --rdzv-id and token, or lower --nnodes",
			cfg.RunID, gen, cfg.RdzvEndpoint, time.Since(start).Round(time.Second), joined, cfg.MinNodes, strings.Join(who, ", "), missing)
	}
	return fmt.Errorf("launch: rendezvous %q (generation %d) at %s: %d of %d node(s) joined [%s]%s: %w", cfg.RunID, gen, cfg.RdzvEndpoint, joined, cfg.MinNodes, strings.Join(who, ", "), missing, err)
}

// assignNodeRanks orders the nodes of a generation: those that asked for a node rank get it,
// the others take the free ranks in join order.
func assignNodeRanks(nodes []nodeInfo) ([]nodeInfo, error) {
	out := make([]nodeInfo, len(nodes))
	taken := make([]bool, len(nodes))
	for _, nd := range nodes {
		if nd.Want < 0 {
			continue
		}
		if nd.Want >= len(nodes) {
			return nil, fmt.Errorf("node %s asked for node rank %d but only %d node(s) joined: give node ranks 0..%d, or none (--node-rank -1) to number nodes in join order", nd, nd.Want, len(nodes), len(nodes)-1)
		}
		if taken[nd.Want] {
			return nil, fmt.Errorf("nodes %s and %s both asked for node rank %d: give each node its own --node-rank", out[nd.Want], nd, nd.Want)
		}
		out[nd.Want], taken[nd.Want] = nd, true
	}
	next := 0
	for _, nd := range nodes {
		if nd.Want >= 0 {
			continue
		}
		for taken[next] {
			next++
		}
		out[next], taken[next] = nd, true
	}
	return out, nil
}

// workers is the workers' store of a generation, hosted by node 0.
type workers struct {
	addr   string
	server *store.Server
}

func (w *workers) close() {
	if w.server != nil {
		_ = w.server.Close()
	}
}

// workerStore hosts (node 0) or finds (the others) the store the generation's workers meet in:
// a fresh one per generation, so that no key of an earlier attempt is seen by a later one.
func (a *agent) workerStore(ctx context.Context, gen int, lay *layout) (*workers, error) {
	key := a.key(gen, "master")
	if lay.me == 0 {
		port := "0"
		if a.cfg.MasterPort > 0 && a.cfg.MasterPort != a.rdzvPort() {
			port = strconv.Itoa(a.cfg.MasterPort)
		}
		srv, err := store.NewServer(store.ServerOptions{Addr: net.JoinHostPort(a.cfg.advertised, port), Token: a.cfg.Token, Logger: a.log})
		if err != nil {
			return nil, fmt.Errorf("launch: node 0 hosting the workers' store on %s: %w", a.cfg.advertised, err)
		}
		if err := a.client.Set(ctx, key, []byte(srv.Addr())); err != nil {
			srv.Close()
			return nil, fmt.Errorf("launch: publishing the workers' store: %w", err)
		}
		return &workers{addr: srv.Addr(), server: srv}, nil
	}
	getCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := a.client.Get(getCtx, key)
	if err != nil {
		return nil, fmt.Errorf("launch: the workers' store of generation %d, which node 0 (%s) hosts: %w", gen, lay.nodes[0], err)
	}
	return &workers{addr: string(v)}, nil
}

func (a *agent) rdzvPort() int {
	_, p, _ := net.SplitHostPort(a.cfg.RdzvEndpoint)
	n, _ := strconv.Atoi(p)
	return n
}

// watcher turns failures elsewhere (the failed key, dead nodes, a lost store) into one
// remoteFailure for the generation, and publishes this node's own.
type watcher struct {
	a        *agent
	gen      int
	failures chan remoteFailure
	cancel   context.CancelFunc
	done     chan struct{}

	mu    sync.Mutex
	first *remoteFailure // the generation's failure, as this agent learnt it first
	lost  *remoteFailure // a lost node or store: the cause, whatever came first
}

func (w *watcher) note(f remoteFailure) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost == nil && (f.Reason == "node lost" || f.Reason == "store lost") {
		w.lost = &f
	}
	if w.first != nil {
		return false
	}
	w.first = &f
	return true
}

// cause is why the generation failed: a lost node or store when there was one (the failed
// ranks are its victims), else the first failure heard of; nil when none.
func (w *watcher) cause() *remoteFailure {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost != nil {
		return w.lost
	}
	return w.first
}

// publish tells every agent that this generation failed here (the first to publish wins).
func (w *watcher) publish(f remoteFailure) {
	a := w.a
	f.Node, f.Host = a.cfg.nodeRank, a.cfg.advertised
	if f.Reason != "worker failed" {
		f.Message += fmt.Sprintf(" on node %d (%s)", f.Node, f.Host)
	}
	w.note(f)
	if err := w.setFailed(f); err != nil {
		a.log.Warn("launch: telling the other nodes of the failure", "err", err)
	}
}

// setFailed stores f as the generation's failure in the store, unless one is stored already.
func (w *watcher) setFailed(f remoteFailure) error {
	data, _ := json.Marshal(f)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := w.a.client.CompareAndSet(ctx, w.a.key(w.gen, "failed"), nil, data)
	return err
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
	w.a.mu.Lock()
	delete(w.a.subs, strconv.Itoa(w.gen))
	w.a.mu.Unlock()
}

// watch starts watching generation gen: the failed key, and the memberlist health of its nodes.
func (a *agent) watch(gen int, lay *layout) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{a: a, gen: gen, failures: make(chan remoteFailure, 1), cancel: cancel, done: make(chan struct{})}
	dead := make(chan string, len(lay.nodes))
	a.mu.Lock()
	a.subs[strconv.Itoa(gen)] = dead
	a.mu.Unlock()
	members := map[string]int{}
	var addrs []string
	for r, nd := range lay.nodes {
		if r != lay.me {
			members[nd.Member] = r
			addrs = append(addrs, nd.Gossip)
		}
	}
	deliver := func(f remoteFailure) {
		if w.note(f) {
			w.failures <- f
		}
	}
	lostNode := func(name string) remoteFailure {
		r := members[name]
		return nodeLost(r, lay.nodes[r])
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the failed key
		defer wg.Done()
		data, err := a.client.Get(ctx, a.key(gen, "failed"))
		switch {
		case ctx.Err() != nil:
		case err != nil:
			deliver(remoteFailure{Node: -1, Host: a.cfg.RdzvEndpoint, Reason: "store lost",
				Message: fmt.Sprintf("lost the rendezvous store at %s (its host died?): %v", a.cfg.RdzvEndpoint, err), Final: true})
		default:
			var f remoteFailure
			if json.Unmarshal(data, &f) == nil {
				deliver(f)
			}
		}
	}()
	go func() { // the other nodes' health
		defer wg.Done()
		if len(addrs) > 0 {
			if _, err := a.ml.Join(addrs); err != nil {
				a.log.Debug("launch: joining the other agents' memberlist", "err", err)
			}
		}
		// Every node must be seen alive within a few seconds of the rendezvous.
		check := time.NewTimer(5 * time.Second)
		defer check.Stop()
		for name := range members {
			if a.isDead(name) {
				w.publishLost(lostNode(name), deliver)
				return
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case name := <-dead:
				if r, ok := members[name]; ok && !a.reported(gen, r) {
					w.publishLost(lostNode(name), deliver)
					return
				}
			case <-check.C:
				seen := map[string]bool{}
				for _, m := range a.ml.Members() {
					seen[m.Name] = true
				}
				for name, r := range members {
					if !seen[name] && !a.reported(gen, r) {
						f := lostNode(name)
						f.Message = fmt.Sprintf("node %d (%s) never answered memberlist's probes at %s: is UDP and TCP to it blocked?", f.Node, lay.nodes[f.Node], lay.nodes[f.Node].Gossip)
						w.publishLost(f, deliver)
						return
					}
				}
			}
		}
	}()
	go func() {
		wg.Wait()
		close(w.done)
	}()
	return w
}

// nodeLost is the failure of node r, which memberlist declared dead.
func nodeLost(r int, nd nodeInfo) remoteFailure {
	return remoteFailure{Node: r, Host: nd.Addr, Reason: "node lost",
		Message: fmt.Sprintf("node %d (%s) was lost: its agent stopped answering and memberlist declared it dead", r, nd)}
}

// reported says whether node r published its result of generation gen (then it left on
// purpose, and is not lost).
func (a *agent) reported(gen, r int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	v, err := a.peek(ctx, a.key(gen, "result/"+strconv.Itoa(r)))
	return err == nil && len(v) > 0
}

// peek returns the value of key at once, empty when it is missing (Get would wait for it):
// a CompareAndSet with an expected value no one stores reads it and stores nothing.
func (a *agent) peek(ctx context.Context, key string) ([]byte, error) {
	return a.client.CompareAndSet(ctx, key, []byte("\x00"), []byte("\x00"))
}

// publishLost tells the other agents a node was lost, and this agent's workers.
func (w *watcher) publishLost(f remoteFailure, deliver func(remoteFailure)) {
	w.a.log.Warn("launch: "+f.Message, "generation", w.gen)
	_ = w.setFailed(f) // best effort: the lost node may have been the store's host
	deliver(f)
}

// finish publishes how this node's workers ended and gathers the other nodes' results. It
// returns this node's failed ranks (local), the other nodes' (others), and why the generation
// failed (nil when it did not).
func (a *agent) finish(gen int, lay *layout, res *Result, w *watcher, dumpPrefix string) (local, others []RankFailure, cause *remoteFailure) {
	mine := nodeResult{Node: lay.me, Failures: localFailures(a.cfg, res), Final: res.SignalNum != 0 || res.TimedOut}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if (res.failed() || w.cause() != nil) && dumpPrefix != "" {
		mine.Dumps = a.shareDumps(ctx, gen, dumpPrefix, lay.offset)
	}
	data, _ := json.Marshal(mine)
	if err := a.client.Set(ctx, a.key(gen, "result/"+strconv.Itoa(lay.me)), data); err != nil {
		a.log.Warn("launch: telling the other nodes how this node's workers ended", "err", err)
	}
	cancel()
	// The others stop their workers within the grace period of the failure, plus the time to
	// collect dumps; a node that neither answers nor is declared dead by then is lost.
	deadline := time.Now().Add(a.cfg.GracePeriod + a.cfg.DumpWait + 10*time.Second)
	final := false
	for r, nd := range lay.nodes {
		if r == lay.me {
			continue
		}
		for {
			if a.isDead(nd.Member) && !a.reported(gen, r) {
				w.note(nodeLost(r, nd))
				break
			}
			if time.Now().After(deadline) {
				w.note(remoteFailure{Node: r, Host: nd.Addr, Reason: "node lost",
					Message: fmt.Sprintf("node %d (%s) did not report how its workers ended", r, nd)})
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
			data, err := a.client.Get(ctx, a.key(gen, "result/"+strconv.Itoa(r)))
			cancel()
			if err == nil {
				var nr nodeResult
				if json.Unmarshal(data, &nr) == nil {
					others = append(others, nr.Failures...)
					if nr.Final {
						final = true
					}
					if dumpPrefix != "" {
						a.fetchDumps(gen, dumpPrefix, nr.Dumps)
					}
				}
				break
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				w.note(remoteFailure{Node: -1, Host: a.cfg.RdzvEndpoint, Reason: "store lost",
					Message: fmt.Sprintf("lost the rendezvous store at %s: %v", a.cfg.RdzvEndpoint, err), Final: true})
				return mine.Failures, others, w.cause()
			}
		}
	}
	// The agent hosting the store waits for every agent to be done with it before it exits.
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	_, _ = a.client.Add(ctx, a.key(gen, "done"), 1)
	cancel()
	a.last = lay
	a.lastGen = gen
	cause = w.cause()
	if final && cause != nil && !cause.Final {
		c := *cause
		c.Final = true
		cause = &c
	}
	return mine.Failures, others, cause
}

// waitDone waits, when this agent hosts the rendezvous store, until every agent of the last
// generation has read what it needs from it, at most 10 s, or until those left are dead.
func (a *agent) waitDone() {
	if a.server == nil || a.last == nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		v, err := a.peek(ctx, a.key(a.lastGen, "done"))
		cancel()
		n, _ := strconv.Atoi(string(v))
		if err != nil || n >= len(a.last.nodes) {
			return
		}
		alive := 0
		for r, nd := range a.last.nodes {
			if r != a.last.me && !a.isDead(nd.Member) {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shareDumps puts this node's workers' flight-recorder dumps of generation gen in the store and
// returns their ranks.
func (a *agent) shareDumps(ctx context.Context, gen int, prefix string, offset int) []int {
	var ranks []int
	for r := offset; r < offset+a.cfg.NProcs; r++ {
		data, err := os.ReadFile(flightrecorder.DumpPath(prefix, r))
		if err != nil || len(data) > store.MaxMessageBytes-1024 {
			continue
		}
		if err := a.client.Set(ctx, a.key(gen, "dump/"+strconv.Itoa(r)), data); err != nil {
			a.log.Debug("launch: sharing a flight-recorder dump", "rank", r, "err", err)
			continue
		}
		ranks = append(ranks, r)
	}
	return ranks
}

// fetchDumps copies the dumps another node shared next to this node's, for the analysis.
func (a *agent) fetchDumps(gen int, prefix string, ranks []int) {
	for _, r := range ranks {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		data, err := a.client.Get(ctx, a.key(gen, "dump/"+strconv.Itoa(r)))
		cancel()
		if err == nil {
			err = os.WriteFile(flightrecorder.DumpPath(prefix, r), data, 0o644)
		}
		if err != nil {
			a.log.Debug("launch: fetching another node's flight-recorder dump", "rank", r, "err", err)
		}
	}
}

// hostsStore says whether this agent hosts the rendezvous store: the endpoint's host is this
// machine. Node 0 waits up to 30 s for the name to resolve (a Kubernetes pod's own name in a
// headless service appears in DNS shortly after the pod starts) and, when it still does not,
// tries to host the store all the same.
func hostsStore(ctx context.Context, host string, node0 bool) bool {
	for deadline := time.Now().Add(30 * time.Second); ; {
		local, resolved := isLocalHost(host)
		switch {
		case local || !node0:
			return local
		case resolved, time.Now().After(deadline), ctx.Err() != nil:
			return true // node 0 tries; when the address is not its own, it dials the store there
		}
		time.Sleep(time.Second)
	}
}

// isLocalHost reports whether host names or is an address of this machine, and whether it
// resolved at all.
func isLocalHost(host string) (local, resolved bool) {
	ips := []net.IP{net.ParseIP(host)}
	if ips[0] == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return false, false
		}
		ips = ips[:0]
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false, true
	}
	for _, ip := range ips {
		if ip.IsLoopback() {
			return true, true
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return true, true
			}
		}
	}
	return false, true
}

// routeTo is the local address that routes to host: the address the other nodes reach this one
// at (loopback for a local endpoint, or when there is no route).
func routeTo(host string) string {
	if a := backends.RouteAddr(host); a != "" {
		return a
	}
	return "127.0.0.1"
}
