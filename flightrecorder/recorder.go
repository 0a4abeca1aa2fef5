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

// Bits of slot.converted.
const (
	convCreated uint8 = 1 << iota
	convStarted
	convCompleted
)

const (
	opScheduled opState = iota
	opStarted
	opCompleted
)

// groupState is what the recorder knows about one process group. Pointers to
// it are stable: groups are never removed.
type groupState struct {
	id         int
	name, desc string
	ranks      string // FormatRanks of the members
	registered bool   // appears in pg_config
	hasStatus  bool   // appears in pg_status
	status     PGStatus
	shapes     [4]*opShape // the group's recent shapes, for reuse
	nextShape  int         // the one shapes replaces next
	lastShape  int         // the one last used
}

// opShape is the tensor shapes and dtypes of an entry, flattened as in PyTorch: dims[i] is the
// rank of tensor i (inputs, then outputs) and sizes holds all extents back to back. It never
// changes once made, so the entries of a group that repeat shapes (a decode loop's all-reduces,
// a training step's per-layer ops) share one: recording an op costs a comparison, not a copy.
type opShape struct {
	inDims, outDims     []int32
	sizes               []int64
	inDtypes, outDtypes []string
}

// shapeLocked returns the group's opShape equal to the given shapes, made and remembered if it
// has none. r.mu must be held.
func (g *groupState) shapeLocked(inSizes, outSizes [][]int64, inDtypes, outDtypes []string) *opShape {
	if sh := g.shapes[g.lastShape]; sh != nil && sh.matches(inSizes, outSizes, inDtypes, outDtypes) {
		return sh // most often: an op repeats the group's previous shapes
	}
	for i, sh := range g.shapes {
		if i != g.lastShape && sh != nil && sh.matches(inSizes, outSizes, inDtypes, outDtypes) {
			g.lastShape = i
			return sh
		}
	}
	sh := &opShape{inDtypes: slices.Clone(inDtypes), outDtypes: slices.Clone(outDtypes)}
	sh.inDims, sh.sizes = appendShapes(nil, nil, inSizes)
	sh.outDims, sh.sizes = appendShapes(nil, sh.sizes, outSizes)
	g.shapes[g.nextShape] = sh
	g.lastShape = g.nextShape
	g.nextShape = (g.nextShape + 1) % len(g.shapes)
	return sh
}

