package store

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gccl/gccl/comm/store/storepb"
)

// dial dials addr with a deadline of d and reports how long Dial took.
func dial(t *testing.T, addr string, d time.Duration, opts ClientOptions) (*Client, time.Duration, error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, addr, opts)
	took := time.Since(start)
	if c != nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, took, err
}

// freePort returns a loopback address on which nothing listens (a moment
// ago something did).
func freePort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

// fakeListener accepts connections on loopback and hands each to handle.
func fakeListener(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = lis.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				handle(conn)
			})
		}
	})
	return lis.Addr().String()
}

func TestDialRefusedToken(t *testing.T) {
	tests := []struct {
		name        string
		serverToken string
		clientToken string
		reason      string
	}{
		{"wrong token", "secret", "guess", "wrong job token"},
		{"missing token", "secret", "", "no job token sent"},
		{"token where none is expected", "", "secret", "this store takes none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, ServerOptions{Token: tt.serverToken})
			const deadline = 5 * time.Second
			c, took, err := dial(t, srv.Addr(), deadline, ClientOptions{Token: tt.clientToken})
			require.Error(t, err)
			assert.Nil(t, c)
			assert.ErrorIs(t, err, ErrUnauthorized)
			assert.NotErrorIs(t, err, context.DeadlineExceeded)
			assert.Contains(t, err.Error(), srv.Addr(), "the error names the address")
			assert.Contains(t, err.Error(), "GCCL_TOKEN", "the error says how to fix it")
			assert.Contains(t, err.Error(), tt.reason)
			assert.Less(t, took, deadline/2, "a refused token must fail at once, not retry")
			t.Log(err)
		})
	}
}

func TestDialNothingListening(t *testing.T) {
	addr := freePort(t)
	const deadline = 300 * time.Millisecond
	c, took, err := dial(t, addr, deadline, ClientOptions{})
	require.Error(t, err)
	assert.Nil(t, c)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, ErrNotAStore)
	for _, want := range []string{"no gccl store at " + addr, "connection refused", "MASTER_ADDR/MASTER_PORT"} {
		assert.Contains(t, err.Error(), want)
	}
	t.Log(err)
	assert.GreaterOrEqual(t, took, deadline-50*time.Millisecond, "Dial gave up before its deadline")
	assert.Less(t, took, deadline+2*time.Second, "Dial outlived its deadline")
}

func TestDialUsesTimeoutWhenContextHasNoDeadline(t *testing.T) {
	addr := freePort(t)
	start := time.Now()
	_, err := Dial(context.Background(), addr, ClientOptions{Timeout: 200 * time.Millisecond, Logger: quietLogger()})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 3*time.Second)
}

func TestDialBadAddress(t *testing.T) {
	_, took, err := dial(t, "no-port-here", 5*time.Second, ClientOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "host:port")
	assert.Less(t, took, time.Second)
}

func TestDialNotAStore(t *testing.T) {
	httpServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(httpServer.Close)

	tests := []struct {
		name     string
		addr     func(t *testing.T) string
		deadline time.Duration
		fast     bool  // the peer is recognised at once, well before the deadline
		want     error // what the error wraps
	}{
		{"listener writing junk", func(t *testing.T) string {
			return fakeListener(t, func(c net.Conn) {
				_, _ = c.Write([]byte("220 welcome to some other service\r\n"))
				_, _ = io.Copy(io.Discard, c)
			})
		}, 5 * time.Second, true, ErrNotAStore},
		{"HTTP/1 server", func(*testing.T) string { return httpServer.Listener.Addr().String() }, 5 * time.Second, true, ErrNotAStore},
		{"gRPC server without the store service", func(t *testing.T) string {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			g := grpc.NewServer()
			healthpb.RegisterHealthServer(g, health.NewServer())
			go func() { _ = g.Serve(lis) }()
			t.Cleanup(g.Stop)
			return lis.Addr().String()
		}, 5 * time.Second, true, ErrNotAStore},
		{"listener accepting and closing", func(t *testing.T) string {
			return fakeListener(t, func(net.Conn) {})
		}, 500 * time.Millisecond, false, ErrNotAStore},
		// Silence is not proof: a stopped gccl store looks the same.
		{"listener accepting and staying silent", func(t *testing.T) string {
			return fakeListener(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
		}, 500 * time.Millisecond, false, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := tt.addr(t)
			c, took, err := dial(t, addr, tt.deadline, ClientOptions{Token: "t"})
			require.Error(t, err)
			assert.Nil(t, c)
			assert.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), addr, "the error names the address")
			assert.Contains(t, err.Error(), "MASTER_ADDR/MASTER_PORT")
			if tt.fast {
				assert.Less(t, took, tt.deadline/2, "a foreign peer should be recognised at once")
			} else {
				assert.Less(t, took, tt.deadline+2*time.Second, "Dial outlived its deadline")
			}
			t.Log(err)
		})
	}
}

