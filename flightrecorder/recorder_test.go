package flightrecorder_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/flightrecorder"
)

func allReduce(seq int64) flightrecorder.OpRecord {
	return flightrecorder.OpRecord{
		Group:           0,
		ProfilingName:   "gloo:all_reduce",
		CollectiveSeqID: seq,
		OpID:            seq,
		InputSizes:      [][]int64{{4, 8}},
		InputDtypes:     []string{"Float"},
		OutputSizes:     [][]int64{{4, 8}},
		OutputDtypes:    []string{"Float"},
		Timeout:         30 * time.Second,
	}
}

func recordIDs(d flightrecorder.Dump) []uint64 {
	ids := make([]uint64, len(d.Entries))
	for i, e := range d.Entries {
		ids[i] = e.RecordID
	}
	return ids
}

func TestRingWraparoundKeepsNewest(t *testing.T) {
	tests := []struct {
		name            string
		capacity, count int
		wantIDs         []uint64
	}{
		{"empty", 3, 0, []uint64{}},
		{"partly filled", 3, 2, []uint64{0, 1}},
		{"exactly full", 3, 3, []uint64{0, 1, 2}},
		{"wrapped once", 3, 4, []uint64{1, 2, 3}},
		{"wrapped many times", 3, 10, []uint64{7, 8, 9}},
		{"capacity one", 1, 5, []uint64{4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := flightrecorder.New(tt.capacity)
			for i := range tt.count {
				id := rec.Record(allReduce(int64(i + 1)))
				require.Equal(t, uint64(i), id, "record ids increase by one")
			}
			d := rec.Snapshot()
			assert.Equal(t, tt.wantIDs, recordIDs(d))
			for _, e := range d.Entries {
				assert.Equal(t, int64(e.RecordID)+1, e.CollectiveSeqID, "entry %d holds its own op", e.RecordID)
			}
		})
	}
}

func TestSlotReuseWithDifferentShapes(t *testing.T) {
	rec := flightrecorder.New(1)
	rec.Record(flightrecorder.OpRecord{
		InputSizes:   [][]int64{{1, 2, 3}, {4}, {}},
		InputDtypes:  []string{"Float", "Int", "Double"},
		OutputSizes:  [][]int64{{5, 6}},
		OutputDtypes: []string{"BFloat16"},
	})
	rec.Record(flightrecorder.OpRecord{
		InputSizes:   [][]int64{{7}},
		InputDtypes:  []string{"Half"},
		OutputSizes:  [][]int64{{8, 9}, {10}},
		OutputDtypes: []string{"Float", "Float"},
	})
	e := rec.Snapshot().Entries[0]
	assert.Equal(t, [][]int64{{7}}, e.InputSizes)
	assert.Equal(t, []string{"Half"}, e.InputDtypes)
	assert.Equal(t, [][]int64{{8, 9}, {10}}, e.OutputSizes)
	assert.Equal(t, []string{"Float", "Float"}, e.OutputDtypes)
}

// TestSharedShapesStayExact: a group's entries share interned shapes, so every entry must still
// read back its own shapes when ops cycle through more shapes than the group keeps, and when
// shapes differ only in how the same extents split between tensors, inputs and outputs.
func TestSharedShapesStayExact(t *testing.T) {
	type shape struct {
		in, out     [][]int64
		inDT, outDT []string
	}
	shapes := []shape{
		{[][]int64{{2, 3}}, [][]int64{{2, 3}}, []string{"Float"}, []string{"Float"}},
		{[][]int64{{2}, {3}}, [][]int64{{2, 3}}, []string{"Float", "Float"}, []string{"Float"}},
		{[][]int64{{2, 3, 2}}, [][]int64{{3}}, []string{"Float"}, []string{"Float"}},
		{[][]int64{{2, 3}}, [][]int64{{2}, {3}}, []string{"Float"}, []string{"Float", "Float"}},
		{[][]int64{{2, 3}}, [][]int64{{2, 3}}, []string{"BFloat16"}, []string{"Float"}},
		{[][]int64{{2, 3}}, [][]int64{{2, 4}}, []string{"Float"}, []string{"Float"}},
		{[][]int64{{}}, [][]int64{}, []string{"Float"}, []string{}},
		{[][]int64{}, [][]int64{{}}, []string{}, []string{"Float"}},
	}
	rec := flightrecorder.New(64)
	var want []shape
	for i := range 60 {
		sh := shapes[(i*i+i/7)%len(shapes)] // repeats, returns and skips in no simple cycle
		rec.Record(flightrecorder.OpRecord{Group: i % 2, InputSizes: sh.in, OutputSizes: sh.out, InputDtypes: sh.inDT, OutputDtypes: sh.outDT})
		want = append(want, sh)
	}
	for i, e := range rec.Snapshot().Entries {
		assert.Equal(t, want[i].in, e.InputSizes, "entry %d", i)
		assert.Equal(t, want[i].out, e.OutputSizes, "entry %d", i)
		assert.Equal(t, want[i].inDT, e.InputDtypes, "entry %d", i)
		assert.Equal(t, want[i].outDT, e.OutputDtypes, "entry %d", i)
	}
}

