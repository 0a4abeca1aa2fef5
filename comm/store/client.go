package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gccl/gccl/comm/store/storepb"
)

// DefaultDialTimeout is how long Dial keeps trying when neither its context
// has a deadline nor ClientOptions.Timeout is set. It matches PyTorch's
// default store timeout.
const DefaultDialTimeout = 5 * time.Minute

// Backoff between connection attempts while nothing listens at the address.
const (
	dialBackoffStart = 10 * time.Millisecond
	dialBackoffMax   = time.Second
)

// ClientOptions configures Dial.
type ClientOptions struct {
	// Token is the job token, sent with every call in the gRPC metadata key
	// "gccl-token". It must equal the server's ServerOptions.Token.
	Token string

	// Timeout bounds Dial (connecting and the handshake) when Dial's
	// context has no deadline; a deadline on the context wins. Default
	// DefaultDialTimeout (5 minutes). It applies to Dial only: each later
	// call is bounded by its own context, and a Get without a deadline
	// waits until the key is set or the connection is lost.
	Timeout time.Duration

	// Logger receives the client's logs (connection attempts at Debug).
	// Default slog.Default().
	Logger *slog.Logger
}

// Client is a Store served by a Server at another address, usually in
// another process. It is safe for concurrent use; all calls share one
// HTTP/2 connection.
//
// Get and Wait block in the server, not in a polling loop, and return as
// soon as their context ends. Keepalive pings (every 20s, 10s to answer)
// notice a server that died without closing its connection; calls in flight
// then fail with an error wrapping ErrUnavailable.
type Client struct {
	addr   string
	conn   *grpc.ClientConn
	rpc    storepb.StoreClient
	log    *slog.Logger
	closed atomic.Bool

	mu    sync.Mutex
	wills []will // armed by OnConnectionLost, withdrawn by Close
}

// will is one armed Will call.
type will struct {
	stream storepb.Store_WillClient
	cancel context.CancelFunc
}

// willWithdrawWait bounds how long Close waits for the server to confirm that a will is
// withdrawn.
const willWithdrawWait = time.Second

var _ Store = (*Client)(nil)

// Dial connects to the gccl store at addr ("host:port") and performs a
// handshake that proves the peer is a gccl store and accepts opts.Token.
//
// While nothing listens at addr, Dial retries with exponential backoff
// (10ms doubling up to 1s) until ctx's deadline, or opts.Timeout if ctx has
// none, and then returns an error naming the address, how long it tried and
// the last connection error. A refused token fails at once with an error
// wrapping ErrUnauthorized. A peer that is not a gccl store (an HTTP or TLS
// server, another gRPC service, a listener that writes junk) fails with an
// error wrapping ErrNotAStore: at once when its answer is clearly foreign,
// at the deadline when it only accepts and closes connections. A peer that
// accepts and stays silent fails at the deadline with an error that says so
// (it may be a stopped gccl store, so this is not ErrNotAStore).
//
// Every error from an expired or cancelled ctx wraps ctx.Err().
func Dial(ctx context.Context, addr string, opts ClientOptions) (*Client, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("store: dial %q: %w; want host:port such as 127.0.0.1:29500", addr, err)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "store-client", "addr", addr)

	start := time.Now()
	helloCtx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	probe := &dialProbe{addr: addr, log: log, abort: abort}

	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(probe.dial),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  dialBackoffStart,
				Multiplier: 2,
				Jitter:     0.2,
				MaxDelay:   dialBackoffMax,
			},
			MinConnectTimeout: 20 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                20 * time.Second,
			Timeout:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageBytes),
			grpc.MaxCallSendMsgSize(MaxMessageBytes),
		),
		grpc.WithUnaryInterceptor(tokenInterceptor(opts.Token)),
		grpc.WithStreamInterceptor(tokenStreamInterceptor(opts.Token)),
		grpc.WithUserAgent("gccl-store"),
	)
	if err != nil {
		return nil, fmt.Errorf("store: dial %s: %w", addr, err)
	}
	c := &Client{addr: addr, conn: conn, rpc: storepb.NewStoreClient(conn), log: log}
	if err := c.handshake(ctx, helloCtx, probe, start); err != nil {
		_ = conn.Close()
		return nil, err
	}
	probe.handshakeDone()
	log.Debug("connected to store", "took", roundDuration(time.Since(start)))
	return c, nil
}

