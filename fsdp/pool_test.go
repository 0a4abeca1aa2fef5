package fsdp

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/tensor"
)

// TestPoolReuse checks the buffer pool: a freed buffer serves the next request of its size or up
// to a quarter smaller (the smallest that fits), keeps its contents unless zeroing is asked, is
// not handed to a request it is far too large for, and the pool drops what exceeds its limit.
func TestPoolReuse(t *testing.T) {
	p := &pool{limit: 3000}
	a := p.tensor(tensor.Float32, false, 250) // 1000 bytes, fresh
	a.Float32s()[0] = 7
	big := p.tensor(tensor.Float32, false, 300) // 1200 bytes
	p.put(a, big)
	assert.Equal(t, 2200, p.bytes)

	b := p.tensor(tensor.Float32, false, 200) // 800 bytes: a's buffer fits (1000 <= 800+200)
	assert.Equal(t, []int{200}, b.Shape())
	assert.Same(t, &a.Bytes()[0], &b.Bytes()[0], "the smallest free buffer that fits")
	assert.Equal(t, float32(7), b.Float32s()[0], "contents kept unless zeroing is asked")
	assert.Equal(t, 1200, p.bytes)

	p.put(b) // back at its full 1000 bytes
	assert.Equal(t, 2200, p.bytes)
	c := p.tensor(tensor.Float32, true, 250)
	assert.Same(t, &a.Bytes()[0], &c.Bytes()[0], "b gave back a's whole buffer")
	assert.Equal(t, make([]float32, 250), c.Float32s(), "zeroed when asked")

	small := p.tensor(tensor.Float32, false, 100) // 400 bytes: the 1200-byte buffer is too large
	assert.NotSame(t, &big.Bytes()[0], &small.Bytes()[0])
	assert.Equal(t, 1200, p.bytes)

	p.put(c, small, tensor.New(tensor.Float32, 500)) // 1200 + 1000 + 400 = 2600; 2000 more is over
	assert.Equal(t, 2600, p.bytes, "a buffer over the limit is dropped")
	require.Len(t, p.free, 3)

	// A buffer the caller keeps is let go: the pool holds no reference to it.
	kept := p.tensor(tensor.Float32, false, 250)
	require.Contains(t, p.lent, &kept.Bytes()[0])
	p.forget(kept)
	assert.NotContains(t, p.lent, &kept.Bytes()[0])
}
