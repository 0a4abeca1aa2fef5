package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMain gives the package's processes a temporary directory of their own, removed at the end:
// launchers that the tests kill cannot remove their dump directories themselves.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gccl-tests-")
	if err == nil {
		_ = os.Setenv("TMPDIR", dir)
	}
	code := m.Run()
	if err == nil {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

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

// runShm runs job under gccl run as n ranks on the shm backend (GCCL_TIMEOUT=30s) and returns
// its combined output.
func runShm(gccl, job string, n int, args ...string) (string, error) {
	cmd := exec.Command(gccl, append([]string{"run", "--nproc-per-node", strconv.Itoa(n), "--backend", "shm", "--", job}, args...)...)
	cmd.Env = append(os.Environ(), "GCCL_TIMEOUT=30s")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// lastRank0JSON decodes the last line of out, rank 0's JSON result (gccl run's "[rank 0] "
// prefix removed).
func lastRank0JSON[T any](t *testing.T, out string) T {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := strings.TrimPrefix(lines[len(lines)-1], "[rank 0] ")
	var r T
	require.NoError(t, json.Unmarshal([]byte(last), &r), "last line of:\n%s", out)
	return r
}