// An op recorded as started (a synchronous op that runs as it is issued) skips "scheduled":
// it was discovered started at its creation, and completes with a duration.
func TestRecordStarted(t *testing.T) {
	rec := flightrecorder.New(8)
	op := allReduce(3)
	op.Started = true
	id := rec.Record(op)

	d := rec.Snapshot()
	e := d.Entries[0]
	assert.Equal(t, flightrecorder.StateStarted, e.State)
	require.NotNil(t, e.TimeDiscoveredStartedNs)
	assert.Equal(t, e.TimeCreatedNs, *e.TimeDiscoveredStartedNs)
	assert.Nil(t, e.TimeDiscoveredCompletedNs)
	assert.Equal(t, flightrecorder.PGStatus{LastEnqueuedCollective: 3, LastStartedCollective: 3, LastCompletedCollective: -1}, d.PGStatus["0"])

	time.Sleep(time.Millisecond)
	rec.Completed(id)
	e = rec.Snapshot().Entries[0]
	assert.Equal(t, flightrecorder.StateCompleted, e.State)
	require.NotNil(t, e.DurationMs)
	assert.GreaterOrEqual(t, *e.DurationMs, 1.0, "the duration runs from creation")
}

func TestStateTransitions(t *testing.T) {
	rec := flightrecorder.New(8)
	before := time.Now().UnixNano()
	id := rec.Record(allReduce(1))

	e := rec.Snapshot().Entries[0]
	assert.Equal(t, flightrecorder.StateScheduled, e.State)
	assert.GreaterOrEqual(t, e.TimeCreatedNs, before)
	assert.Nil(t, e.TimeDiscoveredStartedNs)
	assert.Nil(t, e.TimeDiscoveredCompletedNs)
	assert.Nil(t, e.DurationMs)
	assert.False(t, e.Retired)
	assert.Equal(t, int64(30000), e.TimeoutMs)

	rec.Started(id)
	e = rec.Snapshot().Entries[0]
	assert.Equal(t, flightrecorder.StateStarted, e.State)
	require.NotNil(t, e.TimeDiscoveredStartedNs)
	assert.GreaterOrEqual(t, *e.TimeDiscoveredStartedNs, e.TimeCreatedNs)
	assert.Nil(t, e.TimeDiscoveredCompletedNs)
	assert.Nil(t, e.DurationMs)
	assert.False(t, e.Retired)
	started := *e.TimeDiscoveredStartedNs

	time.Sleep(2 * time.Millisecond)
	rec.Started(id) // already started: no change
	rec.Completed(id)
	e = rec.Snapshot().Entries[0]
	assert.Equal(t, flightrecorder.StateCompleted, e.State)
	assert.Equal(t, started, *e.TimeDiscoveredStartedNs)
	require.NotNil(t, e.TimeDiscoveredCompletedNs)
	assert.GreaterOrEqual(t, *e.TimeDiscoveredCompletedNs, started)
	require.NotNil(t, e.DurationMs)
	assert.GreaterOrEqual(t, *e.DurationMs, 2.0, "duration covers the sleep")
	assert.True(t, e.Retired)

	done := e
	rec.Started(id)
	rec.Completed(id)
	assert.Equal(t, done, rec.Snapshot().Entries[0], "a completed entry does not change")
}

