package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// report is the part of gccl fr analyze --json the scenarios check.
type report struct {
	Findings []struct {
		Kind     string `json:"kind"`
		Severity string `json:"severity"`
		Culprits []int  `json:"culprits"`
		Ranks    []int  `json:"ranks"`
		Message  string `json:"message"`
	} `json:"findings"`
}

// TestFlightRecorderScenarios runs 4-rank jobs through gccl run that go wrong on purpose and
// checks that every surviving rank leaves a dump and that gccl fr analyze names the right rank
// and the right kind of problem.
func TestFlightRecorderScenarios(t *testing.T) {
	gccl, job := buildWith(t, "./frjob")
	cases := []struct {
		scenario, backend string
		kind              string
		culprit           int
		dead              int // rank that leaves no dump, or -1
	}{
		{"skip", "gloo", "not_joined", 1, -1},
		{"op", "gloo", "type_mismatch", 1, -1},
		{"size", "shm", "size_mismatch", 2, -1},
		{"dtype", "gloo", "dtype_mismatch", 3, -1},
		{"kill", "shm", "missing_dump", 2, 2},
	}
	for _, c := range cases {
		t.Run(c.scenario+"_"+c.backend, func(t *testing.T) {
			logDir := t.TempDir()
			run := exec.Command(gccl, "run", "--nproc-per-node", "4", "--backend", c.backend, "--log-dir", logDir, "--", job, c.scenario)
			run.Env = append(os.Environ(), "GCCL_TIMEOUT=3s", "GCCL_FR_STACKS=1", "GCCL_LOG_LEVEL=warn")
			out, err := run.CombinedOutput()
			require.Error(t, err, "the job must fail; output:\n%s", out)
			dumps := filepath.Join(logDir, "fr", "attempt_0") // one dump directory per attempt
			assert.Contains(t, string(out), "run gccl fr analyze "+dumps)
			// The failure report, printed last, carries the flight recorder's verdict and
			// findings, and is in the log directory as JSON.
			assert.Regexp(t, `flight recorder \(\d dump\(s\)\): `, string(out))
			assert.Contains(t, string(out), "error: ", "the findings are listed")
			var failure struct {
				FlightRecorder struct {
					Verdict  string   `json:"verdict"`
					Findings []string `json:"findings"`
					Culprits []int    `json:"culprits"`
				} `json:"flight_recorder"`
			}
			data, err := os.ReadFile(filepath.Join(logDir, "failure.json"))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(data, &failure))
			assert.NotEmpty(t, failure.FlightRecorder.Verdict)
			assert.NotEmpty(t, failure.FlightRecorder.Findings)
			// The report leads with the rank the flight recorder blames, not only with the first
			// rank to exit (in a hang, a victim that timed out).
			assert.Contains(t, failure.FlightRecorder.Culprits, c.culprit, "failure.json names the culprit")
			assert.Contains(t, string(out), fmt.Sprintf("the flight recorder blames rank(s) %v", failure.FlightRecorder.Culprits))
			for r := 0; r < 4; r++ {
				_, err := os.Stat(filepath.Join(dumps, "rank_"+string(rune('0'+r))))
				if r == c.dead {
					assert.Error(t, err, "rank %d was killed: no dump expected", r)
				} else {
					assert.NoError(t, err, "rank %d's dump; job output:\n%s", r, out)
				}
			}

			analyze := exec.Command(gccl, "fr", "analyze", "--json", dumps)
			var stdout strings.Builder
			analyze.Stdout = &stdout
			err = analyze.Run()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "analyze must report a problem")
			assert.Equal(t, 3, exit.ExitCode(), "exit status 3: a problem was found")
			var rep report
			require.NoError(t, json.Unmarshal([]byte(stdout.String()), &rep), stdout.String())
			found := false
			for _, f := range rep.Findings {
				if f.Kind == c.kind && f.Severity == "error" && (slices.Contains(f.Culprits, c.culprit) || slices.Contains(f.Ranks, c.culprit)) {
					found = true
				}
			}
			assert.True(t, found, "want a %s finding naming rank %d; report:\n%s", c.kind, c.culprit, stdout.String())
		})
	}
}
