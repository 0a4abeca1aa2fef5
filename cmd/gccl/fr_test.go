package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/flightrecorder"
)

// writeJob writes n ranks' dumps of a 2-rank-or-more job to dir as
// gccl_trace_rank_<r>: every rank completed two all-reduces; if stuck, the
// last rank never joined a third that the others started.
func writeJob(t *testing.T, dir string, n int, stuck bool) {
	t.Helper()
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	for r := range n {
		rec := flightrecorder.New(16)
		rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Name: "0", Desc: "default_pg", Ranks: all})
		seqs := int64(2)
		if stuck && r < n-1 {
			seqs = 3
		}
		for s := int64(1); s <= seqs; s++ {
			id := rec.Record(flightrecorder.OpRecord{ProfilingName: "gloo:all_reduce", CollectiveSeqID: s, OpID: s,
				InputSizes: [][]int64{{16}}, InputDtypes: []string{"Float"}, OutputSizes: [][]int64{{16}}, OutputDtypes: []string{"Float"}})
			rec.Started(id)
			if s < 3 {
				rec.Completed(id)
			}
		}
		format := flightrecorder.FormatPickle
		if r%2 == 1 {
			format = flightrecorder.FormatJSON
		}
		require.NoError(t, rec.Snapshot().WriteFile(flightrecorder.DumpPath(filepath.Join(dir, "gccl_trace_rank_"), r), format))
	}
}

