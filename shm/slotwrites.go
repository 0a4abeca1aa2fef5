package shm

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// How a rank writes its slots: through its caches (copy) or past them, with non-temporal stores
// (tensor.CopyNonTemporal).
//
// A slot is read next by the other ranks' cores. Written through the caches, its lines sit in
// the writer's cache and every reader takes them from there, which is cheap when the two cores
// share a core's caches or an L3 and dear when they do not: on the VMs this was measured on, the
// host runs the two vCPUs now on hyperthreads of one core, now on two cores of one CCX, now on
// cores of different CCDs, and moves them within minutes (BENCHMARKS.md, "The host's placement
// of the two vCPUs"). A 256 KiB all-reduce at 2 ranks took ~24, ~35 and ~155 µs in the three.
// Written past the caches, the data goes to memory and readers pay a memory read wherever they
// run: 2-4x faster than through the caches across CCDs, 10-20% faster within a CCX, 2x slower
// on hyperthreads. No fixed choice wins, so each group measures, per kind of collective (the
// reductions, the gathers, reduce-scatter, broadcast) and size class of op:
//
//   - In every window of a class's ops (64, then 256), six in a row are trials: three through the
//     caches, then three past them. The first of each three pays for the switch (it finds the
//     slots where the other mode left them); the cheaper of the other two is the mode's cost
//     (noise only adds). Every rank counts the ops of a class alike (collectives run in the
//     same order everywhere), so all ranks try the same mode at the same time and a trial
//     measures the group, not a mix. Ops close together see the same placement of the vCPUs,
//     so the ratio of the two costs compares the modes even while the placement, and with it
//     every cost, changes.
//   - The other ops use the mode that won the trials: past the caches when the median ratio of
//     the last few trials is below slotWritesMargin, through them when it is above 1 (between
//     the two, the mode stays). The trials cost 3 ops a window at the slower mode's
//     price (and a switch back).
//   - A trial's cost is rank 0's whole op but the wait at its first sync, which is the peers
//     arriving (their compute between ops), not the mode. Only ops in which rank 0 reads what
//     the others wrote count (in a rooted op whose root is another rank, rank 0 only writes).
//     Rank 0 measures and decides, and publishes the mode of each class in a word of its
//     control block; the others read it when an op starts. (Every rank uses the mode rank 0
//     chose: a slot holds the same bytes either way, so a rank that reads the word a moment
//     late is only slower, not wrong.)
//
// With more than slotWritesMaxCrowding ranks per core, auto writes through the caches: there a
// rank is descheduled in the middle of its ops for as long as its core's other ranks run, and
// the trials' costs swung with that (8 ranks on 2 cores, 512 KiB: through the caches 0.3-1.5
// ns/byte from one set of trials to the next, against 0.48 in a steady run of them), so that the
// choice flipped and went past the caches where that was 50% slower. At 2 ranks per core the
// trials chose right in every band measured.
//
// GCCL_SHM_NONTEMPORAL=auto (the default), always or never overrides the choice.

// slotWritesMaxCrowding is the most ranks per core at which auto measures (see above).
const slotWritesMaxCrowding = 2

// slotWritesMinBytes: smaller ops write through the caches, unmeasured (the clock would cost
// more than the choice could save).
const slotWritesMinBytes = 16 << 10

// slotWritesWindow is the number of ops of a class from one set of trials to the next: short
// for a class's first slotWritesSettle ops, so that it finds its mode soon, then long, so that
// the trials of the losing mode (3-5x dearer in the worst placement) cost little: 3 ops in 256
// at 5x is ~5% of the time.
func slotWritesWindow(ops uint64) uint64 {
	if ops < slotWritesSettle {
		return 64
	}
	return 256
}

// slotWritesSettle is a multiple of both windows, so that the trials stay at the same offsets.
const slotWritesSettle = 512

// slotWritesMargin: past the caches replaces through them only when the trials' median ratio is
// below this (through the caches is the better mode on hyperthreads, and the mode noise should
// not move a class from).
const slotWritesMargin = 0.95

// slotWritesTrialOps is how many ops of each mode a set of trials measures.
const slotWritesTrialOps = 2

// slotWritesKept is how many recent sets of trials a class remembers.
const slotWritesKept = 3

// slotWritesClasses: class c holds ops of [16 KiB << c, 32 KiB << c); the last also all larger.
const slotWritesClasses = 13

// writeKind is a family of collectives whose slots are written and read alike; each has its own
// classes, trials and modes.
type writeKind int

const (
	writesReduce        writeKind = iota // all-reduce, reduce
	writesGather                         // all-gather, gather
	writesReduceScatter                  // reduce-scatter
	writesBroadcast                      // broadcast
	writeKinds
)

// ntSetting is GCCL_SHM_NONTEMPORAL.
type ntSetting uint8

const (
	ntAuto ntSetting = iota
	ntAlways
	ntNever
)

// parseNTSetting reads GCCL_SHM_NONTEMPORAL's value ("" is auto).
func parseNTSetting(v string) (ntSetting, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "auto":
		return ntAuto, nil
	case "always", "1", "on":
		return ntAlways, nil
	case "never", "0", "off":
		return ntNever, nil
	}
	return ntAuto, fmt.Errorf("GCCL_SHM_NONTEMPORAL=%q is not a setting: use auto, always or never", v)
}

