package xccl

import (
	"os"
	"testing"

	"github.com/gccl/gccl/backends/backendtest"
)

// noBitwise selects every conformance case except those of BAND, BOR and BXOR, which oneCCL
// lacks (TestBadInput checks their error): Go's regexp has no negative look-ahead, so it matches
// names in which no "B" is followed by "A", "O" or "X" (the suite's other upper-case B ends
// "MiB").
const noBitwise = `^(?:[^B]|B[^AOX])*B?$`

// TestConformance runs the backend conformance suite over the fixture at world sizes 1, 2, 3, 4
// and 8, each rank a real process whose oneCCL calls all reach the fixture through the binding.
func TestConformance(t *testing.T) {
	if os.Getenv("GCCL_BACKENDTEST_CHILD") == "" {
		t.Setenv(EnvLibrary, buildFixture(t))
		t.Setenv("GCCL_XCCL_FIXTURE_DIR", t.TempDir())
		t.Setenv("GCCL_XCCL_FIXTURE_TIMEOUT_MS", "60000")
	}
	backendtest.Run(t, backendtest.Config{Backend: "xccl", Run: runFilter()})
}

// runFilter is GCCL_CONFORMANCE_RUN when that is set (to run a few cases), else noBitwise.
func runFilter() string {
	if f := os.Getenv("GCCL_CONFORMANCE_RUN"); f != "" {
		return f
	}
	return noBitwise
}

// TestConformanceRealLibrary runs the suite against the oneCCL that GCCL_XCCL_LIBRARY names
// (see README, "xccl"); without it there is nothing to run.
func TestConformanceRealLibrary(t *testing.T) {
	if os.Getenv("GCCL_BACKENDTEST_CHILD") == "" && os.Getenv(EnvLibrary) == "" {
		t.Skip("set GCCL_XCCL_LIBRARY to a real libccl.so.2 to run the conformance suite against it")
	}
	backendtest.Run(t, backendtest.Config{Backend: "xccl", Run: runFilter(), WorldSizes: []int{1, 2, 4}})
}
