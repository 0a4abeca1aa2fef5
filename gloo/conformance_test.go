package gloo_test

import (
	"testing"

	"github.com/gccl/gccl/backends/backendtest"
	_ "github.com/gccl/gccl/gloo"
)

// TestConformance runs the backend conformance suite over gloo at world sizes 1, 2, 3, 4 and 8,
// each rank a real process.
func TestConformance(t *testing.T) {
	backendtest.Run(t, backendtest.Config{Backend: "gloo"})
}
