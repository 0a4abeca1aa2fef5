package store

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoryClose(t *testing.T) {
	m := NewMemory()
	ctx := ctxFor(t, 5*time.Second)
	require.NoError(t, m.Set(ctx, "k", []byte("v")))

	blocked := make(chan error, 2)
	go func() {
		_, err := m.Get(context.Background(), "never/set")
		blocked <- err
	}()
	go func() { blocked <- m.Wait(context.Background(), "k", "never/set") }()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, m.Close())
	for range 2 {
		select {
		case err := <-blocked:
			assert.ErrorIs(t, err, ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("a blocked call did not return after Close")
		}
	}
	assert.NoError(t, m.Close(), "closing twice")

	tests := []struct {
		name string
		call func() error
	}{
		{"Set", func() error { return m.Set(ctx, "k", nil) }},
		{"Get existing key", func() error { _, err := m.Get(ctx, "k"); return err }},
		{"Add", func() error { _, err := m.Add(ctx, "k", 1); return err }},
		{"CompareAndSet", func() error { _, err := m.CompareAndSet(ctx, "k", nil, nil); return err }},
		{"Wait", func() error { return m.Wait(ctx, "k") }},
		{"Delete", func() error { _, err := m.Delete(ctx, "k"); return err }},
		{"NumKeys", func() error { _, err := m.NumKeys(ctx); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, tt.call(), ErrClosed)
		})
	}
}

func TestMemoryWakesEveryWaiter(t *testing.T) {
	m := NewMemory()
	ctx := ctxFor(t, 5*time.Second)
	const waiters = 100
	var wg sync.WaitGroup
	for range waiters {
		wg.Go(func() {
			v, err := m.Get(ctx, "k")
			assert.NoError(t, err)
			assert.Equal(t, "v", string(v))
		})
	}
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, m.Set(ctx, "k", []byte("v")))
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	assert.Empty(t, m.waiters, "woken waiters are dropped")
}

func TestMemoryDropsAbandonedWaiters(t *testing.T) {
	m := NewMemory()
	for _, key := range []string{"a", "b", "c"} {
		short := ctxFor(t, 10*time.Millisecond)
		_, err := m.Get(short, key)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, m.Wait(ctxFor(t, 10*time.Millisecond), "x", key), context.DeadlineExceeded)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	assert.Empty(t, m.waiters, "waiters that gave up must not leak")
}

func TestMemoryAddOverflow(t *testing.T) {
	tests := []struct {
		name    string
		start   int64
		delta   int64
		wantErr bool
	}{
		{"max", math.MaxInt64 - 1, 1, false},
		{"past max", math.MaxInt64, 1, true},
		{"min", math.MinInt64 + 1, -1, false},
		{"past min", math.MinInt64, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory()
			ctx := ctxFor(t, time.Second)
			_, err := m.Add(ctx, "n", tt.start)
			require.NoError(t, err)
			got, err := m.Add(ctx, "n", tt.delta)
			if tt.wantErr {
				require.ErrorIs(t, err, errOverflow)
				now, err := m.Add(ctx, "n", 0)
				require.NoError(t, err)
				assert.Equal(t, tt.start, now, "a failed Add leaves the value alone")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.start+tt.delta, got)
		})
	}
}
