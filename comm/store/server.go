package store

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/gccl/gccl/comm/store/storepb"
)

const (
	// TokenMetadataKey is the gRPC metadata key that carries the job token.
	TokenMetadataKey = "gccl-token"

	// TokenEnv is the environment variable that, by gccl convention, holds
	// the job token. This package does not read it: the launcher and comm
	// pass the token explicitly in ServerOptions.Token and
	// ClientOptions.Token.
	TokenEnv = "GCCL_TOKEN"

	// DefaultAddr is the address a Server listens on unless
	// ServerOptions.Addr says otherwise: loopback, any free port.
	DefaultAddr = "127.0.0.1:0"

	// MaxMessageBytes bounds one request or response, and so one value,
	// sent between a Client and a Server.
	MaxMessageBytes = 64 << 20

	protocolMagic   = "gccl-store"
	protocolVersion = 1

	// serverClosingMessage is the status message of the codes.Unavailable
	// a closing Server answers, which a Client turns into ErrClosed.
	serverClosingMessage = "gccl store server is shutting down"

	// closeGrace bounds how long Close waits for in-flight responses to
	// reach their clients before cutting the connections.
	closeGrace = 2 * time.Second
)

// ServerOptions configures NewServer. The zero value is a loopback server on
// a free port, with an in-memory backing store, that accepts only clients
// sending no token.
type ServerOptions struct {
	// Addr is the TCP address to listen on. Default DefaultAddr
	// ("127.0.0.1:0"): loopback only, any free port. Set it to ":29500" or
	// "0.0.0.0:29500" to accept ranks on other hosts.
	Addr string

	// Token is the job token every client must present in the gRPC metadata
	// key "gccl-token" (ClientOptions.Token). A client presenting another
	// token, or none, is refused with codes.Unauthenticated. An empty Token
	// accepts only clients that send an empty token.
	Token string

	// Backing holds the keys. Default: a new Memory, which Close closes. A
	// Backing passed in is not closed by Close: the caller owns it.
	Backing Store

	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// Server serves a Store over gRPC to Clients. It listens as soon as
// NewServer returns and serves in the background until Close.
//
// The transport is plain TCP without TLS (insecure gRPC credentials): the
// store is meant for loopback or a cluster-internal network, and the job
// token keeps out other jobs and stray clients, not an attacker who can read
// the traffic.
type Server struct {
	lis         net.Listener
	grpc        *grpc.Server
	backing     Store
	ownsBacking bool
	token       []byte
	log         *slog.Logger

	// ctx ends when Close starts; every RPC's context is cancelled with it.
	ctx    context.Context
	cancel context.CancelFunc

	served    chan struct{} // closed when grpc.Serve returns
	closeOnce sync.Once
	closeErr  error
}

// NewServer listens on opts.Addr and serves the store in the background.
func NewServer(opts ServerOptions) (*Server, error) {
	addr := opts.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	backing, owns := opts.Backing, false
	if backing == nil {
		backing, owns = NewMemory(), true
	}

	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("store: listen on %s: %w; is another store or job already using this port?", addr, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		lis:         lis,
		backing:     backing,
		ownsBacking: owns,
		token:       []byte(opts.Token),
		log:         log.With("component", "store-server", "addr", lis.Addr().String()),
		ctx:         ctx,
		cancel:      cancel,
		served:      make(chan struct{}),
	}
	s.grpc = grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.intercept),
		grpc.ChainStreamInterceptor(s.interceptStream),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		// Ping idle clients so that a Get blocked for a dead client is
		// cancelled; allow the clients' own pings (see Dial).
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	storepb.RegisterStoreServer(s.grpc, &service{s: s})

	go func() {
		defer close(s.served)
		if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("store server stopped serving", "err", err)
		}
	}()
	s.log.Info("store server listening", "token_required", opts.Token != "")
	return s, nil
}

// Addr returns the address the server listens on, as "host:port", with the
// actual port when ServerOptions.Addr asked for port 0.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Close stops the server. Calls blocked in it (a Client's Get or Wait for a
// key nobody will set) fail at once with an error wrapping ErrClosed; later
// calls fail with ErrClosed or ErrUnavailable. Close closes the backing
// store only if the server created it. Closing twice is a no-op.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		stopped := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(closeGrace):
			s.log.Warn("store server: in-flight calls did not finish in time; cutting connections", "grace", closeGrace)
			s.grpc.Stop()
			<-stopped
		}
		<-s.served
		if s.ownsBacking {
			if err := s.backing.Close(); err != nil {
				s.closeErr = fmt.Errorf("store: close server %s: %w", s.Addr(), err)
			}
		}
		s.log.Info("store server closed")
	})
	return s.closeErr
}

// intercept checks the token of every call, and cancels the call's context
// when the server closes so that blocked Gets and Waits return.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.admit(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.ctx, func() { cancel(ErrClosed) })
	defer stop()

	resp, err := handler(ctx, req)
	if err != nil {
		if errors.Is(context.Cause(ctx), ErrClosed) || errors.Is(err, ErrClosed) {
			return nil, status.Error(codes.Unavailable, serverClosingMessage)
		}
		return nil, toStatus(err)
	}
	return resp, nil
}

