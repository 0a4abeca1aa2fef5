package gloo

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// Every message on a connection is a fixed header followed by Bytes of payload.
const (
	headerSize  = 56
	headerMagic = 0x4c434347 // "GCCL" little-endian
	helloMagic  = 0x4f4c4548 // "HELO"
)

// msgKind says what a message is.
type msgKind uint8

const (
	msgCollective msgKind = 1 // a step of a collective, matched by sequence number
	msgP2P        msgKind = 2 // a send, matched by tag
	msgAbort      msgKind = 3 // the sender aborted the group; payload is the reason
)

// An abort message carries its backends.AbortClass in header.Tag and the lost rank in Root.

// header is the fingerprint of the op a message belongs to. Receivers compare it with what they
// expect, so ranks that issue different ops, sizes or dtypes get an error, never wrong data.
type header struct {
	Group  uint32 // hash of the group's name: a message that reached the wrong group is an error
	Kind   msgKind
	Op     backends.OpKind
	DType  tensor.DType
	Reduce tensor.ReduceOp
	Asked  tensor.ReduceOp // the reduce op the caller asked for (backends.Op.AskedReduce)
	Step   uint32          // step of the algorithm, to catch ranks running different algorithms
	Seq    uint64          // collective sequence number
	Tag    int64           // p2p tag (abort class for aborts)
	Count  int64           // op's element count (fingerprint)
	Root   int32           // op's root (lost rank for aborts)
	Bytes  uint64          // payload length
}

func (h *header) encode(b []byte) {
	_ = b[headerSize-1]
	binary.LittleEndian.PutUint32(b[0:], headerMagic)
	b[4] = byte(h.Kind)
	b[5] = byte(h.Op)
	b[6] = byte(h.DType)
	b[7] = byte(h.Reduce)
	binary.LittleEndian.PutUint32(b[8:], h.Step)
	binary.LittleEndian.PutUint32(b[12:], uint32(h.Root))
	binary.LittleEndian.PutUint64(b[16:], h.Seq)
	binary.LittleEndian.PutUint64(b[24:], uint64(h.Tag))
	binary.LittleEndian.PutUint64(b[32:], uint64(h.Count))
	binary.LittleEndian.PutUint64(b[40:], h.Bytes)
	binary.LittleEndian.PutUint32(b[48:], h.Group)
	b[52] = byte(h.Asked)
	b[53], b[54], b[55] = 0, 0, 0
}

func decodeHeader(b []byte) (header, error) {
	_ = b[headerSize-1]
	if m := binary.LittleEndian.Uint32(b[0:]); m != headerMagic {
		return header{}, fmt.Errorf("corrupt stream: bad message magic %#x", m)
	}
	return header{
		Kind:   msgKind(b[4]),
		Op:     backends.OpKind(b[5]),
		DType:  tensor.DType(b[6]),
		Reduce: tensor.ReduceOp(b[7]),
		Asked:  tensor.ReduceOp(b[52]),
		Step:   binary.LittleEndian.Uint32(b[8:]),
		Root:   int32(binary.LittleEndian.Uint32(b[12:])),
		Seq:    binary.LittleEndian.Uint64(b[16:]),
		Tag:    int64(binary.LittleEndian.Uint64(b[24:])),
		Count:  int64(binary.LittleEndian.Uint64(b[32:])),
		Bytes:  binary.LittleEndian.Uint64(b[40:]),
		Group:  binary.LittleEndian.Uint32(b[48:]),
	}, nil
}

// groupHash identifies a group in message headers.
func groupHash(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32()
}

// collectiveHeader is the header of step `step` of collective op carrying n payload bytes.
func collectiveHeader(op backends.Op, step int, n int) header {
	h := header{Kind: msgCollective, Op: op.Kind, DType: op.DType, Reduce: op.Reduce, Asked: op.AskedReduce, Step: uint32(step),
		Seq: op.Seq, Count: int64(op.Count), Root: int32(op.Root), Bytes: uint64(n)}
	if op.Kind == backends.OpAllToAll {
		h.Count = 0 // split sizes may legitimately differ per rank; Bytes is checked instead
	}
	return h
}

func (h header) describe() string {
	switch h.Kind {
	case msgP2P:
		return fmt.Sprintf("send (tag %d, %d bytes, %s)", h.Tag, h.Bytes, h.DType)
	case msgAbort:
		return "abort"
	}
	red := h.Reduce.String()
	if h.Asked != h.Reduce && h.Asked != 0 {
		red += " for " + h.Asked.String()
	}
	return fmt.Sprintf("%s #%d (%d x %s, op %s, root %d, step %d, %d bytes)",
		h.Op, h.Seq, h.Count, h.DType, red, h.Root, h.Step, h.Bytes)
}

// mismatch explains how an arriving collective header differs from the expected one, or "".
func mismatch(got, want header) string {
	switch {
	case got.Group != want.Group:
		return fmt.Sprintf("the message belongs to another group (hash %#x, this group's is %#x)", got.Group, want.Group)
	case got.Seq != want.Seq:
		return fmt.Sprintf("the peer is in collective #%d (%s), this rank in #%d (%s): ranks issued a different number of collectives",
			got.Seq, got.Op, want.Seq, want.Op)
	case got.Op != want.Op:
		return fmt.Sprintf("the peer called %s, this rank %s", got.Op, want.Op)
	case got.DType != want.DType:
		return fmt.Sprintf("the peer's dtype is %s, this rank's %s", got.DType, want.DType)
	case got.Count != want.Count:
		return fmt.Sprintf("the peer's count is %d elements, this rank's %d", got.Count, want.Count)
	case got.Reduce != want.Reduce:
		return fmt.Sprintf("the peer's reduce op is %s, this rank's %s", got.Reduce, want.Reduce)
	case got.Asked != want.Asked:
		return fmt.Sprintf("the peer asked for reduce op %s, this rank for %s", got.Asked, want.Asked)
	case got.Root != want.Root:
		return fmt.Sprintf("the peer's root is %d, this rank's %d", got.Root, want.Root)
	case got.Step != want.Step:
		return fmt.Sprintf("the peer is at step %d, this rank at step %d (different algorithms or sizes)", got.Step, want.Step)
	case got.Bytes != want.Bytes:
		return fmt.Sprintf("the peer sends %d bytes, this rank expects %d (split sizes disagree)", got.Bytes, want.Bytes)
	}
	return ""
}
