// Package flightrecorder keeps the most recent collective and point-to-point
// ops of a process in a fixed-size ring, the way PyTorch's Flight Recorder
// does, so that a hung or crashed job can be diagnosed from what every rank
// was doing.
//
// The in-memory schema is PyTorch's dump schema, version "2.10" (Version):
// Dump and Entry carry PyTorch's key names as JSON tags, pg_config maps a
// group's name to {name, desc, ranks} with ranks written as "[0, 1, 2, 3]",
// pg_status maps a group's id to its last enqueued, started and completed
// sequence numbers, and an entry goes through the states "scheduled",
// "started" and "completed". A Snapshot therefore serialises straight into
// a dump that PyTorch's torchfrtrace reads.
//
// The comm package records every op it issues:
//
//	rec := flightrecorder.New(flightrecorder.CapacityFromEnv()) // GCCL_FR_BUFFER_SIZE, default 2000
//	rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Name: "0", Desc: "default_pg", Ranks: []int{0, 1, 2, 3}})
//
//	id := rec.Record(flightrecorder.OpRecord{
//		Group:           0,
//		ProfilingName:   "gloo:all_reduce",
//		CollectiveSeqID: 1,
//		OpID:            1,
//		InputSizes:      [][]int64{{1024}},
//		InputDtypes:     []string{"Float"},
//		OutputSizes:     [][]int64{{1024}},
//		OutputDtypes:    []string{"Float"},
//		Timeout:         10 * time.Minute,
//	})
//	rec.Started(id)   // when the op starts moving bytes
//	// ... the backend runs the all-reduce ...
//	rec.Completed(id) // when it finished; sets duration_ms
//
//	dump := rec.Snapshot() // deep copy, entries oldest first
//	b, err := json.Marshal(dump)
//
// and b holds
//
//	{"version":"2.10","comm_lib_version":"",
//	 "pg_config":{"0":{"name":"0","desc":"default_pg","ranks":"[0, 1, 2, 3]"}},
//	 "pg_status":{"0":{"last_enqueued_collective":1,"last_started_collective":1,"last_completed_collective":1}},
//	 "entries":[{"frames":[],"record_id":0,"pg_id":0,"process_group":["0","default_pg"],
//	   "thread_name":"","thread_id":"","collective_seq_id":1,"p2p_seq_id":0,"op_id":1,
//	   "profiling_name":"gloo:all_reduce","time_created_ns":...,"duration_ms":0.012,
//	   "input_sizes":[[1024]],"input_dtypes":["Float"],"output_sizes":[[1024]],"output_dtypes":["Float"],
//	   "state":"completed","time_discovered_started_ns":...,"time_discovered_completed_ns":...,
//	   "retired":true,"timeout_ms":600000,"is_p2p":false}]}
//
// As in PyTorch, duration_ms is left out until known, and the
// time_discovered_* keys are null until reached.
//
// Record, Started and Completed take one mutex each and reuse preallocated
// slots, so recording costs no allocation unless OpRecord.CaptureStack asks
// for the caller's stack. An entry is one cache line (counters and times)
// pointing to an Op, what the entries of one kind of op share (group, name,
// shapes, dtypes); Record finds or makes it among its group's recent ones. A
// caller that repeats an op makes its Op once (NewOp) and records each
// instance with RecordOp, which skips that search: comm does, and records a
// synchronous op in ~35 ns. A Recorder of capacity 0 (or a nil *Recorder) is
// disabled and every method returns at once. An id whose entry the ring has
// since overwritten is ignored by Started, Completed and Retire.
//
// # Dump files
//
// Each rank writes its dump to its own file, <prefix><rank>, with
// Dump.WriteFile (atomically: a temporary file renamed into place). The prefix
// comes from DumpPrefixFromEnv: GCCL_FR_DUMP_PREFIX, else PyTorch's
// TORCH_FR_DUMP_TEMP_FILE, else /tmp/gccl_trace_rank_. The format comes from
// DumpFormatFromEnv: GCCL_FR_DUMP_FORMAT=pickle (the default, PyTorch's
// format, which torchfrtrace reads) or json (PyTorch's JSON dump shape).
//
//	path := flightrecorder.DumpPath(flightrecorder.DumpPrefixFromEnv(), rank)
//	err := rec.Snapshot().WriteFile(path, flightrecorder.DumpFormatFromEnv())
//
// Load, LoadFile and LoadDir read gccl's dumps and PyTorch's, in either
// format, telling them apart by their first byte. The pickle decoder is
// restricted to plain data: it never imports or calls anything but the few
// list-building helpers PyTorch's pickler may emit.
//
// # Analysis
//
// Analyze matches every group's ops across the ranks' dumps and reports what
// does not line up: a rank that never joined a collective the others are in
// (and where it is instead), op type, size, dtype and state mismatches,
// missing dumps and mixed schema versions. The first line of its report is
// the verdict:
//
//	dumps, errs := flightrecorder.LoadDir("/tmp/job-dumps", "") // prefix inferred
//	report := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
//	report.WriteText(os.Stdout)
//	// rank 3 never joined all_reduce #57 on group "0" (default_pg); it is at: ...
//
// # Timeline
//
// WriteTimeline draws the dumps for a person: one self-contained HTML page
// (inline SVG, nothing fetched) with a row per rank and each op a box on a
// time axis, coloured by state, the ops of the report's findings outlined
// and a "missing" marker where a rank never joined; hovering an op shows its
// details and stack frames:
//
//	f, err := os.Create("timeline.html")
//	...
//	err = flightrecorder.WriteTimeline(f, dumps, report, flightrecorder.TimelineOptions{})
//
// `gccl fr analyze DIR`, `gccl fr show DIR` and `gccl fr view DIR` are the
// command-line front.
// Dump triggers (on a timeout, on request) live in the packages that own the
// process; this package records, writes, reads and analyzes.
package flightrecorder