// slotWrites is a group's record of the trials (under opMu).
type slotWrites struct {
	setting ntSetting
	crowded bool // more than slotWritesMaxCrowding ranks per core: auto writes through the caches
	// modes is rank 0's word of modes, one bit per kind and class (kind*slotWritesClasses +
	// class) set for "past the caches"; lead: this rank is rank 0, which measures and writes the
	// word (the others only read it).
	modes   *uint64
	lead    bool
	classes [writeKinds][slotWritesClasses]trials
}

// trials is one size class's record.
type trials struct {
	ops     uint64  // ops of this class run
	through bool    // rank 0's choice
	cached  float64 // cost per byte of this window's cheapest trial through the caches (0: none yet)
	past    float64 // and past them
	ratios  [slotWritesKept]float64
	filled  int
	next    int
}

// slotWrite is one op's mode and, in a trial on rank 0, its clock.
type slotWrite struct {
	through bool
	trial   *trials // nil: not measured (and modes, class unset)
	modes   *uint64 // the group's modes word, which rank 0 updates after a trial
	class   int     // the bit of its kind and class in the modes word
	last    bool    // the trials' last op: the mode is chosen after it
	start   time.Duration
	waited  time.Duration
}

// opClock is the origin of the trials' monotonic clock.
var opClock = time.Now()

func sinceClock() time.Duration { return time.Since(opClock) }

// begin picks the mode of an op of kind that writes n bytes into slots (in all, over its
// pieces) and, for a trial on rank 0, starts its clock. leadReads says whether rank 0 reads
// what the others wrote in this op (a rooted op's root reads, its other ranks only write): only
// then does its time measure the mode.
func (s *slotWrites) begin(kind writeKind, n int, leadReads bool) slotWrite {
	if n < slotWritesMinBytes || s.setting == ntNever || (s.setting == ntAuto && s.crowded) {
		return slotWrite{}
	}
	if s.setting == ntAlways {
		return slotWrite{through: true}
	}
	class := min(bits.Len(uint(n))-bits.Len(slotWritesMinBytes), slotWritesClasses-1)
	c := &s.classes[kind][class]
	k := int(kind)*slotWritesClasses + class
	c.ops++
	// The class's first op takes the slots' page faults, so the trials start at its second.
	const span = 1 + slotWritesTrialOps // per mode: a switch, then the measured ops
	if o := int(c.ops%slotWritesWindow(c.ops)) - 2; o >= 0 && o < 2*span {
		w := slotWrite{through: o >= span}
		if s.lead && leadReads && o%span != 0 {
			w.trial, w.modes, w.class, w.last = c, s.modes, k, o == 2*span-1
			w.start = sinceClock()
		}
		return w
	}
	return slotWrite{through: atomic.LoadUint64(s.modes)>>k&1 == 1}
}

// copy writes src into dst, a slot, in the op's mode.
func (w *slotWrite) copy(dst, src []byte) {
	if w.through {
		tensor.CopyNonTemporal(dst, src)
		return
	}
	copy(dst, src)
}

// teeChunk is the chunk in which tee copies: small enough that its second copy reads from L1.
const teeChunk = 8 << 10

// tee writes src into dst, a slot, in the op's mode, and into own through the caches, chunk by
// chunk, so that src is read from memory once (the second copy finds each chunk in L1). own may
// be src itself (an in-place all-gather).
func (w *slotWrite) tee(dst, own, src []byte) {
	for off := 0; off < len(src); off += teeChunk {
		end := min(off+teeChunk, len(src))
		w.copy(dst[off:end], src[off:end])
		copy(own[off:end], src[off:end])
	}
}

// enterWriting is g.enter for a piece of an op that writes in w's mode: the wait at the op's
// first sync is not the mode's cost, so a trial leaves it out.
func (g *Group) enterWriting(ctx context.Context, op backends.Op, first bool, t touch, w *slotWrite) error {
	if !first || w.trial == nil {
		return g.enter(ctx, op, first, t)
	}
	at := sinceClock()
	err := g.enter(ctx, op, first, t)
	w.waited = sinceClock() - at
	return err
}

// done ends an op of n bytes that returned err: a trial that succeeded records its cost, and
// its class's mode is published when that changes. It returns err.
func (w *slotWrite) done(n int, err error) error {
	c := w.trial
	if c == nil || err != nil {
		return err
	}
	was := c.through
	c.record(w.through, float64(sinceClock()-w.start-w.waited)/float64(n), w.last)
	if c.through != was {
		bits := atomic.LoadUint64(w.modes) &^ (1 << w.class)
		if c.through {
			bits |= 1 << w.class
		}
		atomic.StoreUint64(w.modes, bits)
	}
	return nil
}

// record keeps the cheapest trial of each mode (an op's noise only adds) and, after the last,
// picks the mode.
func (c *trials) record(through bool, cost float64, last bool) {
	m := &c.cached
	if through {
		m = &c.past
	}
	if cost > 0 && (*m == 0 || cost < *m) {
		*m = cost
	}
	if !last {
		return
	}
	cached, past := c.cached, c.past
	c.cached, c.past = 0, 0
	if cached == 0 || past == 0 { // the trials of a mode failed: no ratio this time
		return
	}
	c.ratios[c.next] = past / cached
	c.next = (c.next + 1) % slotWritesKept
	c.filled = min(c.filled+1, slotWritesKept)
	switch m := median(c.ratios[:c.filled]); {
	case m < slotWritesMargin:
		c.through = true
	case m > 1:
		c.through = false
	}
}

// median of a few ratios (a copy is sorted).
func median(v []float64) float64 {
	var buf [slotWritesKept]float64
	s := buf[:copy(buf[:], v)]
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
