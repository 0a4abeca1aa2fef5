package flightrecorder

import (
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxFrames is the deepest stack an entry keeps (innermost frames win).
const MaxFrames = 64

// GroupInfo describes a process group for Dump.PGConfig.
type GroupInfo struct {
	// ID is the group's id in this process, the value of OpRecord.Group and
	// of pg_id.
	ID int
	// Name is the group's name, the first half of process_group and the
	// group's key in pg_config. Default: ID in decimal.
	Name string
	// Desc describes the group ("default_pg", "tp", ...). Default:
	// UndefinedDesc.
	Desc string
	// Ranks lists the members' global ranks, in group-rank order.
	Ranks []int
}

// OpRecord describes an op being issued, for Recorder.Record.
type OpRecord struct {
	// Group is the issuing group's id (GroupInfo.ID).
	Group int
	// ProfilingName is "<backend>:<op>", e.g. "gloo:all_reduce" or
	// "gloo:send 0->1".
	ProfilingName string
	// CollectiveSeqID, P2PSeqID and OpID are the group's counters after
	// this op was issued; see Entry.
	CollectiveSeqID, P2PSeqID, OpID int64
	// InputSizes and OutputSizes hold one shape per tensor. Record copies
	// them; the caller may reuse the slices at once.
	InputSizes [][]int64
	// InputDtypes holds one PyTorch dtype name per input tensor.
	InputDtypes []string
	OutputSizes [][]int64
	// OutputDtypes holds one PyTorch dtype name per output tensor.
	OutputDtypes []string
	// IsP2P marks a point-to-point op.
	IsP2P bool
	// Timeout is the op's timeout.
	Timeout time.Duration
	// CaptureStack records the caller's stack (costs about a microsecond).
	CaptureStack bool
	// Started records the entry already started, discovered at its creation: the op runs as
	// it is issued (a synchronous op with nothing queued ahead of it). It spares the clock
	// read of a separate Started call.
	Started bool
	// ThreadName and ThreadID, optional, end up in thread_name and
	// thread_id.
	ThreadName, ThreadID string
}

type opState uint8

const (
	opScheduled opState = iota
	opStarted
	opCompleted
)

// Bits of slotExtra.converted.
const (
	convCreated uint8 = 1 << iota
	convStarted
	convCompleted
)

// groupState is what the recorder knows about one process group. Pointers to
// it are stable: groups are never removed.
type groupState struct {
	id         int
	name, desc string
	gen        uint64 // bumped when name or desc change: Ops made before are stale
	ranks      string // FormatRanks of the members
	registered bool   // appears in pg_config
	hasStatus  bool   // appears in pg_status
	status     PGStatus
	ops        [8]*Op // the group's recent Ops, for reuse
	nextOp     int    // the one ops replaces next
	lastOp     int    // the one last used
}

// Op is what the entries of one kind of op share: group, profiling name, tensor shapes and
// dtypes, timeout, thread, whether it is point-to-point. A caller that issues the same op
// again and again (a decode loop's all-reduce, a training step's per-layer ops) makes its Op
// once with NewOp and records each instance with RecordOp: recording then writes counters and
// a time into one cache line instead of comparing and copying shapes and names. An Op never
// changes once made and may be used from any goroutine; it belongs to the Recorder that made it.
type Op struct {
	g                    *groupState
	gen                  uint64 // g.gen when made: pgName and pgDesc are g's then
	pgName, pgDesc       string
	profilingName        string
	threadName, threadID string
	isP2P                bool
	captureStack         bool
	timeoutMs            int64
	shape                *opShape
}

// opShape is the tensor shapes and dtypes of an Op, flattened as in PyTorch: dims[i] is the
// rank of tensor i (inputs, then outputs) and sizes holds all extents back to back.
type opShape struct {
	inDims, outDims     []int32
	sizes               []int64
	inDtypes, outDtypes []string
}

// opLocked returns the group's Op for op and the given shapes, made and remembered if it has
// none. r.mu must be held.
func (g *groupState) opLocked(op *OpRecord, inSizes, outSizes [][]int64, inDtypes, outDtypes []string) *Op {
	if o := g.ops[g.lastOp]; o != nil && o.matches(op, inSizes, outSizes, inDtypes, outDtypes) {
		return o // most often: an op repeats the group's previous one
	}
	for i, o := range g.ops {
		if i != g.lastOp && o != nil && o.matches(op, inSizes, outSizes, inDtypes, outDtypes) {
			g.lastOp = i
			return o
		}
	}
	o := &Op{
		g: g, gen: g.gen, pgName: g.name, pgDesc: g.desc,
		profilingName: op.ProfilingName, threadName: op.ThreadName, threadID: op.ThreadID,
		isP2P: op.IsP2P, captureStack: op.CaptureStack, timeoutMs: op.Timeout.Milliseconds(),
		shape: &opShape{inDtypes: slices.Clone(inDtypes), outDtypes: slices.Clone(outDtypes)},
	}
	sh := o.shape
	sh.inDims, sh.sizes = appendShapes(nil, nil, inSizes)
	sh.outDims, sh.sizes = appendShapes(nil, sh.sizes, outSizes)
	g.ops[g.nextOp] = o
	g.lastOp = g.nextOp
	g.nextOp = (g.nextOp + 1) % len(g.ops)
	return o
}

// matches reports whether o is what op and the given shapes describe, in o's group as it
// stands.
func (o *Op) matches(op *OpRecord, inSizes, outSizes [][]int64, inDtypes, outDtypes []string) bool {
	if o.gen != o.g.gen || o.profilingName != op.ProfilingName || o.isP2P != op.IsP2P ||
		o.captureStack != op.CaptureStack || o.timeoutMs != op.Timeout.Milliseconds() ||
		o.threadName != op.ThreadName || o.threadID != op.ThreadID {
		return false
	}
	sh := o.shape
	if !slices.Equal(sh.inDtypes, inDtypes) || !slices.Equal(sh.outDtypes, outDtypes) {
		return false
	}
	rest, ok := matchShapes(sh.inDims, inSizes, sh.sizes)
	if ok {
		_, ok = matchShapes(sh.outDims, outSizes, rest) // the dims account for every size
	}
	return ok
}

// current returns o, or if its group's name or desc changed since it was made, the group's
// equal Op with the current ones. r.mu must be held.
func (o *Op) current() *Op {
	if o.gen == o.g.gen {
		return o
	}
	rec := OpRecord{
		Group: o.g.id, ProfilingName: o.profilingName, IsP2P: o.isP2P, CaptureStack: o.captureStack,
		Timeout: time.Duration(o.timeoutMs) * time.Millisecond, ThreadName: o.threadName, ThreadID: o.threadID,
	}
	sh := o.shape
	in, out := sh.sizesOf()
	return o.g.opLocked(&rec, in, out, sh.inDtypes, sh.outDtypes)
}

// sizesOf returns the shapes sh describes, inputs then outputs.
func (sh *opShape) sizesOf() (in, out [][]int64) {
	at := 0
	split := func(dims []int32) [][]int64 {
		var shapes [][]int64
		for _, nd := range dims {
			shapes = append(shapes, sh.sizes[at:at+int(nd)])
			at += int(nd)
		}
		return shapes
	}
	in = split(sh.inDims)
	return in, split(sh.outDims)
}

// matchShapes reports whether shapes are the ones dims and the front of sizes describe, and
// returns the rest of sizes.
func matchShapes(dims []int32, shapes [][]int64, sizes []int64) ([]int64, bool) {
	if len(dims) != len(shapes) {
		return nil, false
	}
	for i, shape := range shapes {
		if int(dims[i]) != len(shape) || len(sizes) < len(shape) || !slices.Equal(sizes[:len(shape)], shape) {
			return nil, false
		}
		sizes = sizes[len(shape):]
	}
	return sizes, true
}

// slot is one ring position: what recording an op writes, one cache line (64 bytes; the ring
// of a default-sized recorder is a large allocation, so page-aligned). Its state follows from
// its times (0: not reached). The rest of an entry is its Op, and in the slot's slotExtra what
// only stacks, failures and dumps write.
type slot struct {
	key                                     uint64 // record id + 1; 0: never used
	op                                      *Op
	collSeq, p2pSeq, opID                   int64
	createdTick, startedTick, completedTick int64 // clock ticks (see clock.go)
}

func (s *slot) state() opState {
	switch {
	case s.completedTick != 0:
		return opCompleted
	case s.startedTick != 0:
		return opStarted
	}
	return opScheduled
}

// hasDuration reports whether the entry completed after a separate start, so that duration_ms
// is known (Completed keeps the two ticks apart).
func (s *slot) hasDuration() bool {
	return s.completedTick != 0 && s.completedTick != s.startedTick
}

// slotExtra is the rest of a slot: valid for the entry whose key it holds, zero for any other.
type slotExtra struct {
	key                    uint64
	retired                bool  // retired without completing (Retire)
	converted              uint8 // which of the times below Snapshot has computed (conv*)
	createdNs              int64 // wall clock, from the ticks: kept once computed, so
	startedNs, completedNs int64 // that successive dumps agree
	durationMs             float64
	pcs                    []uintptr // reused from entry to entry
}

// extraLocked returns the extra of slot i for its entry, reset if it held another's. r.mu
// must be held.
func (r *Recorder) extraLocked(i uint64) *slotExtra {
	x := &r.extra[i]
	if key := r.slots[i].key; x.key != key {
		*x = slotExtra{key: key, pcs: x.pcs[:0]}
	}
	return x
}

// Recorder is a fixed-size ring of the most recent ops, safe for concurrent
// use. A Recorder of capacity 0, and a nil *Recorder, is disabled: every
// method is a cheap no-op and Snapshot returns an empty Dump.
type Recorder struct {
	mu             sync.Mutex
	slots          []slot
	extra          []slotExtra // parallel to slots
	nextID         uint64
	groups         map[int]*groupState
	byID           []*groupState // groups with small non-negative ids, indexed by id (no map lookup per op)
	commLibVersion string
}

// New returns a Recorder keeping the newest capacity ops. capacity <= 0
// returns a disabled Recorder.
func New(capacity int) *Recorder {
	r := &Recorder{}
	if capacity > 0 {
		r.slots = make([]slot, capacity)
		r.extra = make([]slotExtra, capacity)
		r.groups = make(map[int]*groupState)
	}
	return r
}

// Enabled reports whether r records anything.
func (r *Recorder) Enabled() bool { return r != nil && len(r.slots) > 0 }

// Capacity returns how many ops r keeps (0 if disabled).
func (r *Recorder) Capacity() int {
	if r == nil {
		return 0
	}
	return len(r.slots)
}

// SetCommLibVersion sets the dump's comm_lib_version (e.g. the oneCCL
// version a backend runs on).
func (r *Recorder) SetCommLibVersion(v string) {
	if !r.Enabled() {
		return
	}
	r.mu.Lock()
	r.commLibVersion = v
	r.mu.Unlock()
}

// RegisterGroup adds g to pg_config, or updates it. Entries already recorded
// keep the name and desc they were recorded with.
func (r *Recorder) RegisterGroup(g GroupInfo) {
	if !r.Enabled() {
		return
	}
	name := g.Name
	if name == "" {
		name = strconv.Itoa(g.ID)
	}
	desc := g.Desc
	if desc == "" {
		desc = UndefinedDesc
	}
	ranks := FormatRanks(g.Ranks)
	r.mu.Lock()
	gs := r.groupLocked(g.ID)
	if gs.name != name || gs.desc != desc {
		gs.name, gs.desc = name, desc
		gs.gen++
	}
	gs.ranks, gs.registered = ranks, true
	r.mu.Unlock()
}

// groupLocked returns the state of group id, creating an unregistered one if
// needed. r.mu must be held.
func (r *Recorder) groupLocked(id int) *groupState {
	if id >= 0 && id < len(r.byID) && r.byID[id] != nil {
		return r.byID[id]
	}
	if gs, ok := r.groups[id]; ok {
		return gs
	}
	gs := &groupState{id: id, name: strconv.Itoa(id), desc: UndefinedDesc}
	gs.status = PGStatus{-1, -1, -1}
	r.groups[id] = gs
	if id >= 0 && id < 1<<16 {
		if id >= len(r.byID) {
			r.byID = append(r.byID, make([]*groupState, id+1-len(r.byID))...)
		}
		r.byID[id] = gs
	}
	return gs
}

// stackPool holds pc buffers for CaptureStack, so capturing does not
// allocate in steady state and does not happen under the lock.
var stackPool = sync.Pool{New: func() any { return new([MaxFrames]uintptr) }}

// Record appends op in state "scheduled" and returns its record id, which
// Started and Completed take. When the ring is full the oldest entry is
// overwritten. It sets the group's last_enqueued_collective. A disabled
// Recorder returns 0.
func (r *Recorder) Record(op OpRecord) uint64 {
	return r.RecordShapes(&op, op.InputSizes, op.OutputSizes, op.InputDtypes, op.OutputDtypes)
}

// RecordShapes is Record with the tensors' sizes and dtypes given apart from op (whose own
// are ignored), and op by pointer (it is not kept). Record copies them, so a caller on a hot
// path can keep them in stack buffers: passed inside op they would escape with op's strings.
func (r *Recorder) RecordShapes(op *OpRecord, inSizes, outSizes [][]int64, inDtypes, outDtypes []string) uint64 {
	if !r.Enabled() {
		return 0
	}
	stack, depth := captureStack(op.CaptureStack)
	now := ticks()
	r.mu.Lock()
	o := r.groupLocked(op.Group).opLocked(op, inSizes, outSizes, inDtypes, outDtypes)
	id := r.recordLocked(o, op.CollectiveSeqID, op.P2PSeqID, op.OpID, op.Started, now, stack, depth)
	r.mu.Unlock()
	if stack != nil {
		stackPool.Put(stack)
	}
	return id
}

// NewOp returns the Op that op and the given shapes describe (op's counters and Started are
// not part of it), for RecordOp. It copies what it keeps. A disabled Recorder returns nil.
func (r *Recorder) NewOp(op *OpRecord, inSizes, outSizes [][]int64, inDtypes, outDtypes []string) *Op {
	if !r.Enabled() {
		return nil
	}
	r.mu.Lock()
	o := r.groupLocked(op.Group).opLocked(op, inSizes, outSizes, inDtypes, outDtypes)
	r.mu.Unlock()
	return o
}

// RecordOp is Record of an instance of o with the given counters (see OpRecord), started at
// its creation if started is set. o must come from r's NewOp (nil on a disabled Recorder).
func (r *Recorder) RecordOp(o *Op, collSeq, p2pSeq, opID int64, started bool) uint64 {
	if !r.Enabled() {
		return 0
	}
	stack, depth := captureStack(o.captureStack)
	now := ticks()
	r.mu.Lock()
	id := r.recordLocked(o, collSeq, p2pSeq, opID, started, now, stack, depth)
	r.mu.Unlock()
	if stack != nil {
		stackPool.Put(stack)
	}
	return id
}

// captureStack returns the caller's caller's stack from the pool, if asked.
func captureStack(capture bool) (*[MaxFrames]uintptr, int) {
	if !capture {
		return nil, 0
	}
	stack := stackPool.Get().(*[MaxFrames]uintptr)
	return stack, runtime.Callers(3, stack[:])
}

// recordLocked writes the next slot. r.mu must be held.
func (r *Recorder) recordLocked(o *Op, collSeq, p2pSeq, opID int64, started bool, now int64, stack *[MaxFrames]uintptr, depth int) uint64 {
	o = o.current()
	id := r.nextID
	r.nextID++
	i := id % uint64(len(r.slots))
	s := &r.slots[i]
	s.key, s.op = id+1, o
	s.collSeq, s.p2pSeq, s.opID = collSeq, p2pSeq, opID
	s.createdTick, s.startedTick, s.completedTick = now, 0, 0
	seq := s.seq()
	g := o.g
	g.hasStatus = true
	g.status.LastEnqueuedCollective = seq
	if started {
		s.startedTick = now
		g.status.LastStartedCollective = seq
	}
	if stack != nil {
		x := r.extraLocked(i)
		x.pcs = append(x.pcs, stack[:depth]...)
	}
	return id
}

func appendShapes(dims []int32, sizes []int64, shapes [][]int64) ([]int32, []int64) {
	for _, sh := range shapes {
		dims = append(dims, int32(len(sh)))
		sizes = append(sizes, sh...)
	}
	return dims, sizes
}

// seq is the sequence number pg_status reports for the op: PyTorch uses the
// work's sequence number, the p2p one for p2p ops.
func (s *slot) seq() int64 {
	if s.op.isP2P {
		return s.p2pSeq
	}
	return s.collSeq
}

// convert computes the times and duration of slot i's entry that are known and not yet
// computed, into its extra. r.mu must be held.
func (r *Recorder) convertLocked(i uint64, c converter) *slotExtra {
	s, x := &r.slots[i], r.extraLocked(i)
	if x.converted&convCreated == 0 {
		x.createdNs = c.wallNs(s.createdTick)
		x.converted |= convCreated
	}
	state := s.state()
	if state >= opStarted && x.converted&convStarted == 0 {
		// An op recorded started shares its creation's reading.
		x.startedNs = x.createdNs
		if s.startedTick != s.createdTick {
			x.startedNs = c.wallNs(s.startedTick)
		}
		x.converted |= convStarted
	}
	if state == opCompleted && x.converted&convCompleted == 0 {
		x.completedNs = c.wallNs(s.completedTick)
		if s.startedTick == s.completedTick {
			x.completedNs = x.startedNs
		}
		if s.hasDuration() {
			x.durationMs = c.ms(s.completedTick - s.startedTick)
		}
		x.converted |= convCompleted
	}
	return x
}

// lookupLocked returns the slot holding record id, or nil if that entry was
// overwritten or never recorded. r.mu must be held.
func (r *Recorder) lookupLocked(id uint64) *slot {
	s := &r.slots[id%uint64(len(r.slots))]
	if s.key != id+1 {
		return nil
	}
	return s
}

// Started moves entry id to "started", sets time_discovered_started_ns and
// the group's last_started_collective. It does nothing if the entry is past
// "scheduled" or was overwritten.
func (r *Recorder) Started(id uint64) {
	if !r.Enabled() {
		return
	}
	now := ticks()
	r.mu.Lock()
	if s := r.lookupLocked(id); s != nil && s.startedTick == 0 {
		s.startedTick = now
		s.op.g.status.LastStartedCollective = s.seq()
	}
	r.mu.Unlock()
}

// Completed moves entry id to "completed" and retires it: it sets
// time_discovered_completed_ns, duration_ms (measured on the monotonic clock
// from Started), retired and the group's last_completed_collective. An entry
// completed without Started gets its start time set to the completion time,
// as PyTorch does, and no duration. It does nothing if the entry already
// completed or was overwritten.
func (r *Recorder) Completed(id uint64) {
	if !r.Enabled() {
		return
	}
	now := ticks()
	r.mu.Lock()
	if s := r.lookupLocked(id); s != nil && s.completedTick == 0 {
		seq := s.seq()
		g := s.op.g
		if s.startedTick == 0 {
			s.startedTick = now
			g.status.LastStartedCollective = seq
		} else if now == s.startedTick {
			now++ // a duration, if only of a tick: hasDuration tells the cases apart by the ticks
		}
		s.completedTick = now
		g.status.LastCompletedCollective = seq
	}
	r.mu.Unlock()
}

// Retire marks entry id retired without completing it: the issuer gave up on
// the op (timeout, abort, error), which a dump shows as retired but not
// completed. It does nothing if the entry was overwritten.
func (r *Recorder) Retire(id uint64) {
	if !r.Enabled() {
		return
	}
	r.mu.Lock()
	if s := r.lookupLocked(id); s != nil {
		r.extraLocked(id % uint64(len(r.slots))).retired = true
	}
	r.mu.Unlock()
}

// Snapshot returns a deep copy of the recorder's state, entries oldest first.
// It holds the lock only while copying; stack symbolization happens after.
func (r *Recorder) Snapshot() Dump {
	d := Dump{
		Version:  Version,
		PGConfig: map[string]PGConfig{},
		PGStatus: map[string]PGStatus{},
		Entries:  []Entry{},
	}
	if !r.Enabled() {
		return d
	}
	conv := newConverter()

	r.mu.Lock()
	d.CommLibVersion = r.commLibVersion
	for _, g := range r.groups {
		if g.registered {
			d.PGConfig[g.name] = PGConfig{Name: g.name, Desc: g.desc, Ranks: g.ranks}
		}
		if g.hasStatus {
			d.PGStatus[strconv.Itoa(g.id)] = g.status
		}
	}

	n := uint64(len(r.slots))
	lo := uint64(0)
	if r.nextID > n {
		lo = r.nextID - n
	}
	count := int(r.nextID - lo)

	// Size the shared backing arrays, so the copy costs a handful of
	// allocations whatever the number of entries.
	var nShapes, nSizes, nDtypes, nPCs int
	for id := lo; id < r.nextID; id++ {
		sh := r.slots[id%n].op.shape
		nShapes += len(sh.inDims) + len(sh.outDims)
		nSizes += len(sh.sizes)
		nDtypes += len(sh.inDtypes) + len(sh.outDtypes)
		nPCs += len(r.extraLocked(id % n).pcs)
	}
	shapes := make([][]int64, nShapes)
	sizes := make([]int64, nSizes)
	dtypes := make([]string, nDtypes)
	pcs := make([]uintptr, nPCs)
	times := make([]int64, 2*count)
	durations := make([]float64, count)
	pcRanges := make([][2]int, count)
	d.Entries = make([]Entry, count)

	var iShape, iSize, iDtype, iPC int
	take := func(dims []int32, flat []int64, at int) ([][]int64, int) {
		out := shapes[iShape : iShape+len(dims) : iShape+len(dims)]
		for k, nd := range dims {
			end := iSize + int(nd)
			copy(sizes[iSize:end], flat[at:at+int(nd)])
			out[k] = sizes[iSize:end:end]
			iSize = end
			at += int(nd)
		}
		iShape += len(dims)
		return out, at
	}
	takeDtypes := func(src []string) []string {
		end := iDtype + len(src)
		copy(dtypes[iDtype:end], src)
		out := dtypes[iDtype:end:end]
		iDtype = end
		return out
	}
	for k := range count {
		i := (lo + uint64(k)) % n
		s := &r.slots[i]
		o, sh := s.op, s.op.shape
		x := r.convertLocked(i, conv)
		e := &d.Entries[k]
		e.RecordID = s.key - 1
		e.PGID = o.g.id
		e.ProcessGroup = [2]string{o.pgName, o.pgDesc}
		e.ThreadName, e.ThreadID = o.threadName, o.threadID
		e.CollectiveSeqID, e.P2PSeqID, e.OpID = s.collSeq, s.p2pSeq, s.opID
		e.ProfilingName = o.profilingName
		e.TimeCreatedNs = x.createdNs
		var at int
		e.InputSizes, at = take(sh.inDims, sh.sizes, 0)
		e.OutputSizes, _ = take(sh.outDims, sh.sizes, at)
		e.InputDtypes = takeDtypes(sh.inDtypes)
		e.OutputDtypes = takeDtypes(sh.outDtypes)
		state := s.state()
		switch state {
		case opScheduled:
			e.State = StateScheduled
		case opStarted:
			e.State = StateStarted
		default:
			e.State = StateCompleted
		}
		if state >= opStarted {
			times[2*k] = x.startedNs
			e.TimeDiscoveredStartedNs = &times[2*k]
		}
		if state == opCompleted {
			times[2*k+1] = x.completedNs
			e.TimeDiscoveredCompletedNs = &times[2*k+1]
		}
		if s.hasDuration() {
			durations[k] = x.durationMs
			e.DurationMs = &durations[k]
		}
		e.Retired = state == opCompleted || x.retired
		e.TimeoutMs = o.timeoutMs
		e.IsP2P = o.isP2P
		end := iPC + copy(pcs[iPC:], x.pcs)
		pcRanges[k] = [2]int{iPC, end}
		iPC = end
	}
	r.mu.Unlock()

	for k := range d.Entries {
		d.Entries[k].Frames = symbolize(pcs[pcRanges[k][0]:pcRanges[k][1]])
	}
	return d
}

// ownPackage is this package's import path followed by ".", the prefix of
// its function names.
var ownPackage = func() string {
	name := runtime.FuncForPC(reflect.ValueOf(New).Pointer()).Name()
	return strings.TrimSuffix(name, "New")
}()

// symbolize turns return PCs into frames, innermost first, dropping runtime
// and flightrecorder frames.
func symbolize(pcs []uintptr) []Frame {
	frames := []Frame{}
	if len(pcs) == 0 {
		return frames
	}
	it := runtime.CallersFrames(pcs)
	for {
		f, more := it.Next()
		if f.Function != "" && !strings.HasPrefix(f.Function, "runtime.") &&
			!strings.HasPrefix(f.Function, ownPackage) {
			frames = append(frames, Frame{Name: f.Function, Filename: f.File, Line: f.Line})
		}
		if !more {
			return frames
		}
	}
}
