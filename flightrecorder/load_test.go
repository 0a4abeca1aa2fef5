package flightrecorder_test

import (
	"bytes"
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

func TestLoadPyTorchDumps(t *testing.T) {
	dumps, errs := flightrecorder.LoadDir("testdata/pytorch", "") // prefix inferred: nccl_trace_rank_
	require.Empty(t, errs)
	require.Len(t, dumps, 2)

	d0 := dumps[0]
	assert.Equal(t, "2.10", d0.Version)
	assert.Equal(t, "2.21.5", d0.CommLibVersion)
	assert.Equal(t, flightrecorder.PGConfig{Name: "0", Desc: "default_pg", Ranks: "[0, 1]"}, d0.PGConfig["0"])
	assert.Equal(t, flightrecorder.PGStatus{LastEnqueuedCollective: 2, LastStartedCollective: 2, LastCompletedCollective: 1}, d0.PGStatus["0"])
	assert.Equal(t, map[string]map[string]string{"0x7f2a1c0": {"rank": "0", "nranks": "2"}}, d0.NCCLCommState)
	require.Len(t, d0.Entries, 2)
	e := d0.Entries[0]
	assert.Equal(t, [2]string{"0", "default_pg"}, e.ProcessGroup)
	assert.Equal(t, "nccl:all_reduce", e.ProfilingName)
	assert.Equal(t, "140245123456768", e.ThreadID)
	assert.Equal(t, "pt_main_thread", e.ThreadName)
	require.NotNil(t, e.DurationMs)
	assert.InDelta(t, 0.25, *e.DurationMs, 1e-12)
	assert.Equal(t, [][]int64{{1024}}, e.InputSizes)
	assert.Equal(t, flightrecorder.StateCompleted, e.State)
	assert.True(t, e.Retired)
	assert.EqualValues(t, 600000, e.TimeoutMs)
	e = d0.Entries[1]
	assert.Equal(t, flightrecorder.StateStarted, e.State)
	assert.Nil(t, e.DurationMs)
	assert.Nil(t, e.TimeDiscoveredCompletedNs)
	require.NotNil(t, e.TimeDiscoveredStartedNs)
	assert.Equal(t, []flightrecorder.Frame{
		{Name: "broadcast", Filename: "torch/distributed/distributed_c10d.py", Line: 2715},
		{Name: "train_step", Filename: "/home/user/train.py", Line: 42},
	}, e.Frames)
	assert.Equal(t, [2]string{"1", "undefined"}, dumps[1].Entries[1].ProcessGroup)

	old, err := flightrecorder.LoadFile("testdata/pytorch_old/nccl_trace_rank_0")
	require.NoError(t, err, "protocol 5, version 2.3, keys missing")
	assert.Equal(t, "2.3", old.Version)
	assert.Equal(t, "", old.CommLibVersion)
	require.Len(t, old.Entries, 1)
	assert.Equal(t, []string{"Half"}, old.Entries[0].InputDtypes)
	assert.Equal(t, "", old.Entries[0].ThreadName)
}

// TestPyTorchDumpScriptIsCurrent reruns testdata/make_pytorch_dumps.py and
// checks it writes the committed files byte for byte.
func TestPyTorchDumpScriptIsCurrent(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	dir := t.TempDir()
	script, err := os.ReadFile("testdata/make_pytorch_dumps.py")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "make_pytorch_dumps.py"), script, 0o644))
	out, err := exec.Command(python, filepath.Join(dir, "make_pytorch_dumps.py")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, f := range []string{"pytorch/nccl_trace_rank_0", "pytorch/nccl_trace_rank_1", "pytorch_old/nccl_trace_rank_0",
		"protocols/protocol0.pkl", "protocols/protocol5.pkl"} {
		want, err := os.ReadFile(filepath.Join("testdata", f))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, want, got, "%s is stale: run python3 make_pytorch_dumps.py in testdata", f)
	}
}

func TestLoadEveryPickleProtocol(t *testing.T) {
	var first flightrecorder.Dump
	for p := range 6 {
		d, err := flightrecorder.LoadFile(filepath.Join("testdata", "protocols", "protocol"+string(rune('0'+p))+".pkl"))
		require.NoError(t, err, "protocol %d", p)
		require.Len(t, d.Entries, 1)
		assert.Equal(t, "gloo:all_reduce", d.Entries[0].ProfilingName)
		assert.Equal(t, [2]string{"0", "default_pg"}, d.Entries[0].ProcessGroup)
		assert.InDelta(t, 1.5, *d.Entries[0].DurationMs, 0)
		assert.True(t, d.Entries[0].Retired)
		if p == 0 {
			first = d
		} else {
			assert.Equal(t, first, d, "protocol %d loads as protocol 0 does", p)
		}
	}
}

