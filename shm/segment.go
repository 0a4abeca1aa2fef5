package shm

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Segment layout (all offsets multiples of 128, the span of two cache lines, so that no two
// ranks' hot words share a line even with adjacent-line prefetch):
//
//	header                     128 B
//	control block per rank     ctrlSize B each
//	slots: per rank, 2 x slotBytes (alternating buffers)
//	mailboxes: per ordered pair (src, dst), mailboxHdr + the box (p2pbox.go) + mailboxBytes
const (
	line       = 128
	headerSize = line
	ctrlSize   = 4 * line
	// head (written by the sender); tail, the count of box slots read and, 64 bytes on, the
	// count of single-copy messages read (written by the receiver); the count of messages sent
	// (by the sender)
	mailboxHdr = 3 * line
	// magic is "GCCGSHM5", its last byte bumped when the layout changes, so that ranks of
	// different builds refuse each other's segment instead of misreading it.
	magic = 0x354d485347434347
)

// Offsets inside a control block. A rank's syncs within one op publish their phase in that op's
// span, next to the op's fingerprint and, for a tiny all-reduce, the data itself, so that a peer
// that sees the phase finds the rest in the same 64-byte cache line (up to headMax bytes of
// data): one cache miss per peer per sync. Ops alternate between two such op spans (128 bytes
// apart): a rank rewrites one two ops later, once every member has passed a sync of the op
// between. A span's second cache line holds the rest of an inline payload longer than headMax (a
// waiter loads that line while it spins, so that its miss overlaps the phase's instead of
// following it), then the op's rarely used extra fields (all-to-all's block size, single-copy's
// address).
const (
	ctrlOp    = 0           // 2 x op span (line bytes each)
	fpOff     = 8           // the fingerprint's offset in an op span, after the uint64 phase
	inlineOff = 32          // the inline payload's offset in an op span
	headMax   = 32          // the part of an inline payload in the span's first cache line
	inlineMax = 80          // the largest inline payload: all-reduces up to this size skip the slots
	extraOff  = 112         // the extra fields' offset in an op span
	ctrlPid   = 2 * line    // int64: the rank's pid (liveness)
	ctrlSleep = ctrlPid + 8 // uint32: peers sleeping on a word this rank advances (futex.go)
	ctrlAbort = 3 * line    // uint64: abort word (class<<32 | lost rank+1), 0 while healthy
	// uint64, rank 0's only: how the group writes its slots, a bit per kind and size (slotwrites.go)
	ctrlWrites = ctrlAbort + 8
	// uint64: bit p is set once this rank has read rank p's memory with process_vm_readv at
	// setup, so that p may send it single-copy messages (p2p.go)
	ctrlReads = ctrlAbort + 16
)

// fingerprint is what a rank says it is doing at the first sync of an op; every rank checks
// every other's, so a mismatch is an error on all of them. Three words (the small fields packed
// in one), so that it stays in registers and is published with three stores: a struct of byte
// fields is built in memory and copied with wide loads that stall on the narrow stores (~10 ns
// per op).
type fingerprint struct {
	Seq   uint64
	Count int64
	What  uint64 // the root (low 32 bits), then the op kind, dtype, reduce op and asked reduce op, a byte each
}

func (f fingerprint) root() int32   { return int32(uint32(f.What)) }
func (f fingerprint) kind() uint8   { return uint8(f.What >> 32) }
func (f fingerprint) dtype() uint8  { return uint8(f.What >> 40) }
func (f fingerprint) reduce() uint8 { return uint8(f.What >> 48) }
func (f fingerprint) asked() uint8  { return uint8(f.What >> 56) }

// opExtra holds what only some ops publish, in the op span's second cache line.
type opExtra struct {
	MaxBlock int64  // all-to-all: the largest block this rank sends or receives (bytes)
	Addr     uint64 // single-copy ops: the address of this rank's buffer; all-to-all: splitCheck
}

// The phase, the fingerprint and the payload's head share one 64-byte cache line; the payload's
// tail and the extra fields fill the second (the build fails otherwise).
var (
	_ [inlineOff - fpOff - int(unsafe.Sizeof(fingerprint{}))]struct{}
	_ [64 - inlineOff - headMax]struct{}
	_ [inlineOff + headMax - 64]struct{}
	_ [extraOff - inlineOff - inlineMax]struct{}
	_ [line - extraOff - int(unsafe.Sizeof(opExtra{}))]struct{}
)

// layout computes a group's segment geometry.
type layout struct {
	n            int
	slotBytes    int
	mailboxBytes int
	ctrlOff      int
	slotOff      int
	mailOff      int
	size         int
}

func newLayout(n, slotBytes, mailboxBytes int) layout {
	l := layout{n: n, slotBytes: slotBytes, mailboxBytes: mailboxBytes}
	l.ctrlOff = headerSize
	l.slotOff = l.ctrlOff + n*ctrlSize
	l.mailOff = l.slotOff + n*2*slotBytes
	l.size = l.mailOff + n*n*l.mailboxSize()
	return l
}

// mailboxSize is the span of one mailbox: its counters, its box and its ring.
func (l layout) mailboxSize() int { return mailboxHdr + boxSlots*boxSlot + l.mailboxBytes }

// segment is a mapped shared-memory segment.
type segment struct {
	mem []byte
	l   layout
}

// createSegment makes an anonymous shared-memory file (memfd) of the layout's size and maps it.
// It is never linked into /dev/shm, so nothing can be left behind, even after a crash; peers
// open it through /proc/<pid>/fd/<fd> while the creator keeps fd open.
func createSegment(name string, l layout) (*segment, int, error) {
	fd, err := newMemfd(name, l.size)
	if err != nil {
		return nil, -1, err
	}
	seg, err := mapSegment(fd, l)
	if err != nil {
		unix.Close(fd)
		return nil, -1, err
	}
	atomic.StoreUint64(seg.u64(0), magic)
	return seg, fd, nil
}

// newMemfd makes an anonymous shared-memory file of size bytes (zeroed), labelled with name.
func newMemfd(name string, size int) (int, error) {
	// The name only labels the file in /proc/<pid>/fd; Linux takes at most 249 bytes, and
	// sub-group names list their ranks.
	label := "gccl-" + name
	if len(label) > 200 {
		label = label[:200]
	}
	fd, err := unix.MemfdCreate(label, unix.MFD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sizing shared memory to %d bytes: %w", size, err)
	}
	return fd, nil
}

// openPeerFile opens the shared-memory file that process pid holds as fd (what names it in
// errors) and checks that it has size bytes.
func openPeerFile(pid, fd int, what string, size int) (*os.File, error) {
	path := fmt.Sprintf("/proc/%d/fd/%d", pid, fd)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s at %s: %w (are all ranks on this host, as the same user?)", what, path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Size() != int64(size) {
		f.Close()
		return nil, fmt.Errorf("%s has %d bytes, this rank expects %d: ranks disagree on the group size or the backend settings", what, st.Size(), size)
	}
	return f, nil
}