func TestDialRetriesUntilServerStarts(t *testing.T) {
	addr := freePort(t)
	type result struct {
		c   *Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := Dial(ctx, addr, ClientOptions{Token: "late", Logger: quietLogger()})
		done <- result{c, err}
	}()

	time.Sleep(200 * time.Millisecond)
	srv := newTestServer(t, ServerOptions{Addr: addr, Token: "late"})

	r := <-done
	require.NoError(t, r.err)
	t.Cleanup(func() { assert.NoError(t, r.c.Close()) })
	assert.Equal(t, addr, r.c.Addr())
	ctx := ctxFor(t, 5*time.Second)
	require.NoError(t, r.c.Set(ctx, "k", []byte("v")))
	other := dialTest(t, srv.Addr(), "late")
	v, err := other.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v", string(v))
}

func TestServerCloseUnblocksGet(t *testing.T) {
	tests := []struct {
		name string
		call func(ctx context.Context, c *Client) error
	}{
		{"Get", func(ctx context.Context, c *Client) error {
			_, err := c.Get(ctx, "never/set")
			return err
		}},
		{"Wait", func(ctx context.Context, c *Client) error { return c.Wait(ctx, "never/set") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := NewServer(ServerOptions{Token: "t", Logger: quietLogger()})
			require.NoError(t, err)
			c := dialTest(t, srv.Addr(), "t")

			returned := make(chan error, 1)
			go func() { returned <- tt.call(context.Background(), c) }() // no deadline
			time.Sleep(100 * time.Millisecond)
			select {
			case err := <-returned:
				t.Fatalf("%s returned before the server closed: %v", tt.name, err)
			default:
			}

			start := time.Now()
			require.NoError(t, srv.Close())
			select {
			case err := <-returned:
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrClosed)
				assert.Contains(t, err.Error(), srv.Addr())
				assert.Contains(t, err.Error(), "never/set")
				t.Log(err)
			case <-time.After(5 * time.Second):
				t.Fatalf("%s still blocked 5s after the server closed", tt.name)
			}
			assert.Less(t, time.Since(start), 3*time.Second, "Close took too long")

			ctx := ctxFor(t, 5*time.Second)
			err = c.Set(ctx, "k", []byte("v"))
			require.Error(t, err, "calls after the server closed fail")
			assert.True(t, errors.Is(err, ErrClosed) || errors.Is(err, ErrUnavailable), "got %v", err)
			assert.NoError(t, srv.Close(), "closing twice")
		})
	}
}

func TestServerDefaultAddrIsLoopback(t *testing.T) {
	srv := newTestServer(t, ServerOptions{})
	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	assert.NotEqual(t, "0", port)

	c := dialTest(t, srv.Addr(), "")
	ctx := ctxFor(t, 5*time.Second)
	require.NoError(t, c.Set(ctx, "k", []byte("v")), "an empty server token accepts clients without one")
}

func TestServerListenError(t *testing.T) {
	srv := newTestServer(t, ServerOptions{})
	_, err := NewServer(ServerOptions{Addr: srv.Addr(), Logger: quietLogger()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), srv.Addr())
}