// handshake calls Hello until it succeeds, the peer turns out not to be a
// gccl store, or ctx ends. helloCtx is ctx, also cancelled by the probe
// when a connection shows a foreign protocol.
func (c *Client) handshake(ctx, helloCtx context.Context, probe *dialProbe, start time.Time) error {
	delay := dialBackoffStart
	for {
		resp, err := c.rpc.Hello(helloCtx, &storepb.HelloRequest{ProtocolVersion: protocolVersion}, grpc.WaitForReady(true))
		if err == nil {
			switch {
			case resp.GetMagic() != protocolMagic:
				return fmt.Errorf("%w: the gRPC server at %s answered the handshake with magic %q, not %q; check that MASTER_ADDR/MASTER_PORT point at the gccl store",
					ErrNotAStore, c.addr, resp.GetMagic(), protocolMagic)
			case resp.GetProtocolVersion() != protocolVersion:
				return fmt.Errorf("store: the gccl store at %s speaks protocol version %d, this client speaks %d; use the same gccl version on every rank",
					c.addr, resp.GetProtocolVersion(), protocolVersion)
			}
			return nil
		}
		if cause := context.Cause(helloCtx); errors.Is(cause, ErrNotAStore) {
			return cause
		}
		waited := roundDuration(time.Since(start))
		st := status.Convert(err)
		switch st.Code() {
		case codes.Unauthenticated:
			return fmt.Errorf("%w by the gccl store at %s (%s): set %s to the job token, or pass it as ClientOptions.Token",
				ErrUnauthorized, c.addr, st.Message(), TokenEnv)
		case codes.DeadlineExceeded, codes.Canceled:
			if ctx.Err() != nil {
				return probe.giveUp(waited, ctx.Err())
			}
		case codes.Unavailable:
			if st.Message() == serverClosingMessage {
				return fmt.Errorf("%w: the gccl store at %s is shutting down", ErrClosed, c.addr)
			}
			// The connection broke during the call; try again.
			probe.noteCallError(err)
			if ctx.Err() == nil {
				select {
				case <-time.After(delay):
				case <-helloCtx.Done():
				}
				delay = min(2*delay, dialBackoffMax)
				continue
			}
			return probe.giveUp(waited, ctx.Err())
		case codes.Unimplemented:
			return fmt.Errorf("%w: the server at %s speaks gRPC or HTTP/2 but has no gccl store (%s); check that MASTER_ADDR/MASTER_PORT point at the gccl store",
				ErrNotAStore, c.addr, st.Message())
		}
		return fmt.Errorf("%w: the server at %s failed the gccl store handshake (%s: %s); check that MASTER_ADDR/MASTER_PORT point at the gccl store",
			ErrNotAStore, c.addr, st.Code(), st.Message())
	}
}

func tokenInterceptor(token string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(withToken(ctx, token), method, req, reply, cc, opts...)
	}
}

func tokenStreamInterceptor(token string) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(withToken(ctx, token), desc, cc, method, opts...)
	}
}

// withToken is ctx carrying the job token in the call's metadata (none when token is empty).
func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, TokenMetadataKey, token)
}

// Addr returns the address the client dialled.
func (c *Client) Addr() string { return c.addr }

// Set implements Store.
func (c *Client) Set(ctx context.Context, key string, value []byte) error {
	start := time.Now()
	if c.closed.Load() {
		return fmt.Errorf("%w: set %q", ErrClosed, key)
	}
	_, err := c.rpc.Set(ctx, &storepb.SetRequest{Key: []byte(key), Value: value})
	if err != nil {
		return c.fail(ctx, fmt.Sprintf("set %q", key), "", start, err)
	}
	return nil
}

