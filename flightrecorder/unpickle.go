package flightrecorder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrCorrupt is returned (wrapped) by the loaders for a file that is not a
// well-formed dump: truncated, not JSON nor pickle, or not of the dump's
// shape.
var ErrCorrupt = errors.New("corrupt dump")

// ErrUnsupportedPickle is returned (wrapped) by the loaders for a pickle that
// uses something the restricted unpickler refuses: an opcode that builds
// arbitrary objects (NEWOBJ, BUILD, INST, OBJ, persistent ids, extensions,
// out-of-band buffers) or a global other than the few plain-data helpers it
// knows.
var ErrUnsupportedPickle = errors.New("unsupported pickle content")

// The values the unpickler builds. Lists and dicts are pointers so that a
// memoized container mutated after being memoized is seen through every
// reference, as in Python.
type (
	pyList  struct{ items []any }
	pyTuple []any
	pyDict  struct{ keys, vals []any }
	pyBytes []byte
	// pyGlobal is a callable the unpickler allows (see allowedGlobals).
	pyGlobal struct{ module, name string }
)

// get returns the value of key k (a string) and whether it is present; the
// last of duplicate keys wins, as in Python.
func (d *pyDict) get(k string) (any, bool) {
	for i := len(d.keys) - 1; i >= 0; i-- {
		if s, ok := d.keys[i].(string); ok && s == k {
			return d.vals[i], true
		}
	}
	return nil, false
}

func (d *pyDict) set(k, v any) {
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
}

// allowedGlobals are the only callables GLOBAL/STACK_GLOBAL may name. Each
// builds plain data from plain data: PyTorch's pickler wraps typed lists in
// torch.jit._pickle.build_*list and tagged containers in restore_type_tag;
// collections.OrderedDict is a dict.
var allowedGlobals = map[string]bool{
	"torch.jit._pickle.build_intlist":    true,
	"torch.jit._pickle.build_doublelist": true,
	"torch.jit._pickle.build_boollist":   true,
	"torch.jit._pickle.build_stringlist": true,
	"torch.jit._pickle.restore_type_tag": true,
	"collections.OrderedDict":            true,
}

// maxLongDigits bounds a text LONG/INT, so a hostile file cannot make the
// decimal parse quadratic.
const maxLongDigits = 4096

// unpickler is a restricted pickle decoder for plain data: None, bools, ints,
// floats, strings, bytes, lists, tuples, dicts and sets (as lists), with
// memo references, for protocols 0 to 5. It never calls anything but
// allowedGlobals.
type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint64]any
}

func (u *unpickler) errorf(format string, args ...any) error {
	return fmt.Errorf("pickle at byte %d: %w: %s", u.pos, ErrCorrupt, fmt.Sprintf(format, args...))
}

