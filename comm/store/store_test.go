package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quietLogger keeps test output readable.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newTestServer starts a loopback Server with token and closes it when the
// test ends.
func newTestServer(t *testing.T, opts ServerOptions) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	srv, err := NewServer(opts)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	return srv
}

// dialTest dials addr with token and closes the client when the test ends.
func dialTest(t *testing.T, addr, token string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, ClientOptions{Token: token, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	return c
}

// implementations are the Stores the behavioural suite runs against. Each
// factory returns a fresh, empty store.
var implementations = []struct {
	name string
	new  func(t *testing.T) Store
}{
	{"Memory", func(t *testing.T) Store {
		m := NewMemory()
		t.Cleanup(func() { assert.NoError(t, m.Close()) })
		return m
	}},
	{"WithPrefix(Memory)", func(t *testing.T) Store {
		m := NewMemory()
		t.Cleanup(func() { assert.NoError(t, m.Close()) })
		return WithPrefix(m, "pg0")
	}},
	{"Client-Server", func(t *testing.T) Store {
		srv := newTestServer(t, ServerOptions{Token: "job-token"})
		return dialTest(t, srv.Addr(), "job-token")
	}},
	{"WithPrefix(Client-Server)", func(t *testing.T) Store {
		srv := newTestServer(t, ServerOptions{Token: "job-token"})
		return WithPrefix(dialTest(t, srv.Addr(), "job-token"), "pg1")
	}},
}

// behaviours is the suite every Store must pass.
var behaviours = []struct {
	name string
	run  func(t *testing.T, s Store)
}{
	{"SetGet", testSetGet},
	{"ValuesAreCopied", testValuesAreCopied},
	{"LargeValue", testLargeValue},
	{"GetWaitsForLaterSet", testGetWaitsForLaterSet},
	{"GetTimesOut", testGetTimesOut},
	{"GetCancelled", testGetCancelled},
	{"AddConcurrent", testAddConcurrent},
	{"Add", testAdd},
	{"CompareAndSet", testCompareAndSet},
	{"Wait", testWait},
	{"WaitTimesOut", testWaitTimesOut},
	{"Delete", testDelete},
	{"NumKeys", testNumKeys},
	{"PrefixIsolation", testPrefixIsolation},
}

func TestStore(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			for _, b := range behaviours {
				t.Run(b.name, func(t *testing.T) {
					t.Parallel()
					b.run(t, impl.new(t))
				})
			}
		})
	}
}

// setLater sets key to value from another goroutine after delay. The test
// waits for it before its store is closed.
func setLater(t *testing.T, s Store, delay time.Duration, key, value string) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		time.Sleep(delay)
		assert.NoError(t, s.Set(context.Background(), key, []byte(value)))
	}()
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testSetGet(t *testing.T, s Store) {
	ctx := ctxFor(t, 10*time.Second)
	tests := []struct {
		name  string
		key   string
		value []byte
	}{
		{"text", "addr/0", []byte("10.0.0.1:4242")},
		{"binary", "blob", []byte{0, 1, 2, 0xff, 0xfe}},
		{"empty value", "empty", []byte{}},
		{"nil value", "nil", nil},
		{"key not UTF-8", "k\xff\xfe", []byte("v")},
		{"empty key", "", []byte("root")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, s.Set(ctx, tt.key, tt.value))
			got, err := s.Get(ctx, tt.key)
			require.NoError(t, err)
			assert.NotNil(t, got, "an existing key returns a non-nil value")
			assert.Equal(t, string(tt.value), string(got))
		})
	}

	require.NoError(t, s.Set(ctx, "addr/0", []byte("overwritten")))
	got, err := s.Get(ctx, "addr/0")
	require.NoError(t, err)
	assert.Equal(t, "overwritten", string(got))
}

func testValuesAreCopied(t *testing.T, s Store) {
	ctx := ctxFor(t, 10*time.Second)
	v := []byte("abc")
	require.NoError(t, s.Set(ctx, "k", v))
	v[0] = 'X'
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "abc", string(got), "Set must copy the value")
	got[0] = 'Y'
	again, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "abc", string(again), "Get must return a copy")
}