func (sh *opShape) matches(inSizes, outSizes [][]int64, inDtypes, outDtypes []string) bool {
	if !slices.Equal(sh.inDtypes, inDtypes) || !slices.Equal(sh.outDtypes, outDtypes) {
		return false
	}
	rest, ok := matchShapes(sh.inDims, inSizes, sh.sizes)
	if ok {
		_, ok = matchShapes(sh.outDims, outSizes, rest) // the dims account for every size
	}
	return ok
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

// slot is one ring position. Its stack buffer is reused from op to op and its
// shapes are shared (opShape), so a steady-state Record allocates nothing.
type slot struct {
	used  bool
	id    uint64
	group *groupState

	pgName, pgDesc         string
	threadName, threadID   string
	profilingName          string
	collSeq, p2pSeq, opID  int64
	isP2P, retired         bool
	state                  opState
	hasDuration            bool // completed after a separate start: duration_ms is known
	timeoutMs              int64
	createdTick            int64 // clock ticks (see clock.go) at Record
	startedTick            int64 // valid from the state reached
	completedTick          int64
	converted              uint8 // which of the times below Snapshot has computed (conv*)
	createdNs              int64 // wall clock, from the ticks: kept once computed, so
	startedNs, completedNs int64 // that successive dumps agree
	durationMs             float64

	shape *opShape
	pcs   []uintptr
}

// Recorder is a fixed-size ring of the most recent ops, safe for concurrent
// use. A Recorder of capacity 0, and a nil *Recorder, is disabled: every
// method is a cheap no-op and Snapshot returns an empty Dump.
type Recorder struct {
	mu             sync.Mutex
	slots          []slot
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
	gs.name, gs.desc, gs.ranks, gs.registered = name, desc, ranks, true
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
	var stack *[MaxFrames]uintptr
	var depth int
	if op.CaptureStack {
		stack = stackPool.Get().(*[MaxFrames]uintptr)
		depth = runtime.Callers(2, stack[:])
	}
	now := ticks()

	r.mu.Lock()
	g := r.groupLocked(op.Group)
	id := r.nextID
	r.nextID++
	s := &r.slots[id%uint64(len(r.slots))]
	s.used = true
	s.id = id
	s.group = g
	s.pgName, s.pgDesc = g.name, g.desc
	s.threadName, s.threadID = op.ThreadName, op.ThreadID
	s.profilingName = op.ProfilingName
	s.collSeq, s.p2pSeq, s.opID = op.CollectiveSeqID, op.P2PSeqID, op.OpID
	s.isP2P = op.IsP2P
	s.retired = false
	s.state = opScheduled
	if op.Started {
		s.state = opStarted
	}
	s.hasDuration = false
	s.timeoutMs = op.Timeout.Milliseconds()
	s.createdTick, s.startedTick, s.completedTick = now, now, 0
	s.converted = 0
	s.shape = g.shapeLocked(inSizes, outSizes, inDtypes, outDtypes)
	if stack != nil {
		s.pcs = append(s.pcs[:0], stack[:depth]...)
	} else {
		s.pcs = s.pcs[:0]
	}
	g.hasStatus = true
	g.status.LastEnqueuedCollective = s.seq()
	if op.Started {
		g.status.LastStartedCollective = s.seq()
	}
	r.mu.Unlock()

	if stack != nil {
		stackPool.Put(stack)
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
	if s.isP2P {
		return s.p2pSeq
	}
	return s.collSeq
}

// convert computes the slot's wall-clock times and duration that are known and not yet
// computed. r.mu must be held.
func (s *slot) convert(c converter) {
	if s.converted&convCreated == 0 {
		s.createdNs = c.wallNs(s.createdTick)
		s.converted |= convCreated
	}
	if s.state >= opStarted && s.converted&convStarted == 0 {
		// An op recorded started shares its creation's reading.
		s.startedNs = s.createdNs
		if s.startedTick != s.createdTick {
			s.startedNs = c.wallNs(s.startedTick)
		}
		s.converted |= convStarted
	}
	if s.state == opCompleted && s.converted&convCompleted == 0 {
		s.completedNs = c.wallNs(s.completedTick)
		if s.startedTick == s.completedTick {
			s.completedNs = s.startedNs
		}
		if s.hasDuration {
			s.durationMs = c.ms(s.completedTick - s.startedTick)
		}
		s.converted |= convCompleted
	}
}

// lookupLocked returns the slot holding record id, or nil if that entry was
// overwritten or never recorded. r.mu must be held.
func (r *Recorder) lookupLocked(id uint64) *slot {
	s := &r.slots[id%uint64(len(r.slots))]
	if !s.used || s.id != id {
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
	if s := r.lookupLocked(id); s != nil && s.state == opScheduled {
		s.state = opStarted
		s.startedTick = now
		s.group.status.LastStartedCollective = s.seq()
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
	if s := r.lookupLocked(id); s != nil && s.state != opCompleted {
		seq := s.seq()
		if s.state == opScheduled {
			s.startedTick = now
			s.group.status.LastStartedCollective = seq
		} else {
			s.hasDuration = true
		}
		s.state = opCompleted
		s.completedTick = now
		s.retired = true
		s.group.status.LastCompletedCollective = seq
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
		s.retired = true
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
		s := &r.slots[id%n]
		nShapes += len(s.shape.inDims) + len(s.shape.outDims)
		nSizes += len(s.shape.sizes)
		nDtypes += len(s.shape.inDtypes) + len(s.shape.outDtypes)
		nPCs += len(s.pcs)
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
		s := &r.slots[(lo+uint64(k))%n]
		e := &d.Entries[k]
		e.RecordID = s.id
		e.PGID = s.group.id
		e.ProcessGroup = [2]string{s.pgName, s.pgDesc}
		e.ThreadName, e.ThreadID = s.threadName, s.threadID
		e.CollectiveSeqID, e.P2PSeqID, e.OpID = s.collSeq, s.p2pSeq, s.opID
		e.ProfilingName = s.profilingName
		s.convert(conv)
		e.TimeCreatedNs = s.createdNs
		var at int
		e.InputSizes, at = take(s.shape.inDims, s.shape.sizes, 0)
		e.OutputSizes, _ = take(s.shape.outDims, s.shape.sizes, at)
		e.InputDtypes = takeDtypes(s.shape.inDtypes)
		e.OutputDtypes = takeDtypes(s.shape.outDtypes)
		switch s.state {
		case opScheduled:
			e.State = StateScheduled
		case opStarted:
			e.State = StateStarted
		default:
			e.State = StateCompleted
		}
		if s.state >= opStarted {
			times[2*k] = s.startedNs
			e.TimeDiscoveredStartedNs = &times[2*k]
		}
		if s.state == opCompleted {
			times[2*k+1] = s.completedNs
			e.TimeDiscoveredCompletedNs = &times[2*k+1]
		}
		if s.hasDuration {
			durations[k] = s.durationMs
			e.DurationMs = &durations[k]
		}
		e.Retired = s.retired
		e.TimeoutMs = s.timeoutMs
		e.IsP2P = s.isP2P
		end := iPC + copy(pcs[iPC:], s.pcs)
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
