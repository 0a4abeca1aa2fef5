package fsdp

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestReshardKeepsAFailedPrefetch: a prefetch that failed and that Reshard waited for is not
// dropped: the next Unshard returns its error, once. (White-box: a failure cannot be timed
// reliably across real ranks.)
func TestReshardKeepsAFailedPrefetch(t *testing.T) {
	boom := errors.New("all-gather failed")
	g := &Group{model: &Model{}}
	f := &fetch{done: make(chan struct{}), err: boom}
	close(f.done)
	g.fetch = f
	g.Reshard()
	assert.Nil(t, g.fetch)
	assert.False(t, g.IsUnsharded())
	assert.ErrorIs(t, g.Unshard(context.Background()), boom)
	assert.Nil(t, g.fetchErr, "returned once")
}