// openSegment maps the segment that process pid holds as fd.
func openSegment(pid, fd int, l layout) (*segment, error) {
	f, err := openPeerFile(pid, fd, "the group's segment", l.size)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seg, err := mapSegment(int(f.Fd()), l)
	if err != nil {
		return nil, err
	}
	if m := atomic.LoadUint64(seg.u64(0)); m != magic {
		seg.unmap()
		return nil, fmt.Errorf("/proc/%d/fd/%d is not a segment of this gccl build's layout (magic %#x, want %#x): do all ranks run the same build?", pid, fd, m, magic)
	}
	return seg, nil
}

func mapSegment(fd int, l layout) (*segment, error) {
	mem, err := mapShared(fd, l.size)
	if err != nil {
		return nil, err
	}
	return &segment{mem: mem, l: l}, nil
}

// mapShared maps size bytes of the shared-memory file fd, readable and writable.
func mapShared(fd, size int) ([]byte, error) {
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping %d bytes of shared memory: %w", size, err)
	}
	return mem, nil
}

func (s *segment) unmap() {
	if s.mem != nil {
		_ = unix.Munmap(s.mem)
		s.mem = nil
	}
}

func (s *segment) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&s.mem[off])) }

func (s *segment) ctrl(rank, field int) *uint64 { return s.u64(s.l.ctrlOff + rank*ctrlSize + field) }

