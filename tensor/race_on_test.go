//go:build race

package tensor

// raceEnabled reports whether the race detector is on: the slowest tests shrink.
const raceEnabled = true
