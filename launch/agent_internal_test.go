package launch

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAssignNodeRanks(t *testing.T) {
	nd := func(slot, want int) nodeInfo {
		return nodeInfo{Slot: slot, Want: want, Addr: "10.0.0." + string(rune('1'+slot))}
	}
	cases := []struct {
		name  string
		nodes []nodeInfo
		slots []int // slot of node rank 0, 1, ...
		err   string
	}{
		{"join order", []nodeInfo{nd(0, -1), nd(1, -1), nd(2, -1)}, []int{0, 1, 2}, ""},
		{"asked for", []nodeInfo{nd(0, 2), nd(1, 0), nd(2, 1)}, []int{1, 2, 0}, ""},
		{"mixed: the others fill the gaps in join order", []nodeInfo{nd(0, -1), nd(1, 0), nd(2, -1)}, []int{1, 0, 2}, ""},
		{"duplicate", []nodeInfo{nd(0, 1), nd(1, 1)}, nil, "both asked for node rank 1"},
		{"out of range", []nodeInfo{nd(0, 0), nd(1, 3)}, nil, "asked for node rank 3 but only 2 node(s) joined"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := assignNodeRanks(c.nodes)
			if c.err != "" {
				assert.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			var slots []int
			for _, n := range got {
				slots = append(slots, n.Slot)
			}
			assert.Equal(t, c.slots, slots)
		})
	}
}

// A job stopped with no failed rank (a timeout) reports "failures": [], never null.
func TestFailureReportWithoutFailuresListsNone(t *testing.T) {
	rep := newFailureReport(&Config{RunID: "r"}, &Result{TimedOut: true}, nil, nil)
	data, err := json.Marshal(rep)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"failures":[]`)
	assert.Equal(t, "timeout", rep.Reason)
}

// TestThreadDefaults: each worker gets its share of the cores as GOMAXPROCS (and
// OMP_NUM_THREADS when there are several), and the job's core count as GCCL_LOCAL_CPUS; what the
// user set, in the environment or the job's extra variables, is kept.
func TestThreadDefaults(t *testing.T) {
	n := runtime.NumCPU()
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	t.Setenv("OMP_NUM_THREADS", "")
	os.Unsetenv("OMP_NUM_THREADS")
	t.Setenv("GCCL_LOCAL_CPUS", "")
	os.Unsetenv("GCCL_LOCAL_CPUS")
	share := max(1, n/2)
	assert.Equal(t, []string{fmt.Sprintf("GOMAXPROCS=%d", share), fmt.Sprintf("OMP_NUM_THREADS=%d", share),
		fmt.Sprintf("GCCL_LOCAL_CPUS=%d", n)}, threadDefaults(2, nil))
	assert.Equal(t, []string{fmt.Sprintf("GOMAXPROCS=%d", n), fmt.Sprintf("GCCL_LOCAL_CPUS=%d", n)}, threadDefaults(1, nil))
	assert.Equal(t, []string{fmt.Sprintf("GOMAXPROCS=%d", share), fmt.Sprintf("OMP_NUM_THREADS=%d", share)},
		threadDefaults(2, []string{"GCCL_LOCAL_CPUS=8"}))
	t.Setenv("GOMAXPROCS", "3")
	assert.Equal(t, []string{fmt.Sprintf("OMP_NUM_THREADS=%d", share), fmt.Sprintf("GCCL_LOCAL_CPUS=%d", n)}, threadDefaults(2, nil))
}