func testLargeValue(t *testing.T, s Store) {
	ctx := ctxFor(t, 20*time.Second)
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16+3) // a bit over 4 MiB
	require.NoError(t, s.Set(ctx, "big", big))
	got, err := s.Get(ctx, "big")
	require.NoError(t, err)
	assert.True(t, bytes.Equal(big, got), "large value differs after a round trip (len %d, want %d)", len(got), len(big))
}

func testGetWaitsForLaterSet(t *testing.T, s Store) {
	ctx := ctxFor(t, 10*time.Second)
	setLater(t, s, 50*time.Millisecond, "late", "here")
	got, err := s.Get(ctx, "late")
	require.NoError(t, err)
	assert.Equal(t, "here", string(got))
}

func testGetTimesOut(t *testing.T, s Store) {
	ctx := ctxFor(t, 100*time.Millisecond)
	start := time.Now()
	_, err := s.Get(ctx, "never/set")
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), `never/set"`, "the error names the key (prefixed, through WithPrefix)")
	assert.Contains(t, err.Error(), "after waiting", "the error says how long it waited")
	assert.Less(t, time.Since(start), 5*time.Second, "Get outlived its deadline")
}

func testGetCancelled(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err := s.Get(ctx, "never/set")
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 5*time.Second, "Get ignored its cancellation")
}

func testAddConcurrent(t *testing.T, s Store) {
	ctx := ctxFor(t, 20*time.Second)
	const goroutines, adds = 50, 20
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range adds {
				_, err := s.Add(ctx, "counter", 1)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	got, err := s.Get(ctx, "counter")
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(goroutines*adds), string(got))
}

func testAdd(t *testing.T, s Store) {
	ctx := ctxFor(t, 10*time.Second)
	require.NoError(t, s.Set(ctx, "text", []byte("abc")))
	require.NoError(t, s.Set(ctx, "preset", []byte("40")))
	tests := []struct {
		name    string
		key     string
		delta   int64
		want    int64
		wantErr bool
	}{
		{"missing key starts at 0", "n", 3, 3, false},
		{"adds to the value", "n", 4, 7, false},
		{"negative delta", "n", -10, -3, false},
		{"zero delta reads", "n", 0, -3, false},
		{"value set by Set", "preset", 2, 42, false},
		{"non-numeric value", "text", 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Add(ctx, tt.key, tt.delta)
			if tt.wantErr {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.key+`"`, "the error names the key")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			stored, err := s.Get(ctx, tt.key)
			require.NoError(t, err)
			assert.Equal(t, strconv.FormatInt(tt.want, 10), string(stored), "stored as decimal ASCII")
		})
	}
	stored, err := s.Get(ctx, "text")
	require.NoError(t, err)
	assert.Equal(t, "abc", string(stored), "a failed Add leaves the value alone")
}

func testCompareAndSet(t *testing.T, s Store) {
	ctx := ctxFor(t, 10*time.Second)
	require.NoError(t, s.Set(ctx, "present", []byte("old")))
	tests := []struct {
		name       string
		key        string
		expected   string
		desired    string
		want       string // returned value
		wantStored *string
	}{
		{"missing key, empty expected: sets", "fresh", "", "first", "first", ptr("first")},
		{"missing key, non-empty expected: no change", "absent", "x", "y", "", nil},
		{"mismatch: returns current", "present", "other", "new", "old", ptr("old")},
		{"match: sets", "present", "old", "new", "new", ptr("new")},
		{"empty expected on existing key: mismatch", "present", "", "newer", "new", ptr("new")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.CompareAndSet(ctx, tt.key, []byte(tt.expected), []byte(tt.desired))
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(got))
			if tt.wantStored == nil {
				short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				defer cancel()
				_, err := s.Get(short, tt.key)
				assert.ErrorIs(t, err, context.DeadlineExceeded, "key must stay missing")
				return
			}
			stored, err := s.Get(ctx, tt.key)
			require.NoError(t, err)
			assert.Equal(t, *tt.wantStored, string(stored))
		})
	}
}

func ptr(s string) *string { return &s }

