package shm

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// Single-copy transfers: instead of copying through the segment, a rank reads its peers'
// buffers directly with process_vm_readv (one kernel copy). Each rank publishes its buffer's
// address with the op's fingerprint, reads what it needs, and a trailing sync keeps every buffer
// alive until nobody reads it.
//
// In a group of two ranks with a core each, the collectives that only move data (all-gather,
// gather, broadcast) go single-copy from singleCopyMoveBytes of data on: one read of the peer's
// part at ~13 GB/s beats copying it into a slot and out again (all-gather of 2 MiB in all: 85 µs
// against 155, and OpenMPI's 103; broadcast of 2 MiB: 129 against 196 and 160; BENCHMARKS.md).
// At 32 KiB the slots were still ahead, and so they were with 4 ranks on 2 cores, where each
// rank reads three peers at that rate with half a core (all-gather of 2 MiB: 299 µs against
// 204): larger or oversubscribed groups keep the slots unless GCCL_SHM_SINGLE_COPY_BYTES (the
// threshold in bytes; 0 turns it off) says otherwise.
//
// All-reduce can go single-copy too (rank r reads share r of every peer's buffer and reduces it,
// in rank order, into its own; after a sync every rank reads the peers' reduced shares; each
// element is reduced by one rank only, so every rank ends with the same bits), from
// GCCL_SHM_SINGLE_COPY_ALLREDUCE_BYTES; off by default: its reads and reductions measured slower
// than the slot path's pipelined reduce-scatter (16 MiB, 2 ranks: 4.9 ms against 2.9).
const singleCopyMoveBytes = 64 << 10

// singleCopyLimits are a group's thresholds, in bytes of data (0: never).
type singleCopyLimits struct{ move, allReduce int }

// scVerdict is what each member tells the others at setup: whether it can read them all, its
// environment's thresholds (-1: not set) and the CPUs it may run on.
type scVerdict struct {
	ok             bool
	move, allReduc int
	cpus           unix.CPUSet
}

// cpuLimit bounds the CPU numbers a verdict carries (unix.CPUSet's size).
const cpuLimit = 1024

func (v scVerdict) String() string {
	ids := []string{"-"} // none
	for c := range cpuLimit {
		if v.cpus.IsSet(c) {
			ids = append(ids, strconv.Itoa(c))
		}
	}
	if len(ids) > 1 {
		ids = ids[1:]
	}
	return fmt.Sprintf("%t %d %d %s", v.ok, v.move, v.allReduc, strings.Join(ids, ","))
}

func parseVerdict(s string) (scVerdict, error) {
	var v scVerdict
	var ids string
	if _, err := fmt.Sscanf(s, "%t %d %d %s", &v.ok, &v.move, &v.allReduc, &ids); err != nil {
		return v, err
	}
	if ids == "-" {
		return v, nil
	}
	for _, f := range strings.Split(ids, ",") {
		c, err := strconv.Atoi(f)
		if err != nil || c < 0 || c >= cpuLimit {
			return v, fmt.Errorf("CPU %q", f)
		}
		v.cpus.Set(c)
	}
	return v, nil
}

// envThreshold is the environment variable key as a threshold, or -1 if it is not set.
func envThreshold(key string) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v >= 0 {
		return v
	}
	return -1
}

// groupLimits decides the thresholds from every member's verdict, the same on every member:
// rank 0's environment where it set them, else the defaults above, where a member having a core
// of its own means the members may run on as many CPUs as there are members (the union of
// their affinity masks; a launcher that pins each rank to a core leaves each a mask of one).
func groupLimits(vs []scVerdict) singleCopyLimits {
	var union unix.CPUSet
	for _, v := range vs {
		for c := range cpuLimit {
			if v.cpus.IsSet(c) {
				union.Set(c)
			}
		}
	}
	var l singleCopyLimits
	if len(vs) == 2 && union.Count() >= len(vs) {
		l.move = singleCopyMoveBytes
	}
	if vs[0].move >= 0 {
		l.move = vs[0].move
	}
	if vs[0].allReduc >= 0 {
		l.allReduce = vs[0].allReduc
	}
	return l
}

// singleCopyFor reports whether an op of n bytes with threshold limit goes single-copy.
func (g *Group) singleCopyFor(limit, n int) bool {
	return g.singleCopy && limit > 0 && n >= limit
}

// probeWord is what peers read from this process at setup to prove process_vm_readv works.
var probeWord = uint64(0x5a5a1234c0ffee00)

// probeSingleCopy checks that this rank can read every peer's memory, and agrees the answer
// with every member through the store (all must be able to, or nobody uses single copy), and
// the thresholds (groupLimits).
func (g *Group) probeSingleCopy(ctx context.Context) error {
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
	mine := scVerdict{ok: ok, move: envThreshold("GCCL_SHM_SINGLE_COPY_BYTES"),
		allReduc: envThreshold("GCCL_SHM_SINGLE_COPY_ALLREDUCE_BYTES")}
	if err := unix.SchedGetaffinity(0, &mine.cpus); err != nil {
		mine.cpus = unix.CPUSet{} // counts as no CPU of its own: the defaults stay off
	}
	if err := st.Set(ctx, "shm/single-copy/"+me, []byte(mine.String())); err != nil {
		return err
	}
	vs := make([]scVerdict, g.cfg.Size)
	g.singleCopy = true
	for p := range vs {
		b, err := st.Get(ctx, "shm/single-copy/"+strconv.Itoa(p))
		if err != nil {
			return err
		}
		if vs[p], err = parseVerdict(string(b)); err != nil {
			return fmt.Errorf("shm: rank %d's single-copy verdict %q: %w", p, b, err)
		}
		g.singleCopy = g.singleCopy && vs[p].ok
	}
	g.scLimits = groupLimits(vs)
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

// remoteErr explains a failed read of peer p's memory: usually p died.
func (g *Group) remoteErr(p int, err error) error {
	if err := g.gone(p); err != nil {
		return err
	}
	return fmt.Errorf("reading rank %d's buffer: %w", p, err)
}
