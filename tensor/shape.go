package tensor

// AppendShape appends t's shape to dst as int64s and returns the extended slice. It allocates
// nothing when dst has room: for callers on a hot path (the flight recorder's per-op record).
func (t *Tensor) AppendShape(dst []int64) []int64 {
	for _, d := range t.shape {
		dst = append(dst, int64(d))
	}
	return dst
}
