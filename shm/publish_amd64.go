package shm

// publish stores v at addr with release ordering: on amd64 a plain MOV (stores are not
// reordered with older stores or loads), so this rank can go on to read its peers' lines
// while its own line's ownership is still being fetched; an XCHG (sync/atomic's Store) would
// wait for it. Being a call into assembly, it is also a compiler barrier: the stores of the
// data it publishes are not moved after it.
//
//go:noescape
func publish(addr *uint64, v uint64)

// spinPause tells the core that this thread is spinning (PAUSE): a hyperthread sharing the core
// gets its execution resources meanwhile. On this VM the two vCPUs are at times siblings of one
// core, and then a spinning rank without it slowed its peer's work: 8-byte all-reduce, 2 ranks,
// 0.45 against 0.38 µs.
func spinPause()
