package flightrecorder_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gccl/gccl/flightrecorder"
)

func ExampleRecorder() {
	rec := flightrecorder.New(2000)
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Name: "0", Desc: "default_pg", Ranks: []int{0, 1, 2, 3}})

	id := rec.Record(flightrecorder.OpRecord{
		Group:           0,
		ProfilingName:   "gloo:all_reduce",
		CollectiveSeqID: 1,
		OpID:            1,
		InputSizes:      [][]int64{{1024}},
		InputDtypes:     []string{"Float"},
		OutputSizes:     [][]int64{{1024}},
		OutputDtypes:    []string{"Float"},
		Timeout:         10 * time.Minute,
	})
	rec.Started(id)
	rec.Completed(id)

	dump := rec.Snapshot()
	e := dump.Entries[0]
	fmt.Println(dump.Version, e.RecordID, e.ProfilingName, e.State, e.Retired, e.TimeoutMs)
	fmt.Println(dump.PGConfig["0"].Ranks, dump.PGStatus["0"].LastCompletedCollective)
	// Output:
	// 2.10 0 gloo:all_reduce completed true 600000
	// [0, 1, 2, 3] 1
}

func ExampleRecorder_Snapshot() {
	rec := flightrecorder.New(2) // keeps the newest 2 ops
	for seq := int64(1); seq <= 3; seq++ {
		rec.Record(flightrecorder.OpRecord{ProfilingName: "gloo:broadcast", CollectiveSeqID: seq, OpID: seq})
	}
	for _, e := range rec.Snapshot().Entries {
		fmt.Println(e.RecordID, e.CollectiveSeqID, e.State)
	}
	// Output:
	// 1 2 scheduled
	// 2 3 scheduled
}

func ExampleRecorder_Snapshot_json() {
	rec := flightrecorder.New(16)
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Desc: "default_pg", Ranks: []int{0, 1}})
	rec.Record(flightrecorder.OpRecord{ProfilingName: "gloo:send 0->1", P2PSeqID: 1, OpID: 1, IsP2P: true})

	b, err := json.Marshal(rec.Snapshot().PGConfig)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(b))
	// Output:
	// {"0":{"name":"0","desc":"default_pg","ranks":"[0, 1]"}}
}

func ExampleNew_disabled() {
	rec := flightrecorder.New(0) // e.g. GCCL_FR_BUFFER_SIZE=0
	id := rec.Record(flightrecorder.OpRecord{ProfilingName: "gloo:all_reduce"})
	rec.Completed(id)
	fmt.Println(rec.Enabled(), len(rec.Snapshot().Entries))
	// Output: false 0
}

func ExampleDump_WriteFile() {
	rec := flightrecorder.New(16)
	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Desc: "default_pg", Ranks: []int{0, 1}})
	rec.Completed(rec.Record(flightrecorder.OpRecord{ProfilingName: "gloo:all_reduce", CollectiveSeqID: 1, OpID: 1}))

	dir, err := os.MkdirTemp("", "fr")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	// Each rank writes <prefix><rank>; the prefix usually comes from
	// flightrecorder.DumpPrefixFromEnv() (GCCL_FR_DUMP_PREFIX).
	path := flightrecorder.DumpPath(filepath.Join(dir, "gccl_trace_rank_"), 0)
	if err := rec.Snapshot().WriteFile(path, flightrecorder.FormatPickle); err != nil {
		fmt.Println(err)
		return
	}

	dumps, errs := flightrecorder.LoadDir(dir, "") // the prefix is inferred
	fmt.Println(len(dumps), len(errs), dumps[0].Entries[0].ProfilingName)
	// Output: 1 0 gloo:all_reduce
}

func ExampleAnalyze() {
	// Two ranks' recorders (in a real job, two processes' dumps).
	ranks := []*flightrecorder.Recorder{flightrecorder.New(16), flightrecorder.New(16)}
	for _, rec := range ranks {
		rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Desc: "default_pg", Ranks: []int{0, 1}})
		rec.Completed(rec.Record(flightrecorder.OpRecord{ProfilingName: "gloo:all_reduce", CollectiveSeqID: 1, OpID: 1}))
	}
	// Rank 0 enters all_reduce #2; rank 1 never does.
	ranks[0].Started(ranks[0].Record(flightrecorder.OpRecord{ProfilingName: "gloo:all_reduce", CollectiveSeqID: 2, OpID: 2}))

	dumps := map[int]flightrecorder.Dump{0: ranks[0].Snapshot(), 1: ranks[1].Snapshot()}
	report := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
	fmt.Println(report.OK())
	fmt.Println(report.Verdict)
	// Output:
	// false
	// rank 1 never joined all_reduce #2 on group "0" (default_pg); it is at: in no op; last completed: all_reduce #1 on group "0" (default_pg)
}

func ExampleWriteTimeline() {
	ranks := []*flightrecorder.Recorder{flightrecorder.New(16), flightrecorder.New(16)}
	for _, rec := range ranks {
		rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Desc: "default_pg", Ranks: []int{0, 1}})
		rec.Completed(rec.Record(flightrecorder.OpRecord{ProfilingName: "gloo:all_reduce", CollectiveSeqID: 1, OpID: 1}))
	}
	ranks[0].Started(ranks[0].Record(flightrecorder.OpRecord{ProfilingName: "gloo:all_reduce", CollectiveSeqID: 2, OpID: 2}))
	dumps := map[int]flightrecorder.Dump{0: ranks[0].Snapshot(), 1: ranks[1].Snapshot()}

	var page strings.Builder // usually a file: gccl fr view DIR -o timeline.html
	report := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
	if err := flightrecorder.WriteTimeline(&page, dumps, report, flightrecorder.TimelineOptions{}); err != nil {
		fmt.Println(err)
		return
	}
	html := page.String()
	fmt.Println(strings.Count(html, `<rect class="op state-completed`), "completed,",
		strings.Count(html, `<rect class="op state-started`), "in flight,",
		strings.Count(html, `<g class="missing" data-rank="1"`), "missing on rank 1")
	// Output: 2 completed, 1 in flight, 1 missing on rank 1
}
