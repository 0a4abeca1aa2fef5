package comm

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"math"
	"strings"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// The object collectives move Go values, encoded with encoding/gob, as uint8 tensors: first the
// sizes (so that every rank knows how much to receive, and the padding where one op moves
// several values), then the payloads. A rank that cannot encode its value still takes part in
// every op: its size says so (negative: -1 minus the length of the reason), and the reason
// travels where its payload would. Every rank then returns an error that names that rank and
// why, instead of waiting in an op the failing rank never joins until the group's timeout.

// objectFix is what to do about a value gob cannot encode.
const objectFix = "pass a value encoding/gob can encode (exported fields; no func or chan values; gob.Register each concrete type held in an interface)"

// maxObjectReason bounds the part of a reason that comes from gob (a message naming a type).
const maxObjectReason = 1024

// wrongCount is the size ScatterObject's root sends every rank when its list does not have one
// value per rank; the slot length beside it is the list's length.
const wrongCount = math.MinInt64

// encoded is one value ready to move: its gob encoding, or, when it could not be encoded, why
// and what to do (ok false).
type encoded struct {
	data []byte
	ok   bool
}

// encodeObject encodes *v, or says why it cannot (v nil, or a value gob refuses).
func encodeObject[T any](v *T) encoded {
	if v == nil {
		return encoded{data: fmt.Appendf(nil, "v is a nil *%s: pass a pointer to the value to send", typeName[T]())}
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		why := fmt.Sprintf("encoding %T: %v", *v, err)
		if len(why) > maxObjectReason {
			why = strings.ToValidUTF8(why[:maxObjectReason], "") + "..."
		}
		return encoded{data: fmt.Appendf(nil, "%s: %s", why, objectFix)}
	}
	return encoded{data: buf.Bytes(), ok: true}
}

// typeName names T (an interface type too, which %T of a nil value does not).
func typeName[T any]() string { return fmt.Sprintf("%T", (*T)(nil))[1:] }

// size is what a rank sends ahead of e's payload: its length, or -1 minus it when e is a reason.
func (e encoded) size() int64 {
	if e.ok {
		return int64(len(e.data))
	}
	return -1 - int64(len(e.data))
}

// payloadLen is the length of the payload that follows size, and whether it is an encoding
// (else the reason its sender could not encode its value).
func payloadLen(size int64) (int, bool) {
	if size >= 0 {
		return int(size), true
	}
	return int(-1 - size), false
}

func decodeObject[T any](b []byte, v *T) error {
	return gob.NewDecoder(bytes.NewReader(b)).Decode(v)
}

// objectInvalid is an ErrInvalidArgument of object collective fn, in the style of the others:
// what happened and what to do.
func (pg *ProcessGroup) objectInvalid(fn, format string, args ...any) error {
	return fmt.Errorf("gccl: %s on group %s (rank %d): %s: %w", fn, pg.label, pg.rank, fmt.Sprintf(format, args...), ErrInvalidArgument)
}

// unencodable is the error of fn when sizes (every rank's, in rank order) say some ranks could
// not encode their values; reason(r) is rank r's reason. It is nil when every rank could.
func (pg *ProcessGroup) unencodable(fn string, sizes []int64, reason func(r int) string) error {
	const named = 3 // at most this many ranks with their reasons; the rest are counted
	var parts []string
	failed := 0
	for r, s := range sizes {
		if s >= 0 {
			continue
		}
		failed++
		if failed <= named {
			parts = append(parts, fmt.Sprintf("rank %d cannot encode its value: %s", r, reason(r)))
		}
	}
	if failed == 0 {
		return nil
	}
	if failed > named {
		parts = append(parts, fmt.Sprintf("and %d more ranks cannot encode theirs", failed-named))
	}
	return pg.objectInvalid(fn, "%s", strings.Join(parts, "; "))
}