func TestCompletedWithoutStarted(t *testing.T) {
	rec := flightrecorder.New(8)
	id := rec.Record(allReduce(4))
	rec.Completed(id)
	d := rec.Snapshot()
	e := d.Entries[0]
	assert.Equal(t, flightrecorder.StateCompleted, e.State)
	require.NotNil(t, e.TimeDiscoveredStartedNs)
	require.NotNil(t, e.TimeDiscoveredCompletedNs)
	assert.Equal(t, *e.TimeDiscoveredStartedNs, *e.TimeDiscoveredCompletedNs, "a completed op started, at the latest when it completed")
	assert.Nil(t, e.DurationMs, "no start was seen, so no duration")
	assert.True(t, e.Retired)
	assert.Equal(t, flightrecorder.PGStatus{LastEnqueuedCollective: 4, LastStartedCollective: 4, LastCompletedCollective: 4}, d.PGStatus["0"])
}

func TestRetire(t *testing.T) {
	rec := flightrecorder.New(8)
	id := rec.Record(allReduce(1))
	rec.Started(id)
	rec.Retire(id) // e.g. timed out
	e := rec.Snapshot().Entries[0]
	assert.Equal(t, flightrecorder.StateStarted, e.State)
	assert.True(t, e.Retired, "retired but not completed means it timed out")
	assert.Nil(t, e.TimeDiscoveredCompletedNs)
}

func TestOverwrittenIDIsIgnored(t *testing.T) {
	rec := flightrecorder.New(2)
	rec.Started(0) // nothing recorded yet
	rec.Completed(0)
	assert.Empty(t, rec.Snapshot().Entries)

	old := rec.Record(allReduce(1))
	rec.Record(allReduce(2))
	rec.Record(allReduce(3)) // overwrites old
	before := rec.Snapshot()

	rec.Started(old)
	rec.Completed(old)
	rec.Retire(old)
	rec.Started(100) // never issued
	rec.Completed(100)

	after := rec.Snapshot()
	assert.Equal(t, before, after)
	assert.Equal(t, []uint64{1, 2}, recordIDs(after))
	for _, e := range after.Entries {
		assert.Equal(t, flightrecorder.StateScheduled, e.State)
		assert.False(t, e.Retired)
	}
}

func TestDisabledRecorder(t *testing.T) {
	var nilRec *flightrecorder.Recorder
	for name, rec := range map[string]*flightrecorder.Recorder{
		"zero":     flightrecorder.New(0),
		"negative": flightrecorder.New(-5),
		"nil":      nilRec,
	} {
		t.Run(name, func(t *testing.T) {
			assert.False(t, rec.Enabled())
			assert.Zero(t, rec.Capacity())
			rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Ranks: []int{0, 1}})
			rec.SetCommLibVersion("x")
			op := allReduce(1)
			op.CaptureStack = true
			id := rec.Record(op)
			assert.Zero(t, id)
			rec.Started(id)
			rec.Completed(id)
			rec.Retire(id)

			d := rec.Snapshot()
			assert.Equal(t, flightrecorder.Version, d.Version)
			assert.Empty(t, d.Entries)
			assert.NotNil(t, d.Entries)
			assert.Empty(t, d.PGConfig)
			assert.Empty(t, d.PGStatus)

			allocs := testing.AllocsPerRun(100, func() {
				rec.Completed(rec.Record(op))
			})
			assert.Zero(t, allocs)
		})
	}
}

func TestPGStatus(t *testing.T) {
	rec := flightrecorder.New(16)
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Desc: "default_pg", Ranks: []int{0, 1}})
	assert.Empty(t, rec.Snapshot().PGStatus, "a group appears in pg_status with its first op, as in PyTorch")

	a := rec.Record(allReduce(1))
	assert.Equal(t, flightrecorder.PGStatus{LastEnqueuedCollective: 1, LastStartedCollective: -1, LastCompletedCollective: -1},
		rec.Snapshot().PGStatus["0"])

	b := rec.Record(allReduce(2))
	rec.Started(a)
	assert.Equal(t, flightrecorder.PGStatus{LastEnqueuedCollective: 2, LastStartedCollective: 1, LastCompletedCollective: -1},
		rec.Snapshot().PGStatus["0"])

	rec.Completed(a)
	rec.Started(b)
	assert.Equal(t, flightrecorder.PGStatus{LastEnqueuedCollective: 2, LastStartedCollective: 2, LastCompletedCollective: 1},
		rec.Snapshot().PGStatus["0"])

	// A p2p op reports its p2p sequence number, as PyTorch's work seq does.
	send := rec.Record(flightrecorder.OpRecord{Group: 0, ProfilingName: "gloo:send 0->1", CollectiveSeqID: 2, P2PSeqID: 7, OpID: 3, IsP2P: true})
	rec.Started(send)
	rec.Completed(send)
	assert.Equal(t, flightrecorder.PGStatus{LastEnqueuedCollective: 7, LastStartedCollective: 7, LastCompletedCollective: 7},
		rec.Snapshot().PGStatus["0"])

	// Groups are tracked apart.
	rec.Record(flightrecorder.OpRecord{Group: 3, CollectiveSeqID: 1})
	d := rec.Snapshot()
	assert.Equal(t, flightrecorder.PGStatus{LastEnqueuedCollective: 1, LastStartedCollective: -1, LastCompletedCollective: -1}, d.PGStatus["3"])
	assert.Equal(t, int64(7), d.PGStatus["0"].LastCompletedCollective)
}

