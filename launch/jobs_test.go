package launch_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/launch"
)

// job runs the test binary as n workers in mode with cfg's other settings.
func job(t *testing.T, mode string, cfg launch.Config) (*launch.Result, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cfg.Program, cfg.Env = os.Args[0], append(cfg.Env, envMode+"="+mode)
	cfg.Stdout, cfg.Stderr, cfg.GracePeriod = &out, &errOut, 2*time.Second
	res, err := launch.Run(context.Background(), cfg)
	require.NoError(t, err)
	return res, out.String(), errOut.String()
}

func TestRunFixedPortRunIDAndToken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	res, out, _ := job(t, "env", launch.Config{NProcs: 2, MasterPort: port, RunID: "job42", Token: "secret", Role: "trainer"})
	require.NoError(t, res.Err())
	assert.Contains(t, out, fmt.Sprintf("[rank 1] MASTER_PORT=%d\n", port))
	assert.Contains(t, out, "[rank 0] TORCHELASTIC_RUN_ID=job42\n")
	assert.Contains(t, out, "[rank 0] GCCL_TOKEN=secret\n")
	assert.Contains(t, out, "[rank 1] ROLE_NAME=trainer\n")
}

func TestRunRestarts(t *testing.T) {
	cases := []struct {
		name        string
		maxRestarts int
		ok          bool
		restarts    int
	}{
		{"enough restarts", 2, true, 2},
		{"too few restarts", 1, false, 1},
		{"no restarts", 0, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, out, _ := job(t, "restart", launch.Config{NProcs: 2, MaxRestarts: c.maxRestarts})
			assert.Equal(t, c.restarts, res.RestartCount)
			for g := 0; g <= c.restarts; g++ {
				assert.Contains(t, out, fmt.Sprintf("[rank 1] generation %d\n", g))
			}
			assert.NotContains(t, out, fmt.Sprintf("generation %d\n", c.restarts+1))
			if c.ok {
				assert.NoError(t, res.Err())
				return
			}
			require.Error(t, res.Err())
			assert.Equal(t, 1, res.Report.RootCause.Rank)
			assert.Equal(t, c.restarts, res.Report.RestartCount)
		})
	}
}

func TestRunTimeout(t *testing.T) {
	start := time.Now()
	res, _, _ := job(t, "sleep", launch.Config{NProcs: 2, Timeout: 500 * time.Millisecond, DumpWait: 200 * time.Millisecond})
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.True(t, res.TimedOut)
	require.Error(t, res.Err())
	assert.Equal(t, "timeout", res.Report.Reason)
	assert.Nil(t, res.Report.RootCause)
	assert.Contains(t, res.Err().Error(), "job timed out after 500ms")
}

