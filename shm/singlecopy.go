package shm

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// Single-copy all-reduce for large buffers: instead of copying through the segment, a rank
// reads its peers' buffers directly with process_vm_readv (one kernel copy). Each rank
// publishes its output buffer's address with the op's fingerprint; rank r reads share r of
// every peer's buffer and reduces it, in rank order, into its own; after a sync every rank reads
// the peers' reduced shares; a trailing sync keeps every buffer alive until nobody reads it.
// Each element is reduced by one rank only, so every rank ends with the same bits.

// singleCopyBytes: at or above, large all-reduces go single-copy when every member can read
// every other's memory. 0, the default, disables it: on the VMs this was measured on,
// process_vm_readv moves only 3-4 GB/s and single-copy made 16 MiB slower than the slot path
// (9.8-10.4 ms against 5.1-5.5 ms at 2 ranks). GCCL_SHM_SINGLE_COPY_BYTES turns it on where
// cross-process reads are fast.
var singleCopyBytes = 0

// probeWord is what peers read from this process at setup to prove process_vm_readv works.
var probeWord = uint64(0x5a5a1234c0ffee00)

// probeSingleCopy checks that this rank can read every peer's memory, and agrees the answer
// with every member through the store (all must be able to, or nobody uses it).
func (g *Group) probeSingleCopy(ctx context.Context) error {
	if v, err := strconv.Atoi(os.Getenv("GCCL_SHM_SINGLE_COPY_BYTES")); err == nil && v >= 0 {
		singleCopyBytes = v
	}
	if singleCopyBytes == 0 {
		return nil
	}
	st := g.cfg.Store
	me := strconv.Itoa(g.cfg.Rank)
	addr := uint64(uintptr(unsafe.Pointer(&probeWord)))
	if err := st.Set(ctx, "shm/probe/"+me, []byte(strconv.FormatUint(addr, 10))); err != nil {
		return err
	}
	ok := true
	for p := 0; p < g.cfg.Size; p++ {
		if p == g.cfg.Rank {
			continue
		}
		v, err := st.Get(ctx, "shm/probe/"+strconv.Itoa(p))
		if err != nil {
			return err
		}
		a, _ := strconv.ParseUint(string(v), 10, 64)
		var got uint64
		if err := readRemote(g.pids[p], uintptr(a), unsafe.Slice((*byte)(unsafe.Pointer(&got)), 8)); err != nil || got != probeWord {
			g.log.Debug("shm: single-copy reads unavailable", "group", g.cfg.Name, "peer", p, "err", err)
			ok = false
		}
	}
	verdict := "1"
	if !ok {
		verdict = "0"
	}
	if err := st.Set(ctx, "shm/single-copy/"+me, []byte(verdict)); err != nil {
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

// remoteErr explains a failed read of peer p's memory: usually p died.
func (g *Group) remoteErr(p int, err error) error {
	if err := g.gone(p); err != nil {
		return err
	}
	return fmt.Errorf("reading rank %d's buffer: %w", p, err)
}