func TestGroups(t *testing.T) {
	rec := flightrecorder.New(16)
	rec.SetCommLibVersion("gloo-go 1")
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Desc: "default_pg", Ranks: []int{0, 1, 2, 3}})
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 1, Name: "tp_0", Desc: "tp", Ranks: []int{0, 2}})
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 2})
	rec.Record(flightrecorder.OpRecord{Group: 1})
	rec.Record(flightrecorder.OpRecord{Group: 9}) // never registered

	d := rec.Snapshot()
	assert.Equal(t, "gloo-go 1", d.CommLibVersion)
	assert.Equal(t, map[string]flightrecorder.PGConfig{
		"0":    {Name: "0", Desc: "default_pg", Ranks: "[0, 1, 2, 3]"},
		"tp_0": {Name: "tp_0", Desc: "tp", Ranks: "[0, 2]"},
		"2":    {Name: "2", Desc: "undefined", Ranks: "[]"},
	}, d.PGConfig, "pg_config is keyed by group name; unregistered groups are left out")
	require.Len(t, d.Entries, 2)
	assert.Equal(t, 1, d.Entries[0].PGID)
	assert.Equal(t, [2]string{"tp_0", "tp"}, d.Entries[0].ProcessGroup)
	assert.Equal(t, 9, d.Entries[1].PGID)
	assert.Equal(t, [2]string{"9", "undefined"}, d.Entries[1].ProcessGroup)

	// Entries keep the name they were recorded with.
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 1, Name: "renamed", Ranks: []int{0, 2}})
	d = rec.Snapshot()
	assert.Equal(t, [2]string{"tp_0", "tp"}, d.Entries[0].ProcessGroup)
	assert.Contains(t, d.PGConfig, "renamed")
}

func TestRecordCopiesCallerSlices(t *testing.T) {
	rec := flightrecorder.New(4)
	op := allReduce(1)
	rec.Record(op)
	op.InputSizes[0][0] = 999
	op.InputDtypes[0] = "Int"

	d := rec.Snapshot()
	assert.Equal(t, [][]int64{{4, 8}}, d.Entries[0].InputSizes)
	assert.Equal(t, []string{"Float"}, d.Entries[0].InputDtypes)

	// A snapshot is a deep copy.
	d.Entries[0].InputSizes[0][1] = -1
	d.Entries[0].OutputDtypes[0] = "Long"
	d.PGStatus["0"] = flightrecorder.PGStatus{}
	again := rec.Snapshot()
	assert.Equal(t, [][]int64{{4, 8}}, again.Entries[0].InputSizes)
	assert.Equal(t, []string{"Float"}, again.Entries[0].OutputDtypes)
	assert.Equal(t, int64(1), again.PGStatus["0"].LastEnqueuedCollective)
}

func issueWithStack(rec *flightrecorder.Recorder) uint64 {
	op := allReduce(1)
	op.CaptureStack = true
	return rec.Record(op)
}

