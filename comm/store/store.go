package store

import (
	"context"
	"errors"
	"time"
)

// Store is a rendezvous key-value store shared by every rank of a job.
//
// All methods are safe for concurrent use. Values are opaque bytes, except
// for keys used with Add, which hold a decimal integer in ASCII ("3", "-12"),
// as in PyTorch's TCPStore. Stores copy values on the way in and out: a
// caller may reuse or modify a slice after passing it to Set, and owns the
// slice Get returns.
type Store interface {
	// Set stores value under key, replacing any previous value, and wakes
	// every Get and Wait waiting for key.
	Set(ctx context.Context, key string, value []byte) error

	// Get returns the value of key, waiting until the key exists. If ctx
	// ends first, Get returns an error that wraps ctx.Err() and names the key
	// and how long it waited.
	Get(ctx context.Context, key string) ([]byte, error)

	// Add atomically adds delta to the integer stored under key and returns
	// the new value. The value is stored as decimal ASCII, so a later Get of
	// key returns for example "3". A missing key starts at 0. If key holds
	// something that is not a decimal int64, or the sum overflows, Add
	// returns an error and leaves the value unchanged.
	Add(ctx context.Context, key string, delta int64) (int64, error)

	// CompareAndSet stores desired under key if the current value equals
	// expected, or if key is missing and expected is empty (len 0). It
	// returns the value stored after the call: desired if it was stored,
	// otherwise the unchanged current value (empty if key is missing).
	CompareAndSet(ctx context.Context, key string, expected, desired []byte) ([]byte, error)

	// Wait returns once every key exists. If ctx ends first, it returns an
	// error that wraps ctx.Err() and names the keys still missing.
	Wait(ctx context.Context, keys ...string) error

	// Delete removes key and reports whether it existed.
	Delete(ctx context.Context, key string) (bool, error)

	// NumKeys returns the number of keys in the store.
	NumKeys(ctx context.Context) (int64, error)

	// Close releases the store. Operations after Close, and Gets and Waits
	// blocked in it, fail with an error wrapping ErrClosed. What Close does
	// to shared state depends on the implementation: see Memory.Close,
	// Client.Close and WithPrefix.
	Close() error
}

var (
	// ErrUnauthorized means the store refused the job token: the client sent
	// a wrong token, or none where one is required.
	ErrUnauthorized = errors.New("store: token refused")

	// ErrNotAStore means something answers at the address, but it is not a
	// gccl store (another server, another protocol, or a listener that
	// drops connections).
	ErrNotAStore = errors.New("store: not a gccl store")

	// ErrClosed means the store was closed: this Store value by its Close
	// method, or, for a Client, the server it talks to by Server.Close.
	ErrClosed = errors.New("store: closed")

	// ErrUnavailable means a Client lost its connection to the store server
	// without the server closing cleanly (the server process died, or the
	// network between them failed).
	ErrUnavailable = errors.New("store: server unreachable")
)

// roundDuration rounds d for error messages: milliseconds below a second,
// tenths of a second above.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
