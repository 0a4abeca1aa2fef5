package comm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"fmt"

	"github.com/gccl/gccl/tensor"
)

// AllGatherObject gathers a Go value from every rank (encoded with encoding/gob) and returns
// them in rank order, like torch.distributed.all_gather_object.
func AllGatherObject[T any](ctx context.Context, pg *ProcessGroup, v T) ([]T, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&v); err != nil {
		return nil, fmt.Errorf("gccl: AllGatherObject on group %s (rank %d): encoding %T: %w", pg.label, pg.rank, v, err)
	}
	// First the sizes, then the payloads padded to the largest.
	sizes := tensor.New(tensor.Int64, pg.size)
	mine := tensor.New(tensor.Int64, 1)
	binary.LittleEndian.PutUint64(mine.Bytes(), uint64(buf.Len()))
	if err := pg.AllGather(ctx, sizes, mine); err != nil {
		return nil, err
	}
	maxLen := 0
	lens := make([]int, pg.size)
	for i := range lens {
		lens[i] = int(binary.LittleEndian.Uint64(sizes.Bytes()[8*i:]))
		maxLen = max(maxLen, lens[i])
	}
	in := tensor.New(tensor.Uint8, maxLen)
	copy(in.Bytes(), buf.Bytes())
	out := tensor.New(tensor.Uint8, maxLen*pg.size)
	if err := pg.AllGather(ctx, out, in); err != nil {
		return nil, err
	}
	res := make([]T, pg.size)
	for i := range res {
		b := out.Bytes()[i*maxLen : i*maxLen+lens[i]]
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&res[i]); err != nil {
			return nil, fmt.Errorf("gccl: AllGatherObject on group %s (rank %d): decoding rank %d's value: %w", pg.label, pg.rank, i, err)
		}
	}
	return res, nil
}

// BroadcastObject sends root's *v to every rank (encoded with encoding/gob), like
// torch.distributed.broadcast_object_list. On other ranks *v is overwritten.
func BroadcastObject[T any](ctx context.Context, pg *ProcessGroup, v *T, root int) error {
	var buf bytes.Buffer
	if pg.rank == root {
		if err := gob.NewEncoder(&buf).Encode(v); err != nil {
			return fmt.Errorf("gccl: BroadcastObject on group %s (rank %d): encoding %T: %w", pg.label, pg.rank, *v, err)
		}
	}
	size := tensor.New(tensor.Int64, 1)
	binary.LittleEndian.PutUint64(size.Bytes(), uint64(buf.Len()))
	if err := pg.Broadcast(ctx, size, root); err != nil {
		return err
	}
	n := int(binary.LittleEndian.Uint64(size.Bytes()))
	payload := tensor.New(tensor.Uint8, n)
	copy(payload.Bytes(), buf.Bytes())
	if err := pg.Broadcast(ctx, payload, root); err != nil {
		return err
	}
	if pg.rank == root {
		return nil
	}
	if err := gob.NewDecoder(bytes.NewReader(payload.Bytes())).Decode(v); err != nil {
		return fmt.Errorf("gccl: BroadcastObject on group %s (rank %d): decoding: %w", pg.label, pg.rank, err)
	}
	return nil
}