func TestCaptureStack(t *testing.T) {
	rec := flightrecorder.New(4)
	issueWithStack(rec)
	rec.Record(allReduce(2))

	d := rec.Snapshot()
	frames := d.Entries[0].Frames
	require.NotEmpty(t, frames)
	assert.Equal(t, "github.com/gccl/gccl/flightrecorder_test.issueWithStack", frames[0].Name, "innermost first, flightrecorder frames dropped")
	assert.True(t, strings.HasSuffix(frames[0].Filename, "recorder_test.go"), frames[0].Filename)
	assert.Positive(t, frames[0].Line)
	assert.Equal(t, "github.com/gccl/gccl/flightrecorder_test.TestCaptureStack", frames[1].Name)
	for _, f := range frames {
		assert.False(t, strings.HasPrefix(f.Name, "runtime."), f.Name)
		assert.False(t, strings.HasPrefix(f.Name, "github.com/gccl/gccl/flightrecorder."), f.Name)
	}

	assert.NotNil(t, d.Entries[1].Frames)
	assert.Empty(t, d.Entries[1].Frames, "no stack unless asked")
}

// entryKeys are the keys of a PyTorch 2.10 entry (FlightRecorderDetail.hpp).
var entryKeys = []string{
	"frames", "record_id", "pg_id", "process_group", "thread_name", "thread_id",
	"collective_seq_id", "p2p_seq_id", "op_id", "profiling_name", "time_created_ns",
	"duration_ms", "input_sizes", "input_dtypes", "output_sizes", "output_dtypes",
	"state", "time_discovered_started_ns", "time_discovered_completed_ns",
	"retired", "timeout_ms", "is_p2p",
}

func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sorted(ks ...string) []string {
	ks = slices.Clone(ks)
	slices.Sort(ks)
	return ks
}

func without(ks []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(ks), func(k string) bool { return k == drop })
}

func TestJSONUsesPyTorchKeys(t *testing.T) {
	rec := flightrecorder.New(8)
	rec.SetCommLibVersion("1.0")
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Desc: "default_pg", Ranks: []int{0, 1, 2, 3}})
	done := rec.Record(allReduce(1))
	rec.Started(done)
	rec.Completed(done)
	started := rec.Record(allReduce(2))
	rec.Started(started)
	rec.Record(flightrecorder.OpRecord{ProfilingName: "gloo:recv 0<-1", P2PSeqID: 1, OpID: 3, IsP2P: true})

	b, err := json.Marshal(rec.Snapshot())
	require.NoError(t, err)
	var dump map[string]any
	require.NoError(t, json.Unmarshal(b, &dump))

	assert.Equal(t, sorted("version", "comm_lib_version", "pg_config", "pg_status", "entries"), keys(dump))
	assert.Equal(t, "2.10", dump["version"])
	assert.Equal(t, "1.0", dump["comm_lib_version"])

	pgConfig := dump["pg_config"].(map[string]any)
	require.Contains(t, pgConfig, "0")
	assert.Equal(t, map[string]any{"name": "0", "desc": "default_pg", "ranks": "[0, 1, 2, 3]"}, pgConfig["0"])

	pgStatus := dump["pg_status"].(map[string]any)
	require.Contains(t, pgStatus, "0")
	assert.Equal(t, map[string]any{
		"last_enqueued_collective":  float64(1), // the p2p op's seq
		"last_started_collective":   float64(2),
		"last_completed_collective": float64(1),
	}, pgStatus["0"])

	entries := dump["entries"].([]any)
	require.Len(t, entries, 3)
	completed := entries[0].(map[string]any)
	assert.Equal(t, sorted(entryKeys...), keys(completed))
	assert.Equal(t, "completed", completed["state"])
	assert.IsType(t, float64(0), completed["duration_ms"])
	assert.IsType(t, float64(0), completed["time_discovered_started_ns"])
	assert.IsType(t, float64(0), completed["time_discovered_completed_ns"])
	assert.Equal(t, []any{"0", "default_pg"}, completed["process_group"])
	assert.Equal(t, []any{[]any{float64(4), float64(8)}}, completed["input_sizes"])
	assert.Equal(t, []any{"Float"}, completed["input_dtypes"])
	assert.Equal(t, []any{}, completed["frames"])
	assert.Equal(t, "gloo:all_reduce", completed["profiling_name"])
	assert.Equal(t, true, completed["retired"])
	assert.Equal(t, false, completed["is_p2p"])
	assert.Equal(t, float64(30000), completed["timeout_ms"])

	startedEntry := entries[1].(map[string]any)
	assert.Equal(t, sorted(without(entryKeys, "duration_ms")...), keys(startedEntry), "duration_ms is left out until known, as in PyTorch")
	assert.Equal(t, "started", startedEntry["state"])
	assert.IsType(t, float64(0), startedEntry["time_discovered_started_ns"])
	assert.Contains(t, startedEntry, "time_discovered_completed_ns")
	assert.Nil(t, startedEntry["time_discovered_completed_ns"])

	scheduled := entries[2].(map[string]any)
	assert.Equal(t, sorted(without(entryKeys, "duration_ms")...), keys(scheduled))
	assert.Equal(t, "scheduled", scheduled["state"])
	assert.Nil(t, scheduled["time_discovered_started_ns"])
	assert.Nil(t, scheduled["time_discovered_completed_ns"])
	assert.Equal(t, []any{}, scheduled["input_sizes"], "no tensors is [], not null")
	assert.Equal(t, []any{}, scheduled["output_dtypes"])
	assert.Equal(t, true, scheduled["is_p2p"])

	// An empty recorder still writes every top-level key, entries as [].
	b, err = json.Marshal(flightrecorder.New(4).Snapshot())
	require.NoError(t, err)
	assert.JSONEq(t, `{"version":"2.10","comm_lib_version":"","pg_config":{},"pg_status":{},"entries":[]}`, string(b))
}

