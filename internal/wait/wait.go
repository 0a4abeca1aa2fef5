// Package wait is how gccl's backends wait for a peer without a wake-up on the critical path:
// spin first (a sleep and wake-up costs ~24 µs on the machines this was tuned on, more than a
// whole small all-reduce), then yield the CPU, then sleep. With more ranks than cores spinning
// burns the time slice the peer needs, so the policy yields at once.
package wait

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// Policy is how long a waiter spins, then yields, before it sleeps.
type Policy struct {
	Spin, Yield time.Duration
}

// NewPolicy picks the policy for localRanks ranks sharing this host's cores: the CPUs the job
// may use, which gccl run passes in GCCL_LOCAL_CPUS (a rank it pins to a core sees one CPU of
// its own), else those this process may use. GCCL_SPIN_US and GCCL_YIELD_US override it.
func NewPolicy(localRanks int) Policy {
	p := Policy{Spin: 30 * time.Microsecond, Yield: 300 * time.Microsecond}
	if localRanks > LocalCPUs() {
		p = Policy{Spin: 0, Yield: 2 * time.Millisecond}
	}
	if v, err := strconv.Atoi(os.Getenv("GCCL_SPIN_US")); err == nil && v >= 0 {
		p.Spin = time.Duration(v) * time.Microsecond
	}
	if v, err := strconv.Atoi(os.Getenv("GCCL_YIELD_US")); err == nil && v >= 0 {
		p.Yield = time.Duration(v) * time.Microsecond
	}
	return p
}

// LocalCPUs is the number of cores this host's ranks share: GCCL_LOCAL_CPUS if set (to a
// positive count), else runtime.NumCPU().
func LocalCPUs() int {
	if v, err := strconv.Atoi(os.Getenv("GCCL_LOCAL_CPUS")); err == nil && v > 0 {
		return v
	}
	return runtime.NumCPU()
}

// Phase says what a waiter idle for so long should do.
type Phase int

const (
	SpinPhase  Phase = iota // try again at once
	YieldPhase              // call Yield, then try again
	SleepPhase              // block (poll, sleep)
)

// At is the phase for a waiter that has been idle for idle.
func (p Policy) At(idle time.Duration) Phase {
	switch {
	case idle < p.Spin:
		return SpinPhase
	case idle < p.Spin+p.Yield:
		return YieldPhase
	}
	return SleepPhase
}

// Capped returns the policy with spinning and yielding bounded by d (for bulk transfers, where a
// wake-up is cheap next to the transfer).
func (p Policy) Capped(d time.Duration) Policy {
	return Policy{Spin: min(p.Spin, d), Yield: min(p.Yield, d)}
}

// Yield gives the CPU to another runnable thread of this host (sched_yield), then to this
// process's other goroutines (runtime.Gosched): for a wait on another goroutine of this process.
// A wait on other processes uses a Yielder.
func Yield() {
	_, _, _ = syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
	runtime.Gosched()
}

// Yielder gives the CPU away during one wait on other processes. Every Yield lets another
// runnable thread of this host have the core (sched_yield); every 8th also lets this process's
// other goroutines run (runtime.Gosched). Going through the Go scheduler on every yield cost ~0.4 µs per small
// all-reduce with 4 ranks on 2 cores, where a rank yields once or twice per op; a wait that lasts
// longer still lets the other goroutines in, which with a rank pinned to one core (GOMAXPROCS 1)
// would otherwise wait for the runtime's preemption (10 ms). The zero Yielder is ready; use one
// per wait.
type Yielder struct{ n uint }

// Yield gives the CPU away once.
func (y *Yielder) Yield() {
	_, _, _ = syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
	y.n++
	if y.n%8 == 0 {
		runtime.Gosched()
	}
}
