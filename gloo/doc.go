// Package gloo is gccl's TCP backend, registered as "gloo": one TCP connection per pair of
// ranks, set up through the group's store, for ranks on one machine or many.
//
// Algorithms: all-reduce by recursive doubling for small buffers and by a pipelined ring
// (reduce-scatter then all-gather) for large ones; all-gather and reduce-scatter by one direct
// exchange when small, by ring when large; binomial-tree broadcast (forwarding each segment as
// it lands) and reduce; direct gather, scatter and pairwise all-to-all; dissemination barrier;
// tagged point-to-point.
//
// Every message starts with a header carrying the op's fingerprint (sequence number, op, dtype,
// count, root, reduce op, algorithm step, byte count); a receiver that expects something else
// fails with backends.ErrMismatch, so ranks that disagree get an error, never wrong data. An
// error aborts the group: the rank tells its peers (who fail with the same cause, a lost peer
// named as such) and closes its connections.
//
// The engine: the goroutine running the op drives every socket itself with non-blocking
// syscalls, no reader goroutines and no channel hand-off. While it waits it spins, then yields
// the CPU, then sleeps in poll(2): a sleep and wake-up costs ~24 µs on the machines this was
// tuned on, more than a whole small all-reduce. Unexpected messages (a peer already in the next
// op, a send whose receive is not posted yet) are queued per connection, and waiting on any op
// drains every connection, so paired sends never deadlock.
//
// Users do not import this package: comm does, and selects it by name ("gloo", the default).
// GCCL_SOCKET_ADDR (or GLOO_SOCKET_ADDR) sets the address a rank listens on.
package gloo
