package shm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// Single-copy transfers: instead of copying through the segment, a rank reads its peers'
// buffers directly with process_vm_readv (one kernel copy). Each rank publishes its buffer's
// address with the op's fingerprint, reads what it needs, and a trailing sync keeps every buffer
// alive until nobody reads it. Off by default, turned on per group from a size in bytes of data:
//
//   - GCCL_SHM_SINGLE_COPY_BYTES: the collectives that only move data (all-gather, gather,
//     broadcast). Each rank reads its peers' parts once (~13 GB/s here) instead of copying its
//     own into a slot and the others' out. In gccl bench's loop, 2 ranks, it wins from 64 KiB
//     (all-gather of 2 MiB in all: 85 µs against 155 and OpenMPI's 103; broadcast 129 against
//     196 and 160), but not with 4 ranks on 2 cores (all-gather of 2 MiB: 299 µs against 204),
//     nor inside a program: with it, examples/fsdptrain's 1 MiB all-gathers made its 2-rank
//     steps 5-15 ms slower. The bench reads the same two buffers again and again; fsdp reads
//     16 different ones a step, out of cache, and there process_vm_readv stays ~3x slower than
//     memcpy (512 KiB from one of 16 buffers in turn: 6.5 against 20.6 GB/s; from the same one
//     13.3 against 43), while the slot path's copies out read what the peer has just written.
//   - GCCL_SHM_SINGLE_COPY_ALLREDUCE_BYTES: all-reduce. Rank r reads share r of every peer's
//     buffer and reduces it, in rank order, into its own; after a sync every rank reads the
//     peers' reduced shares (each element is reduced by one rank only, so every rank ends with
//     the same bits). Slower than the slots' pipelined reduce-scatter (16 MiB, 2 ranks: 4.9 ms
//     against 2.9).
//
// Every member uses rank 0's thresholds (exchanged with the pids at setup), so that all take
// the same path.

// singleCopyLimits are a group's thresholds, in bytes of data (0: never).
type singleCopyLimits struct{ move, allReduce int }

// envLimits reads this process's thresholds from the environment.
func envLimits() singleCopyLimits {
	var l singleCopyLimits
	if v, err := strconv.Atoi(os.Getenv("GCCL_SHM_SINGLE_COPY_BYTES")); err == nil && v >= 0 {
		l.move = v
	}
	if v, err := strconv.Atoi(os.Getenv("GCCL_SHM_SINGLE_COPY_ALLREDUCE_BYTES")); err == nil && v >= 0 {
		l.allReduce = v
	}
	return l
}

// singleCopyFor reports whether an op of n bytes with threshold limit goes single-copy.
func (g *Group) singleCopyFor(limit, n int) bool {
	return g.singleCopy && limit > 0 && n >= limit
}

// probeWord is what peers read from this process at setup to prove process_vm_readv works.
var probeWord = uint64(0x5a5a1234c0ffee00)

// agreeSingleCopy agrees with every member through the store whether all of them can read every
// other's memory (readsAll: this rank can, probed at setup), since all must be able to, or
// nobody uses single copy. The group runs it when rank 0's thresholds turn single copy on.
func (g *Group) agreeSingleCopy(ctx context.Context, readsAll bool) error {
	st := g.cfg.Store
	verdict := "0"
	if readsAll {
		verdict = "1"
	} else {
		g.log.Debug("shm: single-copy reads unavailable", "group", g.cfg.Name)
	}
	if err := st.Set(ctx, "shm/single-copy/"+strconv.Itoa(g.cfg.Rank), []byte(verdict)); err != nil {
		return err
	}
	g.singleCopy = true
	for p := 0; p < g.cfg.Size; p++ {
		v, err := st.Get(ctx, "shm/single-copy/"+strconv.Itoa(p))
		if err != nil {
			return err
		}
		g.singleCopy = g.singleCopy && string(v) == "1"
	}
	return nil
}

// canRead reports whether this process can read process pid's memory: its probeWord, at addr
// there.
func canRead(pid int, addr uint64) bool {
	var got uint64
	err := readRemote(pid, uintptr(addr), unsafe.Slice((*byte)(unsafe.Pointer(&got)), 8))
	return err == nil && got == probeWord
}

// readRemote copies len(dst) bytes at addr in process pid into dst.
func readRemote(pid int, addr uintptr, dst []byte) error {
	for len(dst) > 0 {
		local := []unix.Iovec{{Base: &dst[0]}}
		local[0].SetLen(len(dst))
		remote := []unix.RemoteIovec{{Base: addr, Len: len(dst)}}
		n, err := unix.ProcessVMReadv(pid, local, remote, 0)
		if err != nil {
			return fmt.Errorf("process_vm_readv from pid %d: %w", pid, err)
		}
		if n <= 0 {
			return fmt.Errorf("process_vm_readv from pid %d read nothing", pid)
		}
		dst, addr = dst[n:], addr+uintptr(n)
	}
	return nil
}