func TestJSONRoundTrip(t *testing.T) {
	rec := flightrecorder.New(8)
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Ranks: []int{0, 1}})
	id := issueWithStack(rec)
	rec.Started(id)
	rec.Completed(id)
	rec.Record(allReduce(2))
	want := rec.Snapshot()

	b, err := json.Marshal(want)
	require.NoError(t, err)
	var got flightrecorder.Dump
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, want, got)
}

func TestConcurrentRecording(t *testing.T) {
	const (
		capacity   = 256
		goroutines = 16
		perG       = 500
	)
	rec := flightrecorder.New(capacity)
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Ranks: []int{0}})

	stop := make(chan struct{})
	var snapshots sync.WaitGroup
	snapshots.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			d := rec.Snapshot()
			ids := recordIDs(d)
			for i := 1; i < len(ids); i++ {
				if ids[i] != ids[i-1]+1 {
					t.Errorf("snapshot ids not contiguous: %v", ids)
					return
				}
			}
		}
	})

	// Half the goroutines record through one Op each (RecordOp), shared with nobody else's
	// search, while Records of the same group look for and make Ops under the lock.
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			shared := allReduce(0)
			shared.Group = g % 4
			o := rec.NewOp(&shared, shared.InputSizes, shared.OutputSizes, shared.InputDtypes, shared.OutputDtypes)
			for i := range perG {
				op := allReduce(int64(g*perG + i))
				op.Group = g % 4
				op.CaptureStack = i%50 == 0
				var id uint64
				if g%2 == 0 {
					id = rec.RecordOp(o, op.CollectiveSeqID, 0, op.OpID, false)
				} else {
					id = rec.Record(op)
				}
				rec.Started(id)
				if i%7 == 0 {
					rec.Retire(id)
				}
				rec.Completed(id)
			}
		})
	}
	wg.Wait()
	close(stop)
	snapshots.Wait()

	d := rec.Snapshot()
	require.Len(t, d.Entries, capacity)
	ids := recordIDs(d)
	for i, id := range ids {
		assert.Equal(t, uint64(goroutines*perG-capacity+i), id)
	}
	for _, e := range d.Entries {
		assert.Equal(t, flightrecorder.StateCompleted, e.State)
		assert.True(t, e.Retired)
	}
	assert.Len(t, d.PGStatus, 4)
}

func TestRecordDoesNotAllocate(t *testing.T) {
	rec := flightrecorder.New(64)
	op := allReduce(1)
	for range 128 { // fill every slot's reusable buffers
		rec.Completed(rec.Record(op))
	}
	allocs := testing.AllocsPerRun(1000, func() {
		id := rec.Record(op)
		rec.Started(id)
		rec.Completed(id)
	})
	assert.Zero(t, allocs)
	o := rec.NewOp(&op, op.InputSizes, op.OutputSizes, op.InputDtypes, op.OutputDtypes)
	allocs = testing.AllocsPerRun(1000, func() {
		rec.Completed(rec.RecordOp(o, 2, 0, 2, true))
	})
	assert.Zero(t, allocs, "RecordOp")
}

func TestCapacityFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    int
		warning bool
	}{
		{"nothing set", nil, 2000, false},
		{"gccl", map[string]string{"GCCL_FR_BUFFER_SIZE": "5"}, 5, false},
		{"torch", map[string]string{"TORCH_FR_BUFFER_SIZE": "7"}, 7, false},
		{"torch nccl alias", map[string]string{"TORCH_NCCL_TRACE_BUFFER_SIZE": "9"}, 9, false},
		{"gccl wins over torch", map[string]string{"GCCL_FR_BUFFER_SIZE": "5", "TORCH_FR_BUFFER_SIZE": "7", "TORCH_NCCL_TRACE_BUFFER_SIZE": "9"}, 5, false},
		{"torch wins over alias", map[string]string{"TORCH_FR_BUFFER_SIZE": "7", "TORCH_NCCL_TRACE_BUFFER_SIZE": "9"}, 7, false},
		{"empty falls through", map[string]string{"GCCL_FR_BUFFER_SIZE": "", "TORCH_FR_BUFFER_SIZE": "7"}, 7, false},
		{"zero disables", map[string]string{"GCCL_FR_BUFFER_SIZE": "0", "TORCH_FR_BUFFER_SIZE": "7"}, 0, false},
		{"negative disables", map[string]string{"GCCL_FR_BUFFER_SIZE": "-1"}, 0, false},
		{"spaces trimmed", map[string]string{"GCCL_FR_BUFFER_SIZE": " 12 "}, 12, false},
		{"not an integer", map[string]string{"GCCL_FR_BUFFER_SIZE": "lots", "TORCH_FR_BUFFER_SIZE": "7"}, 2000, true},
		{"torch not an integer", map[string]string{"TORCH_FR_BUFFER_SIZE": "1e3"}, 2000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, name := range flightrecorder.CapacityEnvVars {
				t.Setenv(name, "")
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var logs bytes.Buffer
			prev := slog.Default()
			slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
			t.Cleanup(func() { slog.SetDefault(prev) })

			assert.Equal(t, tt.want, flightrecorder.CapacityFromEnv())
			if tt.warning {
				assert.Contains(t, logs.String(), "level=WARN")
				assert.Contains(t, logs.String(), "default=2000")
			} else {
				assert.Empty(t, logs.String())
			}
		})
	}
}

func TestRanksFormat(t *testing.T) {
	tests := []struct {
		ranks []int
		text  string
	}{
		{[]int{}, "[]"},
		{[]int{3}, "[3]"},
		{[]int{0, 1, 2, 3}, "[0, 1, 2, 3]"},
		{[]int{8, 12, 100}, "[8, 12, 100]"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.text, flightrecorder.FormatRanks(tt.ranks))
		got, err := flightrecorder.ParseRanks(tt.text)
		require.NoError(t, err)
		assert.Equal(t, tt.ranks, got)
	}
	assert.Equal(t, "[]", flightrecorder.FormatRanks(nil))

	got, err := flightrecorder.ParseRanks(" [0,1,  2] ")
	require.NoError(t, err)
	assert.Equal(t, []int{0, 1, 2}, got)

	for _, bad := range []string{"", "0, 1", "[0, 1", "[0, x]", "[0,,1]", "(0, 1)"} {
		_, err := flightrecorder.ParseRanks(bad)
		assert.True(t, errors.Is(err, flightrecorder.ErrBadRanks), "%q: %v", bad, err)
	}
}

func BenchmarkRecordStartedCompleted(b *testing.B) {
	rec := flightrecorder.New(flightrecorder.DefaultCapacity)
	op := allReduce(1)
	b.ReportAllocs()
	for b.Loop() {
		id := rec.Record(op)
		rec.Started(id)
		rec.Completed(id)
	}
}

func BenchmarkRecordStartedCompletedParallel(b *testing.B) {
	rec := flightrecorder.New(flightrecorder.DefaultCapacity)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		op := allReduce(1)
		for pb.Next() {
			id := rec.Record(op)
			rec.Started(id)
			rec.Completed(id)
		}
	})
}

func BenchmarkRecordCaptureStack(b *testing.B) {
	rec := flightrecorder.New(flightrecorder.DefaultCapacity)
	op := allReduce(1)
	op.CaptureStack = true
	b.ReportAllocs()
	for b.Loop() {
		id := rec.Record(op)
		rec.Started(id)
		rec.Completed(id)
	}
}

