package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBackwardMatchesFiniteDifferences: the hand-written backward pass's gradient of every
// weight and bias agrees with central differences of the loss (in float64 arithmetic over the
// float32 model, so with a loose tolerance), on a small model.
func TestBackwardMatchesFiniteDifferences(t *testing.T) {
	c := Config{In: 5, Hidden: 7, Out: 3, Layers: 3, Seed: 3}
	p := newPlain(c)
	x, y := batch(c, 0, 4)
	loss0, err := Step(c, p, Hooks{}, x, y)
	require.NoError(t, err)
	require.Positive(t, loss0)
	grads := map[string][]float32{}
	for name, g := range p.g {
		grads[name] = append([]float32(nil), g.Float32s()...)
	}
	const h = 1e-2
	checked := 0
	for name, w := range p.w {
		ws := w.Float32s()
		for i := range ws {
			if i%3 != 0 { // every third element keeps the test fast
				continue
			}
			orig := ws[i]
			ws[i] = orig + h
			p.zero()
			up, err := Step(c, p, Hooks{}, x, y)
			require.NoError(t, err)
			ws[i] = orig - h
			p.zero()
			down, err := Step(c, p, Hooks{}, x, y)
			require.NoError(t, err)
			ws[i] = orig
			numeric := (up - down) / (2 * h)
			assert.InDelta(t, numeric, float64(grads[name][i]), 2e-4+2e-2*abs(numeric), "%s[%d]", name, i)
			checked++
		}
	}
	assert.Greater(t, checked, 40)
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
