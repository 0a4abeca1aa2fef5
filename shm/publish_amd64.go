package shm

// publish stores v at addr with release ordering: on amd64 a plain MOV (stores are not
// reordered with older stores or loads), so this rank can go on to read its peers' lines
// while its own line's ownership is still being fetched; an XCHG (sync/atomic's Store) would
// wait for it. Being a call into assembly, it is also a compiler barrier: the stores of the
// data it publishes are not moved after it.
//
//go:noescape
func publish(addr *uint64, v uint64)