// decodeEach decodes every rank's value, slot(r) being rank r's encoding, in rank order.
func decodeEach[T any](pg *ProcessGroup, fn string, slot func(r int) []byte) ([]T, error) {
	res := make([]T, pg.size)
	for r := range res {
		if err := decodeObject(slot(r), &res[r]); err != nil {
			return nil, pg.undecodable(fn, fmt.Sprintf("rank %d's value", r), err)
		}
	}
	return res, nil
}

// undecodable is the error of fn when what (a value it received) does not decode into T: the
// ranks most likely passed different types (ErrMismatch).
func (pg *ProcessGroup) undecodable(fn, what string, err error) error {
	return fmt.Errorf("gccl: %s on group %s (rank %d): decoding %s: %w: %w; pass values of the same type on every rank",
		fn, pg.label, pg.rank, what, err, ErrMismatch)
}

// inObject marks an error of the op an object collective runs (its argument checks) with the
// function the caller called.
func inObject(fn string, err error) error { return fmt.Errorf("%w (in %s)", err, fn) }

// AllGatherObject gathers a Go value from every rank (encoded with encoding/gob) and returns
// them in rank order, like torch.distributed.all_gather_object. If a rank cannot encode its
// value, every rank returns an error (ErrInvalidArgument) that names that rank and why.
func AllGatherObject[T any](ctx context.Context, pg *ProcessGroup, v T) ([]T, error) {
	const fn = "AllGatherObject"
	mine := encodeObject(&v)
	// First the sizes, then the payloads padded to the largest.
	sizes := tensor.New(tensor.Int64, pg.size)
	if err := pg.AllGather(ctx, sizes, tensor.FromSlice([]int64{mine.size()})); err != nil {
		return nil, err
	}
	lens, maxLen := make([]int, pg.size), 0
	for i, s := range sizes.Int64s() {
		lens[i], _ = payloadLen(s)
		maxLen = max(maxLen, lens[i])
	}
	in := tensor.New(tensor.Uint8, maxLen)
	copy(in.Bytes(), mine.data)
	out := tensor.New(tensor.Uint8, maxLen*pg.size)
	if err := pg.AllGather(ctx, out, in); err != nil {
		return nil, err
	}
	slot := func(r int) []byte { return out.Bytes()[r*maxLen : r*maxLen+lens[r]] }
	if err := pg.unencodable(fn, sizes.Int64s(), func(r int) string { return string(slot(r)) }); err != nil {
		return nil, err
	}
	return decodeEach[T](pg, fn, slot)
}

// BroadcastObject sends root's *v to every rank (encoded with encoding/gob), like
// torch.distributed.broadcast_object_list. On other ranks *v is overwritten. If root cannot
// encode *v, every rank returns an error (ErrInvalidArgument) that names root and why.
func BroadcastObject[T any](ctx context.Context, pg *ProcessGroup, v *T, root int) error {
	const fn = "BroadcastObject"
	if err := pg.checkRoot(backends.OpBroadcast, "root", root); err != nil {
		return inObject(fn, err)
	}
	var mine encoded
	if pg.rank == root {
		mine = encodeObject(v)
	}
	size := tensor.FromSlice([]int64{mine.size()})
	if err := pg.Broadcast(ctx, size, root); err != nil {
		return err
	}
	n, ok := payloadLen(size.Int64s()[0])
	payload := tensor.New(tensor.Uint8, n)
	copy(payload.Bytes(), mine.data)
	if err := pg.Broadcast(ctx, payload, root); err != nil {
		return err
	}
	if !ok {
		return pg.objectInvalid(fn, "rank %d (the root) cannot encode its value: %s", root, payload.Bytes())
	}
	if pg.rank == root {
		return nil
	}
	if v == nil {
		return pg.objectInvalid(fn, "v is a nil *%s: pass a pointer to where root %d's value goes", typeName[T](), root)
	}
	if err := decodeObject(payload.Bytes(), v); err != nil {
		return pg.undecodable(fn, fmt.Sprintf("root %d's value", root), err)
	}
	return nil
}

