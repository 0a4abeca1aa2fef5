package peerconn

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/comm/store"
)

// TestConnect: three ranks (goroutines of this process, as a unit test may) connect pairwise,
// after a stray connection with the wrong magic has been refused; each connection reaches the
// right peer.
func TestConnect(t *testing.T) {
	st := store.NewMemory()
	const n = 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := func(r int) Config {
		return Config{Group: backends.Config{Rank: r, Size: n, Name: "g", Store: st}, KeyPrefix: "test/addr/", Magic: 0x1234}
	}
	type result struct {
		conns []*net.TCPConn
		err   error
	}
	results := make([]chan result, n)
	start := func(r int) {
		results[r] = make(chan result, 1)
		go func() {
			c, err := Connect(ctx, cfg(r))
			results[r] <- result{c, err}
		}()
	}
	// Rank 0 first, then a stray client with another magic at its address: refused. Ranks 1
	// and 2 start only then, so rank 0's listener is still open for the stray (it closes once
	// the genuine ranks are in), and rank 0 must still accept them after the refusal.
	start(0)
	addr, err := st.Get(ctx, "test/addr/0")
	require.NoError(t, err)
	stray, err := net.Dial("tcp", string(addr))
	require.NoError(t, err)
	_, _ = stray.Write(hello(Config{Group: backends.Config{Rank: 2, Size: n, Name: "g"}, Magic: 0x9999}))
	_ = stray.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(stray)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "rank 0 must close the stray connection (EOF or reset), got %v", err)
	stray.Close()
	for r := 1; r < n; r++ {
		start(r)
	}

	conns := make([][]*net.TCPConn, n)
	for r := range n {
		res := <-results[r]
		require.NoError(t, res.err, "rank %d", r)
		conns[r] = res.conns
		assert.Nil(t, res.conns[r], "no connection to itself")
	}
	// A byte from rank a to rank b arrives on b's connection to a.
	for a := range n {
		for b := range n {
			if a == b {
				continue
			}
			_, err := conns[a][b].Write([]byte{byte(10*a + b)})
			require.NoError(t, err)
			var got [1]byte
			_, err = io.ReadFull(conns[b][a], got[:])
			require.NoError(t, err)
			assert.Equal(t, byte(10*a+b), got[0])
		}
	}
	for _, cs := range conns {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	}
}

// TestConnectTimeout: a rank whose peer never comes fails at the deadline with ErrTimeout,
// naming the missing rank.
func TestConnectTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Connect(ctx, Config{Group: backends.Config{Rank: 0, Size: 2, Name: "g", Store: store.NewMemory()}, KeyPrefix: "k/", Magic: 1})
	require.ErrorIs(t, err, backends.ErrTimeout)
	assert.Contains(t, err.Error(), "ranks [1] did not connect")
}
