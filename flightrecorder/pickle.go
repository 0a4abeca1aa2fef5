package flightrecorder

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Pickle opcodes (Python's pickletools names), the ones the encoder and the
// restricted decoder know.
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opLong           = 'L'
	opBinInt2        = 'M'
	opNone           = 'N'
	opPersID         = 'P'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opString         = 'S'
	opBinString      = 'T'
	opShortBinString = 'U'
	opUnicode        = 'V'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opGet            = 'g'
	opBinGet         = 'h'
	opInst           = 'i'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opObj            = 'o'
	opPut            = 'p'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'

	opProto          = 0x80
	opNewObj         = 0x81
	opExt1           = 0x82
	opExt2           = 0x83
	opExt4           = 0x84
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opEmptySet       = 0x8f
	opAddItems       = 0x90
	opFrozenSet      = 0x91
	opNewObjEx       = 0x92
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
	opByteArray8     = 0x96
	opNextBuffer     = 0x97
	opReadOnlyBuffer = 0x98
)

// pickler writes Python pickle protocol 2 the way PyTorch's Pickler does for
// plain data (tag_aggregates off): PROTO 2, dicts as EMPTY_DICT MARK ...
// SETITEMS, lists as EMPTY_LIST MARK ... APPENDS, strings as BINUNICODE
// memoized by value (BINPUT, then BINGET for repeats), the smallest of
// BININT1/BININT2/BININT/LONG1 for integers, BINFLOAT for floats,
// NEWTRUE/NEWFALSE, NONE, and TUPLE2 for two-element tuples.
type pickler struct {
	w       *bufio.Writer
	strings map[string]uint32
	memo    uint32
	scratch [9]byte
}

func (p *pickler) op(b byte) { p.w.WriteByte(b) }

func (p *pickler) int(n int64) {
	switch {
	case n >= 0 && n <= math.MaxUint8:
		p.w.WriteByte(opBinInt1)
		p.w.WriteByte(byte(n))
	case n >= 0 && n <= math.MaxUint16:
		p.w.WriteByte(opBinInt2)
		binary.LittleEndian.PutUint16(p.scratch[:2], uint16(n))
		p.w.Write(p.scratch[:2])
	case n >= math.MinInt32 && n <= math.MaxInt32:
		p.w.WriteByte(opBinInt)
		binary.LittleEndian.PutUint32(p.scratch[:4], uint32(int32(n)))
		p.w.Write(p.scratch[:4])
	default:
		p.w.WriteByte(opLong1)
		p.w.WriteByte(8)
		binary.LittleEndian.PutUint64(p.scratch[:8], uint64(n))
		p.w.Write(p.scratch[:8])
	}
}

// uint writes a non-negative integer that may not fit an int64, as LONG1 with
// a ninth byte keeping it positive.
func (p *pickler) uint(n uint64) {
	if n <= math.MaxInt64 {
		p.int(int64(n))
		return
	}
	p.w.WriteByte(opLong1)
	p.w.WriteByte(9)
	binary.LittleEndian.PutUint64(p.scratch[:8], n)
	p.scratch[8] = 0
	p.w.Write(p.scratch[:9])
}

func (p *pickler) float(f float64) {
	p.w.WriteByte(opBinFloat)
	binary.BigEndian.PutUint64(p.scratch[:8], math.Float64bits(f))
	p.w.Write(p.scratch[:8])
}

func (p *pickler) bool(b bool) {
	if b {
		p.op(opNewTrue)
	} else {
		p.op(opNewFalse)
	}
}

func (p *pickler) memoPut() {
	if p.memo <= math.MaxUint8 {
		p.w.WriteByte(opBinPut)
		p.w.WriteByte(byte(p.memo))
	} else {
		p.w.WriteByte(opLongBinPut)
		binary.LittleEndian.PutUint32(p.scratch[:4], p.memo)
		p.w.Write(p.scratch[:4])
	}
	p.memo++
}

func (p *pickler) str(s string) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD") // Python refuses invalid UTF-8
	}
	if id, ok := p.strings[s]; ok {
		if id <= math.MaxUint8 {
			p.w.WriteByte(opBinGet)
			p.w.WriteByte(byte(id))
		} else {
			p.w.WriteByte(opLongBinGet)
			binary.LittleEndian.PutUint32(p.scratch[:4], id)
			p.w.Write(p.scratch[:4])
		}
		return
	}
	p.w.WriteByte(opBinUnicode)
	binary.LittleEndian.PutUint32(p.scratch[:4], uint32(len(s)))
	p.w.Write(p.scratch[:4])
	p.w.WriteString(s)
	p.strings[s] = p.memo
	p.memoPut()
}

func (p *pickler) beginDict() { p.op(opEmptyDict); p.op(opMark) }
func (p *pickler) endDict()   { p.op(opSetItems) }
func (p *pickler) beginList() { p.op(opEmptyList); p.op(opMark) }
func (p *pickler) endList()   { p.op(opAppends) }

func (p *pickler) strList(ss []string) {
	p.beginList()
	for _, s := range ss {
		p.str(s)
	}
	p.endList()
}

func (p *pickler) sizes(shapes [][]int64) {
	p.beginList()
	for _, sh := range shapes {
		p.beginList()
		for _, n := range sh {
			p.int(n)
		}
		p.endList()
	}
	p.endList()
}

