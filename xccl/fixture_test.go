package xccl

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ebitengine/purego"
	"github.com/stretchr/testify/require"
)

// The fixture (testdata/fixture.c) is built once per test binary with the system C compiler. A
// missing compiler fails the tests: they never skip.

var (
	fixtureMu    sync.Mutex
	fixtureBuilt = map[string]string{}
	fixtureDir   string
)

// buildFixture compiles testdata/fixture.c with the given -D flags and returns the library's path.
func buildFixture(t testing.TB, defines ...string) string {
	t.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	key := strings.Join(defines, " ")
	if p, ok := fixtureBuilt[key]; ok {
		return p
	}
	cc := ""
	for _, name := range []string{os.Getenv("CC"), "cc", "gcc"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			cc = p
			break
		}
	}
	if cc == "" {
		t.Fatal("no C compiler (cc or gcc) to build the oneCCL fixture: install gcc (Debian: apt-get install gcc)")
	}
	if fixtureDir == "" {
		dir, err := os.MkdirTemp("", "gccl-xccl-fixture-")
		require.NoError(t, err)
		fixtureDir = dir
	}
	out := filepath.Join(fixtureDir, "libfixture"+strings.ReplaceAll(key, " ", "")+".so")
	args := append([]string{"-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", out}, defines...)
	args = append(args, filepath.Join("testdata", "fixture.c"))
	b, err := exec.Command(cc, args...).CombinedOutput()
	require.NoError(t, err, "building the fixture: %s", b)
	fixtureBuilt[key] = out
	return out
}

// TestMain removes the fixtures' folder after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		_ = os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

// fixtureLib opens the fixture as a library (the binding's view) and as the test's (its
// recording helpers).
type fixtureLib struct {
	lib      *library
	lastCall func() string
	lastID   func(out *byte)
	calls    func() int64
	directNs func(iters int64) float64
}

func openFixture(t testing.TB) *fixtureLib {
	t.Helper()
	path := buildFixture(t)
	lib, err := open(path)
	require.NoError(t, err)
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	require.NoError(t, err)
	f := &fixtureLib{lib: lib}
	purego.RegisterLibFunc(&f.lastCall, h, "fixtureLastCall")
	purego.RegisterLibFunc(&f.lastID, h, "fixtureLastID")
	purego.RegisterLibFunc(&f.calls, h, "fixtureCalls")
	purego.RegisterLibFunc(&f.directNs, h, "fixtureDirectNs")
	return f
}

// useFixture makes backend "xccl" and NewComm load the fixture in this process, with its
// communicators under a fresh folder.
func useFixture(t *testing.T) *fixtureLib {
	t.Helper()
	f := openFixture(t)
	t.Setenv("GCCL_XCCL_FIXTURE_DIR", t.TempDir())
	prevLib, prevErr := loaded, loadErr
	loadOnce.Do(func() {})
	loaded, loadErr = f.lib, nil
	t.Cleanup(func() { loaded, loadErr = prevLib, prevErr })
	return f
}