func BenchmarkDisabled(b *testing.B) {
	rec := flightrecorder.New(0)
	op := allReduce(1)
	b.ReportAllocs()
	for b.Loop() {
		id := rec.Record(op)
		rec.Started(id)
		rec.Completed(id)
	}
}

func BenchmarkSnapshot(b *testing.B) {
	rec := flightrecorder.New(flightrecorder.DefaultCapacity)
	for i := range flightrecorder.DefaultCapacity {
		rec.Completed(rec.Record(allReduce(int64(i))))
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = rec.Snapshot()
	}
}

// BenchmarkRecordSyncOp is what comm records per synchronous op: the entry recorded started,
// then completed.
func BenchmarkRecordSyncOp(b *testing.B) {
	rec := flightrecorder.New(flightrecorder.DefaultCapacity)
	op := allReduce(1)
	op.Started = true
	b.ReportAllocs()
	for b.Loop() {
		rec.Completed(rec.Record(op))
	}
}

// BenchmarkRecordOpSyncOp is BenchmarkRecordSyncOp through an Op made once, as comm records a
// synchronous op that repeats its group's previous one.
func BenchmarkRecordOpSyncOp(b *testing.B) {
	rec := flightrecorder.New(flightrecorder.DefaultCapacity)
	op := allReduce(1)
	o := rec.NewOp(&op, op.InputSizes, op.OutputSizes, op.InputDtypes, op.OutputDtypes)
	b.ReportAllocs()
	var seq int64
	for b.Loop() {
		seq++
		rec.Completed(rec.RecordOp(o, seq, 0, seq, true))
	}
}

// An Op made once records every instance with its counters, and after its group is renamed,
// with the new name (earlier entries keep theirs); its states and times follow Started,
// Completed and Retire like Record's.
func TestRecordOp(t *testing.T) {
	rec := flightrecorder.New(8)
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Name: "first", Ranks: []int{0, 1}})
	op := allReduce(0)
	o := rec.NewOp(&op, op.InputSizes, op.OutputSizes, op.InputDtypes, op.OutputDtypes)
	a := rec.RecordOp(o, 1, 0, 1, true)
	rec.Completed(a)
	b := rec.RecordOp(o, 2, 0, 2, false)
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Name: "second", Ranks: []int{0, 1}})
	c := rec.RecordOp(o, 3, 0, 3, true)
	rec.Retire(c)
	rec.Started(b)

	es := rec.Snapshot().Entries
	require.Len(t, es, 3)
	for i, e := range es {
		assert.Equal(t, int64(i+1), e.CollectiveSeqID)
		assert.Equal(t, int64(i+1), e.OpID)
		assert.Equal(t, "gloo:all_reduce", e.ProfilingName)
		assert.Equal(t, [][]int64{{4, 8}}, e.InputSizes)
		assert.Equal(t, []string{"Float"}, e.OutputDtypes)
		assert.Equal(t, int64(30000), e.TimeoutMs)
	}
	assert.Equal(t, "first", es[0].ProcessGroup[0])
	assert.Equal(t, "first", es[1].ProcessGroup[0])
	assert.Equal(t, "second", es[2].ProcessGroup[0])
	assert.Equal(t, flightrecorder.StateCompleted, es[0].State)
	assert.True(t, es[0].Retired)
	require.NotNil(t, es[0].DurationMs, "recorded started, then completed")
	assert.Equal(t, flightrecorder.StateStarted, es[1].State)
	assert.False(t, es[1].Retired)
	assert.Nil(t, es[1].TimeDiscoveredCompletedNs)
	assert.Equal(t, flightrecorder.StateStarted, es[2].State)
	assert.True(t, es[2].Retired, "retired without completing")
	assert.Nil(t, es[2].DurationMs)
	assert.Equal(t, es[2].TimeCreatedNs, *es[2].TimeDiscoveredStartedNs, "recorded started: one reading")

	d := rec.Snapshot()
	st := d.PGStatus["0"]
	assert.Equal(t, flightrecorder.PGStatus{LastEnqueuedCollective: 3, LastStartedCollective: 2, LastCompletedCollective: 1}, st, "the last Started was entry 2")

	assert.Nil(t, flightrecorder.New(0).NewOp(&op, nil, nil, nil, nil), "a disabled recorder makes no Op")
	assert.Zero(t, flightrecorder.New(0).RecordOp(nil, 1, 0, 1, true))
}
