package shm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func cpus(ids ...int) unix.CPUSet {
	var s unix.CPUSet
	for _, c := range ids {
		s.Set(c)
	}
	return s
}

// TestGroupLimits: the data-moving collectives go single-copy by default only in a group of two
// members that may run on two CPUs or more between them; rank 0's environment overrides both
// thresholds, the others' does not count.
func TestGroupLimits(t *testing.T) {
	v := func(move, allReduce int, c unix.CPUSet) scVerdict {
		return scVerdict{ok: true, move: move, allReduc: allReduce, cpus: c}
	}
	for _, tc := range []struct {
		name string
		vs   []scVerdict
		want singleCopyLimits
	}{
		{"two pinned to their own cores", []scVerdict{v(-1, -1, cpus(0)), v(-1, -1, cpus(1))}, singleCopyLimits{move: singleCopyMoveBytes}},
		{"two free on two cores", []scVerdict{v(-1, -1, cpus(0, 1)), v(-1, -1, cpus(0, 1))}, singleCopyLimits{move: singleCopyMoveBytes}},
		{"two on one core", []scVerdict{v(-1, -1, cpus(3)), v(-1, -1, cpus(3))}, singleCopyLimits{}},
		{"no mask known", []scVerdict{v(-1, -1, cpus()), v(-1, -1, cpus())}, singleCopyLimits{}},
		{"four", []scVerdict{v(-1, -1, cpus(0)), v(-1, -1, cpus(1)), v(-1, -1, cpus(2)), v(-1, -1, cpus(3))}, singleCopyLimits{}},
		{"rank 0 turns it off", []scVerdict{v(0, -1, cpus(0)), v(-1, -1, cpus(1))}, singleCopyLimits{}},
		{"rank 0 sets both", []scVerdict{v(1, 4096, cpus(0)), v(-1, -1, cpus(0))}, singleCopyLimits{move: 1, allReduce: 4096}},
		{"rank 1's environment does not count", []scVerdict{v(-1, -1, cpus(0)), v(0, 1, cpus(1))}, singleCopyLimits{move: singleCopyMoveBytes}},
	} {
		assert.Equal(t, tc.want, groupLimits(tc.vs), tc.name)
	}
}

// TestVerdictRoundTrip: a verdict survives the store's string form, masks included.
func TestVerdictRoundTrip(t *testing.T) {
	for _, v := range []scVerdict{
		{ok: true, move: -1, allReduc: -1, cpus: cpus(0, 1)},
		{ok: false, move: 65536, allReduc: 0, cpus: cpus()},
		{ok: true, move: 1, allReduc: 7, cpus: cpus(5, 63, 64, 1023)},
	} {
		got, err := parseVerdict(v.String())
		require.NoError(t, err, v.String())
		assert.Equal(t, v, got, v.String())
	}
	_, err := parseVerdict("true 1 2 0,x")
	assert.Error(t, err)
	_, err = parseVerdict("true 1 2 1024")
	assert.Error(t, err)
}
