// Package backends is the contract between gccl's comm package and the backends that move
// bytes, in the way database/sql/driver is the contract between database/sql and drivers.
//
// A backend registers a Backend under a name at init time:
//
//	func init() { backends.Register("mybackend", myBackend{}) }
//
// comm calls Backend.NewGroup once per process group and member, with the group's ranks, a store
// scoped to the group and its timeout; the Group it returns runs one op at a time, in issue
// order, on tensors comm has already validated. A backend returns the sentinel errors of this
// package (wrapped with %w): ErrTimeout, ErrAborted, ErrPeerLost (a *PeerLostError names the
// lost rank), ErrMismatch, ErrUnsupported. Optional capabilities are optional interfaces that
// comm discovers by type assertion.
//
// Package backendtest is the conformance suite every backend must pass.
package backends