func TestFRCLI(t *testing.T) {
	bin := buildGCCL(t)
	run := func(t *testing.T, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return o.String(), e.String(), code
	}
	firstLine := func(s string) string { return strings.SplitN(s, "\n", 2)[0] }

	healthy := t.TempDir()
	writeJob(t, healthy, 3, false)
	stuck := t.TempDir()
	writeJob(t, stuck, 4, true)
	pytorch := filepath.Join("..", "..", "flightrecorder", "testdata", "pytorch")

	t.Run("analyze/healthy", func(t *testing.T) {
		out, errOut, code := run(t, "fr", "analyze", healthy)
		assert.Equal(t, 0, code, "stderr: %s", errOut)
		assert.Equal(t, "no problem found in the dumps of ranks 0, 1 and 2: 1 group, 2 collectives matched on every member", firstLine(out))
	})
	t.Run("analyze/stuck", func(t *testing.T) {
		out, errOut, code := run(t, "fr", "analyze", stuck)
		assert.Equal(t, 3, code)
		assert.Equal(t, `rank 3 never joined all_reduce #3 on group "0" (default_pg); it is at: in no op; last completed: all_reduce #2 on group "0" (default_pg)`, firstLine(out))
		assert.Contains(t, errOut, "gccl: fr analyze: 1 problem found")
	})
	t.Run("analyze/json", func(t *testing.T) {
		out, _, code := run(t, "fr", "analyze", "--json", pytorch)
		assert.Equal(t, 3, code)
		var rep struct {
			OK       bool   `json:"ok"`
			Verdict  string `json:"verdict"`
			Findings []struct {
				Kind     string `json:"kind"`
				Culprits []int  `json:"culprits"`
				Group    string `json:"group"`
			} `json:"findings"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &rep), "stdout is only the JSON report: %s", out)
		assert.False(t, rep.OK)
		require.Len(t, rep.Findings, 2)
		assert.Equal(t, "not_joined", rep.Findings[0].Kind)
		assert.Equal(t, []int{1}, rep.Findings[0].Culprits)
	})
	t.Run("analyze/filters", func(t *testing.T) {
		out, _, code := run(t, "fr", "analyze", "--group", "1", pytorch)
		assert.Equal(t, 3, code)
		assert.True(t, strings.HasPrefix(out, `rank 0 never joined all_gather #1 on group "1"`), out)
		assert.NotContains(t, out, "never joined broadcast")

		out, _, code = run(t, "fr", "analyze", "--group", "default_pg", "--json", pytorch)
		assert.Equal(t, 3, code)
		assert.Equal(t, 1, strings.Count(out, `"kind": "not_joined"`))

		out, _, code = run(t, "fr", "analyze", "--rank", "7", pytorch)
		assert.Equal(t, 0, code, out)
	})
	t.Run("analyze/missing rank", func(t *testing.T) {
		dir := t.TempDir()
		writeJob(t, dir, 4, false)
		require.NoError(t, os.Remove(filepath.Join(dir, "gccl_trace_rank_2")))
		out, _, code := run(t, "fr", "analyze", dir)
		assert.Equal(t, 3, code)
		assert.True(t, strings.HasPrefix(out, "no dump from rank 2"), out)

		out, _, code = run(t, "fr", "analyze", "--allow-incomplete-ranks", dir)
		assert.Equal(t, 0, code, out)
		assert.Contains(t, out, "no dump from: rank 2")
	})
	t.Run("analyze/corrupt file", func(t *testing.T) {
		dir := t.TempDir()
		writeJob(t, dir, 3, false)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "gccl_trace_rank_1"), []byte("\x80\x02}(X"), 0o644))
		out, errOut, code := run(t, "fr", "analyze", "--allow-incomplete-ranks", dir)
		assert.Equal(t, 0, code, out)
		assert.Contains(t, errOut, "skipping a dump: rank 1:")
		assert.Contains(t, errOut, "gccl_trace_rank_1")
		assert.Contains(t, errOut, "truncated")
	})
	t.Run("analyze/cannot analyze", func(t *testing.T) {
		mixed := t.TempDir()
		writeJob(t, mixed, 2, false)
		require.NoError(t, os.WriteFile(filepath.Join(mixed, "nccl_trace_rank_0"), []byte("{}"), 0o644))
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"fr", "analyze", t.TempDir()}, "no dump files"},
			{[]string{"fr", "analyze", mixed}, `"gccl_trace_rank_" (2 files), "nccl_trace_rank_" (1 files)`},
			{[]string{"fr", "analyze", filepath.Join(mixed, "nope")}, "no such file"},
			{[]string{"fr", "analyze"}, "accepts 1 arg"},
			{[]string{"fr", "analyze", "--rank", "x", mixed}, "invalid argument"},
		} {
			_, errOut, code := run(t, tt.args...)
			assert.Equal(t, 1, code, "%v", tt.args)
			assert.Contains(t, errOut, tt.want, "%v", tt.args)
		}
		_, _, code := run(t, "fr", "analyze", "--prefix", "gccl_trace_rank_", mixed)
		assert.Equal(t, 0, code, "--prefix picks one set")
	})
	t.Run("view", func(t *testing.T) {
		page := filepath.Join(t.TempDir(), "stuck.html")
		out, errOut, code := run(t, "fr", "view", stuck, "-o", page)
		assert.Equal(t, 0, code, "a page with problems is still a success: %s", errOut)
		assert.Equal(t, "wrote "+page, firstLine(out))
		assert.Contains(t, out, `1 problem found: rank 3 never joined all_reduce #3 on group "0" (default_pg)`)
		b, err := os.ReadFile(page)
		require.NoError(t, err)
		html := string(b)
		assert.True(t, strings.HasPrefix(html, "<!DOCTYPE html>"))
		assert.Contains(t, html, "<title>gccl fr view "+stuck+"</title>")
		assert.Equal(t, 4, strings.Count(html, `<g class="row" data-rank=`))
		assert.Equal(t, 3*3+2, strings.Count(html, `<rect class="op `))
		assert.Equal(t, 3, strings.Count(html, ` finding" `), "ranks 0-2's all_reduce #3")
		assert.Equal(t, 1, strings.Count(html, `<g class="missing" data-rank="3"`))
		assert.Equal(t, 1, strings.Count(html, "://"), "no URL but the SVG namespace")
		assert.NotRegexp(t, `(src|href)=`, html, "nothing fetched")

		// --rank draws only those rows; --group only those groups.
		out, _, code = run(t, "fr", "view", stuck, "-o", page, "--rank", "3", "--rank", "1", "--group", "default_pg")
		assert.Equal(t, 0, code, out)
		b, err = os.ReadFile(page)
		require.NoError(t, err)
		assert.Equal(t, 2, strings.Count(string(b), `<g class="row" data-rank=`))

		// Default output: timeline.html in the current directory.
		dir := t.TempDir()
		cmd := exec.Command(bin, "fr", "view", healthy)
		cmd.Dir = dir
		o, err := cmd.Output()
		require.NoError(t, err)
		assert.Contains(t, string(o), "wrote "+filepath.Join(dir, "timeline.html"))
		assert.Contains(t, string(o), "no problem found in the dumps of ranks 0, 1 and 2")
		assert.FileExists(t, filepath.Join(dir, "timeline.html"))

		// Unreadable dumps are reported and skipped; nothing to load, or nowhere to write, exits 1.
		corrupt := t.TempDir()
		writeJob(t, corrupt, 3, false)
		require.NoError(t, os.WriteFile(filepath.Join(corrupt, "gccl_trace_rank_1"), []byte("\x80\x02}(X"), 0o644))
		out, errOut, code = run(t, "fr", "view", corrupt, "-o", page)
		assert.Equal(t, 0, code, errOut)
		assert.Contains(t, errOut, "skipping a dump: rank 1:")
		assert.Contains(t, out, "no dump from rank 1")
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"fr", "view", t.TempDir(), "-o", page}, "no dump files"},
			{[]string{"fr", "view", healthy, "-o", filepath.Join(t.TempDir(), "nope", "t.html")}, "no such file"},
			{[]string{"fr", "view"}, "accepts 1 arg"},
		} {
			_, errOut, code := run(t, tt.args...)
			assert.Equal(t, 1, code, "%v", tt.args)
			assert.Contains(t, errOut, tt.want, "%v", tt.args)
		}
	})
	t.Run("show", func(t *testing.T) {
		out, errOut, code := run(t, "fr", "show", pytorch)
		assert.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "rank 0 (")
		assert.Contains(t, out, "rank 1 (")
		lines := strings.Split(out, "\n")
		assert.Regexp(t, `^ID\s+GROUP\s+SEQ\s+OP\s+IN\s+OUT\s+DTYPES\s+STATE\s+CREATED\s+DURATION$`, lines[1])
		assert.Regexp(t, `^0\s+0 \(default_pg\)\s+1\s+nccl:all_reduce\s+\[1024\]\s+\[1024\]\s+Float\s+completed\s+2023-11-14 22:13:20.000000\s+0.250ms$`, lines[2])

		out, _, code = run(t, "fr", "show", "--rank", "1", stuck)
		assert.Equal(t, 0, code)
		assert.NotContains(t, out, "rank 0 (")
		assert.Contains(t, out, "rank 1 (")

		dir := t.TempDir()
		writeJob(t, dir, 2, false)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "gccl_trace_rank_1"), nil, 0o644))
		out, errOut, code = run(t, "fr", "show", dir)
		assert.Equal(t, 1, code)
		assert.Contains(t, out, "rank 0 (")
		assert.Contains(t, errOut, "empty file")
	})
}