func TestRunFailureReport(t *testing.T) {
	logDir := t.TempDir()
	res, out, errOut := job(t, "errorfile", launch.Config{NProcs: 3, LogDir: logDir, DumpWait: time.Second})
	require.Error(t, res.Err())
	text := res.Err().Error()
	assert.Contains(t, out, "[rank 1] rank 1 output\n")
	assert.Contains(t, errOut, "[rank 2] loading the checkpoint\n")

	var rep launch.FailureReport
	data, err := os.ReadFile(filepath.Join(logDir, "failure.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &rep))
	require.NotNil(t, rep.RootCause)
	assert.Equal(t, "worker failed", rep.Reason)
	assert.Equal(t, 2, rep.RootCause.Rank)
	assert.Equal(t, 4, rep.RootCause.ExitCode)
	assert.NotZero(t, rep.RootCause.Pid)
	assert.NotEmpty(t, rep.RootCause.Host)
	assert.Equal(t, []string{"loading the checkpoint"}, rep.RootCause.StderrTail)
	assert.Equal(t, filepath.Join(logDir, "attempt_0", "2", "error.json"), rep.RootCause.ErrorFile)
	assert.Contains(t, string(rep.RootCause.ErrorFileData), "checkpoint missing")
	// rank 0 fails on its own while the launcher waits for dumps: a second failure.
	require.Len(t, rep.Failures, 2, "%s", data)
	assert.Equal(t, 0, rep.Failures[1].Rank)
	assert.Equal(t, 6, rep.Failures[1].ExitCode)

	rootAt := strings.Index(text, "root cause:")
	assert.Contains(t, text, "job failed: rank 2")
	assert.Contains(t, text, "error file "+rep.RootCause.ErrorFile+": RuntimeError: checkpoint missing")
	assert.Greater(t, strings.Index(text, "other failed ranks:"), rootAt)
	assert.Contains(t, text, "rank 0 also fails")
	assert.Contains(t, text, "failure report: "+filepath.Join(logDir, "failure.json"))

	for rank, want := range map[int]string{1: "rank 1 output\n", 2: ""} {
		got, err := os.ReadFile(filepath.Join(logDir, "attempt_0", strconv.Itoa(rank), "stdout.log"))
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
	}
	got, err := os.ReadFile(filepath.Join(logDir, "attempt_0", "2", "stderr.log"))
	require.NoError(t, err)
	assert.Equal(t, "loading the checkpoint\n", string(got))
}

func TestRunRedirectsAndFilter(t *testing.T) {
	cases := []struct {
		name            string
		redirects       launch.StdSpec
		filter          []int
		outRanks        []int // ranks whose stdout reaches the console
		errRanks        []int // ranks whose stderr reaches the console
		noOut, noErrOut []int
	}{
		{"all to console", launch.StdSpec{}, nil, []int{0, 1}, []int{0, 1}, nil, nil},
		{"stdout to files", launch.StdSpec{All: launch.StdOut}, nil, nil, []int{0, 1}, []int{0, 1}, nil},
		{"per rank", launch.StdSpec{PerRank: map[int]launch.Std{0: launch.StdErr, 1: launch.StdAll}}, nil, []int{0}, nil, []int{1}, []int{0, 1}},
		{"filter", launch.StdSpec{}, []int{1}, []int{1}, []int{1}, []int{0}, []int{0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logDir := t.TempDir()
			res, out, errOut := job(t, "env", launch.Config{NProcs: 2, LogDir: logDir, Redirects: c.redirects, ConsoleRanks: c.filter})
			require.NoError(t, res.Err())
			for _, r := range c.outRanks {
				assert.Contains(t, out, fmt.Sprintf("[rank %d] RANK=%d\n", r, r))
			}
			for _, r := range c.noOut {
				assert.NotContains(t, out, fmt.Sprintf("[rank %d]", r))
			}
			for _, r := range c.errRanks {
				assert.Contains(t, errOut, fmt.Sprintf("[rank %d] to stderr\n", r))
			}
			for _, r := range c.noErrOut {
				assert.NotContains(t, errOut, fmt.Sprintf("[rank %d]", r))
			}
			for r := 0; r < 2; r++ { // the files get everything
				got, err := os.ReadFile(filepath.Join(logDir, "attempt_0", strconv.Itoa(r), "stdout.log"))
				require.NoError(t, err)
				assert.Contains(t, string(got), fmt.Sprintf("RANK=%d\n", r))
				got, err = os.ReadFile(filepath.Join(logDir, "attempt_0", strconv.Itoa(r), "stderr.log"))
				require.NoError(t, err)
				assert.Equal(t, "to stderr\n", string(got))
			}
		})
	}
}

// startLauncher runs the test binary as a launcher (mode "launcher") of two workers in mode
// workers, and returns it with the workers' pids and the rest of its output.
func startLauncher(t *testing.T, workers string) (*exec.Cmd, []int, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envMode+"=launcher", "GCCL_LAUNCH_TEST_WORKERS="+workers)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	var pids []int
	for len(pids) < 2 && sc.Scan() {
		var r, pid int
		if _, err := fmt.Sscanf(sc.Text(), "[rank %d] pid=%d", &r, &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	require.Len(t, pids, 2, "the workers' pids")
	return cmd, pids, sc
}

func TestKilledLauncherLeavesNoWorker(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // a killed launcher cannot remove its dump directory
	launcher, pids, _ := startLauncher(t, "sleep")
	for _, pid := range pids {
		require.True(t, backends.ProcessAlive(pid))
	}
	require.NoError(t, launcher.Process.Signal(syscall.SIGKILL))
	_ = launcher.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range pids {
		for backends.ProcessAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		assert.False(t, backends.ProcessAlive(pid), "worker %d survived its launcher", pid)
	}
}

func TestLauncherForwardsSignals(t *testing.T) {
	launcher, pids, sc := startLauncher(t, "trap")
	require.NoError(t, launcher.Process.Signal(syscall.SIGUSR1))
	var lines []string
	for len(lines) < 2 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	assert.ElementsMatch(t, []string{"[rank 0] caught user defined signal 1", "[rank 1] caught user defined signal 1"}, lines)
	require.NoError(t, launcher.Process.Signal(syscall.SIGTERM))
	lines = nil
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	assert.Contains(t, lines, "[rank 0] caught terminated")
	assert.Contains(t, lines, "[rank 1] caught terminated")
	assert.Contains(t, lines, "launcher: <nil> job stopped by SIGTERM", "the job is reported stopped by the signal")
	_ = launcher.Wait()
	for _, pid := range pids {
		assert.False(t, backends.ProcessAlive(pid), "worker %d", pid)
	}
}