// GatherObject gathers a Go value from every rank (encoded with encoding/gob) on root, like
// torch.distributed.gather_object: root gets them in rank order, other ranks nil. If a rank
// cannot encode its value, every rank returns an error (ErrInvalidArgument) that names that
// rank and why.
func GatherObject[T any](ctx context.Context, pg *ProcessGroup, v T, root int) ([]T, error) {
	const fn = "GatherObject"
	if err := pg.checkRoot(backends.OpGather, "root", root); err != nil {
		return nil, inObject(fn, err)
	}
	mine := encodeObject(&v)
	// Every rank learns every size (and so the padded length), then one gather.
	sizes := tensor.New(tensor.Int64, pg.size)
	if err := pg.AllGather(ctx, sizes, tensor.FromSlice([]int64{mine.size()})); err != nil {
		return nil, err
	}
	lens, maxLen, failed := make([]int, pg.size), 0, false
	for i, s := range sizes.Int64s() {
		var ok bool
		lens[i], ok = payloadLen(s)
		maxLen, failed = max(maxLen, lens[i]), failed || !ok
	}
	in := tensor.New(tensor.Uint8, maxLen)
	copy(in.Bytes(), mine.data)
	var out *tensor.Tensor
	slot := func(r int) []byte { return out.Bytes()[r*maxLen : r*maxLen+lens[r]] }
	if failed {
		// Every rank knows from the sizes: all-gather instead, so that every rank has the reasons.
		out = tensor.New(tensor.Uint8, maxLen*pg.size)
		if err := pg.AllGather(ctx, out, in); err != nil {
			return nil, err
		}
		return nil, pg.unencodable(fn, sizes.Int64s(), func(r int) string { return string(slot(r)) })
	}
	if pg.rank == root {
		out = tensor.New(tensor.Uint8, maxLen*pg.size)
	}
	if err := pg.Gather(ctx, out, in, root); err != nil {
		return nil, err
	}
	if pg.rank != root {
		return nil, nil
	}
	return decodeEach[T](pg, fn, slot)
}

// ScatterObject sends vs[r] from root to rank r (encoded with encoding/gob), like
// torch.distributed.scatter_object_list, and returns this rank's value. vs is read on root only,
// where it must hold one value per rank; other ranks may pass nil. If root's list has the wrong
// length, or root cannot encode one of its values, every rank returns an error
// (ErrInvalidArgument) that says so.
func ScatterObject[T any](ctx context.Context, pg *ProcessGroup, vs []T, root int) (T, error) {
	const fn = "ScatterObject"
	var zero T
	if err := pg.checkRoot(backends.OpScatter, "root", root); err != nil {
		return zero, inObject(fn, err)
	}
	// Root sends each rank a header: [the length of its value, the padded length of every
	// value], then the padded values in one scatter. When root cannot, every header says why:
	// [wrongCount, len(vs)], or [-1 minus the reason's length, that length] with the reason in
	// every slot.
	var headers, payloads *tensor.Tensor
	if pg.rank == root {
		h := make([]int64, 2*pg.size)
		if len(vs) != pg.size {
			for r := range pg.size {
				h[2*r], h[2*r+1] = wrongCount, int64(len(vs))
			}
		} else {
			encs := make([]encoded, pg.size)
			maxLen, bad := 0, -1
			for r := range encs {
				encs[r] = encodeObject(&vs[r])
				maxLen = max(maxLen, len(encs[r].data))
				if !encs[r].ok {
					bad = r
					break
				}
			}
			if bad >= 0 {
				why := fmt.Appendf(nil, "rank %d (the root) cannot encode the value for rank %d: %s", root, bad, encs[bad].data)
				payloads = tensor.FromSlice(bytes.Repeat(why, pg.size))
				for r := range pg.size {
					h[2*r], h[2*r+1] = -1-int64(len(why)), int64(len(why))
				}
			} else {
				payloads = tensor.New(tensor.Uint8, maxLen*pg.size)
				for r, e := range encs {
					copy(payloads.Bytes()[r*maxLen:], e.data)
					h[2*r], h[2*r+1] = int64(len(e.data)), int64(maxLen)
				}
			}
		}
		headers = tensor.FromSlice(h)
	}
	header := tensor.New(tensor.Int64, 2)
	if err := pg.Scatter(ctx, header, headers, root); err != nil {
		return zero, err
	}
	own, slotLen := header.Int64s()[0], int(header.Int64s()[1])
	if own == wrongCount {
		if pg.rank == root {
			return zero, pg.objectInvalid(fn, "vs has %d values for a group of %d ranks: pass one value per rank", len(vs), pg.size)
		}
		return zero, pg.objectInvalid(fn, "root %d passed %d values for %d ranks: the root must pass one value per rank", root, slotLen, pg.size)
	}
	payload := tensor.New(tensor.Uint8, slotLen)
	if err := pg.Scatter(ctx, payload, payloads, root); err != nil {
		return zero, err
	}
	n, ok := payloadLen(own)
	b := payload.Bytes()[:n]
	if !ok {
		return zero, pg.objectInvalid(fn, "%s", b)
	}
	var v T
	if err := decodeObject(b, &v); err != nil {
		return zero, pg.undecodable(fn, fmt.Sprintf("this rank's value from root %d", root), err)
	}
	return v, nil
}

