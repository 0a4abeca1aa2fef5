package tests

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// buildWith compiles the gccl CLI and the job program pkg (a path relative to tests/) into a
// temporary directory and returns both binaries' paths.
func buildWith(t testing.TB, pkg string) (gccl, job string) {
	t.Helper()
	dir := t.TempDir()
	gccl, job = filepath.Join(dir, "gccl"), filepath.Join(dir, filepath.Base(pkg))
	for bin, p := range map[string]string{gccl: "../cmd/gccl", job: pkg} {
		out, err := exec.Command("go", "build", "-o", bin, p).CombinedOutput()
		require.NoError(t, err, "go build %s: %s", p, out)
	}
	return gccl, job
}
