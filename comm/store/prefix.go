package store

import "context"

// WithPrefix returns a Store that scopes every key of s under prefix: key
// becomes prefix + "/" + key, as in PyTorch's PrefixStore. Stores with
// different prefixes over the same s do not see each other's keys.
// Prefixes nest: WithPrefix(WithPrefix(s, "a"), "b") stores key under
// "a/b/key".
//
// NumKeys returns the number of keys in the whole underlying store, not
// only those under prefix, like PrefixStore (counting by prefix would need
// a scan the Store interface does not offer).
//
// Close does not close s, which the caller still owns: it is a no-op that
// returns nil, and the returned Store keeps working for as long as s does.
// Errors name the full, prefixed key.
func WithPrefix(s Store, prefix string) Store {
	return &prefixStore{s: s, prefix: prefix + "/"}
}

type prefixStore struct {
	s      Store
	prefix string // with the trailing "/"
}

func (p *prefixStore) key(k string) string { return p.prefix + k }

func (p *prefixStore) Set(ctx context.Context, key string, value []byte) error {
	return p.s.Set(ctx, p.key(key), value)
}

func (p *prefixStore) Get(ctx context.Context, key string) ([]byte, error) {
	return p.s.Get(ctx, p.key(key))
}

func (p *prefixStore) Add(ctx context.Context, key string, delta int64) (int64, error) {
	return p.s.Add(ctx, p.key(key), delta)
}

func (p *prefixStore) CompareAndSet(ctx context.Context, key string, expected, desired []byte) ([]byte, error) {
	return p.s.CompareAndSet(ctx, p.key(key), expected, desired)
}

func (p *prefixStore) Wait(ctx context.Context, keys ...string) error {
	scoped := make([]string, len(keys))
	for i, k := range keys {
		scoped[i] = p.key(k)
	}
	return p.s.Wait(ctx, scoped...)
}

func (p *prefixStore) Delete(ctx context.Context, key string) (bool, error) {
	return p.s.Delete(ctx, p.key(key))
}

func (p *prefixStore) NumKeys(ctx context.Context) (int64, error) {
	return p.s.NumKeys(ctx)
}

func (p *prefixStore) Close() error { return nil }