// allReduceSingleCopy runs a large all-reduce by reading the peers' buffers directly.
func (g *Group) allReduceSingleCopy(ctx context.Context, op backends.Op, ib, ob []byte) error {
	n, r, es := g.cfg.Size, g.cfg.Rank, op.DType.Size()
	if !sameMem(ib, ob) {
		copy(ob, ib)
	}
	all, err := g.beginExtra(ctx, op, opExtra{Addr: uint64(uintptr(unsafe.Pointer(&ob[0])))})
	if err != nil {
		return err
	}
	addrs := make([]uintptr, n)
	for p, e := range all {
		addrs[p] = uintptr(e.Addr)
	}
	// Reduce-scatter: our share of every peer's buffer, reduced in rank order into ours.
	lo, hi := part(len(ob), n, r, es)
	mine := ob[lo:hi]
	tmp := g.scratch((n - 1) * len(mine))
	srcs := make([][]byte, n)
	k := 0
	for p := 0; p < n; p++ {
		if p == r {
			srcs[p] = mine
			continue
		}
		srcs[p] = tmp[k*len(mine) : (k+1)*len(mine)]
		k++
		if len(mine) > 0 {
			if err := readRemote(g.pids[p], addrs[p]+uintptr(lo), srcs[p]); err != nil {
				return g.remoteErr(p, err)
			}
		}
	}
	if err := tensor.ReduceMany(op.Reduce, op.DType, mine, srcs...); err != nil {
		return err
	}
	if err := g.sync(ctx); err != nil {
		return err
	}
	// All-gather: every peer's reduced share, straight into place.
	for p := 0; p < n; p++ {
		plo, phi := part(len(ob), n, p, es)
		if p == r || phi == plo {
			continue
		}
		if err := readRemote(g.pids[p], addrs[p]+uintptr(plo), ob[plo:phi]); err != nil {
			return g.remoteErr(p, err)
		}
	}
	// Nobody may return (and reuse its buffer) while a peer still reads it.
	return g.sync(ctx)
}

// gatherSingleCopy runs a large all-gather (root < 0) or gather by reading the peers' inputs
// directly: each rank publishes its input's address, copies its own part, reads every peer's
// part into place, and waits until nobody reads its input any more.
func (g *Group) gatherSingleCopy(ctx context.Context, op backends.Op, ib, ob []byte, root int) error {
	n, r, per := g.cfg.Size, g.cfg.Rank, len(ib)
	all, err := g.beginExtra(ctx, op, opExtra{Addr: uint64(uintptr(unsafe.Pointer(&ib[0])))})
	if err != nil {
		return err
	}
	if root < 0 || r == root {
		copy(ob[r*per:(r+1)*per], ib)
		for p := 0; p < n; p++ {
			if p == r {
				continue
			}
			if err := readRemote(g.pids[p], uintptr(all[p].Addr), ob[p*per:(p+1)*per]); err != nil {
				return g.remoteErr(p, err)
			}
		}
	}
	// Nobody may return (and reuse its input) while a peer still reads it.
	return g.sync(ctx)
}

// broadcastSingleCopy runs a large broadcast by reading the root's buffer directly.
func (g *Group) broadcastSingleCopy(ctx context.Context, op backends.Op, bb []byte) error {
	all, err := g.beginExtra(ctx, op, opExtra{Addr: uint64(uintptr(unsafe.Pointer(&bb[0])))})
	if err != nil {
		return err
	}
	if g.cfg.Rank != op.Root {
		if err := readRemote(g.pids[op.Root], uintptr(all[op.Root].Addr), bb); err != nil {
			return g.remoteErr(op.Root, err)
		}
	}
	// The root may not return (and reuse its buffer) while a peer still reads it.
	return g.sync(ctx)
}

// remoteErr explains a failed read of peer p's memory: usually p died. ESRCH says its memory
// is gone, which happens early in its exit, while /proc may still show it running.
func (g *Group) remoteErr(p int, err error) error {
	if errors.Is(err, unix.ESRCH) {
		return &backends.PeerLostError{Rank: p, GlobalRank: g.cfg.GlobalRank(p),
			Cause: fmt.Sprintf("process %d is exiting (its memory is gone)", g.pids[p])}
	}
	if err := g.gone(p); err != nil {
		return err
	}
	return fmt.Errorf("reading rank %d's buffer: %w", p, err)
}
