package shm_test

import (
	"testing"

	"github.com/gccl/gccl/backends/backendtest"
	_ "github.com/gccl/gccl/shm"
)

// TestConformance runs the backend conformance suite over shm at world sizes 1, 2, 3, 4 and 8,
// each rank a real process.
func TestConformance(t *testing.T) {
	backendtest.Run(t, backendtest.Config{Backend: "shm"})
}

// Members whose environments disagree on single copy all take rank 0's choice (else their
// protocols would differ): the gathers and broadcasts with only rank 0 asking for single copy,
// then with every rank but 0 asking for it. (Top-level tests: the suite re-runs the test in each
// rank, where a sibling subtest would start ranks of its own.)
func TestSingleCopyRank0Only(t *testing.T) { singleCopyOn(t, func(r int) bool { return r == 0 }) }

func TestSingleCopyAllButRank0(t *testing.T) { singleCopyOn(t, func(r int) bool { return r != 0 }) }

func singleCopyOn(t *testing.T, on func(rank int) bool) {
	backendtest.Run(t, backendtest.Config{Backend: "shm", WorldSizes: []int{2, 3}, Run: "^(all_gather|gather|broadcast)",
		RankEnv: func(rank, size int) []string {
			if on(rank) {
				return []string{"GCCL_SHM_SINGLE_COPY_BYTES=1"}
			}
			return nil
		}})
}

// Point-to-point between ranks whose batches send differently: single-copy from one byte
// (GCCL_SHM_P2P_SINGLE_COPY_BYTES=1), never (0), or beyond the mailbox (the default), so that a
// rank receives both kinds of message in one batch.
func TestConformanceP2PSingleCopyMixed(t *testing.T) {
	backendtest.Run(t, backendtest.Config{Backend: "shm", WorldSizes: []int{2, 3, 4}, Run: "^(send_recv|barrier)",
		RankEnv: func(rank, size int) []string {
			switch rank % 3 {
			case 0:
				return []string{"GCCL_SHM_P2P_SINGLE_COPY_BYTES=1"}
			case 1:
				return []string{"GCCL_SHM_P2P_SINGLE_COPY_BYTES=0"}
			}
			return nil
		}})
}

// The suite again with ranks that sleep as soon as a wait starts (no spinning, no yielding), so
// that every sync goes through the futex sleep and the publishing peer's wake-up (futex.go).
func TestConformanceSleeping(t *testing.T) {
	backendtest.Run(t, backendtest.Config{Backend: "shm", WorldSizes: []int{2, 4},
		RankEnv: func(rank, size int) []string { return []string{"GCCL_SPIN_US=0", "GCCL_YIELD_US=0"} }})
}

// The collectives that write slots, again with slots written past the caches (slotwrites.go),
// by every rank and by every other rank only: what a slot holds must not depend on how its
// writer stored it.
func TestConformanceNonTemporal(t *testing.T) {
	backendtest.Run(t, backendtest.Config{Backend: "shm", WorldSizes: []int{2, 3, 4}, Run: "^(all_reduce|reduce|reduce_scatter|all_gather|gather|broadcast)/",
		RankEnv: func(rank, size int) []string {
			if size == 3 && rank%2 == 1 {
				return []string{"GCCL_SHM_NONTEMPORAL=never"}
			}
			return []string{"GCCL_SHM_NONTEMPORAL=always"}
		}})
}