// WritePickle writes d as Python pickle protocol 2 in the shape of PyTorch's
// pickle dump (FlightRecorder::dump, what torchfrtrace's loader reads with
// pickle.load): a dict with the keys version, pg_config, comm_lib_version,
// pg_status, entries and, when not empty, nccl_comm_state, in that order.
//
//   - pg_config maps a group name to a dict {name, desc, ranks} (ranks a
//     string such as "[0, 1]"), in name order;
//   - pg_status maps a group id (a decimal string) to a dict of integers
//     {last_enqueued_collective, last_started_collective,
//     last_completed_collective}, in id order;
//   - entries is a list of dicts whose keys come in PyTorch's order: frames
//     (a list of dicts {name, filename, line}), record_id, pg_id,
//     process_group (a tuple (name, desc)), thread_name, thread_id (a
//     string), collective_seq_id, p2p_seq_id, op_id, profiling_name,
//     time_created_ns, duration_ms (a float, only when known), input_sizes (a
//     list of lists of ints), input_dtypes (a list of strings), output_sizes,
//     output_dtypes, state, time_discovered_started_ns and
//     time_discovered_completed_ns (ints, or None until reached), retired (a
//     bool), timeout_ms and is_p2p (a bool).
//
// The bytes follow PyTorch's pickler (see pickler) so Python's pickle.load
// reads the dump without torch installed.
func (d Dump) WritePickle(w io.Writer) error {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriterSize(w, 64<<10)
	}
	p := &pickler{w: bw, strings: make(map[string]uint32)}
	p.op(opProto)
	p.op(2)
	p.beginDict()

	p.str("version")
	p.str(d.Version)

	p.str("pg_config")
	p.beginDict()
	for _, name := range sortedKeys(d.PGConfig) {
		c := d.PGConfig[name]
		p.str(name)
		p.beginDict()
		p.str("name")
		p.str(c.Name)
		p.str("desc")
		p.str(c.Desc)
		p.str("ranks")
		p.str(c.Ranks)
		p.endDict()
	}
	p.endDict()

	p.str("comm_lib_version")
	p.str(d.CommLibVersion)

	p.str("pg_status")
	p.beginDict()
	for _, id := range sortedIDs(d.PGStatus) {
		s := d.PGStatus[id]
		p.str(id)
		p.beginDict()
		p.str("last_enqueued_collective")
		p.int(s.LastEnqueuedCollective)
		p.str("last_started_collective")
		p.int(s.LastStartedCollective)
		p.str("last_completed_collective")
		p.int(s.LastCompletedCollective)
		p.endDict()
	}
	p.endDict()

	p.str("entries")
	p.beginList()
	for i := range d.Entries {
		pickleEntry(p, &d.Entries[i])
	}
	p.endList()

	if len(d.NCCLCommState) > 0 {
		p.str("nccl_comm_state")
		p.beginDict()
		for _, c := range sortedKeys(d.NCCLCommState) {
			p.str(c)
			p.beginDict()
			kv := d.NCCLCommState[c]
			for _, k := range sortedKeys(kv) {
				p.str(k)
				p.str(kv[k])
			}
			p.endDict()
		}
		p.endDict()
	}

	p.endDict()
	p.op(opStop)
	return bw.Flush()
}

func pickleEntry(p *pickler, e *Entry) {
	p.beginDict()
	p.str("frames")
	p.beginList()
	for _, f := range e.Frames {
		p.beginDict()
		p.str("name")
		p.str(f.Name)
		p.str("filename")
		p.str(f.Filename)
		p.str("line")
		p.int(int64(f.Line))
		p.endDict()
	}
	p.endList()
	p.str("record_id")
	p.uint(e.RecordID)
	p.str("pg_id")
	p.int(int64(e.PGID))
	p.str("process_group")
	p.str(e.ProcessGroup[0])
	p.str(e.ProcessGroup[1])
	p.op(opTuple2)
	p.str("thread_name")
	p.str(e.ThreadName)
	p.str("thread_id")
	p.str(e.ThreadID)
	p.str("collective_seq_id")
	p.int(e.CollectiveSeqID)
	p.str("p2p_seq_id")
	p.int(e.P2PSeqID)
	p.str("op_id")
	p.int(e.OpID)
	p.str("profiling_name")
	p.str(e.ProfilingName)
	p.str("time_created_ns")
	p.int(e.TimeCreatedNs)
	if e.DurationMs != nil {
		p.str("duration_ms")
		p.float(*e.DurationMs)
	}
	p.str("input_sizes")
	p.sizes(e.InputSizes)
	p.str("input_dtypes")
	p.strList(e.InputDtypes)
	p.str("output_sizes")
	p.sizes(e.OutputSizes)
	p.str("output_dtypes")
	p.strList(e.OutputDtypes)
	p.str("state")
	p.str(e.State)
	p.str("time_discovered_started_ns")
	if e.TimeDiscoveredStartedNs != nil {
		p.int(*e.TimeDiscoveredStartedNs)
	} else {
		p.op(opNone)
	}
	p.str("time_discovered_completed_ns")
	if e.TimeDiscoveredCompletedNs != nil {
		p.int(*e.TimeDiscoveredCompletedNs)
	} else {
		p.op(opNone)
	}
	p.str("retired")
	p.bool(e.Retired)
	p.str("timeout_ms")
	p.int(e.TimeoutMs)
	p.str("is_p2p")
	p.bool(e.IsP2P)
	p.endDict()
}

// sortedIDs returns m's keys in numeric order (PyTorch keeps pg_status in a
// map keyed by the integer id); keys that are not integers come after, in
// string order.
func sortedIDs[V any](m map[string]V) []string {
	return slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		x, errA := strconv.ParseInt(a, 10, 64)
		y, errB := strconv.ParseInt(b, 10, 64)
		switch {
		case errA == nil && errB == nil:
			if c := cmp.Compare(x, y); c != 0 {
				return c
			}
		case errA == nil:
			return -1
		case errB == nil:
			return 1
		}
		return strings.Compare(a, b)
	})
}
