package fsdp

import (
	"sync"

	"github.com/gccl/gccl/tensor"
)

// pool keeps the full-size buffers an unshard or a gradient reduction frees (all-gather outputs,
// full parameters, unsharded gradients, reduce-scatter inputs) for the next one of the same size,
// as torch's caching allocator does for FSDP2. A fresh 1 MiB allocation costs its zeroing, page
// faults and collector work: measured here, 160 µs against the 85 µs of the 1 MiB all-gather it
// feeds. The pool holds at most limit bytes, so a model at rest keeps only a few groups' worth.
type pool struct {
	mu    sync.Mutex // the prefetch and reduction goroutines take and give buffers too
	free  map[int][][]byte
	bytes int
	limit int
}

// tensor returns a contiguous tensor of dt and shape over a pooled buffer: its contents are
// whatever the last user left, unless zero is set.
func (p *pool) tensor(dt tensor.DType, zero bool, shape ...int) *tensor.Tensor {
	n := dt.Size()
	for _, d := range shape {
		n *= d
	}
	p.mu.Lock()
	var b []byte
	if list := p.free[n]; len(list) > 0 {
		b = list[len(list)-1]
		p.free[n] = list[:len(list)-1]
		p.bytes -= n
	}
	p.mu.Unlock()
	if b == nil {
		return tensor.New(dt, shape...) // zeroed
	}
	if zero {
		clear(b)
	}
	t, err := tensor.FromBytes(dt, b, shape...)
	if err != nil {
		panic(err) // n bytes hold exactly shape's elements of dt
	}
	return t
}

// put gives t's buffer back; t must not be used after. Buffers beyond the limit are dropped
// for the collector.
func (p *pool) put(ts ...*tensor.Tensor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range ts {
		if t == nil || t.NBytes() == 0 {
			continue
		}
		b := t.Bytes()
		if p.bytes+len(b) > p.limit {
			continue
		}
		if p.free == nil {
			p.free = map[int][][]byte{}
		}
		p.free[len(b)] = append(p.free[len(b)], b)
		p.bytes += len(b)
	}
}
