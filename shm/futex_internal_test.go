package shm

import (
	"sync/atomic"
	"testing"
	"time"
)

// A sleeper is woken by the publish it waits for, long before its sleep would end; one whose
// word has already reached the phase does not sleep at all.
func TestSleeperWokenByPublish(t *testing.T) {
	var word uint64
	var sleepers uint32
	s := sleeper{word: &word, phase: 1, sleepers: &sleepers}
	woke := make(chan struct{})
	go func() {
		s.sleep(time.Minute)
		close(woke)
	}()
	for atomic.LoadUint32(&sleepers) == 0 { // registered: it sleeps, or is about to
		time.Sleep(time.Millisecond)
	}
	publish(&word, 1)
	wakeSleepers(&word, &sleepers)
	select {
	case <-woke:
	case <-time.After(20 * time.Second):
		t.Fatal("a sleeper on a phase word was not woken by its publish (it would sleep the whole minute)")
	}
	if n := atomic.LoadUint32(&sleepers); n != 0 {
		t.Fatalf("sleepers = %d after the sleeper woke, want 0 (it must deregister)", n)
	}

	done := make(chan struct{})
	go func() {
		s.sleep(time.Minute) // word is 1 already
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("a sleeper slept although its word had reached the phase")
	}
}

// Without a publish a sleeper returns when its time is up (the waiter then checks aborts, the
// deadline and the peers' liveness).
func TestSleeperTimesOut(t *testing.T) {
	var word uint64
	var sleepers uint32
	t0 := time.Now()
	sleeper{word: &word, phase: 1, sleepers: &sleepers}.sleep(5 * time.Millisecond)
	if d := time.Since(t0); d < 5*time.Millisecond {
		t.Fatalf("sleep(5ms) with no publish returned after %v", d)
	}
	if sleepers != 0 {
		t.Fatalf("sleepers = %d after a timed-out sleep, want 0", sleepers)
	}
}
