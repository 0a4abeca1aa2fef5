// Package peerconn connects every member of a process group to every other over TCP: the
// rendezvous that gloo's transport and xccl's liveness watch share. Each rank listens on the
// address backends.SocketHost picks, publishes it in the group's store, dials the lower ranks
// and accepts the higher ones; a hello (magic, rank, size, group name) refuses stray
// connections.
//
//	conns, err := peerconn.Connect(ctx, peerconn.Config{Group: cfg, KeyPrefix: "gloo/addr/", Magic: helloMagic})
//	// conns[p] is the connection to rank p (nil for this rank)
package peerconn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/gccl/gccl/backends"
)

// Config says which group to connect and how its connections are told apart from others'.
type Config struct {
	Group     backends.Config
	KeyPrefix string // store key of rank r's address: KeyPrefix + r
	Magic     uint32 // first word of the hello: a connection made for another use is refused
}

// Connect returns one connection per peer (nil at this rank's index), or an error after closing
// whatever it opened. ctx bounds the whole setup; its deadline passing is an error wrapping
// backends.ErrTimeout that lists the ranks that did not connect.
func Connect(ctx context.Context, cfg Config) ([]*net.TCPConn, error) {
	conns := make([]*net.TCPConn, cfg.Group.Size)
	if cfg.Group.Size == 1 {
		return conns, nil
	}
	if err := connect(ctx, cfg, conns); err != nil {
		CloseAll(conns)
		return nil, err
	}
	return conns, nil
}

// CloseAll closes every connection of conns (skipping the nil ones).
func CloseAll(conns []*net.TCPConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

func connect(ctx context.Context, cfg Config, conns []*net.TCPConn) error {
	g := cfg.Group
	log := g.Logger
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(backends.SocketHost(g.MasterAddr), "0"))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	if err := g.Store.Set(ctx, cfg.KeyPrefix+strconv.Itoa(g.Rank), []byte(ln.Addr().String())); err != nil {
		return fmt.Errorf("publishing address: %w", err)
	}
	type result struct {
		peer int
		c    *net.TCPConn
		err  error
	}
	results := make(chan result, g.Size)
	go func() { // accept the higher ranks
		if dl, ok := ctx.Deadline(); ok {
			_ = ln.(*net.TCPListener).SetDeadline(dl)
		}
		for accepted := g.Rank + 1; accepted < g.Size; {
			c, err := ln.Accept()
			if err != nil {
				results <- result{peer: -1, err: fmt.Errorf("accepting from higher ranks: %w", err)}
				return
			}
			peer, err := readHello(cfg, c)
			if err != nil {
				log.Warn("gccl: refused a connection", "group", g.Name, "from", c.RemoteAddr().String(), "err", err)
				c.Close()
				continue
			}
			accepted++
			results <- result{peer: peer, c: c.(*net.TCPConn)}
		}
	}()
	for peer := 0; peer < g.Rank; peer++ {
		go func() {
			c, err := dial(ctx, cfg, peer)
			results <- result{peer: peer, c: c, err: err}
		}()
	}
	ended := func() error {
		if errors.Is(ctx.Err(), context.Canceled) {
			return ctx.Err()
		}
		var missing []int
		for p, c := range conns {
			if c == nil && p != g.Rank {
				missing = append(missing, p)
			}
		}
		return fmt.Errorf("%w: ranks %v did not connect before the deadline; are all %d ranks running, with the same MASTER_ADDR/MASTER_PORT?",
			backends.ErrTimeout, missing, g.Size)
	}
	for range g.Size - 1 {
		var r result
		select {
		case r = <-results:
		case <-ctx.Done():
			return ended()
		}
		if r.err != nil {
			// The listener's deadline is ctx's, and may fire a moment before ctx says so.
			if dl, ok := ctx.Deadline(); ctx.Err() != nil || (ok && !time.Now().Before(dl)) {
				return ended()
			}
			return r.err
		}
		if conns[r.peer] != nil {
			r.c.Close()
			return fmt.Errorf("two connections claim to be rank %d", r.peer)
		}
		conns[r.peer] = r.c
	}
	return nil
}

// hello: magic, rank, size, and the group name.
func hello(cfg Config) []byte {
	g := cfg.Group
	b := make([]byte, 16, 16+len(g.Name))
	binary.LittleEndian.PutUint32(b[0:], cfg.Magic)
	binary.LittleEndian.PutUint32(b[4:], uint32(g.Rank))
	binary.LittleEndian.PutUint32(b[8:], uint32(g.Size))
	binary.LittleEndian.PutUint32(b[12:], uint32(len(g.Name)))
	return append(b, g.Name...)
}

func readHello(cfg Config, c net.Conn) (int, error) {
	g := cfg.Group
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var b [16]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, err
	}
	if binary.LittleEndian.Uint32(b[0:]) != cfg.Magic {
		return 0, errors.New("not a gccl peer of this group's kind (bad hello)")
	}
	rank := int(binary.LittleEndian.Uint32(b[4:]))
	size := int(binary.LittleEndian.Uint32(b[8:]))
	nameLen := int(binary.LittleEndian.Uint32(b[12:]))
	if nameLen > 4096 {
		return 0, errors.New("bad hello")
	}
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(c, name); err != nil {
		return 0, err
	}
	switch {
	case string(name) != g.Name:
		return 0, fmt.Errorf("hello for group %q, this is group %q", name, g.Name)
	case size != g.Size:
		return 0, fmt.Errorf("rank %d says the group has %d ranks, this rank says %d", rank, size, g.Size)
	case rank <= g.Rank || rank >= size:
		return 0, fmt.Errorf("unexpected rank %d in hello", rank)
	}
	return rank, nil
}

// dial connects to peer once its address is in the store, retrying with backoff until ctx ends.
func dial(ctx context.Context, cfg Config, peer int) (*net.TCPConn, error) {
	addr, err := cfg.Group.Store.Get(ctx, cfg.KeyPrefix+strconv.Itoa(peer))
	if err != nil {
		return nil, fmt.Errorf("waiting for rank %d's address: %w", peer, err)
	}
	var d net.Dialer
	delay := 5 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, "tcp", string(addr))
		if err == nil {
			if _, err = c.Write(hello(cfg)); err == nil {
				return c.(*net.TCPConn), nil
			}
			c.Close()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to rank %d at %s: %w", peer, addr, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}