func TestLoadTorchPicklerHelpers(t *testing.T) {
	// PyTorch's pickler with type tags on wraps typed lists and tagged
	// containers in torch.jit._pickle helpers: allowed, they build plain data.
	var b bytes.Buffer
	b.WriteString("\x80\x02")
	b.WriteString("ctorch.jit._pickle\nrestore_type_tag\n")
	b.WriteString("}(X\x07\x00\x00\x00versionX\x04\x00\x00\x002.10")
	b.WriteString("X\x07\x00\x00\x00entries](}(")
	b.WriteString("X\x0b\x00\x00\x00input_sizes](ctorch.jit._pickle\nbuild_intlist\n(](K\x04K\x08etRe")
	b.WriteString("u") // SETITEMS of the entry
	b.WriteString("e") // APPENDS to entries
	b.WriteString("u") // SETITEMS of the top dict
	b.WriteString("X\x0e\x00\x00\x00Dict[str, Any]\x86R.")
	d, err := flightrecorder.Load(&b)
	require.NoError(t, err)
	assert.Equal(t, "2.10", d.Version)
	require.Len(t, d.Entries, 1)
	assert.Equal(t, [][]int64{{4, 8}}, d.Entries[0].InputSizes)
}

func TestLoadBadInput(t *testing.T) {
	good := func() []byte {
		b, err := os.ReadFile("testdata/pytorch/nccl_trace_rank_0")
		require.NoError(t, err)
		return b
	}()
	var goodJSON bytes.Buffer
	require.NoError(t, sampleDump(t).WriteJSON(&goodJSON))

	tests := []struct {
		name        string
		data        string
		unsupported bool
		contains    string
	}{
		{"empty", "", false, "empty file"},
		{"white space", " \n\t", false, "empty file"},
		{"text", "hello world", false, "neither JSON nor pickle"},
		{"truncated pickle", string(good[:len(good)/2]), false, "truncated"},
		{"pickle without STOP", string(good[:len(good)-1]), false, "no STOP"},
		{"truncated JSON", goodJSON.String()[:goodJSON.Len()/2], false, "JSON"},
		{"JSON then garbage", `{"version": "2.10"} x`, false, "after the dump"},
		{"JSON list", `[1, 2]`, false, "neither JSON nor pickle"},
		{"pickle of a list", "\x80\x02]q\x00.", false, "want a dict, got list"},
		{"os.system", "\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.", true, "global os.system is not allowed"},
		{"builtins.eval by STACK_GLOBAL", "\x80\x04\x8c\x08builtins\x8c\x04eval\x93.", true, "builtins.eval"},
		{"NEWOBJ", "\x80\x02}\x81.", true, "NEWOBJ"},
		{"persistent id", "\x80\x02K\x01Q.", true, "BINPERSID"},
		{"unknown opcode", "\x80\x02\xff.", false, "unknown opcode 0xff"},
		{"protocol 6", "\x80\x06}.", true, "protocol 6"},
		{"memo miss", "\x80\x02h\x05.", false, "memo key 5"},
		{"stack underflow", "\x80\x02s.", false, "underflow"},
		{"two values at STOP", "\x80\x02}}.", false, "2 values"},
		{"huge length", "\x80\x02X\xff\xff\xff\x7f", false, "truncated"},
		{"odd SETITEMS", "\x80\x02}(K\x01u.", false, "odd number"},
		{"wrong type", `{"version": "2.10", "entries": [{"input_sizes": "big"}]}`, false, "entries[0].input_sizes: want a list, got str"},
		{"wrong inner type", `{"entries": [{"input_sizes": [[1, "x"]]}]}`, false, "want an int, got str"},
		{"negative record id", `{"entries": [{"record_id": -1}]}`, false, "negative"},
		{"int too large", `{"entries": [{"op_id": 123456789012345678901234567890}]}`, false, "out of range"},
		{"pg_config not a dict", `{"pg_config": [1]}`, false, "pg_config: want a dict"},
		{"pg_status bad value", `{"pg_status": {"0": {"last_started_collective": "x"}}}`, false, `pg_status["0"].last_started_collective`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := flightrecorder.Load(strings.NewReader(tt.data))
			require.Error(t, err)
			if tt.unsupported {
				assert.ErrorIs(t, err, flightrecorder.ErrUnsupportedPickle)
			} else {
				assert.ErrorIs(t, err, flightrecorder.ErrCorrupt)
			}
			assert.Contains(t, err.Error(), tt.contains)
		})
	}

	// Every truncation of a real dump fails cleanly.
	for n := range len(good) - 1 {
		_, err := flightrecorder.Load(bytes.NewReader(good[:n]))
		require.Error(t, err, "truncated at %d", n)
	}
}