func TestServerBacking(t *testing.T) {
	backing := NewMemory()
	t.Cleanup(func() { assert.NoError(t, backing.Close()) })
	ctx := ctxFor(t, 5*time.Second)
	require.NoError(t, backing.Set(ctx, "preset", []byte("from backing")))

	srv, err := NewServer(ServerOptions{Backing: backing, Logger: quietLogger()})
	require.NoError(t, err)
	c := dialTest(t, srv.Addr(), "")
	got, err := c.Get(ctx, "preset")
	require.NoError(t, err)
	assert.Equal(t, "from backing", string(got))
	require.NoError(t, c.Set(ctx, "k", []byte("from client")))

	require.NoError(t, srv.Close())
	got, err = backing.Get(ctx, "k")
	require.NoError(t, err, "Close must not close a backing store it did not create")
	assert.Equal(t, "from client", string(got))
}

func TestClientClose(t *testing.T) {
	srv := newTestServer(t, ServerOptions{Token: "t"})
	c, _, err := dial(t, srv.Addr(), 5*time.Second, ClientOptions{Token: "t"})
	require.NoError(t, err)

	returned := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), "never/set")
		returned <- err
	}()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, c.Close())
	select {
	case err := <-returned:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Get still blocked 5s after the client closed")
	}
	assert.NoError(t, c.Close(), "closing twice")

	ctx := ctxFor(t, 5*time.Second)
	tests := []struct {
		name string
		call func() error
	}{
		{"Set", func() error { return c.Set(ctx, "k", nil) }},
		{"Get", func() error { _, err := c.Get(ctx, "k"); return err }},
		{"Add", func() error { _, err := c.Add(ctx, "k", 1); return err }},
		{"CompareAndSet", func() error { _, err := c.CompareAndSet(ctx, "k", nil, nil); return err }},
		{"Wait", func() error { return c.Wait(ctx, "k") }},
		{"Delete", func() error { _, err := c.Delete(ctx, "k"); return err }},
		{"NumKeys", func() error { _, err := c.NumKeys(ctx); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, tt.call(), ErrClosed)
		})
	}

	other := dialTest(t, srv.Addr(), "t")
	require.NoError(t, other.Set(ctx, "k", []byte("v")), "closing one client leaves the server up")
}

// cuttableProxy forwards connections from the address it returns to addr; cut closes every
// connection it forwards, as when one end's process dies.
func cuttableProxy(t *testing.T, addr string) (proxy string, cut func()) {
	t.Helper()
	var mu sync.Mutex
	var conns []net.Conn
	proxy = fakeListener(t, func(client net.Conn) {
		server, err := net.Dial("tcp", addr)
		if !assert.NoError(t, err) {
			return
		}
		defer server.Close()
		mu.Lock()
		conns = append(conns, client, server)
		mu.Unlock()
		go func() { _, _ = io.Copy(server, client) }()
		_, _ = io.Copy(client, server)
	})
	return proxy, func() {
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			_ = conn.Close()
		}
	}
}

// TestClientConnectionLost cuts the TCP connection under a blocked Get, as
// when the store host dies, through a proxy between client and server.
func TestClientConnectionLost(t *testing.T) {
	srv := newTestServer(t, ServerOptions{Token: "t"})
	proxy, cut := cuttableProxy(t, srv.Addr())
	c := dialTest(t, proxy, "t")

	returned := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), "never/set")
		returned <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cut()

	select {
	case err := <-returned:
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrUnavailable)
		assert.Contains(t, err.Error(), proxy)
		assert.Contains(t, err.Error(), "never/set")
		t.Log(err)
	case <-time.After(5 * time.Second):
		t.Fatal("Get still blocked 5s after its connection was cut")
	}
}

