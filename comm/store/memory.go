package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// errNotInteger and errOverflow mark an Add that the value of the key
// forbids. The server maps them to codes.FailedPrecondition.
var (
	errNotInteger = errors.New("not a decimal int64")
	errOverflow   = errors.New("int64 overflow")
)

// Memory is an in-memory Store, safe for concurrent use. Get and Wait block
// without polling: each waiter sleeps on a channel that Set, Add and
// CompareAndSet close when they create or change the key it waits for.
//
// The zero value is not usable; call NewMemory.
type Memory struct {
	mu      sync.Mutex
	data    map[string][]byte
	waiters map[string]*waiter
	done    chan struct{} // closed by Close
	closed  bool
}

// waiter is the wake-up channel shared by everyone waiting for one key.
type waiter struct {
	ch    chan struct{} // closed when the key is written
	count int           // goroutines waiting on ch
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		data:    make(map[string][]byte),
		waiters: make(map[string]*waiter),
		done:    make(chan struct{}),
	}
}

// Set implements Store.
func (m *Memory) Set(_ context.Context, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("%w: set %q", ErrClosed, key)
	}
	m.storeLocked(key, bytes.Clone(value))
	return nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, fmt.Errorf("%w: get %q", ErrClosed, key)
		}
		if v, ok := m.data[key]; ok {
			m.mu.Unlock()
			return cloneNonNil(v), nil
		}
		w := m.waitLocked(key)
		m.mu.Unlock()

		select {
		case <-w.ch:
			// The key was written; loop to read it (it may already be
			// deleted again, in which case we wait once more).
		case <-m.done:
			// Loop: the closed check reports ErrClosed.
		case <-ctx.Done():
			m.unwait(key, w)
			return nil, fmt.Errorf("store: get %q: key not set after waiting %s: %w",
				key, roundDuration(time.Since(start)), ctx.Err())
		}
	}
}

// Add implements Store.
func (m *Memory) Add(_ context.Context, key string, delta int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("%w: add to %q", ErrClosed, key)
	}
	var current int64
	if v, ok := m.data[key]; ok {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("store: add %d to %q: current value %q is %w", delta, key, truncate(v), errNotInteger)
		}
		current = n
	}
	if (delta > 0 && current > math.MaxInt64-delta) || (delta < 0 && current < math.MinInt64-delta) {
		return 0, fmt.Errorf("store: add %d to %q: %d%+d is an %w", delta, key, current, delta, errOverflow)
	}
	current += delta
	m.storeLocked(key, strconv.AppendInt(nil, current, 10))
	return current, nil
}

// CompareAndSet implements Store. Unlike PyTorch's TCPStore, which returns
// expected when key is missing and expected is not empty, it returns an
// empty value in that case: nothing is stored.
func (m *Memory) CompareAndSet(_ context.Context, key string, expected, desired []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("%w: compare-and-set %q", ErrClosed, key)
	}
	current, ok := m.data[key]
	switch {
	case !ok && len(expected) == 0, ok && bytes.Equal(current, expected):
		v := bytes.Clone(desired)
		if v == nil {
			v = []byte{}
		}
		m.storeLocked(key, v)
		return bytes.Clone(v), nil
	case !ok:
		return []byte{}, nil
	default:
		return cloneNonNil(current), nil
	}
}

// Wait implements Store.
func (m *Memory) Wait(ctx context.Context, keys ...string) error {
	start := time.Now()
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return fmt.Errorf("%w: wait for %q", ErrClosed, keys)
		}
		missing := ""
		found := true
		for _, k := range keys {
			if _, ok := m.data[k]; !ok {
				missing, found = k, false
				break
			}
		}
		if found {
			m.mu.Unlock()
			return nil
		}
		w := m.waitLocked(missing)
		m.mu.Unlock()

		select {
		case <-w.ch:
		case <-m.done:
		case <-ctx.Done():
			m.unwait(missing, w)
			return fmt.Errorf("store: wait: keys %q not set after waiting %s: %w",
				m.missing(keys), roundDuration(time.Since(start)), ctx.Err())
		}
	}
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, fmt.Errorf("%w: delete %q", ErrClosed, key)
	}
	_, ok := m.data[key]
	delete(m.data, key)
	return ok, nil
}

// NumKeys implements Store.
func (m *Memory) NumKeys(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("%w: count keys", ErrClosed)
	}
	return int64(len(m.data)), nil
}

// Close drops every key and makes blocked and later calls fail with an
// error wrapping ErrClosed. Closing twice is a no-op.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.data = nil
	close(m.done)
	return nil
}

// storeLocked stores v (which the caller no longer references) and wakes
// the waiters of key. m.mu must be held.
func (m *Memory) storeLocked(key string, v []byte) {
	m.data[key] = v
	if w, ok := m.waiters[key]; ok {
		close(w.ch)
		delete(m.waiters, key)
	}
}

// waitLocked registers the caller as waiting for key. m.mu must be held.
func (m *Memory) waitLocked(key string) *waiter {
	w, ok := m.waiters[key]
	if !ok {
		w = &waiter{ch: make(chan struct{})}
		m.waiters[key] = w
	}
	w.count++
	return w
}

// unwait undoes waitLocked for a caller that gives up, dropping the waiter
// once nobody uses it so that keys that are never set do not leak.
func (m *Memory) unwait(key string, w *waiter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w.count--
	if w.count == 0 && m.waiters[key] == w {
		delete(m.waiters, key)
	}
}

// missing returns the keys that do not exist, for error messages.
func (m *Memory) missing(keys []string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, k := range keys {
		if _, ok := m.data[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// cloneNonNil copies v, returning an empty (not nil) slice for an empty
// value so that callers can tell "empty value" from "no value" by err alone.
func cloneNonNil(v []byte) []byte {
	if len(v) == 0 {
		return []byte{}
	}
	return bytes.Clone(v)
}

// truncate shortens a value for an error message.
func truncate(v []byte) []byte {
	const limit = 32
	if len(v) > limit {
		return append(v[:limit:limit], "..."...)
	}
	return v
}
