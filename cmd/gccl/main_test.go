package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/internal/bench"
)

// buildGCCL builds the CLI once per test binary run.
func buildGCCL(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gccl")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func TestCLI(t *testing.T) {
	bin := buildGCCL(t)

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "version").CombinedOutput()
		require.NoError(t, err)
		assert.Regexp(t, `^gccl \S+\n$`, string(out))
	})

	t.Run("store", func(t *testing.T) {
		cmd := exec.Command(bin, "store", "--listen", "127.0.0.1:0")
		cmd.Env = append(cmd.Environ(), "GCCL_TOKEN=")
		out, err := cmd.CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "no job token", "gccl store refuses to serve without a token")

		// With a token it serves until SIGTERM, and says where.
		tok := filepath.Join(t.TempDir(), "token")
		require.NoError(t, os.WriteFile(tok, []byte("s3cret\n"), 0o600))
		cmd = exec.Command(bin, "store", "--listen", "127.0.0.1:0", "--token-file", tok)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		line, err := bufio.NewReader(stdout).ReadString('\n')
		require.NoError(t, err)
		assert.Regexp(t, `^gccl store: listening on 127\.0\.0\.1:\d+\n$`, line)
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		assert.NoError(t, cmd.Wait(), "SIGTERM ends gccl store cleanly")
	})

	// gccl bench --check --json: every op, every row exactly the documented keys, 0 wrong.
	for _, op := range bench.Ops {
		for _, n := range []string{"2", "3"} {
			t.Run("bench/"+op+"/nproc"+n, func(t *testing.T) {
				cmd := exec.Command(bin, "bench", "--nproc", n, "--op", op, "--dtype", "float32",
					"--min-bytes", "8", "--max-bytes", "256K", "--step-factor", "8", "--iters", "5", "--warmup", "1", "--check", "--json")
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				require.NoError(t, err, "stderr: %s", stderr.String())
				rows := 0
				sc := bufio.NewScanner(bytes.NewReader(out))
				for sc.Scan() {
					var m map[string]any
					require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "line %q", sc.Text())
					keys := make([]string, 0, len(m))
					for k := range m {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					assert.Equal(t, []string{"algbw_gbps", "busbw_gbps", "bytes", "count", "dtype", "mean_us", "nranks", "op", "time_us", "wrong"}, keys)
					assert.Equal(t, op, m["op"])
					assert.EqualValues(t, 0, m["wrong"], "row %s", sc.Text())
					assert.Greater(t, m["time_us"].(float64), 0.0)
					assert.Greater(t, m["mean_us"].(float64), 0.0)
					rows++
				}
				if op == "barrier" {
					assert.Equal(t, 1, rows, "one row, at 0 bytes: %s", out)
				} else {
					assert.GreaterOrEqual(t, rows, 6, "one row per size from 8 B to 256 KiB: %s", out)
				}
			})
		}
	}

	t.Run("bench/bf16_and_int32_max_table", func(t *testing.T) {
		for _, args := range [][]string{
			{"--dtype", "bfloat16", "--op", "reducescatter"},
			{"--dtype", "int32", "--op", "allreduce", "--redop", "max"},
		} {
			cmd := exec.Command(bin, append([]string{"bench", "--nproc", "2", "--max-bytes", "64K", "--iters", "3", "--check"}, args...)...)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			rows := 0
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) == 10 && !strings.HasPrefix(line, "#") {
					for _, col := range f[5:7] { // the median and the mean
						v, err := strconv.ParseFloat(col, 64)
						assert.NoError(t, err, "%q", line)
						assert.Greater(t, v, 0.0, "time in %q", line)
					}
					assert.Equal(t, "0", f[9], "wrong count in %q", line)
					rows++
				}
			}
			assert.GreaterOrEqual(t, rows, 5, "one table row per size: %s", out)
		}
	})

	// --verbose: per size, rank 0's distribution on stderr, its quantiles in order; stdout keeps
	// only the JSON rows.
	t.Run("bench/verbose_distribution", func(t *testing.T) {
		cmd := exec.Command(bin, "bench", "--nproc", "2", "--max-bytes", "4K", "--iters", "50", "--json", "--verbose")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "stderr: %s", stderr.String())
		assert.Len(t, strings.Split(strings.TrimSpace(string(out)), "\n"), 4, "8 B to 4 KiB, JSON only on stdout: %s", out)
		re := regexp.MustCompile(`^# gccl allreduce float32 bytes=(\d+) iters=50 min=([\d.]+) p10=([\d.]+) p50=([\d.]+) p90=([\d.]+) max=([\d.]+) us \(rank 0\)$`)
		var sizes []string
		for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			m := re.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			sizes = append(sizes, m[1])
			prev := 0.0
			for _, q := range m[2:] {
				v, err := strconv.ParseFloat(q, 64)
				require.NoError(t, err)
				assert.GreaterOrEqual(t, v, prev, "quantiles out of order in %q", line)
				prev = v
			}
		}
		assert.Equal(t, []string{"8", "64", "512", "4096"}, sizes, "one line per size: %s", stderr.String())
	})

	// --fresh-input: the inputs are rewritten before every timed op and the results stay right,
	// for ops with and without an input, down to inputs shorter than a word.
	t.Run("bench/fresh_input", func(t *testing.T) {
		for _, args := range [][]string{
			{"--op", "allgather"},
			{"--op", "broadcast"},
			{"--op", "barrier"},
			{"--op", "allreduce", "--dtype", "int8", "--min-bytes", "1"},
		} {
			cmd := exec.Command(bin, append([]string{"bench", "--nproc", "2", "--max-bytes", "64K", "--iters", "20", "--check", "--json", "--fresh-input"}, args...)...)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%v: %s", args, out)
			rows := 0
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				var m map[string]any
				require.NoError(t, json.Unmarshal([]byte(line), &m), "%v: line %q", args, line)
				if args[1] != "barrier" {
					assert.EqualValues(t, 0, m["wrong"], "%v: %s", args, line)
				}
				rows++
			}
			assert.GreaterOrEqual(t, rows, 1, "%v: %s", args, out)
		}
	})

	t.Run("bench/bad_flags", func(t *testing.T) {
		for _, args := range [][]string{
			{"--op", "allsum"},
			{"--dtype", "float7"},
			{"--redop", "band", "--dtype", "float32"},
			{"--min-bytes", "1M", "--max-bytes", "1K"},
			{"--step-factor", "1"},
		} {
			out, err := exec.Command(bin, append([]string{"bench"}, args...)...).CombinedOutput()
			assert.Error(t, err, "%v should fail", args)
			assert.Contains(t, string(out), "gccl:", "%v: %s", args, out)
		}
	})

	t.Run("run/failure_names_rank", func(t *testing.T) {
		cmd := exec.Command(bin, "run", "--nproc-per-node", "3", "--", "sh", "-c",
			`if [ "$RANK" = 2 ]; then echo "rank two failed" >&2; exit 7; fi; sleep 30`)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, 7, ee.ExitCode())
		assert.Contains(t, string(out), "[rank 2] rank two failed")
		assert.Contains(t, string(out), "rank 2")
		assert.Contains(t, string(out), "exited with status 7")
	})

	t.Run("run/stopped_by_signal_exits_128_plus_it", func(t *testing.T) {
		cmd := exec.Command(bin, "run", "--nproc-per-node", "2", "--", "sh", "-c", `echo up; sleep 30`)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(stdout)
		for up := 0; up < 2 && sc.Scan(); { // both ranks are running
			if strings.HasSuffix(sc.Text(), "up") {
				up++
			}
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		_, _ = io.Copy(io.Discard, stdout)
		err = cmd.Wait()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, 128+int(syscall.SIGTERM), ee.ExitCode())
	})
}
