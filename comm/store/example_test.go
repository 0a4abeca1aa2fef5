package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gccl/gccl/comm/store"
)

// Ranks exchange addresses through a store: Get waits until the key is set.
func ExampleNewMemory() {
	ctx := context.Background()
	s := store.NewMemory()
	defer s.Close()

	go func() {
		time.Sleep(10 * time.Millisecond) // rank 1 gets there late
		_ = s.Set(ctx, "addr/1", []byte("10.0.0.2:4242"))
	}()
	addr, err := s.Get(ctx, "addr/1") // blocks until rank 1 has set it
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(addr))
	// Output: 10.0.0.2:4242
}

// Add counts arrivals, as decimal ASCII like PyTorch's TCPStore.
func ExampleMemory_Add() {
	ctx := context.Background()
	s := store.NewMemory()
	defer s.Close()

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _, _ = s.Add(ctx, "arrived", 1) })
	}
	wg.Wait()
	n, _ := s.Add(ctx, "arrived", 0)
	raw, _ := s.Get(ctx, "arrived")
	fmt.Println(n, string(raw))
	// Output: 4 4
}

// CompareAndSet elects a leader: only the first rank to try finds the key
// missing.
func ExampleMemory_CompareAndSet() {
	ctx := context.Background()
	s := store.NewMemory()
	defer s.Close()

	for _, rank := range []string{"rank 2", "rank 0", "rank 1"} {
		leader, _ := s.CompareAndSet(ctx, "leader", nil, []byte(rank))
		fmt.Printf("%s sees leader %s\n", rank, leader)
	}
	// Output:
	// rank 2 sees leader rank 2
	// rank 0 sees leader rank 2
	// rank 1 sees leader rank 2
}

// Wait returns once every key is set; its context bounds the wait.
func ExampleMemory_Wait() {
	s := store.NewMemory()
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()

	_ = s.Set(ctx, "ready/0", nil)
	err := s.Wait(ctx, "ready/0", "ready/1")
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output: true
}

// Process groups share one store and keep their keys apart with prefixes.
func ExampleWithPrefix() {
	ctx := context.Background()
	s := store.NewMemory()
	defer s.Close()

	pg0 := store.WithPrefix(s, "pg0")
	pg1 := store.WithPrefix(s, "pg1")
	_ = pg0.Set(ctx, "size", []byte("8"))
	_ = pg1.Set(ctx, "size", []byte("2"))

	a, _ := pg0.Get(ctx, "size")
	b, _ := pg1.Get(ctx, "size")
	raw, _ := s.Get(ctx, "pg1/size")
	n, _ := pg0.NumKeys(ctx) // counts the whole underlying store
	fmt.Println(string(a), string(b), string(raw), n)
	// Output: 8 2 2 2
}

// One process hosts the store; every rank dials it with the job token.
func ExampleNewServer() {
	srv, err := store.NewServer(store.ServerOptions{
		Token:  "job-1234", // every client must present it
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := store.Dial(ctx, srv.Addr(), store.ClientOptions{Token: "job-1234"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	_ = c.Set(ctx, "master", []byte("10.0.0.1:29500"))
	v, _ := c.Get(ctx, "master")
	fmt.Println(string(v))
	// Output: 10.0.0.1:29500
}

// A client with the wrong token is refused at once.
func ExampleDial_unauthorized() {
	srv, err := store.NewServer(store.ServerOptions{Token: "job-1234", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	_, err = store.Dial(context.Background(), srv.Addr(), store.ClientOptions{Token: "stale"})
	fmt.Println(errors.Is(err, store.ErrUnauthorized))
	// Output: true
}
