// Package store is gccl's rendezvous key-value store, the counterpart of
// PyTorch's TCPStore: the ranks of a job use it to exchange addresses and
// small metadata before they can talk to each other, and to count arrivals
// at barriers.
//
// A Store maps string keys to byte values. Get and Wait block until keys
// exist, so one rank can Set what another will read whenever it gets there.
// Add keeps a counter as decimal ASCII, like TCPStore, and CompareAndSet
// follows TCPStore's semantics. There are three implementations:
//
//   - Memory, in one process (tests, or the store a Server serves);
//   - Client, a connection to a Server, usually hosted by rank 0 or by the
//     launcher (`gccl run`; `gccl store` runs one alone);
//   - WithPrefix, which scopes the keys of another Store, one prefix per
//     process group.
//
// # Server and Client
//
// A Server serves a Store over gRPC (service gccl.store.v1.Store, defined in
// storepb/store.proto). It listens on loopback (127.0.0.1, any free port)
// unless ServerOptions.Addr says otherwise, and refuses every client that
// does not present its job token (gRPC metadata "gccl-token"). The
// transport is plain TCP without TLS: the store belongs on loopback or a
// cluster-internal network.
//
// Dial connects and checks, with a handshake, that the peer is a gccl store
// that accepts the token. While nothing listens yet it retries with backoff
// until its deadline (DefaultDialTimeout, 5 minutes, unless the context or
// ClientOptions.Timeout says otherwise), so ranks may start before the
// store. Errors say what went wrong and what to check, and wrap sentinels
// to branch on:
//
//   - ErrUnauthorized: wrong or missing job token (returned at once);
//   - ErrNotAStore: something else listens at the address;
//   - ErrClosed: the store, or the server behind a Client, was closed;
//   - ErrUnavailable: a Client lost its server without a clean close;
//   - context.DeadlineExceeded or context.Canceled: the context ended,
//     for example a Get for a key that no one set in time.
//
// A Client can leave a will with its Server (Client.OnConnectionLost): keys
// the server stores should the client's connection end without Close, as
// when its process dies. The other clients learn of the death by reading
// those keys; comm uses this to name a member that died on another host.
//
// # Example
//
// Rank 0 hosts the store on a port every rank knows (MASTER_ADDR and
// MASTER_PORT); every rank, rank 0 included, dials it, announces itself and
// reads what the others announced:
//
//	// rank 0
//	srv, err := store.NewServer(store.ServerOptions{Addr: ":29500", Token: token})
//	if err != nil {
//		return err
//	}
//	defer srv.Close()
//
//	// every rank
//	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
//	defer cancel()
//	st, err := store.Dial(ctx, net.JoinHostPort(masterAddr, "29500"), store.ClientOptions{Token: token})
//	if err != nil {
//		return err // names the address, how long it tried, and what to check
//	}
//	defer st.Close()
//	pg := store.WithPrefix(st, "pg0")
//	if err := pg.Set(ctx, fmt.Sprintf("addr/%d", rank), []byte(myAddr)); err != nil {
//		return err
//	}
//	if _, err := pg.Add(ctx, "arrived", 1); err != nil {
//		return err
//	}
//	peer, err := pg.Get(ctx, fmt.Sprintf("addr/%d", (rank+1)%world)) // waits for it
//
// Process groups share one store and keep apart with WithPrefix. The
// runnable examples show the same calls against Memory and a local Server.
package store
