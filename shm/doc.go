// Package shm is gccl's shared-memory backend, registered as "shm", for the ranks of a group
// that all run on one host: the fast path for CPU tensor-parallel inference.
//
// Each group has its own segment (a sub-group gets its own, never a world-only shortcut): an
// anonymous memfd created by group rank 0 and mapped by every member through /proc/<pid>/fd. It
// is never linked into /dev/shm, so nothing is left there even after a crash, and it goes away
// with its last mapping.
//
// The segment holds, per rank, a control block (phase counter, op fingerprints, pid, abort word,
// each on its own cache lines) and two alternating data slots; and a mailbox per ordered pair
// of ranks for send/recv. Collectives run in pieces of at most one slot: every rank copies its
// part in, publishes its phase (an atomic store), waits for every member's (spinning, then
// yielding, then sleeping on a futex that the awaited peer's next publish wakes), then reads
// what it needs. Small all-reduces are reduced by every rank from all slots in rank order (one
// sync, bitwise-identical results); large ones are reduce-scattered and all-gathered within each
// piece. Alternating slots mean no trailing sync.
// The smallest ops (up to 80 bytes: all-reduce, reduce, broadcast, the gathers and scatters,
// reduce-scatter, all-to-all, barrier) skip the slots: the data travels in the op span next to the phase
// and the fingerprint, one exchange of cache lines. Large all-gathers, gathers, broadcasts and
// all-reduces can skip them too, reading the peers' buffers with process_vm_readv (single copy,
// off by default: singlecopy.go says when it pays). From 16 KiB, ranks write their slots
// either through their caches or past them (non-temporal stores), whichever rank 0's periodic
// trials found cheaper for that kind of collective and size (slotwrites.go): which one wins
// depends on where the host runs the cores.
//
// Point-to-point messages stream through the mailboxes (p2p.go); a message of up to 104 bytes
// skips the ring, through the mailbox's box of slots (p2pbox.go). A batch (comm's BatchSendRecv)
// moves all its sends and receives in one loop, so its messages land straight in their receives'
// buffers, and one longer than a mailbox is read once, from the sender's buffer with
// process_vm_readv, where the receiver can (probed at setup).
//
// Every op's first sync publishes its fingerprint (sequence, op, dtype, count, root, reduce op);
// every rank checks every other's, so a mismatch is an error on every rank. While waiting, a
// rank checks its peers' abort words and, every 100 ms, that the peers it waits for are alive
// (by pid), so a killed member becomes ErrPeerLost on the others well within 2 seconds.
//
// Users select it by name: comm.Init(ctx, comm.Options{Backend: "shm"}) or GCCL_BACKEND=shm.
package shm
