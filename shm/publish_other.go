//go:build !amd64

package shm

import "sync/atomic"

// publish stores v at addr with (at least) release ordering.
func publish(addr *uint64, v uint64) { atomic.StoreUint64(addr, v) }

// spinPause does nothing where there is no spin hint.
func spinPause() {}
