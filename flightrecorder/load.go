package flightrecorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// MaxDumpBytes bounds the size of a dump the loaders read (1 GiB); a larger
// file is refused as corrupt.
const MaxDumpBytes = 1 << 30

// Load reads one dump, JSON or pickle, telling them apart by the first byte:
// 0x80 (a pickle's PROTO opcode, protocols 2 to 5) or '}'/'(' (protocols 0
// and 1) is a pickle, '{' (after white space) is JSON.
//
// It reads gccl's dumps and PyTorch's (any 2.x version), leniently: keys it
// does not know (nccl_comm_state's contents aside, which it keeps as
// strings) are ignored, keys an older version lacks are left zero (an
// absent state is derived from the discovery times, as PyTorch does; an
// absent collective_seq_id is taken from version 1's seq_id), and the
// version is kept in Dump.Version. Both JSON shapes are read: PyTorch's
// (pg_status values as strings, 0 for an unreached discovery time) and
// encoding/json's rendering of a Dump (integers, null). A discovery time of
// 0 loads as nil.
//
// The pickle decoder is restricted to plain data (see ErrUnsupportedPickle).
// Errors wrap ErrCorrupt or ErrUnsupportedPickle.
func Load(r io.Reader) (Dump, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDumpBytes+1))
	if err != nil {
		return Dump{}, fmt.Errorf("flightrecorder: reading dump: %w", err)
	}
	if len(data) > MaxDumpBytes {
		return Dump{}, fmt.Errorf("flightrecorder: %w: larger than %d bytes", ErrCorrupt, MaxDumpBytes)
	}
	d, err := loadBytes(data)
	if err != nil {
		return Dump{}, fmt.Errorf("flightrecorder: %w", err)
	}
	return d, nil
}

// LoadFile reads the dump at path (see Load). Errors name the file.
func LoadFile(path string) (Dump, error) {
	f, err := os.Open(path)
	if err != nil {
		return Dump{}, fmt.Errorf("flightrecorder: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxDumpBytes+1))
	if err != nil {
		return Dump{}, fmt.Errorf("flightrecorder: %s: %w", path, err)
	}
	if len(data) > MaxDumpBytes {
		return Dump{}, fmt.Errorf("flightrecorder: %s: %w: larger than %d bytes", path, ErrCorrupt, MaxDumpBytes)
	}
	d, err := loadBytes(data)
	if err != nil {
		return Dump{}, fmt.Errorf("flightrecorder: %s: %w", path, err)
	}
	return d, nil
}

func loadBytes(data []byte) (Dump, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return Dump{}, fmt.Errorf("%w: empty file", ErrCorrupt)
	}
	var root any
	switch trimmed[0] {
	case opProto, opEmptyDict, opMark:
		v, err := unpickle(data)
		if err != nil {
			return Dump{}, fmt.Errorf("%w", err)
		}
		root = v
	case '{':
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return Dump{}, fmt.Errorf("%w: JSON: %w", ErrCorrupt, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return Dump{}, fmt.Errorf("%w: JSON: data after the dump object", ErrCorrupt)
		}
		root = fromJSON(v)
	default:
		return Dump{}, fmt.Errorf("%w: neither JSON nor pickle (starts with 0x%02x)", ErrCorrupt, trimmed[0])
	}
	d, err := dumpFrom(root)
	if err != nil {
		return Dump{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return d, nil
}

// fromJSON turns encoding/json's generic values into the unpickler's.
func fromJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		d := &pyDict{}
		for _, k := range sortedKeys(t) {
			d.set(k, fromJSON(t[k]))
		}
		return d
	case []any:
		l := &pyList{items: make([]any, len(t))}
		for i, x := range t {
			l.items[i] = fromJSON(x)
		}
		return l
	case json.Number:
		s := string(t)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
		if !strings.ContainsAny(s, ".eE") {
			if b, ok := new(big.Int).SetString(s, 10); ok {
				return b
			}
		}
		f, _ := strconv.ParseFloat(s, 64)
		return f
	}
	return v // nil, bool, string
}

// conv converts the generic value tree into a Dump, with a path for errors.
type conv struct{ path []string }

func (c *conv) errorf(format string, args ...any) error {
	p := strings.Join(c.path, "")
	if p == "" {
		p = "dump"
	}
	return fmt.Errorf("%s: %s", strings.TrimPrefix(p, "."), fmt.Sprintf(format, args...))
}

func (c *conv) in(p string) func() {
	c.path = append(c.path, p)
	return func() { c.path = c.path[:len(c.path)-1] }
}

func (c *conv) dict(v any) (*pyDict, error) {
	d, ok := v.(*pyDict)
	if !ok {
		return nil, c.errorf("want a dict, got %s", pyTypeName(v))
	}
	return d, nil
}

// list accepts a list or a tuple.
func (c *conv) list(v any) ([]any, error) {
	switch t := v.(type) {
	case *pyList:
		return t.items, nil
	case pyTuple:
		return t, nil
	}
	return nil, c.errorf("want a list, got %s", pyTypeName(v))
}

func (c *conv) int(v any) (int64, error) {
	switch t := v.(type) {
	case int64:
		return t, nil
	case bool:
		if t {
			return 1, nil
		}
		return 0, nil
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1<<63 {
			return int64(t), nil
		}
	case string: // PyTorch's JSON dump writes pg_status values as strings
		if n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64); err == nil {
			return n, nil
		}
	case *big.Int:
		return 0, c.errorf("integer %s out of range", t)
	}
	return 0, c.errorf("want an int, got %s", pyTypeName(v))
}

