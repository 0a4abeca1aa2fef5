package shm

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A rank that has waited long enough to sleep (see idler) sleeps on a futex: on the word the
// awaited peer advances next (its phase word; a mailbox's head or tail), so that the peer's
// move wakes it at once (a wake-up costs ~25-50 µs here), where a plain sleep oversleeps by up to
// its whole length (the backoff reaches 1 ms, and a peer one descheduled time slice late then
// cost a millisecond). A peer pays the wake-up call only when a waiter registered in its
// sleepers word (its control block): one load of its own, rarely written cache line per move
// otherwise. The futexes are shared ones (no FUTEX_PRIVATE_FLAG): the words live in the
// segment, mapped by several processes.

const (
	futexWait = 0 // FUTEX_WAIT
	futexWake = 1 // FUTEX_WAKE
)

// sleeper is what a waiter sleeps on: a counter a peer advances, which it waits to see reach
// phase, and that peer's sleepers word.
type sleeper struct {
	word     *uint64
	phase    uint64
	sleepers *uint32
}

// sleep blocks for at most d or until the peer advances the word, whichever comes first. It
// registers in the peer's sleepers word before it reads the word a last time, and the peer
// advances the word before it reads the sleepers word, so one sees the other, and the kernel
// compares the word again before it sleeps. The one gap: publish (the phase words) is a plain
// store, which the peer's read of sleepers may overtake while the store sits in its store
// buffer (nanoseconds), so a waiter that registers and reads in exactly that moment misses the
// wake-up; it sleeps d, no more.
func (s sleeper) sleep(d time.Duration) {
	atomic.AddUint32(s.sleepers, 1)
	if v := atomic.LoadUint64(s.word); v < s.phase {
		ts := unix.NsecToTimespec(d.Nanoseconds())
		// The low half of the word: it changes whenever the word does (little-endian amd64 and
		// arm64). EAGAIN (it changed), EINTR and ETIMEDOUT all mean: look again.
		_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(s.word)), futexWait, uintptr(uint32(v)),
			uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
	atomic.AddUint32(s.sleepers, ^uint32(0))
}

// wakeSleepers wakes the waiters sleeping on word, a counter this rank has just advanced, if
// any registered in sleepers (this rank's).
func wakeSleepers(word *uint64, sleepers *uint32) {
	if atomic.LoadUint32(sleepers) == 0 {
		return
	}
	_, _, _ = unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), futexWake, uintptr(1<<31-1), 0, 0, 0)
}