func TestLoadLenient(t *testing.T) {
	d, err := flightrecorder.Load(strings.NewReader(`{
		"version": "2.4",
		"pg_config": {"0": {"desc": "default_pg", "ranks": [0, 1]}},
		"pg_status": {"0": {"last_enqueued_collective": "3", "last_started_collective": 3}},
		"entries": [{"seq_id": 7, "profiling_name": "nccl:all_reduce", "time_discovered_started_ns": 12,
			"time_discovered_completed_ns": 0, "frames": [{"name": "f", "filename": "a.py", "line": 3, "extra": 1}],
			"unknown_key": {"a": [1, 2]}}],
		"nccl_comm_state": {"c0": {"n": 2, "list": [1, [2, 3]]}},
		"some_future_key": 1
	}`))
	require.NoError(t, err)
	assert.Equal(t, "2.4", d.Version)
	assert.Equal(t, flightrecorder.PGConfig{Name: "0", Desc: "default_pg", Ranks: "[0, 1]"}, d.PGConfig["0"])
	assert.Equal(t, flightrecorder.PGStatus{LastEnqueuedCollective: 3, LastStartedCollective: 3, LastCompletedCollective: -1}, d.PGStatus["0"])
	require.Len(t, d.Entries, 1)
	e := d.Entries[0]
	assert.EqualValues(t, 7, e.CollectiveSeqID, "version 1's seq_id")
	assert.Equal(t, flightrecorder.StateStarted, e.State, "derived from the discovery times")
	assert.Nil(t, e.TimeDiscoveredCompletedNs, "0 means not reached")
	assert.Equal(t, []flightrecorder.Frame{{Name: "f", Filename: "a.py", Line: 3}}, e.Frames)
	assert.Equal(t, map[string]string{"n": "2", "list": "[1, [2, 3]]"}, d.NCCLCommState["c0"])
}

func TestLoadDir(t *testing.T) {
	d := sampleDump(t)
	write := func(t *testing.T, dir, name string, f flightrecorder.Format) {
		require.NoError(t, d.WriteFile(filepath.Join(dir, name), f))
	}

	t.Run("inferred prefix, mixed formats", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "gccl_trace_rank_0", flightrecorder.FormatPickle)
		write(t, dir, "gccl_trace_rank_1", flightrecorder.FormatJSON)
		write(t, dir, "gccl_trace_rank_10", flightrecorder.FormatPickle)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("not a dump"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, ".gccl_trace_rank_2.tmp123"), []byte("half"), 0o644))
		require.NoError(t, os.Mkdir(filepath.Join(dir, "sub5"), 0o755))
		dumps, errs := flightrecorder.LoadDir(dir, "")
		assert.Empty(t, errs)
		assert.Len(t, dumps, 3)
		for _, r := range []int{0, 1, 10} {
			assert.Equal(t, d, dumps[r], "rank %d", r)
		}
	})

	t.Run("corrupt files are named and skipped", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "r_0", flightrecorder.FormatPickle)
		var buf bytes.Buffer
		require.NoError(t, d.WritePickle(&buf))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "r_1"), buf.Bytes()[:buf.Len()/3], 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "r_2"), nil, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "r_3"), []byte("garbage"), 0o644))
		dumps, errs := flightrecorder.LoadDir(dir, "r_")
		assert.Len(t, dumps, 1)
		require.Len(t, errs, 3)
		for i, want := range []string{"r_1", "r_2", "r_3"} {
			assert.Contains(t, errs[i].Error(), filepath.Join(dir, want))
			assert.ErrorIs(t, errs[i], flightrecorder.ErrCorrupt)
		}
		assert.Contains(t, errs[0].Error(), "truncated")
		assert.Contains(t, errs[1].Error(), "empty file")
	})

	t.Run("mixed prefixes", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "gccl_trace_rank_0", flightrecorder.FormatPickle)
		write(t, dir, "nccl_trace_rank_0", flightrecorder.FormatPickle)
		write(t, dir, "nccl_trace_rank_1", flightrecorder.FormatPickle)
		dumps, errs := flightrecorder.LoadDir(dir, "")
		assert.Empty(t, dumps)
		require.Len(t, errs, 1)
		assert.Contains(t, errs[0].Error(), `"gccl_trace_rank_" (1 files), "nccl_trace_rank_" (2 files)`)

		dumps, errs = flightrecorder.LoadDir(dir, "nccl_trace_rank_")
		assert.Empty(t, errs)
		assert.Len(t, dumps, 2)
	})

	t.Run("same rank twice", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "r_1", flightrecorder.FormatPickle)
		write(t, dir, "r_01", flightrecorder.FormatPickle)
		_, errs := flightrecorder.LoadDir(dir, "r_")
		require.Len(t, errs, 1)
		assert.Contains(t, errs[0].Error(), "both rank 1")
	})

	for _, tt := range []struct {
		name, prefix, want string
		setup              func(dir string)
	}{
		{"empty directory", "", "no dump files", func(string) {}},
		{"no file with the prefix", "x_", `no dump files named "x_"<rank>`, func(dir string) {
			write(t, dir, "r_0", flightrecorder.FormatJSON)
		}},
		{"missing directory", "", "no such file", func(dir string) { os.Remove(dir) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(dir)
			dumps, errs := flightrecorder.LoadDir(dir, tt.prefix)
			assert.Empty(t, dumps)
			require.Len(t, errs, 1)
			assert.Contains(t, errs[0].Error(), tt.want)
		})
	}

	files, prefix, err := flightrecorder.FindDumps("testdata/pytorch", "")
	require.NoError(t, err)
	assert.Equal(t, "nccl_trace_rank_", prefix)
	assert.Equal(t, map[int]string{0: "testdata/pytorch/nccl_trace_rank_0", 1: "testdata/pytorch/nccl_trace_rank_1"}, files)
	assert.False(t, errors.Is(err, flightrecorder.ErrCorrupt))
}