// interceptStream checks the token of every streaming call (Will).
func (s *Server) interceptStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.admit(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// admit refuses a call while the server closes, or without the job token.
func (s *Server) admit(ctx context.Context, method string) error {
	if s.ctx.Err() != nil {
		return status.Error(codes.Unavailable, serverClosingMessage)
	}
	return s.checkToken(ctx, method)
}

func (s *Server) checkToken(ctx context.Context, method string) error {
	var got string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(TokenMetadataKey); len(v) > 0 {
			got = v[0]
		}
	}
	if subtle.ConstantTimeCompare([]byte(got), s.token) == 1 {
		return nil
	}
	reason := "wrong job token"
	switch {
	case got == "":
		reason = "no job token sent; this store requires one"
	case len(s.token) == 0:
		reason = "a job token was sent, but this store takes none"
	}
	from := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = p.Addr.String()
	}
	s.log.Warn("store server refused a client", "peer", from, "method", method, "reason", reason)
	return status.Error(codes.Unauthenticated, reason)
}

// toStatus turns an error of the backing store into a gRPC status. The
// client rebuilds its own message; the status message keeps the backing's
// message without its "store: " prefix.
func toStatus(err error) error {
	msg := strings.TrimPrefix(err.Error(), "store: ")
	var code codes.Code
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, errNotInteger), errors.Is(err, errOverflow):
		code = codes.FailedPrecondition
	default:
		if st, ok := status.FromError(err); ok {
			return st.Err()
		}
		code = codes.Unknown
	}
	return status.Error(code, msg)
}

// service adapts the backing Store to the generated gRPC interface.
type service struct {
	storepb.UnimplementedStoreServer
	s *Server
}

func (v *service) Hello(context.Context, *storepb.HelloRequest) (*storepb.HelloResponse, error) {
	return &storepb.HelloResponse{Magic: protocolMagic, ProtocolVersion: protocolVersion}, nil
}

func (v *service) Set(ctx context.Context, req *storepb.SetRequest) (*storepb.SetResponse, error) {
	if err := v.s.backing.Set(ctx, string(req.GetKey()), req.GetValue()); err != nil {
		return nil, err
	}
	return &storepb.SetResponse{}, nil
}

func (v *service) Get(ctx context.Context, req *storepb.GetRequest) (*storepb.GetResponse, error) {
	value, err := v.s.backing.Get(ctx, string(req.GetKey()))
	if err != nil {
		return nil, err
	}
	return &storepb.GetResponse{Value: value}, nil
}

func (v *service) Add(ctx context.Context, req *storepb.AddRequest) (*storepb.AddResponse, error) {
	n, err := v.s.backing.Add(ctx, string(req.GetKey()), req.GetDelta())
	if err != nil {
		return nil, err
	}
	return &storepb.AddResponse{Value: n}, nil
}

func (v *service) CompareAndSet(ctx context.Context, req *storepb.CompareAndSetRequest) (*storepb.CompareAndSetResponse, error) {
	value, err := v.s.backing.CompareAndSet(ctx, string(req.GetKey()), req.GetExpected(), req.GetDesired())
	if err != nil {
		return nil, err
	}
	return &storepb.CompareAndSetResponse{Value: value}, nil
}

func (v *service) Wait(ctx context.Context, req *storepb.WaitRequest) (*storepb.WaitResponse, error) {
	keys := make([]string, len(req.GetKeys()))
	for i, k := range req.GetKeys() {
		keys[i] = string(k)
	}
	if err := v.s.backing.Wait(ctx, keys...); err != nil {
		return nil, err
	}
	return &storepb.WaitResponse{}, nil
}

func (v *service) Delete(ctx context.Context, req *storepb.DeleteRequest) (*storepb.DeleteResponse, error) {
	existed, err := v.s.backing.Delete(ctx, string(req.GetKey()))
	if err != nil {
		return nil, err
	}
	return &storepb.DeleteResponse{Existed: existed}, nil
}

func (v *service) NumKeys(ctx context.Context, _ *storepb.NumKeysRequest) (*storepb.NumKeysResponse, error) {
	n, err := v.s.backing.NumKeys(ctx)
	if err != nil {
		return nil, err
	}
	return &storepb.NumKeysResponse{Count: n}, nil
}

// Will arms a client's will (see Client.OnConnectionLost): once the call ends otherwise than by
// the client's half-close, while the server is not shutting down, each entry is stored unless
// its key exists.
func (v *service) Will(stream storepb.Store_WillServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := stream.Send(&storepb.WillResponse{}); err != nil {
		v.execute(req, err)
		return err
	}
	// Wait for the call to end; the server's Close must not wait for it (GracefulStop waits for
	// open calls).
	ended := make(chan error, 1)
	go func() {
		_, err := stream.Recv()
		ended <- err
	}()
	select {
	case err = <-ended:
	case <-v.s.ctx.Done():
		return status.Error(codes.Unavailable, serverClosingMessage)
	}
	switch {
	case err == io.EOF:
		return nil // withdrawn
	case err == nil:
		return status.Error(codes.InvalidArgument, "a will takes one request; send another call for more entries")
	}
	v.execute(req, err)
	return err
}

// execute stores the entries of a will whose call ended with err, unless the server is
// shutting down (the client did not go: the server did).
func (v *service) execute(req *storepb.WillRequest, err error) {
	if v.s.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys := make([]string, 0, len(req.GetEntries()))
	for _, e := range req.GetEntries() {
		if _, cerr := v.s.backing.CompareAndSet(ctx, string(e.GetKey()), nil, e.GetValue()); cerr != nil {
			v.s.log.Warn("store server: cannot store a lost client's will", "key", string(e.GetKey()), "err", cerr)
			continue
		}
		keys = append(keys, string(e.GetKey()))
	}
	v.s.log.Debug("store server: a client's connection was lost; its will is stored", "keys", keys, "ended", err)
}