func testWait(t *testing.T, s Store) {
	ctx := ctxFor(t, 10*time.Second)
	require.NoError(t, s.Wait(ctx), "waiting for no keys returns at once")
	keys := []string{"rank/0", "rank/1", "rank/2"}
	for i, k := range keys {
		setLater(t, s, time.Duration(len(keys)-i)*20*time.Millisecond, k, "up")
	}
	require.NoError(t, s.Wait(ctx, keys...))
	for _, k := range keys {
		v, err := s.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, "up", string(v))
	}
}

func testWaitTimesOut(t *testing.T, s Store) {
	ctx := ctxFor(t, 10*time.Second)
	require.NoError(t, s.Set(ctx, "here", []byte("1")))
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err := s.Wait(short, "here", "missing")
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), `missing"`, "the error names the missing key")
}

func testDelete(t *testing.T, s Store) {
	ctx := ctxFor(t, 10*time.Second)
	require.NoError(t, s.Set(ctx, "k", []byte("v")))
	existed, err := s.Delete(ctx, "k")
	require.NoError(t, err)
	assert.True(t, existed)
	existed, err = s.Delete(ctx, "k")
	require.NoError(t, err)
	assert.False(t, existed, "second delete")

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = s.Get(short, "k")
	assert.ErrorIs(t, err, context.DeadlineExceeded, "deleted key is gone")

	// A Get blocked on a deleted key sees it when it is set again.
	setLater(t, s, 20*time.Millisecond, "k", "again")
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "again", string(got))
}

func testNumKeys(t *testing.T, s Store) {
	ctx := ctxFor(t, 10*time.Second)
	count := func() int64 {
		t.Helper()
		n, err := s.NumKeys(ctx)
		require.NoError(t, err)
		return n
	}
	assert.Equal(t, int64(0), count())
	for i := range 3 {
		require.NoError(t, s.Set(ctx, fmt.Sprintf("k%d", i), []byte("v")))
	}
	require.NoError(t, s.Set(ctx, "k0", []byte("overwrite")))
	assert.Equal(t, int64(3), count())
	_, err := s.Add(ctx, "counter", 1)
	require.NoError(t, err)
	assert.Equal(t, int64(4), count())
	_, err = s.Delete(ctx, "k1")
	require.NoError(t, err)
	assert.Equal(t, int64(3), count())
}

func testPrefixIsolation(t *testing.T, s Store) {
	ctx := ctxFor(t, 10*time.Second)
	a, b := WithPrefix(s, "a"), WithPrefix(s, "b")
	require.NoError(t, a.Set(ctx, "k", []byte("from a")))
	require.NoError(t, b.Set(ctx, "k", []byte("from b")))
	_, err := a.Add(ctx, "n", 5)
	require.NoError(t, err)

	got, err := a.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "from a", string(got))
	got, err = b.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "from b", string(got))

	got, err = s.Get(ctx, "a/k")
	require.NoError(t, err)
	assert.Equal(t, "from a", string(got), "prefix store keys live under prefix/")

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = b.Get(short, "n")
	assert.ErrorIs(t, err, context.DeadlineExceeded, "b must not see a's keys")
	require.NoError(t, a.Wait(ctx, "k", "n"))

	nested := WithPrefix(a, "sub")
	require.NoError(t, nested.Set(ctx, "k", []byte("nested")))
	got, err = s.Get(ctx, "a/sub/k")
	require.NoError(t, err)
	assert.Equal(t, "nested", string(got))

	existed, err := b.Delete(ctx, "k")
	require.NoError(t, err)
	assert.True(t, existed)
	got, err = a.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "from a", string(got), "deleting b's key leaves a's")

	total, err := s.NumKeys(ctx)
	require.NoError(t, err)
	viaPrefix, err := a.NumKeys(ctx)
	require.NoError(t, err)
	assert.Equal(t, total, viaPrefix, "NumKeys through a prefix counts the underlying store")

	require.NoError(t, a.Close())
	_, err = s.Get(ctx, "a/k")
	assert.NoError(t, err, "closing a prefix store leaves the underlying store open")
}