func (u *unpickler) unsupported(format string, args ...any) error {
	return fmt.Errorf("pickle at byte %d: %w: %s", u.pos, ErrUnsupportedPickle, fmt.Sprintf(format, args...))
}

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, u.errorf("truncated: need %d bytes, %d left", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

// readCounted reads a little-endian length of size bytes (1, 4 or 8), then that many bytes.
func (u *unpickler) readCounted(size int) ([]byte, error) {
	b, err := u.read(size)
	if err != nil {
		return nil, err
	}
	var n uint64
	switch size {
	case 1:
		n = uint64(b[0])
	case 4:
		n = uint64(binary.LittleEndian.Uint32(b))
	case 8:
		n = binary.LittleEndian.Uint64(b)
	}
	if n > uint64(len(u.data)-u.pos) {
		return nil, u.errorf("truncated: length %d, %d bytes left", n, len(u.data)-u.pos)
	}
	return u.read(int(n))
}

func (u *unpickler) line() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return "", u.errorf("truncated: missing end of line")
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, u.errorf("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, u.errorf("stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark returns the items pushed since the last MARK and drops the mark.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errorf("no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

// memoID reads the memo index of a PUT or GET opcode: a decimal line for the text form (text),
// one byte for the short binary form (short), four little-endian bytes for the long one.
func (u *unpickler) memoID(op, text, short byte, name string) (uint64, error) {
	switch op {
	case text:
		s, err := u.line()
		if err != nil {
			return 0, err
		}
		id, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return 0, u.errorf("%s %q", name, s)
		}
		return id, nil
	case short:
		b, err := u.read(1)
		if err != nil {
			return 0, err
		}
		return uint64(b[0]), nil
	}
	b, err := u.read(4)
	if err != nil {
		return 0, err
	}
	return uint64(binary.LittleEndian.Uint32(b)), nil
}

func (u *unpickler) memoPut(id uint64) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	u.memo[id] = v
	return nil
}

func (u *unpickler) memoGet(id uint64) error {
	v, ok := u.memo[id]
	if !ok {
		return u.errorf("memo key %d was never set", id)
	}
	u.push(v)
	return nil
}

func validString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func (u *unpickler) appendTo(target any, items []any) error {
	switch t := target.(type) {
	case *pyList:
		t.items = append(t.items, items...)
		return nil
	}
	return u.errorf("APPEND to a %s", pyTypeName(target))
}

func (u *unpickler) setItems(target any, items []any) error {
	d, ok := target.(*pyDict)
	if !ok {
		return u.errorf("SETITEM on a %s", pyTypeName(target))
	}
	if len(items)%2 != 0 {
		return u.errorf("SETITEMS with an odd number of items")
	}
	for i := 0; i < len(items); i += 2 {
		d.set(items[i], items[i+1])
	}
	return nil
}

func (u *unpickler) global(module, name string) error {
	if !allowedGlobals[module+"."+name] {
		return u.unsupported("global %s.%s is not allowed (the dump holds plain data only)", module, name)
	}
	u.push(pyGlobal{module, name})
	return nil
}

// reduce applies an allowed global to its argument tuple.
func (u *unpickler) reduce(fn, args any) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return nil, u.unsupported("REDUCE of a %s", pyTypeName(fn))
	}
	tup, ok := args.(pyTuple)
	if !ok {
		return nil, u.errorf("REDUCE arguments are a %s, not a tuple", pyTypeName(args))
	}
	switch g.name {
	case "OrderedDict":
		if len(tup) == 0 {
			return &pyDict{}, nil
		}
	case "restore_type_tag":
		if len(tup) == 2 {
			return tup[0], nil
		}
	default: // build_*list
		if len(tup) == 1 {
			if l, ok := tup[0].(*pyList); ok {
				return l, nil
			}
		}
	}
	return nil, u.unsupported("%s.%s called with %d arguments", g.module, g.name, len(tup))
}

// unpickle decodes one pickle from data into plain values.
func unpickle(data []byte) (any, error) {
	u := &unpickler{data: data, memo: make(map[uint64]any)}
	for {
		if u.pos >= len(u.data) {
			return nil, u.errorf("truncated: no STOP opcode")
		}
		op := u.data[u.pos]
		u.pos++
		if err := u.step(op); err != nil {
			if errors.Is(err, errStop) {
				if len(u.stack) != 1 || len(u.marks) != 0 {
					return nil, u.errorf("STOP with %d values on the stack", len(u.stack))
				}
				return u.stack[0], nil
			}
			return nil, err
		}
	}
}

var errStop = errors.New("stop")

