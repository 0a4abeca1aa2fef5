package launch_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/launch"
)

const envMode = "GCCL_LAUNCH_TEST_MODE"

// TestMain lets the test binary act as a worker: launch starts it with envMode set.
func TestMain(m *testing.M) {
	switch os.Getenv(envMode) {
	case "":
		os.Exit(m.Run())
	case "env":
		for _, k := range []string{"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GCCL_TOKEN", "GCCL_BACKEND",
			"GROUP_RANK", "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_RUN_ID"} {
			fmt.Printf("%s=%s\n", k, os.Getenv(k))
		}
		fmt.Fprintln(os.Stderr, "to stderr")
		os.Exit(0)
	case "fail1":
		if os.Getenv("RANK") == "1" {
			fmt.Fprintln(os.Stderr, "rank 1 gives up")
			os.Exit(3)
		}
		time.Sleep(60 * time.Second) // must be stopped by the launcher
		os.Exit(0)
	case "affinity":
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			os.Exit(98)
		}
		cores := []int{}
		for c := 0; c < 1024; c++ {
			if set.IsSet(c) {
				cores = append(cores, c)
			}
		}
		fmt.Printf("cores=%v\n", cores)
		os.Exit(0)
	case "restart": // rank 1 fails in the first two generations
		fmt.Printf("generation %s\n", os.Getenv("TORCHELASTIC_RESTART_COUNT"))
		if os.Getenv("RANK") == "1" && os.Getenv("TORCHELASTIC_RESTART_COUNT") != "2" {
			os.Exit(5)
		}
		if os.Getenv("RANK") == "1" {
			os.Exit(0)
		}
		time.Sleep(200 * time.Millisecond) // rank 1's failure stops the others first
		os.Exit(0)
	case "errorfile": // rank 2 writes a torchrun error file and fails; rank 0 fails later
		switch os.Getenv("RANK") {
		case "2":
			fmt.Fprintln(os.Stderr, "loading the checkpoint")
			_ = os.WriteFile(os.Getenv("TORCHELASTIC_ERROR_FILE"), []byte(`{"message": {"message": "RuntimeError: checkpoint missing", "extraInfo": {"timestamp": "1"}}}`), 0o644)
			os.Exit(4)
		case "0":
			time.Sleep(100 * time.Millisecond)
			fmt.Fprintln(os.Stderr, "rank 0 also fails")
			os.Exit(6)
		}
		fmt.Println("rank 1 output")
		time.Sleep(60 * time.Second)
		os.Exit(0)
	case "sleep", "trap": // print the pid, then sleep; trap: say which signal arrived and exit 0
		sigs := make(chan os.Signal, 1)
		if os.Getenv(envMode) == "trap" {
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGUSR1)
		}
		fmt.Printf("pid=%d\n", os.Getpid())
		for {
			select {
			case s := <-sigs:
				fmt.Printf("caught %v\n", s)
				if s == syscall.SIGTERM {
					os.Exit(0)
				}
			case <-time.After(60 * time.Second):
				os.Exit(0)
			}
		}
	case "launcher": // a launcher of 2 trapping workers, to be signalled by the test
		res, err := launch.Run(context.Background(), launch.Config{
			NProcs: 2, Program: os.Args[0], Env: []string{envMode + "=" + os.Getenv("GCCL_LAUNCH_TEST_WORKERS")},
			ForwardSignals: true, GracePeriod: 2 * time.Second,
		})
		if err != nil || res.Err() != nil {
			fmt.Println("launcher:", err, res.Err())
			os.Exit(1)
		}
		fmt.Println("launcher: job succeeded")
		os.Exit(0)
	case "dumpfail": // rank 1 writes a flight-recorder dump where the launcher says, then fails
		if os.Getenv("RANK") == "1" {
			_ = os.WriteFile(os.Getenv("GCCL_FR_DUMP_PREFIX")+"1", []byte("{}"), 0o644)
			os.Exit(3)
		}
		time.Sleep(60 * time.Second)
		os.Exit(0)
	case "kill2":
		if os.Getenv("RANK") == "2" {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		time.Sleep(60 * time.Second)
		os.Exit(0)
	}
	os.Exit(99)
}

func run(t *testing.T, mode string, n int) (*launch.Result, string, string, time.Duration) {
	t.Helper()
	var out, errOut bytes.Buffer
	start := time.Now()
	res, err := launch.Run(context.Background(), launch.Config{
		NProcs: n, Program: os.Args[0], Env: []string{envMode + "=" + mode}, Backend: "gloo",
		Stdout: &out, Stderr: &errOut, GracePeriod: 2 * time.Second,
	})
	require.NoError(t, err)
	return res, out.String(), errOut.String(), time.Since(start)
}