func (c *conv) str(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case pyBytes:
		return validString(t), nil
	case nil:
		return "", nil
	case int64:
		return strconv.FormatInt(t, 10), nil
	}
	return "", c.errorf("want a string, got %s", pyTypeName(v))
}

func (c *conv) bool(v any) (bool, error) {
	switch t := v.(type) {
	case bool:
		return t, nil
	case int64:
		return t != 0, nil
	case nil:
		return false, nil
	}
	return false, c.errorf("want a bool, got %s", pyTypeName(v))
}

// optInt reads an int or None; 0 counts as absent (PyTorch's JSON dump writes
// 0 for an unreached discovery time).
func (c *conv) optTime(v any) (*int64, error) {
	if v == nil {
		return nil, nil
	}
	n, err := c.int(v)
	if err != nil || n == 0 {
		return nil, err
	}
	return &n, nil
}

// field runs fn on d[key] if present, with key on the error path.
func (c *conv) field(d *pyDict, key string, fn func(v any) error) error {
	v, ok := d.get(key)
	if !ok {
		return nil
	}
	defer c.in("." + key)()
	return fn(v)
}

func dumpFrom(root any) (Dump, error) {
	c := &conv{}
	top, err := c.dict(root)
	if err != nil {
		return Dump{}, err
	}
	d := Dump{PGConfig: map[string]PGConfig{}, PGStatus: map[string]PGStatus{}, Entries: []Entry{}}
	err = errors.Join(
		c.field(top, "version", func(v any) (err error) {
			if f, ok := v.(float64); ok { // a version written as a number
				d.Version = strconv.FormatFloat(f, 'f', -1, 64)
				return nil
			}
			d.Version, err = c.str(v)
			return err
		}),
		c.field(top, "comm_lib_version", func(v any) (err error) { d.CommLibVersion, err = c.str(v); return err }),
		c.field(top, "pg_config", func(v any) error { return c.pgConfig(v, d.PGConfig) }),
		c.field(top, "pg_status", func(v any) error { return c.pgStatus(v, d.PGStatus) }),
		c.field(top, "entries", func(v any) (err error) { d.Entries, err = c.entries(v); return err }),
		c.field(top, "nccl_comm_state", func(v any) (err error) { d.NCCLCommState, err = c.commState(v); return err }),
	)
	if err != nil {
		return Dump{}, err
	}
	return d, nil
}

func (c *conv) key(k any) (string, error) {
	switch t := k.(type) {
	case string:
		return t, nil
	case int64:
		return strconv.FormatInt(t, 10), nil
	}
	return "", c.errorf("key of type %s", pyTypeName(k))
}