// Get implements Store. It blocks in the server until key is set, ctx
// ends, or the connection is lost.
func (c *Client) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	if c.closed.Load() {
		return nil, fmt.Errorf("%w: get %q", ErrClosed, key)
	}
	resp, err := c.rpc.Get(ctx, &storepb.GetRequest{Key: []byte(key)})
	if err != nil {
		return nil, c.fail(ctx, fmt.Sprintf("get %q", key), "key", start, err)
	}
	return nonNil(resp.GetValue()), nil
}

// Add implements Store.
func (c *Client) Add(ctx context.Context, key string, delta int64) (int64, error) {
	start := time.Now()
	if c.closed.Load() {
		return 0, fmt.Errorf("%w: add to %q", ErrClosed, key)
	}
	resp, err := c.rpc.Add(ctx, &storepb.AddRequest{Key: []byte(key), Delta: delta})
	if err != nil {
		return 0, c.fail(ctx, fmt.Sprintf("add %d to %q", delta, key), "", start, err)
	}
	return resp.GetValue(), nil
}

// CompareAndSet implements Store.
func (c *Client) CompareAndSet(ctx context.Context, key string, expected, desired []byte) ([]byte, error) {
	start := time.Now()
	if c.closed.Load() {
		return nil, fmt.Errorf("%w: compare-and-set %q", ErrClosed, key)
	}
	resp, err := c.rpc.CompareAndSet(ctx, &storepb.CompareAndSetRequest{Key: []byte(key), Expected: expected, Desired: desired})
	if err != nil {
		return nil, c.fail(ctx, fmt.Sprintf("compare-and-set %q", key), "", start, err)
	}
	return nonNil(resp.GetValue()), nil
}

// Wait implements Store. It blocks in the server until every key is set,
// ctx ends, or the connection is lost.
func (c *Client) Wait(ctx context.Context, keys ...string) error {
	start := time.Now()
	if c.closed.Load() {
		return fmt.Errorf("%w: wait for %q", ErrClosed, keys)
	}
	req := &storepb.WaitRequest{Keys: make([][]byte, len(keys))}
	for i, k := range keys {
		req.Keys[i] = []byte(k)
	}
	if _, err := c.rpc.Wait(ctx, req); err != nil {
		return c.fail(ctx, fmt.Sprintf("wait for %q", keys), "keys", start, err)
	}
	return nil
}

// Delete implements Store.
func (c *Client) Delete(ctx context.Context, key string) (bool, error) {
	start := time.Now()
	if c.closed.Load() {
		return false, fmt.Errorf("%w: delete %q", ErrClosed, key)
	}
	resp, err := c.rpc.Delete(ctx, &storepb.DeleteRequest{Key: []byte(key)})
	if err != nil {
		return false, c.fail(ctx, fmt.Sprintf("delete %q", key), "", start, err)
	}
	return resp.GetExisted(), nil
}

// NumKeys implements Store.
func (c *Client) NumKeys(ctx context.Context) (int64, error) {
	start := time.Now()
	if c.closed.Load() {
		return 0, fmt.Errorf("%w: count keys", ErrClosed)
	}
	resp, err := c.rpc.NumKeys(ctx, &storepb.NumKeysRequest{})
	if err != nil {
		return 0, c.fail(ctx, "count keys", "", start, err)
	}
	return resp.GetCount(), nil
}

