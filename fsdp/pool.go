package fsdp

import (
	"sync"

	"github.com/gccl/gccl/tensor"
)

// pool keeps the full-size buffers an unshard or a gradient reduction frees (all-gather outputs,
// full parameters, unsharded gradients, reduce-scatter inputs) for the next one of about the same
// size, as torch's caching allocator does for FSDP2. A fresh 1 MiB allocation costs its zeroing,
// page faults and collector work: measured here, 160 µs against the 85 µs of the 1 MiB all-gather
// it feeds. The pool holds at most limit bytes, so a model at rest keeps only a few groups' worth.
type pool struct {
	mu    sync.Mutex // the prefetch and reduction goroutines take and give buffers too
	free  [][]byte   // each whole
	bytes int
	limit int
	// lent maps the first byte of every buffer handed out to the whole buffer, which may be
	// longer than the tensor over it (whose Bytes cannot show the rest), so that put gets it
	// all back. Every buffer handed out is given back (put) or let go (forget), so that lent
	// holds no memory the pool will not see again.
	lent map[*byte][]byte
}

// slack is how much larger than asked a pooled buffer may be (a fraction of the size asked):
// enough for a group's flat buffer (all its padded shards) to serve its largest parameter's full
// tensor or gradient, too little for a full-size buffer to serve a shard-size request.
const slack = 4 // n/slack bytes

// tensor returns a contiguous tensor of dt and shape over a pooled buffer (the smallest free one
// that fits): its contents are whatever the last user left, unless zero is set.
func (p *pool) tensor(dt tensor.DType, zero bool, shape ...int) *tensor.Tensor {
	n := dt.Size()
	for _, d := range shape {
		n *= d
	}
	whole := p.take(n)
	var t *tensor.Tensor
	if whole == nil {
		t = tensor.New(dt, shape...) // zeroed
		whole = t.Bytes()
	} else {
		b := whole[:n]
		if zero {
			clear(b)
		}
		var err error
		if t, err = tensor.FromBytes(dt, b, shape...); err != nil {
			panic(err) // n bytes hold exactly shape's elements of dt
		}
	}
	if n > 0 {
		p.mu.Lock()
		if p.lent == nil {
			p.lent = map[*byte][]byte{}
		}
		p.lent[&whole[0]] = whole
		p.mu.Unlock()
	}
	return t
}

// take removes the smallest free buffer of n to n+n/slack bytes from the pool and returns it
// whole, or nil if there is none.
func (p *pool) take(n int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	for i, b := range p.free {
		if c := len(b); c >= n && c <= n+n/slack && (best < 0 || c < len(p.free[best])) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	b := p.free[best]
	last := len(p.free) - 1
	p.free[best], p.free[last] = p.free[last], nil
	p.free = p.free[:last]
	p.bytes -= len(b)
	return b
}

// put gives t's buffer back; t must not be used after. Buffers beyond the limit are dropped
// for the collector. (A buffer never given back, after a failed collective, stays in lent.)
func (p *pool) put(ts ...*tensor.Tensor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range ts {
		if t == nil || t.NBytes() == 0 {
			continue
		}
		b := t.Bytes()
		if whole, ok := p.lent[&b[0]]; ok {
			delete(p.lent, &b[0])
			b = whole
		}
		if p.bytes+len(b) > p.limit {
			continue
		}
		p.free = append(p.free, b)
		p.bytes += len(b)
	}
}

// forget lets ts' buffers go for good (the caller keeps them, or a collective that failed may
// still write them): the pool stops tracking them, so that the collector frees them once nobody
// else holds them.
func (p *pool) forget(ts ...*tensor.Tensor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range ts {
		if t != nil && t.NBytes() > 0 {
			delete(p.lent, &t.Bytes()[0])
		}
	}
}