func (c *conv) pgConfig(v any, out map[string]PGConfig) error {
	d, err := c.dict(v)
	if err != nil {
		return err
	}
	for i, k := range d.keys {
		name, err := c.key(k)
		if err != nil {
			return err
		}
		done := c.in(fmt.Sprintf("[%q]", name))
		g, err := c.dict(d.vals[i])
		if err != nil {
			done()
			return err
		}
		cfg := PGConfig{Name: name, Desc: UndefinedDesc}
		err = errors.Join(
			c.field(g, "name", func(v any) (err error) { cfg.Name, err = c.str(v); return err }),
			c.field(g, "desc", func(v any) (err error) { cfg.Desc, err = c.str(v); return err }),
			c.field(g, "ranks", func(v any) error {
				if s, ok := v.(string); ok {
					cfg.Ranks = s
					return nil
				}
				items, err := c.list(v) // a list of ints, in case a writer skipped the string
				if err != nil {
					return err
				}
				ranks := make([]int, len(items))
				for j, it := range items {
					n, err := c.int(it)
					if err != nil {
						return err
					}
					ranks[j] = int(n)
				}
				cfg.Ranks = FormatRanks(ranks)
				return nil
			}),
		)
		done()
		if err != nil {
			return err
		}
		out[name] = cfg
	}
	return nil
}

func (c *conv) pgStatus(v any, out map[string]PGStatus) error {
	d, err := c.dict(v)
	if err != nil {
		return err
	}
	for i, k := range d.keys {
		id, err := c.key(k)
		if err != nil {
			return err
		}
		done := c.in(fmt.Sprintf("[%q]", id))
		s, err := c.dict(d.vals[i])
		if err != nil {
			done()
			return err
		}
		st := PGStatus{-1, -1, -1}
		err = errors.Join(
			c.field(s, "last_enqueued_collective", func(v any) (err error) { st.LastEnqueuedCollective, err = c.int(v); return err }),
			c.field(s, "last_started_collective", func(v any) (err error) { st.LastStartedCollective, err = c.int(v); return err }),
			c.field(s, "last_completed_collective", func(v any) (err error) { st.LastCompletedCollective, err = c.int(v); return err }),
		)
		done()
		if err != nil {
			return err
		}
		out[id] = st
	}
	return nil
}

func (c *conv) entries(v any) ([]Entry, error) {
	items, err := c.list(v)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(items))
	for i, it := range items {
		done := c.in(fmt.Sprintf("[%d]", i))
		err := c.entry(it, &out[i])
		done()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *conv) entry(v any, e *Entry) error {
	d, err := c.dict(v)
	if err != nil {
		return err
	}
	e.Frames = []Frame{}
	e.InputSizes, e.OutputSizes = [][]int64{}, [][]int64{}
	e.InputDtypes, e.OutputDtypes = []string{}, []string{}
	intField := func(key string, dst *int64) error {
		return c.field(d, key, func(v any) (err error) { *dst, err = c.int(v); return err })
	}
	strField := func(key string, dst *string) error {
		return c.field(d, key, func(v any) (err error) { *dst, err = c.str(v); return err })
	}
	var recordID, pgID int64
	_, hasCollSeq := d.get("collective_seq_id")
	err = errors.Join(
		c.field(d, "frames", func(v any) (err error) { e.Frames, err = c.frames(v); return err }),
		intField("record_id", &recordID),
		intField("pg_id", &pgID),
		c.field(d, "process_group", func(v any) error {
			if s, ok := v.(string); ok {
				e.ProcessGroup = [2]string{s, ""}
				return nil
			}
			items, err := c.list(v)
			if err != nil {
				return err
			}
			for j := 0; j < len(items) && j < 2; j++ {
				if e.ProcessGroup[j], err = c.str(items[j]); err != nil {
					return err
				}
			}
			return nil
		}),
		strField("thread_name", &e.ThreadName),
		strField("thread_id", &e.ThreadID),
		intField("collective_seq_id", &e.CollectiveSeqID),
		intField("p2p_seq_id", &e.P2PSeqID),
		intField("op_id", &e.OpID),
		strField("profiling_name", &e.ProfilingName),
		intField("time_created_ns", &e.TimeCreatedNs),
		c.field(d, "duration_ms", func(v any) error {
			switch t := v.(type) {
			case nil:
				return nil
			case float64:
				e.DurationMs = &t
				return nil
			case int64:
				f := float64(t)
				e.DurationMs = &f
				return nil
			}
			return c.errorf("want a float, got %s", pyTypeName(v))
		}),
		c.field(d, "input_sizes", func(v any) (err error) { e.InputSizes, err = c.sizes(v); return err }),
		c.field(d, "input_dtypes", func(v any) (err error) { e.InputDtypes, err = c.strings(v); return err }),
		c.field(d, "output_sizes", func(v any) (err error) { e.OutputSizes, err = c.sizes(v); return err }),
		c.field(d, "output_dtypes", func(v any) (err error) { e.OutputDtypes, err = c.strings(v); return err }),
		strField("state", &e.State),
		c.field(d, "time_discovered_started_ns", func(v any) (err error) { e.TimeDiscoveredStartedNs, err = c.optTime(v); return err }),
		c.field(d, "time_discovered_completed_ns", func(v any) (err error) { e.TimeDiscoveredCompletedNs, err = c.optTime(v); return err }),
		c.field(d, "retired", func(v any) (err error) { e.Retired, err = c.bool(v); return err }),
		intField("timeout_ms", &e.TimeoutMs),
		c.field(d, "is_p2p", func(v any) (err error) { e.IsP2P, err = c.bool(v); return err }),
	)
	if err != nil {
		return err
	}
	if !hasCollSeq { // version 1 dumps had one seq_id
		if err := intField("seq_id", &e.CollectiveSeqID); err != nil {
			return err
		}
	}
	if recordID < 0 {
		return c.errorf("record_id %d is negative", recordID)
	}
	e.RecordID = uint64(recordID)
	if pgID < math.MinInt32 || pgID > math.MaxInt32 {
		return c.errorf("pg_id %d out of range", pgID)
	}
	e.PGID = int(pgID)
	if e.State == "" {
		switch {
		case e.TimeDiscoveredCompletedNs != nil:
			e.State = StateCompleted
		case e.TimeDiscoveredStartedNs != nil:
			e.State = StateStarted
		default:
			e.State = StateScheduled
		}
	}
	return nil
}