func (u *unpickler) step(op byte) error {
	switch op {
	case opProto:
		b, err := u.read(1)
		if err != nil {
			return err
		}
		if b[0] > 5 {
			return u.unsupported("protocol %d", b[0])
		}
	case opFrame:
		_, err := u.read(8) // framing is only a hint for buffered readers
		return err
	case opStop:
		return errStop
	case opMark:
		u.marks = append(u.marks, len(u.stack))
	case opPop:
		if len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1] {
			u.marks = u.marks[:len(u.marks)-1] // Python pops a MARK too
			return nil
		}
		_, err := u.pop()
		return err
	case opPopMark:
		_, err := u.popMark()
		return err
	case opDup:
		v, err := u.top()
		if err != nil {
			return err
		}
		u.push(v)

	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opInt:
		s, err := u.line()
		if err != nil {
			return err
		}
		switch s {
		case "00":
			u.push(false)
			return nil
		case "01":
			u.push(true)
			return nil
		}
		return u.pushDecimal(s)
	case opLong:
		s, err := u.line()
		if err != nil {
			return err
		}
		return u.pushDecimal(strings.TrimSuffix(s, "L"))
	case opBinInt:
		b, err := u.read(4)
		if err != nil {
			return err
		}
		u.push(int64(int32(binary.LittleEndian.Uint32(b))))
	case opBinInt1:
		b, err := u.read(1)
		if err != nil {
			return err
		}
		u.push(int64(b[0]))
	case opBinInt2:
		b, err := u.read(2)
		if err != nil {
			return err
		}
		u.push(int64(binary.LittleEndian.Uint16(b)))
	case opLong1, opLong4:
		size := 1
		if op == opLong4 {
			size = 4
		}
		b, err := u.readCounted(size)
		if err != nil {
			return err
		}
		u.push(decodeLong(b))
	case opFloat:
		s, err := u.line()
		if err != nil {
			return err
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return u.errorf("FLOAT %q", s)
		}
		u.push(f)
	case opBinFloat:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))

	case opBinUnicode, opShortBinUni, opBinUnicode8, opBinString, opShortBinString:
		size := 4
		switch op {
		case opShortBinUni, opShortBinString:
			size = 1
		case opBinUnicode8:
			size = 8
		}
		b, err := u.readCounted(size)
		if err != nil {
			return err
		}
		u.push(validString(b))
	case opUnicode:
		s, err := u.line()
		if err != nil {
			return err
		}
		u.push(decodeRawUnicodeEscape(s))
	case opString:
		s, err := u.line()
		if err != nil {
			return err
		}
		v, err := strconv.Unquote(pyQuoteToGo(s))
		if err != nil {
			return u.errorf("STRING %q", s)
		}
		u.push(validString([]byte(v)))
	case opBinBytes, opShortBinBytes, opBinBytes8, opByteArray8:
		size := 4
		switch op {
		case opShortBinBytes:
			size = 1
		case opBinBytes8, opByteArray8:
			size = 8
		}
		b, err := u.readCounted(size)
		if err != nil {
			return err
		}
		u.push(pyBytes(append([]byte(nil), b...)))

	case opEmptyList, opEmptySet: // a set loads as a list
		u.push(&pyList{})
	case opList, opFrozenSet:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(&pyList{items: items})
	case opAppend:
		v, err := u.pop()
		if err != nil {
			return err
		}
		t, err := u.top()
		if err != nil {
			return err
		}
		return u.appendTo(t, []any{v})
	case opAppends, opAddItems:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		t, err := u.top()
		if err != nil {
			return err
		}
		return u.appendTo(t, items)

	case opEmptyTuple:
		u.push(pyTuple{})
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		items := make(pyTuple, n)
		for i := n - 1; i >= 0; i-- {
			v, err := u.pop()
			if err != nil {
				return err
			}
			items[i] = v
		}
		u.push(items)

	case opEmptyDict:
		u.push(&pyDict{})
	case opDict:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := &pyDict{}
		if err := u.setItems(d, items); err != nil {
			return err
		}
		u.push(d)
	case opSetItem:
		v, err := u.pop()
		if err != nil {
			return err
		}
		k, err := u.pop()
		if err != nil {
			return err
		}
		t, err := u.top()
		if err != nil {
			return err
		}
		return u.setItems(t, []any{k, v})
	case opSetItems:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		t, err := u.top()
		if err != nil {
			return err
		}
		return u.setItems(t, items)

	case opPut, opBinPut, opLongBinPut:
		id, err := u.memoID(op, opPut, opBinPut, "PUT")
		if err != nil {
			return err
		}
		return u.memoPut(id)
	case opMemoize:
		return u.memoPut(uint64(len(u.memo)))
	case opGet, opBinGet, opLongBinGet:
		id, err := u.memoID(op, opGet, opBinGet, "GET")
		if err != nil {
			return err
		}
		return u.memoGet(id)

	case opGlobal:
		module, err := u.line()
		if err != nil {
			return err
		}
		name, err := u.line()
		if err != nil {
			return err
		}
		return u.global(module, name)
	case opStackGlobal:
		name, err := u.pop()
		if err != nil {
			return err
		}
		module, err := u.pop()
		if err != nil {
			return err
		}
		m, ok1 := module.(string)
		n, ok2 := name.(string)
		if !ok1 || !ok2 {
			return u.errorf("STACK_GLOBAL of non-strings")
		}
		return u.global(m, n)
	case opReduce:
		args, err := u.pop()
		if err != nil {
			return err
		}
		fn, err := u.pop()
		if err != nil {
			return err
		}
		v, err := u.reduce(fn, args)
		if err != nil {
			return err
		}
		u.push(v)

	case opNewObj, opNewObjEx, opBuild, opInst, opObj, opPersID, opBinPersID,
		opExt1, opExt2, opExt4, opNextBuffer, opReadOnlyBuffer:
		return u.unsupported("opcode %s builds objects, which a dump never holds", opName(op))
	default:
		return u.errorf("unknown opcode 0x%02x", op)
	}
	return nil
}

