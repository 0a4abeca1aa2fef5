package shm_test

import (
	"testing"

	"github.com/gccl/gccl/backends/backendtest"
	_ "github.com/gccl/gccl/shm"
)

// TestConformance runs the backend conformance suite over shm at world sizes 1, 2, 3, 4 and 8,
// each rank a real process.
func TestConformance(t *testing.T) {
	backendtest.Run(t, backendtest.Config{Backend: "shm"})
}