func (c *conv) frames(v any) ([]Frame, error) {
	items, err := c.list(v)
	if err != nil {
		return nil, err
	}
	out := make([]Frame, len(items))
	for i, it := range items {
		done := c.in(fmt.Sprintf("[%d]", i))
		d, err := c.dict(it)
		if err != nil {
			done()
			return nil, err
		}
		f := &out[i]
		err = errors.Join(
			c.field(d, "name", func(v any) (err error) { f.Name, err = c.str(v); return err }),
			c.field(d, "filename", func(v any) (err error) { f.Filename, err = c.str(v); return err }),
			c.field(d, "line", func(v any) error {
				n, err := c.int(v)
				if err == nil && (n < math.MinInt32 || n > math.MaxInt32) {
					err = c.errorf("line %d out of range", n)
				}
				f.Line = int(n)
				return err
			}),
		)
		done()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *conv) sizes(v any) ([][]int64, error) {
	items, err := c.list(v)
	if err != nil {
		return nil, err
	}
	out := make([][]int64, len(items))
	for i, it := range items {
		done := c.in(fmt.Sprintf("[%d]", i))
		dims, err := c.list(it)
		if err != nil {
			done()
			return nil, err
		}
		out[i] = make([]int64, len(dims))
		for j, x := range dims {
			if out[i][j], err = c.int(x); err != nil {
				done()
				return nil, err
			}
		}
		done()
	}
	return out, nil
}

func (c *conv) strings(v any) ([]string, error) {
	items, err := c.list(v)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(items))
	for i, it := range items {
		if out[i], err = c.str(it); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *conv) commState(v any) (map[string]map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	d, err := c.dict(v)
	if err != nil {
		return nil, err
	}
	if len(d.keys) == 0 {
		return nil, nil
	}
	out := make(map[string]map[string]string, len(d.keys))
	for i, k := range d.keys {
		comm := reprBounded(k, 2)
		inner := map[string]string{}
		if kv, ok := d.vals[i].(*pyDict); ok {
			for j, ik := range kv.keys {
				inner[reprBounded(ik, 2)] = reprBounded(kv.vals[j], 3)
			}
		}
		out[comm] = inner
	}
	return out, nil
}

// reprBounded renders any value as a string, strings as themselves, and
// containers only depth levels deep (memo references can make cycles).
func reprBounded(v any, depth int) string {
	switch t := v.(type) {
	case string:
		return t
	case pyBytes:
		return validString(t)
	case nil:
		return "None"
	case bool:
		if t {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(t, 10)
	case *big.Int:
		return t.String()
	case float64:
		return strconv.FormatFloat(t, 'g', -1, 64)
	}
	if depth <= 0 {
		return "..."
	}
	var b strings.Builder
	switch t := v.(type) {
	case *pyList:
		b.WriteByte('[')
		for i, x := range t.items {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(reprBounded(x, depth-1))
		}
		b.WriteByte(']')
	case pyTuple:
		b.WriteByte('(')
		for i, x := range t {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(reprBounded(x, depth-1))
		}
		b.WriteByte(')')
	case *pyDict:
		b.WriteByte('{')
		for i := range t.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(reprBounded(t.keys[i], depth-1))
			b.WriteString(": ")
			b.WriteString(reprBounded(t.vals[i], depth-1))
		}
		b.WriteByte('}')
	default:
		b.WriteString(pyTypeName(v))
	}
	return b.String()
}

// rankSuffix splits a file name into a prefix and a trailing rank number, as
// torchfrtrace does.
var rankSuffix = regexp.MustCompile(`^(.*?)(\d+)$`)

// FindDumps lists the dump files in dir (not its subdirectories) by rank:
// the files named prefix followed by a rank number. Hidden files (names
// starting with ".", such as WriteFile's temporary files) are skipped.
//
// An empty prefix is inferred: every file whose name ends in digits is split
// into a prefix and a rank, and all of them must share one prefix. Files
// with several prefixes are an error that names them (pass the prefix you
// mean); so is a directory without any such file. It returns the files, the
// prefix used, and an error for two files of the same rank.
func FindDumps(dir, prefix string) (map[int]string, string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, prefix, fmt.Errorf("flightrecorder: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		names = append(names, e.Name())
	}
	if prefix == "" {
		byPrefix := map[string]int{}
		for _, n := range names {
			if m := rankSuffix.FindStringSubmatch(n); m != nil {
				byPrefix[m[1]]++
			}
		}
		switch len(byPrefix) {
		case 0:
			return nil, "", fmt.Errorf("flightrecorder: no dump files in %s (no file name ends in a rank number)", dir)
		case 1:
			for p := range byPrefix {
				prefix = p
			}
		default:
			var ps []string
			for p, n := range byPrefix {
				ps = append(ps, fmt.Sprintf("%q (%d files)", p, n))
			}
			slices.Sort(ps)
			return nil, "", fmt.Errorf("flightrecorder: files in %s have different prefixes: %s; say which one with a prefix",
				dir, strings.Join(ps, ", "))
		}
	}
	files := map[int]string{}
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, prefix)
		if !ok || rest == "" || strings.Trim(rest, "0123456789") != "" {
			continue
		}
		rank, err := strconv.Atoi(rest)
		if err != nil {
			continue
		}
		if other, dup := files[rank]; dup {
			return nil, prefix, fmt.Errorf("flightrecorder: %s and %s in %s are both rank %d", other, n, dir, rank)
		}
		files[rank] = n
	}
	if len(files) == 0 {
		return nil, prefix, fmt.Errorf("flightrecorder: no dump files named %q<rank> in %s", prefix, dir)
	}
	for r, n := range files {
		files[r] = filepath.Join(dir, n)
	}
	return files, prefix, nil
}

// LoadDir loads every dump in dir named prefix<rank> (see FindDumps for the
// naming and for an empty prefix). It returns the dumps it could read by
// rank, and one error for each file it could not (naming the file: truncated,
// corrupt, empty, unreadable), or a single error when no file could be
// listed. It never panics on a bad file.
func LoadDir(dir, prefix string) (map[int]Dump, []error) {
	files, _, err := FindDumps(dir, prefix)
	if err != nil {
		return map[int]Dump{}, []error{err}
	}
	dumps := make(map[int]Dump, len(files))
	var errs []error
	for _, r := range sortedKeys(files) {
		d, err := LoadFile(files[r])
		if err != nil {
			errs = append(errs, fmt.Errorf("rank %d: %w", r, err))
			continue
		}
		dumps[r] = d
	}
	return dumps, errs
}