// sleepers is rank's count of peers sleeping until it next advances a word they wait on
// (futex.go).
func (s *segment) sleepers(rank int) *uint32 {
	return (*uint32)(unsafe.Pointer(s.ctrl(rank, ctrlSleep)))
}

// opLine is the offset of rank's op span for op number opSeq.
func (s *segment) opLine(rank int, opSeq uint64) int {
	return s.l.ctrlOff + rank*ctrlSize + ctrlOp + int(opSeq%2)*line
}

// opLine is what a rank publishes in its op span for one op (but the extra fields).
type opLine struct {
	phase  uint64 // the sync phase this rank reached in the op
	fp     fingerprint
	_      [inlineOff - fpOff - int(unsafe.Sizeof(fingerprint{}))]byte
	inline [inlineMax]byte // a tiny all-reduce's input
}

// tail is a word in the op span's second cache line, which a waiter for an inline payload
// longer than headMax loads while it spins.
func (l *opLine) tail() *uint64 { return (*uint64)(unsafe.Pointer(&l.inline[headMax])) }

// The struct matches the offsets (the build fails otherwise).
var (
	_ [unsafe.Offsetof(opLine{}.fp) - fpOff]struct{}
	_ [fpOff - unsafe.Offsetof(opLine{}.fp)]struct{}
	_ [unsafe.Offsetof(opLine{}.inline) - inlineOff]struct{}
	_ [inlineOff - unsafe.Offsetof(opLine{}.inline)]struct{}
)

// line is rank's op span for op number opSeq.
func (s *segment) line(rank int, opSeq uint64) *opLine {
	return (*opLine)(unsafe.Pointer(&s.mem[s.opLine(rank, opSeq)]))
}

// phase is the sync phase rank published during op number opSeq.
func (s *segment) phase(rank int, opSeq uint64) *uint64 { return &s.line(rank, opSeq).phase }

// fp is rank's fingerprint for op number opSeq.
func (s *segment) fp(rank int, opSeq uint64) *fingerprint { return &s.line(rank, opSeq).fp }

// extra is rank's extra fields for op number opSeq.
func (s *segment) extra(rank int, opSeq uint64) *opExtra {
	return (*opExtra)(unsafe.Pointer(&s.mem[s.opLine(rank, opSeq)+extraOff]))
}

// slot is rank's buffer b (0 or 1).
func (s *segment) slot(rank, b int) []byte {
	off := s.l.slotOff + (rank*2+b)*s.l.slotBytes
	return s.mem[off : off+s.l.slotBytes : off+s.l.slotBytes]
}

// mailbox is the ring buffer carrying src's messages to dst: its head counter (bytes written,
// by src), tail counter (bytes consumed, by dst) and data.
func (s *segment) mailbox(src, dst int) (head, tail *uint64, data []byte) {
	off := s.mailboxOff(src, dst)
	start := off + mailboxHdr + boxSlots*boxSlot
	data = s.mem[start : start+s.l.mailboxBytes : start+s.l.mailboxBytes]
	return s.u64(off), s.u64(off + line), data
}

func (s *segment) mailboxOff(src, dst int) int {
	return s.l.mailOff + (src*s.l.n+dst)*s.l.mailboxSize()
}

// mailboxReads is the count of src's single-copy messages that dst has read (written by dst).
func (s *segment) mailboxReads(src, dst int) *uint64 {
	return s.u64(s.mailboxOff(src, dst) + line + 64)
}

// mailboxSent is the count of messages src has sent dst, through the box or the ring (written
// by src).
func (s *segment) mailboxSent(src, dst int) *uint64 { return s.u64(s.mailboxOff(src, dst) + 2*line) }

// boxTail is the count of box slots from src that dst has read (written by dst).
func (s *segment) boxTail(src, dst int) *uint64 { return s.u64(s.mailboxOff(src, dst) + line + 8) }

// boxSlot is slot i mod boxSlots of the box carrying src's small messages to dst.
func (s *segment) boxSlot(src, dst int, i uint64) []byte {
	off := s.mailboxOff(src, dst) + mailboxHdr + int(i%boxSlots)*boxSlot
	return s.mem[off : off+boxSlot : off+boxSlot]
}