// OnConnectionLost leaves a will with the server: should this client's
// connection end without Close (the process dies, its host or network fails
// and the server's keepalive gives up, about 40s later), the server stores
// each value under its key, unless the key exists then. Close withdraws it,
// and a server that shuts down forgets it. It returns once the server has
// armed the will; ctx bounds only that. Each call leaves one more will.
//
// It is how the other clients of a job learn that one of them is gone: they
// Get the key.
func (c *Client) OnConnectionLost(ctx context.Context, entries map[string][]byte) error {
	start := time.Now()
	what := fmt.Sprintf("leave a will of %d keys", len(entries))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return fmt.Errorf("%w: %s", ErrClosed, what)
	}
	req := &storepb.WillRequest{}
	for k, v := range entries {
		req.Entries = append(req.Entries, &storepb.WillEntry{Key: []byte(k), Value: v})
	}
	// The call outlives ctx: it lasts until Close.
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	stream, err := c.rpc.Will(sctx)
	if err == nil {
		err = stream.Send(req)
	}
	if err == nil {
		_, err = stream.Recv()
	}
	if !stop() || err != nil {
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return c.fail(ctx, what, "", start, err)
	}
	c.wills = append(c.wills, will{stream: stream, cancel: cancel})
	return nil
}

// Close closes the connection, after withdrawing the client's wills. Calls
// in flight and later calls fail with an error wrapping ErrClosed. The
// server and its keys are not affected. Closing twice is a no-op.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.mu.Lock()
	for _, w := range c.wills {
		// The half-close withdraws the will; the server then ends the call, which Recv sees.
		if w.stream.CloseSend() == nil {
			t := time.AfterFunc(willWithdrawWait, w.cancel)
			_, _ = w.stream.Recv()
			t.Stop()
		}
		w.cancel()
	}
	c.wills = nil
	c.mu.Unlock()
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("store: close client of %s: %w", c.addr, err)
	}
	return nil
}

// fail turns the error of a call into a store error. what describes the
// call ("get \"k\""); waitingFor, if not empty, names what a Get or Wait
// waited for ("key", "keys") in a timeout message.
func (c *Client) fail(ctx context.Context, what, waitingFor string, start time.Time, err error) error {
	if c.closed.Load() {
		return fmt.Errorf("%w: %s", ErrClosed, what)
	}
	waited := roundDuration(time.Since(start))
	st := status.Convert(err)
	switch st.Code() {
	case codes.DeadlineExceeded, codes.Canceled:
		ctxErr := ctx.Err()
		if ctxErr == nil {
			// The server saw the deadline a moment before we did.
			ctxErr = context.DeadlineExceeded
			if st.Code() == codes.Canceled {
				ctxErr = context.Canceled
			}
		}
		if waitingFor != "" {
			return fmt.Errorf("store: %s at %s: %s not set after waiting %s: %w", what, c.addr, waitingFor, waited, ctxErr)
		}
		return fmt.Errorf("store: %s at %s: gave up after %s: %w", what, c.addr, waited, ctxErr)
	case codes.Unauthenticated:
		return fmt.Errorf("%w by the gccl store at %s during %s (%s): set %s to the job token, or pass it as ClientOptions.Token",
			ErrUnauthorized, c.addr, what, st.Message(), TokenEnv)
	case codes.Unavailable:
		if st.Message() == serverClosingMessage {
			return fmt.Errorf("%w: the store server at %s shut down during %s", ErrClosed, c.addr, what)
		}
		return fmt.Errorf("%w: lost the store at %s during %s after %s (%s); is the store host (rank 0 / gccl run) still running?",
			ErrUnavailable, c.addr, what, waited, st.Message())
	case codes.Unimplemented:
		return fmt.Errorf("store: %s at %s: %w by this server (an older gccl?): %s", what, c.addr, errors.ErrUnsupported, st.Message())
	case codes.ResourceExhausted:
		return fmt.Errorf("store: %s at %s: %s; a value must fit in %d MiB", what, c.addr, st.Message(), MaxMessageBytes>>20)
	case codes.FailedPrecondition:
		// The server's message already names the call and the key.
		return fmt.Errorf("store: %s (store at %s)", st.Message(), c.addr)
	default:
		return fmt.Errorf("store: %s at %s: %s: %s", what, c.addr, st.Code(), st.Message())
	}
}

func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}
