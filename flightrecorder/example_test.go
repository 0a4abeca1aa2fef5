package flightrecorder_test

import (
	"encoding/json"
	"fmt"
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