func TestRunGivesTorchrunEnvironmentAndPrefixes(t *testing.T) {
	res, out, errOut, _ := run(t, "env", 3)
	require.NoError(t, res.Err())
	for r := 0; r < 3; r++ {
		p := fmt.Sprintf("[rank %d] ", r)
		assert.Contains(t, out, p+fmt.Sprintf("RANK=%d\n", r))
		assert.Contains(t, out, p+fmt.Sprintf("LOCAL_RANK=%d\n", r))
		assert.Contains(t, out, p+"WORLD_SIZE=3\n")
		assert.Contains(t, out, p+"LOCAL_WORLD_SIZE=3\n")
		assert.Contains(t, out, p+"MASTER_ADDR=127.0.0.1\n")
		assert.Contains(t, out, p+"GCCL_BACKEND=gloo\n")
		assert.Contains(t, errOut, p+"to stderr\n")
		assert.Contains(t, out, p+"GROUP_RANK=0\n")
		assert.Contains(t, out, p+fmt.Sprintf("ROLE_RANK=%d\n", r))
		assert.Contains(t, out, p+"ROLE_NAME=default\n")
		assert.Contains(t, out, p+"ROLE_WORLD_SIZE=3\n")
		assert.Contains(t, out, p+"TORCHELASTIC_RESTART_COUNT=0\n")
		assert.Contains(t, out, p+"TORCHELASTIC_MAX_RESTARTS=0\n")
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		assert.Regexp(t, `^\[rank \d\] [A-Z_]+=`, line, "every line is whole and prefixed")
		if strings.Contains(line, "GCCL_TOKEN=") {
			assert.Regexp(t, `GCCL_TOKEN=[0-9a-f]{32}$`, line)
		}
	}
}

func TestRunStopsOthersWhenOneFails(t *testing.T) {
	res, _, errOut, elapsed := run(t, "fail1", 3)
	require.NotNil(t, res.First)
	assert.Equal(t, 1, res.First.Rank)
	assert.Equal(t, 3, res.First.ExitCode)
	assert.Contains(t, res.Err().Error(), "rank 1")
	assert.Contains(t, res.Err().Error(), "exited with status 3")
	assert.Contains(t, res.Err().Error(), "rank 1 gives up")
	assert.Contains(t, errOut, "[rank 1] rank 1 gives up")
	for _, r := range []int{0, 2} {
		assert.True(t, res.Ranks[r].Stopped, "rank %d should have been stopped: %+v", r, res.Ranks[r])
	}
	assert.Less(t, elapsed, 30*time.Second, "the sleeping ranks were stopped, not waited for")
}

func TestRunReportsSignal(t *testing.T) {
	res, _, _, _ := run(t, "kill2", 3)
	require.NotNil(t, res.First)
	assert.Equal(t, 2, res.First.Rank)
	assert.Equal(t, "killed", res.First.Signal)
	assert.Contains(t, res.Err().Error(), "rank 2")
	assert.Contains(t, res.Err().Error(), "killed")
}

// TestRunRemovesItsDumpDirectory: the directory the launcher makes for dumps goes away with the
// job, successful or not, unless a worker wrote a dump in it.
func TestRunRemovesItsDumpDirectory(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for _, mode := range []string{"env", "fail1"} {
		res, _, _, _ := run(t, mode, 2)
		assert.Empty(t, res.Dumps, mode)
		entries, err := os.ReadDir(tmp)
		require.NoError(t, err)
		assert.Empty(t, entries, "%s: the launcher left something behind", mode)
	}

	res, _, _, _ := run(t, "dumpfail", 2)
	require.Error(t, res.Err())
	require.Len(t, res.Dumps, 1)
	assert.True(t, strings.HasPrefix(res.Dumps[0], tmp), "the dump is in the launcher's directory: %s", res.Dumps[0])
	assert.FileExists(t, res.Dumps[0], "a worker's dump is kept for gccl fr")
	assert.Equal(t, filepath.Dir(res.Dumps[0]), res.DumpDir)
}

func TestRunRejectsZeroProcesses(t *testing.T) {
	_, err := launch.Run(context.Background(), launch.Config{NProcs: 0, Program: "true"})
	assert.ErrorContains(t, err, "at least 1")
}

func TestRunReportsMissingProgram(t *testing.T) {
	res, err := launch.Run(context.Background(), launch.Config{NProcs: 2, Program: "/nonexistent/program"})
	require.NoError(t, err)
	require.NotNil(t, res.First)
	assert.Error(t, res.First.Err)
	assert.Contains(t, res.Err().Error(), "failed to start")
}

func TestRunBindsRanksToCores(t *testing.T) {
	n := min(2, runtime.NumCPU())
	var out bytes.Buffer
	res, err := launch.Run(context.Background(), launch.Config{
		NProcs: n, Program: os.Args[0], Env: []string{envMode + "=affinity"}, Bind: true, Stdout: &out, Stderr: &out,
	})
	require.NoError(t, err)
	require.NoError(t, res.Err())
	for r := 0; r < n; r++ {
		assert.Contains(t, out.String(), fmt.Sprintf("[rank %d] cores=[%d]\n", r, r))
	}
	// Without Bind the workers keep the launcher's mask.
	out.Reset()
	res, err = launch.Run(context.Background(), launch.Config{
		NProcs: n, Program: os.Args[0], Env: []string{envMode + "=affinity"}, Stdout: &out, Stderr: &out,
	})
	require.NoError(t, err)
	require.NoError(t, res.Err())
	if runtime.NumCPU() > 1 {
		assert.NotContains(t, out.String(), "[rank 1] cores=[1]\n")
	}
}