// TestClientWill: a will is stored when its client's connection is lost (keys that exist
// keep their values), withdrawn by the client's Close, and forgotten by the server's Close.
func TestClientWill(t *testing.T) {
	t.Run("connection_lost", func(t *testing.T) {
		srv := newTestServer(t, ServerOptions{Token: "t"})
		proxy, cut := cuttableProxy(t, srv.Addr())
		c := dialTest(t, proxy, "t")
		other := dialTest(t, srv.Addr(), "t")
		ctx := ctxFor(t, 10*time.Second)
		require.NoError(t, other.Set(ctx, "gone/first", []byte("earlier")))
		require.NoError(t, c.OnConnectionLost(ctx, map[string][]byte{"gone/c": []byte("c lost"), "gone/first": []byte("c")}))
		require.NoError(t, c.OnConnectionLost(ctx, map[string][]byte{"gone/c/again": []byte("second will")}))
		// Alive: nothing is stored.
		n, err := other.NumKeys(ctx)
		require.NoError(t, err)
		assert.EqualValues(t, 1, n)

		cut()
		got, err := other.Get(ctx, "gone/c")
		require.NoError(t, err, "the will is stored once the connection is lost")
		assert.Equal(t, "c lost", string(got))
		got, err = other.Get(ctx, "gone/c/again")
		require.NoError(t, err)
		assert.Equal(t, "second will", string(got))
		got, err = other.Get(ctx, "gone/first")
		require.NoError(t, err)
		assert.Equal(t, "earlier", string(got), "a will does not overwrite a key that exists")
	})

	t.Run("client_close_withdraws", func(t *testing.T) {
		srv := newTestServer(t, ServerOptions{Token: "t"})
		ctx := ctxFor(t, 10*time.Second)
		c, _, err := dial(t, srv.Addr(), 5*time.Second, ClientOptions{Token: "t"})
		require.NoError(t, err)
		require.NoError(t, c.OnConnectionLost(ctx, map[string][]byte{"gone/c": []byte("c lost")}))
		require.NoError(t, c.Close())
		assert.ErrorIs(t, c.OnConnectionLost(ctx, map[string][]byte{"k": nil}), ErrClosed)

		other := dialTest(t, srv.Addr(), "t")
		wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err = other.Get(wctx, "gone/c")
		assert.ErrorIs(t, err, context.DeadlineExceeded, "Close withdraws the will")
	})

	t.Run("server_close_forgets", func(t *testing.T) {
		backing := NewMemory()
		defer backing.Close()
		srv, err := NewServer(ServerOptions{Token: "t", Backing: backing, Logger: quietLogger()})
		require.NoError(t, err)
		ctx := ctxFor(t, 10*time.Second)
		c := dialTest(t, srv.Addr(), "t")
		require.NoError(t, c.OnConnectionLost(ctx, map[string][]byte{"gone/c": []byte("c lost")}))
		closed := make(chan error, 1)
		go func() { closed <- srv.Close() }()
		select {
		case err := <-closed:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("the server's Close waited on an armed will")
		}
		n, err := backing.NumKeys(ctx)
		require.NoError(t, err)
		assert.EqualValues(t, 0, n, "a server that shuts down does not execute its clients' wills")
	})

	t.Run("older_server", func(t *testing.T) {
		// A store server without the Will call: ErrUnsupported, so that callers can tell.
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		g := grpc.NewServer()
		storepb.RegisterStoreServer(g, helloOnly{})
		go func() { _ = g.Serve(lis) }()
		t.Cleanup(g.Stop)
		c := dialTest(t, lis.Addr().String(), "")
		err = c.OnConnectionLost(ctxFor(t, 10*time.Second), map[string][]byte{"gone/c": nil})
		assert.ErrorIs(t, err, errors.ErrUnsupported)
		assert.ErrorContains(t, err, "older gccl")
	})

	t.Run("context_ends_first", func(t *testing.T) {
		srv := newTestServer(t, ServerOptions{Token: "t"})
		c := dialTest(t, srv.Addr(), "t")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := c.OnConnectionLost(ctx, map[string][]byte{"gone/c": nil})
		assert.ErrorIs(t, err, context.Canceled)
	})
}

// helloOnly is a store server that knows the handshake and nothing else.
type helloOnly struct {
	storepb.UnimplementedStoreServer
}

func (helloOnly) Hello(context.Context, *storepb.HelloRequest) (*storepb.HelloResponse, error) {
	return &storepb.HelloResponse{Magic: protocolMagic, ProtocolVersion: protocolVersion}, nil
}
