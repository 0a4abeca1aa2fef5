package flightrecorder_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/flightrecorder"
)

// sampleDump records a little of everything: two groups, a completed op with
// a stack and a duration, a started one, a scheduled one, a retired timeout,
// p2p, an op without tensors, and a communicator state map.
func sampleDump(t testing.TB) flightrecorder.Dump {
	t.Helper()
	rec := flightrecorder.New(64)
	rec.SetCommLibVersion("gccl-test 1.0")
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Name: "0", Desc: "default_pg", Ranks: []int{0, 1, 2, 3}})
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 1, Name: "tp", Desc: "tensor parallel", Ranks: []int{0, 1}})

	op := allReduce(1)
	op.CaptureStack = true
	op.ThreadName, op.ThreadID = "main", "1"
	id := rec.Record(op)
	rec.Started(id)
	time.Sleep(time.Millisecond)
	rec.Completed(id)

	id = rec.Record(flightrecorder.OpRecord{Group: 1, ProfilingName: "gloo:all_gather", CollectiveSeqID: 1, OpID: 1,
		InputSizes: [][]int64{{3}}, InputDtypes: []string{"BFloat16"}, OutputSizes: [][]int64{{2, 3}}, OutputDtypes: []string{"BFloat16"},
		Timeout: time.Second})
	rec.Started(id)
	rec.Retire(id) // timed out

	rec.Record(flightrecorder.OpRecord{Group: 1, ProfilingName: "gloo:send 0->1", P2PSeqID: 1, CollectiveSeqID: 1, OpID: 2, IsP2P: true,
		InputSizes: [][]int64{{1 << 40}}, InputDtypes: []string{"Long"}, OutputSizes: [][]int64{}, OutputDtypes: []string{}})
	id = rec.Record(flightrecorder.OpRecord{Group: 0, ProfilingName: "gloo:barrier", CollectiveSeqID: 2, OpID: 2, Started: true})
	_ = id
	d := rec.Snapshot()
	d.NCCLCommState = map[string]map[string]string{"comm0": {"rank": "0", "status": "ok"}}
	require.Len(t, d.Entries, 4)
	require.NotEmpty(t, d.Entries[0].Frames, "CaptureStack gives frames")
	return d
}

func TestWriteLoadRoundTrip(t *testing.T) {
	d := sampleDump(t)
	empty := flightrecorder.New(4).Snapshot()
	empty.PGStatus = map[string]flightrecorder.PGStatus{}
	for _, tt := range []struct {
		name string
		dump flightrecorder.Dump
	}{{"sample", d}, {"no entries", empty}} {
		for _, format := range []flightrecorder.Format{flightrecorder.FormatJSON, flightrecorder.FormatPickle} {
			t.Run(tt.name+"/"+string(format), func(t *testing.T) {
				var buf bytes.Buffer
				require.NoError(t, tt.dump.Write(&buf, format))
				got, err := flightrecorder.Load(&buf)
				require.NoError(t, err)
				assert.Equal(t, tt.dump, got)
			})
		}
	}
}

func TestWriteJSONIsPyTorchShape(t *testing.T) {
	d := sampleDump(t)
	var buf bytes.Buffer
	require.NoError(t, d.WriteJSON(&buf))
	var m map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &m))
	assert.Equal(t, "2.10", m["version"])
	assert.Equal(t, "gccl-test 1.0", m["comm_lib_version"])
	status := m["pg_status"].(map[string]any)["0"].(map[string]any)
	assert.Equal(t, "2", status["last_enqueued_collective"], "PyTorch's JSON dump writes pg_status values as strings")
	entries := m["entries"].([]any)
	scheduled := entries[2].(map[string]any)
	assert.Equal(t, "scheduled", scheduled["state"])
	assert.EqualValues(t, 0, scheduled["time_discovered_started_ns"], "0, not null, until reached")
	assert.NotContains(t, scheduled, "duration_ms")
	assert.Equal(t, []any{"tp", "tensor parallel"}, scheduled["process_group"])
	assert.Contains(t, entries[0].(map[string]any), "duration_ms")

	// Keys come sorted, as PyTorch's JSON library writes them.
	assert.True(t, strings.HasPrefix(buf.String(), `{"comm_lib_version":`), buf.String()[:40])

	// No entries: the key is left out, and Load still gives an empty list.
	buf.Reset()
	require.NoError(t, flightrecorder.New(1).Snapshot().WriteJSON(&buf))
	assert.NotContains(t, buf.String(), "entries")
	got, err := flightrecorder.Load(&buf)
	require.NoError(t, err)
	assert.NotNil(t, got.Entries)
	assert.Empty(t, got.Entries)
}

func TestLoadReadsEncodingJSONOfDump(t *testing.T) {
	d := sampleDump(t)
	b, err := json.Marshal(d)
	require.NoError(t, err)
	got, err := flightrecorder.Load(bytes.NewReader(b))
	require.NoError(t, err)
	assert.Equal(t, d, got)
}

func TestWriteFileAtomic(t *testing.T) {
	d := sampleDump(t)
	dir := t.TempDir()
	for _, format := range []flightrecorder.Format{flightrecorder.FormatJSON, flightrecorder.FormatPickle} {
		path := flightrecorder.DumpPath(filepath.Join(dir, "trace_"+string(format)+"_"), 7)
		require.NoError(t, d.WriteFile(path, format))
		require.NoError(t, d.WriteFile(path, format), "overwrites")
		got, err := flightrecorder.LoadFile(path)
		require.NoError(t, err)
		assert.Equal(t, d, got)
	}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"trace_json_7", "trace_pickle_7"}, names, "no temporary file left behind")

	assert.Error(t, d.WriteFile(filepath.Join(dir, "nodir", "x0"), flightrecorder.FormatJSON))
	assert.Error(t, d.WriteFile(filepath.Join(dir, "x0"), flightrecorder.Format("xml")))
}