// SendObject sends v (encoded with encoding/gob) to group rank dst with tag, like
// torch.distributed.send_object_list: its size, then the encoding, as two messages with tag;
// dst receives it with RecvObject. If v cannot be encoded, dst still gets the two messages
// (saying why), so that both ranks return an error (ErrInvalidArgument).
func SendObject[T any](ctx context.Context, pg *ProcessGroup, v T, dst, tag int) error {
	const fn = "SendObject"
	size := tensor.New(tensor.Int64, 1)
	if _, err := pg.p2pOp(backends.OpSend, size, dst, tag); err != nil {
		return inObject(fn, err)
	}
	mine := encodeObject(&v)
	size.Int64s()[0] = mine.size()
	if err := pg.Send(ctx, size, dst, tag); err != nil {
		return err
	}
	if len(mine.data) > 0 {
		if err := pg.Send(ctx, tensor.FromSlice(mine.data), dst, tag); err != nil {
			return err
		}
	}
	if !mine.ok {
		return pg.objectInvalid(fn, "rank %d cannot encode its value for rank %d: %s", pg.rank, dst, mine.data)
	}
	return nil
}

// RecvObject receives the value group rank src sent with SendObject and tag, like
// torch.distributed.recv_object_list. If src could not encode its value, it returns an error
// (ErrInvalidArgument) that says why.
func RecvObject[T any](ctx context.Context, pg *ProcessGroup, src, tag int) (T, error) {
	const fn = "RecvObject"
	var v T
	size := tensor.New(tensor.Int64, 1)
	if _, err := pg.p2pOp(backends.OpRecv, size, src, tag); err != nil {
		return v, inObject(fn, err)
	}
	if err := pg.Recv(ctx, size, src, tag); err != nil {
		return v, err
	}
	n, ok := payloadLen(size.Int64s()[0])
	payload := tensor.New(tensor.Uint8, n)
	if n > 0 {
		if err := pg.Recv(ctx, payload, src, tag); err != nil {
			return v, err
		}
	}
	if !ok {
		return v, pg.objectInvalid(fn, "rank %d (the source) cannot encode its value: %s", src, payload.Bytes())
	}
	if err := decodeObject(payload.Bytes(), &v); err != nil {
		return v, pg.undecodable(fn, fmt.Sprintf("rank %d's value", src), err)
	}
	return v, nil
}