func (u *unpickler) pushDecimal(s string) error {
	s = strings.TrimSpace(s)
	if len(s) > maxLongDigits {
		return u.errorf("integer of %d digits", len(s))
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		u.push(n)
		return nil
	}
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return u.errorf("integer %q", s)
	}
	u.push(b)
	return nil
}

// decodeLong reads a little-endian two's-complement integer (LONG1/LONG4):
// an int64 when it fits, else a *big.Int.
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		shift := uint(64 - 8*len(b))
		return int64(v<<shift) >> shift // sign-extend
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	v := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if v.IsInt64() {
		return v.Int64()
	}
	return v
}

// decodeRawUnicodeEscape decodes protocol 0's UNICODE argument: \uXXXX and
// \UXXXXXXXX escapes, every other byte as Latin-1.
func decodeRawUnicodeEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			n := 4
			if s[i+1] == 'U' {
				n = 8
			}
			if i+2+n <= len(s) {
				if r, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32); err == nil && utf8.ValidRune(rune(r)) {
					b.WriteRune(rune(r))
					i += 1 + n
					continue
				}
			}
		}
		b.WriteRune(rune(c))
	}
	return b.String()
}

// pyQuoteToGo turns a Python repr of a byte string ('abc' or "abc") into a Go
// double-quoted literal for strconv.Unquote.
func pyQuoteToGo(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		body := s[1 : len(s)-1]
		body = strings.ReplaceAll(body, `\'`, `'`)
		body = strings.ReplaceAll(body, `"`, `\"`)
		return `"` + body + `"`
	}
	return s
}

func opName(op byte) string {
	switch op {
	case opNewObj:
		return "NEWOBJ"
	case opNewObjEx:
		return "NEWOBJ_EX"
	case opBuild:
		return "BUILD"
	case opInst:
		return "INST"
	case opObj:
		return "OBJ"
	case opPersID:
		return "PERSID"
	case opBinPersID:
		return "BINPERSID"
	case opExt1, opExt2, opExt4:
		return "EXT"
	case opNextBuffer:
		return "NEXT_BUFFER"
	case opReadOnlyBuffer:
		return "READONLY_BUFFER"
	}
	return fmt.Sprintf("0x%02x", op)
}

func pyTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case pyBytes:
		return "bytes"
	case *pyList:
		return "list"
	case pyTuple:
		return "tuple"
	case *pyDict:
		return "dict"
	case pyGlobal:
		return "global"
	}
	return fmt.Sprintf("%T", v)
}