func TestFormatAndPrefixFromEnv(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want flightrecorder.Format
		ok   bool
	}{{"json", flightrecorder.FormatJSON, true}, {" Pickle ", flightrecorder.FormatPickle, true}, {"pkl", flightrecorder.FormatPickle, true}, {"xml", "", false}} {
		got, err := flightrecorder.ParseFormat(tt.in)
		if tt.ok {
			require.NoError(t, err, tt.in)
			assert.Equal(t, tt.want, got)
		} else {
			assert.Error(t, err, tt.in)
		}
	}

	t.Setenv("GCCL_FR_DUMP_FORMAT", "")
	assert.Equal(t, flightrecorder.FormatPickle, flightrecorder.DumpFormatFromEnv(), "default")
	t.Setenv("GCCL_FR_DUMP_FORMAT", "json")
	assert.Equal(t, flightrecorder.FormatJSON, flightrecorder.DumpFormatFromEnv())
	t.Setenv("GCCL_FR_DUMP_FORMAT", "yaml")
	assert.Equal(t, flightrecorder.FormatPickle, flightrecorder.DumpFormatFromEnv(), "unknown gives the default")

	for _, name := range flightrecorder.DumpPrefixEnvVars {
		t.Setenv(name, "")
	}
	assert.Equal(t, "/tmp/gccl_trace_rank_", flightrecorder.DumpPrefixFromEnv())
	t.Setenv("TORCH_FR_DUMP_TEMP_FILE", "/data/torch_")
	assert.Equal(t, "/data/torch_", flightrecorder.DumpPrefixFromEnv())
	t.Setenv("GCCL_FR_DUMP_PREFIX", "/data/gccl_")
	assert.Equal(t, "/data/gccl_", flightrecorder.DumpPrefixFromEnv())
	assert.Equal(t, "/data/gccl_12", flightrecorder.DumpPath(flightrecorder.DumpPrefixFromEnv(), 12))
}

// TestPythonReadsPickle loads gccl's pickle dump with Python's own pickle
// module and checks PyTorch's keys, value types and values.
func TestPythonReadsPickle(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is needed in CI (.ci/run installs it)")
		}
		t.Skip("python3 not found")
	}
	d := sampleDump(t)
	path := filepath.Join(t.TempDir(), "gccl_trace_rank_0")
	require.NoError(t, d.WriteFile(path, flightrecorder.FormatPickle))

	const script = `
import json, pickle, sys
d = pickle.load(open(sys.argv[1], "rb"))
assert list(d) == ["version", "pg_config", "comm_lib_version", "pg_status", "entries", "nccl_comm_state"], list(d)
assert d["version"] == "2.10"
assert d["pg_config"]["0"] == {"name": "0", "desc": "default_pg", "ranks": "[0, 1, 2, 3]"}, d["pg_config"]
assert d["pg_config"]["tp"]["ranks"] == "[0, 1]"
assert all(type(v) is int for s in d["pg_status"].values() for v in s.values())
want = ["frames", "record_id", "pg_id", "process_group", "thread_name", "thread_id", "collective_seq_id",
        "p2p_seq_id", "op_id", "profiling_name", "time_created_ns", "duration_ms", "input_sizes", "input_dtypes",
        "output_sizes", "output_dtypes", "state", "time_discovered_started_ns", "time_discovered_completed_ns",
        "retired", "timeout_ms", "is_p2p"]
e0, e1, e2, e3 = d["entries"]
assert list(e0) == want, list(e0)
assert list(e1) == [k for k in want if k != "duration_ms"], list(e1)
assert type(e0["process_group"]) is tuple and e0["process_group"] == ("0", "default_pg")
assert type(e0["duration_ms"]) is float and e0["duration_ms"] > 0
assert type(e0["frames"]) is list and e0["frames"] and list(e0["frames"][0]) == ["name", "filename", "line"]
assert type(e0["frames"][0]["line"]) is int
assert e0["input_sizes"] == [[4, 8]] and type(e0["input_sizes"]) is list and type(e0["input_sizes"][0]) is list
assert e0["input_dtypes"] == ["Float"] and e0["state"] == "completed" and e0["retired"] is True
assert e0["thread_name"] == "main" and e0["thread_id"] == "1"
assert e0["timeout_ms"] == 30000 and e0["is_p2p"] is False
assert e1["state"] == "started" and e1["retired"] is True and e1["time_discovered_completed_ns"] is None
assert type(e1["time_discovered_started_ns"]) is int
assert e2["profiling_name"] == "gloo:send 0->1" and e2["is_p2p"] is True and e2["input_sizes"] == [[1 << 40]]
assert e2["time_discovered_started_ns"] is None and e2["state"] == "scheduled" and e2["output_sizes"] == []
assert e3["profiling_name"] == "gloo:barrier" and e3["state"] == "started"
assert d["nccl_comm_state"] == {"comm0": {"rank": "0", "status": "ok"}}
print(json.dumps({"n": len(d["entries"]), "record_ids": [e["record_id"] for e in d["entries"]]}))
`
	out, err := exec.Command(python, "-c", script, path).CombinedOutput()
	require.NoError(t, err, "python3: %s", out)
	assert.JSONEq(t, `{"n": 4, "record_ids": [0, 1, 2, 3]}`, string(out))
}
