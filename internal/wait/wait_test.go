package wait

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestNewPolicy: ranks spin first when they have a core each, counted from GCCL_LOCAL_CPUS
// when the launcher sets it (a pinned rank sees one CPU of its own), and yield at once when
// they outnumber the cores.
func TestNewPolicy(t *testing.T) {
	spin := Policy{Spin: 30 * time.Microsecond, Yield: 300 * time.Microsecond}
	yield := Policy{Spin: 0, Yield: 2 * time.Millisecond}
	t.Setenv("GCCL_SPIN_US", "")
	t.Setenv("GCCL_YIELD_US", "")
	t.Setenv("GCCL_LOCAL_CPUS", "4")
	assert.Equal(t, spin, NewPolicy(2))
	assert.Equal(t, spin, NewPolicy(4))
	assert.Equal(t, yield, NewPolicy(5))
	t.Setenv("GCCL_LOCAL_CPUS", "1")
	assert.Equal(t, yield, NewPolicy(2))
	t.Setenv("GCCL_LOCAL_CPUS", "0") // not a count: this process's CPUs
	n := runtime.NumCPU()
	assert.Equal(t, spin, NewPolicy(n))
	assert.Equal(t, yield, NewPolicy(n+1))
	t.Setenv("GCCL_SPIN_US", "7")
	t.Setenv("GCCL_LOCAL_CPUS", "1")
	assert.Equal(t, Policy{Spin: 7 * time.Microsecond, Yield: 2 * time.Millisecond}, NewPolicy(2))
}
