package dtensor

import "fmt"

// ChunkRange is the part of n elements that chunk i of m holds under torch.chunk's rules: every
// chunk holds ceil(n/m) elements except the trailing ones, which hold fewer or none. It returns
// the chunk's start and length (start is n for an empty chunk past the end).
func ChunkRange(n, m, i int) (start, length int) {
	if m <= 0 || n <= 0 {
		return 0, 0
	}
	size := (n + m - 1) / m
	start = min(i*size, n)
	return start, min(size, n-start)
}

// LocalShape computes the shape of the local shard held by the rank at coordinate coord of a
// mesh of the given shape, and the offset of that shard in the global tensor, for a tensor of
// global shape laid out by placements (one per mesh dimension), like torch's
// compute_local_shape_and_global_offset. Sharded mesh dimensions apply in mesh-dimension order:
// a tensor dimension sharded by several mesh dimensions is chunked by the first, then each chunk
// by the next (nested chunking). Replicate and Partial leave the shape alone.
//
// LocalShape needs no process group: every rank can compute every other rank's layout.
func LocalShape(global, meshShape, coord []int, placements []Placement) (shape, offset []int, err error) {
	if len(meshShape) != len(coord) {
		return nil, nil, fmt.Errorf("dtensor.LocalShape: coordinate %v for a mesh of shape %v; pass one coordinate per mesh dimension", coord, meshShape)
	}
	for _, n := range global {
		if n < 0 {
			return nil, nil, fmt.Errorf("dtensor.LocalShape: global shape %v has a negative size; sizes must be at least 0", global)
		}
	}
	ps, err := normalizePlacements(placements, len(meshShape), len(global))
	if err != nil {
		return nil, nil, fmt.Errorf("dtensor.LocalShape: %w", err)
	}
	shape, offset = localShape(global, meshShape, coord, ps, len(ps))
	return shape, offset, nil
}

// localShape applies the first upto mesh dimensions of (normalized) placements.
func localShape(global, meshShape, coord []int, ps []Placement, upto int) (shape, offset []int) {
	shape = append([]int(nil), global...)
	offset = make([]int, len(global))
	for i := range upto {
		if d := shardDim(ps[i]); d >= 0 {
			start, n := ChunkRange(shape[d], meshShape[i], coord[i])
			offset[d] += start
			shape[d] = n
		}
	}
	return shape, offset
}
