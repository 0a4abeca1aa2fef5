package flightrecorder_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/flightrecorder"
)

// These unit tests fake a job's ranks with one Recorder each, in one process.

// fakeRank is one rank's recorder and its per-group counters.
type fakeRank struct {
	rec      *flightrecorder.Recorder
	coll     map[int]int64
	p2p      map[int]int64
	opID     map[int]int64
	lastID   uint64
	capacity int
}

// newJob makes n ranks with rings of the given capacity, all in group 0
// ("0", default_pg).
func newJob(n, capacity int) []*fakeRank {
	ranks := make([]*fakeRank, n)
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	for i := range ranks {
		ranks[i] = &fakeRank{rec: flightrecorder.New(capacity), coll: map[int]int64{}, p2p: map[int]int64{}, opID: map[int]int64{}, capacity: capacity}
		ranks[i].rec.RegisterGroup(flightrecorder.GroupInfo{ID: 0, Name: "0", Desc: "default_pg", Ranks: all})
	}
	return ranks
}

type opt func(*flightrecorder.OpRecord)

func sizes(in, out [][]int64) opt {
	return func(o *flightrecorder.OpRecord) { o.InputSizes, o.OutputSizes = in, out }
}

func dtype(d string) opt {
	return func(o *flightrecorder.OpRecord) {
		o.InputDtypes, o.OutputDtypes = []string{d}, []string{d}
	}
}

func withStack(o *flightrecorder.OpRecord) { o.CaptureStack = true }

// coll records the next collective on group g and takes it to state.
func (r *fakeRank) coll1(g int, op, state string, opts ...opt) {
	r.coll[g]++
	r.opID[g]++
	o := flightrecorder.OpRecord{
		Group: g, ProfilingName: "gloo:" + op, CollectiveSeqID: r.coll[g], P2PSeqID: r.p2p[g], OpID: r.opID[g],
		InputSizes: [][]int64{{4}}, InputDtypes: []string{"Float"}, OutputSizes: [][]int64{{4}}, OutputDtypes: []string{"Float"},
		Timeout: time.Minute,
	}
	if strings.Contains(op, ":") {
		o.ProfilingName = op
	}
	for _, f := range opts {
		f(&o)
	}
	r.record(o, state)
}

func (r *fakeRank) record(o flightrecorder.OpRecord, state string) {
	id := r.rec.Record(o)
	switch state {
	case flightrecorder.StateStarted:
		r.rec.Started(id)
	case flightrecorder.StateCompleted:
		r.rec.Started(id)
		r.rec.Completed(id)
	}
	r.lastID = id
}

// p2p records a send ("send", peer) or recv on group g.
func (r *fakeRank) p2p1(g, me, peer int, kind, state string, opts ...opt) {
	r.p2p[g]++
	r.opID[g]++
	name := "gloo:send " + itoa(me) + "->" + itoa(peer)
	o := flightrecorder.OpRecord{Group: g, CollectiveSeqID: r.coll[g], P2PSeqID: r.p2p[g], OpID: r.opID[g], IsP2P: true,
		InputSizes: [][]int64{{4}}, InputDtypes: []string{"Float"}, OutputSizes: [][]int64{}, OutputDtypes: []string{}}
	if kind == "recv" {
		name = "gloo:recv " + itoa(me) + "<-" + itoa(peer)
		o.InputSizes, o.InputDtypes, o.OutputSizes, o.OutputDtypes = [][]int64{}, []string{}, [][]int64{{4}}, []string{"Float"}
	}
	o.ProfilingName = name
	for _, f := range opts {
		f(&o)
	}
	r.record(o, state)
}

func itoa(i int) string { return string(rune('0' + i)) }

// p2pSeq gives an op the p2p sequence number seq: the ops of a batch share one.
func p2pSeq(seq int64) opt { return func(o *flightrecorder.OpRecord) { o.P2PSeqID = seq } }

// messageSize makes a send's input or a receive's output n float elements.
func messageSize(kind string, n int64) opt {
	return func(o *flightrecorder.OpRecord) {
		if kind == "send" {
			o.InputSizes = [][]int64{{n}}
		} else {
			o.OutputSizes = [][]int64{{n}}
		}
	}
}

func dumpsOf(ranks []*fakeRank) map[int]flightrecorder.Dump {
	m := map[int]flightrecorder.Dump{}
	for i, r := range ranks {
		m[i] = r.rec.Snapshot()
	}
	return m
}

// allDo has every listed rank record the same collective.
func allDo(ranks []*fakeRank, which []int, g int, op, state string, opts ...opt) {
	for _, i := range which {
		ranks[i].coll1(g, op, state, opts...)
	}
}

var four = []int{0, 1, 2, 3}

func TestAnalyzeFindings(t *testing.T) {
	type want struct {
		ok       bool
		kind     flightrecorder.FindingKind // of the first finding, "" for none
		culprits []int
		group    string
		seq      int64
		verdict  string // prefix of the verdict
		contains []string
	}
	tests := []struct {
		name  string
		build func() map[int]flightrecorder.Dump
		opts  flightrecorder.AnalyzeOptions
		want  want
	}{
		{
			name: "healthy",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(4, 32)
				for range 3 {
					allDo(j, four, 0, "all_reduce", flightrecorder.StateCompleted)
				}
				return dumpsOf(j)
			},
			want: want{ok: true, verdict: "no problem found in the dumps of ranks 0, 1, 2 and 3: 1 group, 3 collectives matched on every member"},
		},
		{
			name: "rank never joined",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(4, 32)
				for _, r := range j {
					r.rec.RegisterGroup(flightrecorder.GroupInfo{ID: 1, Name: "1", Desc: "tp", Ranks: []int{3}})
				}
				for range 56 {
					allDo(j, four, 0, "all_reduce", flightrecorder.StateCompleted)
				}
				allDo(j, []int{0, 1, 2}, 0, "all_reduce", flightrecorder.StateStarted)
				j[3].coll1(1, "all_gather", flightrecorder.StateStarted, withStack)
				return dumpsOf(j)
			},
			want: want{kind: flightrecorder.FindingNotJoined, culprits: []int{3}, group: "0", seq: 57,
				verdict:  `rank 3 never joined all_reduce #57 on group "0" (default_pg); it is at: all_gather #1 on group "1" (tp), started, not completed; last completed: all_reduce #56 on group "0" (default_pg)`,
				contains: []string{"ranks 0, 1 and 2 are in it: started, not completed", "TestAnalyzeFindings"}},
		},
		{
			name: "type mismatch",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(4, 32)
				allDo(j, four, 0, "all_reduce", flightrecorder.StateCompleted)
				allDo(j, []int{0, 1, 3}, 0, "all_reduce", flightrecorder.StateStarted)
				j[2].coll1(0, "all_gather", flightrecorder.StateStarted)
				return dumpsOf(j)
			},
			want: want{kind: flightrecorder.FindingTypeMismatch, culprits: []int{2}, group: "0", seq: 2,
				verdict: `rank 2 called all_gather as #2 on group "0" (default_pg) where ranks 0, 1 and 3 called all_reduce`},
		},
		{
			name: "size mismatch",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(3, 32)
				allDo(j, []int{0, 2}, 0, "broadcast", flightrecorder.StateStarted, sizes([][]int64{{4, 8}}, [][]int64{{4, 8}}))
				j[1].coll1(0, "broadcast", flightrecorder.StateStarted, sizes([][]int64{{4, 9}}, [][]int64{{4, 9}}))
				return dumpsOf(j)
			},
			want: want{kind: flightrecorder.FindingSizeMismatch, culprits: []int{1}, group: "0", seq: 1,
				verdict: `input sizes mismatch in broadcast #1 on group "0" (default_pg): rank 1 has [[4, 9]], where ranks 0 and 2 have [[4, 8]]`},
		},
		{
			name: "dtype mismatch",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(3, 32)
				allDo(j, []int{1, 2}, 0, "all_reduce", flightrecorder.StateStarted)
				j[0].coll1(0, "all_reduce", flightrecorder.StateStarted, dtype("BFloat16"))
				return dumpsOf(j)
			},
			want: want{kind: flightrecorder.FindingDtypeMismatch, culprits: []int{0}, group: "0", seq: 1,
				verdict: `dtypes mismatch in all_reduce #1 on group "0" (default_pg): rank 0 has {BFloat16}, where ranks 1 and 2 have {Float}`},
		},
		{
			name: "state mismatch",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(3, 32)
				allDo(j, []int{0, 1}, 0, "all_reduce", flightrecorder.StateCompleted)
				j[2].coll1(0, "all_reduce", flightrecorder.StateScheduled)
				return dumpsOf(j)
			},
			want: want{kind: flightrecorder.FindingStateMismatch, culprits: []int{2}, group: "0", seq: 1,
				verdict: `rank 2 has not completed all_reduce #1 on group "0" (default_pg), which ranks 0 and 1 completed (rank 2: scheduled, never started); it is at: all_reduce #1`},
		},
		{
			name: "missing dump",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(4, 32)
				allDo(j, four, 0, "all_reduce", flightrecorder.StateCompleted)
				d := dumpsOf(j)
				delete(d, 3)
				return d
			},
			want: want{kind: flightrecorder.FindingMissingDump, culprits: []int{3},
				verdict: "no dump from rank 3 (members of the job's groups); analyze what there is with AllowIncompleteRanks"},
		},
		{
			name: "missing dump allowed",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(4, 32)
				allDo(j, four, 0, "all_reduce", flightrecorder.StateCompleted)
				d := dumpsOf(j)
				delete(d, 3)
				return d
			},
			opts: flightrecorder.AnalyzeOptions{AllowIncompleteRanks: true},
			want: want{ok: true, verdict: "no problem found in the dumps of ranks 0, 1 and 2: 1 group, 0 collectives matched on every member, 1 more on every member with a dump",
				contains: []string{"0 collectives matched on every member (1 more on every member with a dump), last #1"}},
		},
		{
			name: "every rank with a dump stuck in an op: the rank without one is the culprit",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(4, 32)
				allDo(j, four, 0, "all_reduce", flightrecorder.StateCompleted)
				allDo(j, []int{0, 2, 3}, 0, "all_reduce", flightrecorder.StateStarted)
				d := dumpsOf(j)
				delete(d, 1)
				return d
			},
			opts: flightrecorder.AnalyzeOptions{AllowIncompleteRanks: true},
			want: want{kind: flightrecorder.FindingStuck, culprits: []int{1}, group: "0", seq: 2,
				verdict: `ranks 0, 2 and 3 are in all_reduce #2 on group "0" (default_pg) and none completed it (started, not completed); rank 1 left no dump and may never have joined it`},
		},
		{
			name: "missing rank still found not joined by the others",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(3, 32)
				allDo(j, []int{0, 1, 2}, 0, "all_reduce", flightrecorder.StateCompleted)
				allDo(j, []int{0}, 0, "all_reduce", flightrecorder.StateStarted)
				d := dumpsOf(j)
				delete(d, 2)
				return d
			},
			opts: flightrecorder.AnalyzeOptions{AllowIncompleteRanks: true},
			want: want{kind: flightrecorder.FindingNotJoined, culprits: []int{1}, group: "0", seq: 2},
		},
		{
			name: "ring wraparound is unknown, not missing",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 64)
				j[1] = newJob(2, 4)[1] // rank 1 keeps only its newest 4 ops
				for range 10 {
					allDo(j, []int{0, 1}, 0, "all_reduce", flightrecorder.StateCompleted)
				}
				return dumpsOf(j)
			},
			want: want{ok: true, verdict: "no problem found in the dumps of ranks 0 and 1: 1 group, 4 collectives matched on every member (1 warning)",
				contains: []string{"[warning] unknown: rank 1's ring no longer holds group \"0\" (default_pg)'s collectives up to #6 (it wrapped)"}},
		},
		{
			name: "a rank whose ring did not wrap and lacks early ops skipped them",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 64)
				allDo(j, []int{0}, 0, "all_reduce", flightrecorder.StateCompleted)
				j[1].coll[0] = 1 // rank 1 starts counting at #2: it never issued #1
				allDo(j, []int{0, 1}, 0, "all_reduce", flightrecorder.StateCompleted)
				return dumpsOf(j)
			},
			want: want{kind: flightrecorder.FindingNotJoined, culprits: []int{1}, group: "0", seq: 1,
				contains: []string{"rank 1 skipped it: it has later collectives on this group (up to #2)"}},
		},
		{
			name: "mixed versions",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(3, 32)
				allDo(j, []int{0, 1, 2}, 0, "all_reduce", flightrecorder.StateCompleted)
				d := dumpsOf(j)
				v := d[2]
				v.Version = "2.4"
				d[2] = v
				return d
			},
			want: want{ok: true, verdict: "no problem found", contains: []string{
				`[warning] version_mismatch: the dumps have different schema versions: "2.10" on ranks 0 and 1, "2.4" on rank 2`}},
		},
		{
			name: "unknown profiling names are compared as they are",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 32)
				allDo(j, []int{0, 1}, 0, "frobnicate", flightrecorder.StateCompleted)
				allDo(j, []int{0, 1}, 0, "mylib:twiddle 3", flightrecorder.StateCompleted)
				allDo(j, []int{0}, 0, "no_backend_prefix", flightrecorder.StateStarted)
				allDo(j, []int{1}, 0, "other_name", flightrecorder.StateStarted)
				return dumpsOf(j)
			},
			want: want{kind: flightrecorder.FindingTypeMismatch, culprits: []int{1}, seq: 3, group: "0",
				verdict:  `rank 1 called other_name as #3 on group "0" (default_pg) where rank 0 called no_backend_prefix`,
				contains: []string{"the ranks split evenly; rank 0's op is taken as the expected one"}},
		},
		{
			name: "p2p peer never posted the recv",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 32)
				j[0].p2p1(0, 0, 1, "send", flightrecorder.StateCompleted)
				j[1].p2p1(0, 1, 0, "recv", flightrecorder.StateCompleted)
				j[0].p2p1(0, 0, 1, "send", flightrecorder.StateStarted)
				j[1].rec.RegisterGroup(flightrecorder.GroupInfo{ID: 5, Name: "5", Desc: "solo", Ranks: []int{1}})
				j[1].coll1(5, "barrier", flightrecorder.StateStarted)
				return dumpsOf(j)
			},
			want: want{kind: flightrecorder.FindingNotJoined, culprits: []int{1}, group: "0", seq: 2,
				verdict: `rank 1 never posted the recv matching rank 0's send (p2p #2, gloo:send 0->1) on group "0" (default_pg); it is at: barrier #1 on group "5" (solo), started, not completed; last completed: recv 1<-0 (p2p #1)`},
		},
		{
			name: "p2p size mismatch",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 32)
				j[0].p2p1(0, 0, 1, "send", flightrecorder.StateStarted, sizes([][]int64{{4}}, [][]int64{}))
				j[1].p2p1(0, 1, 0, "recv", flightrecorder.StateStarted, sizes([][]int64{}, [][]int64{{8}}))
				return dumpsOf(j)
			},
			want: want{kind: flightrecorder.FindingSizeMismatch, culprits: []int{1}, group: "0", seq: 1,
				verdict: `sizes mismatch between rank 0's send (p2p #1) and rank 1's matching recv (p2p #1) on group "0" (default_pg): [[4]] sent, [[8]] expected`},
		},
		{
			name: "p2p batches listed in other orders",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 32)
				for r, peer := range []int{1, 0} {
					batch := func(kind string, n int64) {
						j[r].p2p1(0, r, peer, kind, flightrecorder.StateCompleted, p2pSeq(1), messageSize(kind, n))
					}
					if r == 0 {
						batch("recv", 3)
						batch("send", 1<<20)
						batch("send", 3)
						batch("recv", 1<<20)
					} else {
						batch("send", 3)
						batch("recv", 3)
						batch("recv", 1<<20)
						batch("send", 1<<20)
					}
				}
				return dumpsOf(j)
			},
			want: want{ok: true, verdict: "no problem found"},
		},
		{
			name: "p2p batch size mismatch",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 32)
				j[0].p2p1(0, 0, 1, "send", flightrecorder.StateStarted, p2pSeq(1), messageSize("send", 4))
				j[0].p2p1(0, 0, 1, "send", flightrecorder.StateStarted, p2pSeq(1), messageSize("send", 5))
				j[1].p2p1(0, 1, 0, "recv", flightrecorder.StateStarted, p2pSeq(1), messageSize("recv", 8))
				j[1].p2p1(0, 1, 0, "recv", flightrecorder.StateStarted, p2pSeq(1), messageSize("recv", 5))
				return dumpsOf(j)
			},
			want: want{kind: flightrecorder.FindingSizeMismatch, culprits: []int{1}, group: "0", seq: 1,
				// Paired by shape within the batch (the dumps have no tags): [[4]] with [[5]].
				verdict: `sizes mismatch between rank 0's send (p2p #1) and rank 1's matching recv (p2p #1) on group "0" (default_pg): [[4]] sent, [[5]] expected`},
		},
		{
			name: "all joined, none completed",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(4, 32)
				allDo(j, four, 0, "all_reduce", flightrecorder.StateCompleted)
				allDo(j, four, 0, "all_to_all", flightrecorder.StateStarted)
				return dumpsOf(j)
			},
			want: want{ok: true, verdict: "no problem found", contains: []string{
				`[warning] stuck: all 4 members are in all_to_all #2 on group "0" (default_pg) and none completed it (started, not completed)`}},
		},
		{
			name: "group filter",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 32)
				allDo(j, []int{0}, 0, "all_reduce", flightrecorder.StateStarted)
				return dumpsOf(j)
			},
			opts: flightrecorder.AnalyzeOptions{Groups: []string{"tp"}},
			want: want{ok: true, verdict: "no problem found in the dumps of ranks 0 and 1: 0 groups"},
		},
		{
			name: "group filter by desc",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 32)
				allDo(j, []int{0}, 0, "all_reduce", flightrecorder.StateStarted)
				return dumpsOf(j)
			},
			opts: flightrecorder.AnalyzeOptions{Groups: []string{"default_pg"}},
			want: want{kind: flightrecorder.FindingNotJoined, culprits: []int{1}, group: "0", seq: 1},
		},
		{
			name: "rank filter",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 32)
				allDo(j, []int{0}, 0, "all_reduce", flightrecorder.StateStarted)
				return dumpsOf(j)
			},
			opts: flightrecorder.AnalyzeOptions{Ranks: []int{5}},
			want: want{ok: true},
		},
		{
			name: "ranks disagree on a group's members",
			build: func() map[int]flightrecorder.Dump {
				j := newJob(2, 32)
				j[0].rec.RegisterGroup(flightrecorder.GroupInfo{ID: 1, Name: "tp", Ranks: []int{0, 1}})
				j[1].rec.RegisterGroup(flightrecorder.GroupInfo{ID: 1, Name: "tp", Ranks: []int{1, 2}})
				return dumpsOf(j)
			},
			opts: flightrecorder.AnalyzeOptions{AllowIncompleteRanks: true},
			want: want{kind: flightrecorder.FindingGroupMismatch, culprits: []int{1}, group: "tp",
				verdict: `rank 1 has group "tp" with ranks [1, 2], but rank 0 have it with ranks [0, 1]`},
		},
		{
			name:  "no dumps",
			build: func() map[int]flightrecorder.Dump { return map[int]flightrecorder.Dump{} },
			want:  want{ok: true, verdict: "no dumps to analyze"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := flightrecorder.Analyze(tt.build(), tt.opts)
			var text bytes.Buffer
			require.NoError(t, rep.WriteText(&text))
			assert.Equal(t, tt.want.ok, rep.OK(), "report:\n%s", text.String())
			first := strings.SplitN(text.String(), "\n", 2)[0]
			assert.Equal(t, rep.Verdict, first, "the text form starts with the verdict")
			if tt.want.verdict != "" {
				assert.True(t, strings.HasPrefix(rep.Verdict, tt.want.verdict), "verdict:\n%s\nwant prefix:\n%s", rep.Verdict, tt.want.verdict)
			}
			for _, c := range tt.want.contains {
				assert.Contains(t, text.String(), c)
			}
			if tt.want.kind == "" {
				for _, f := range rep.Findings {
					assert.Equal(t, flightrecorder.SeverityWarning, f.Severity, "%s", f.Message)
				}
				return
			}
			require.NotEmpty(t, rep.Findings, "report:\n%s", text.String())
			f := rep.Findings[0]
			assert.Equal(t, tt.want.kind, f.Kind, "report:\n%s", text.String())
			assert.Equal(t, tt.want.culprits, f.Culprits)
			assert.Equal(t, tt.want.group, f.Group)
			assert.Equal(t, tt.want.seq, f.Seq)
		})
	}
}

func TestAnalyzeCulpritPositionAndFrames(t *testing.T) {
	j := newJob(2, 32)
	allDo(j, []int{0, 1}, 0, "all_reduce", flightrecorder.StateCompleted)
	j[0].coll1(0, "all_reduce", flightrecorder.StateStarted)
	j[1].coll1(0, "all_gather", flightrecorder.StateCompleted) // ran ahead on another op type
	j[1].rec.RegisterGroup(flightrecorder.GroupInfo{ID: 2, Name: "2", Ranks: []int{1}})
	j[1].coll1(2, "barrier", flightrecorder.StateStarted, withStack)
	rep := flightrecorder.Analyze(dumpsOf(j), flightrecorder.AnalyzeOptions{})
	require.NotEmpty(t, rep.Findings)
	f := rep.Findings[0]
	assert.Equal(t, flightrecorder.FindingTypeMismatch, f.Kind)
	require.Len(t, f.Positions, 1)
	p := f.Positions[0]
	assert.Equal(t, 1, p.Rank)
	require.NotNil(t, p.InFlight)
	assert.Equal(t, "gloo:barrier", p.InFlight.ProfilingName)
	assert.Equal(t, "2", p.InFlight.Group)
	require.NotEmpty(t, p.InFlight.Frames)
	assert.True(t, slices.ContainsFunc(p.InFlight.Frames, func(f flightrecorder.Frame) bool {
		return strings.HasSuffix(f.Name, "coll1") && strings.HasSuffix(f.Filename, "analyze_test.go")
	}), "%+v", p.InFlight.Frames)
	require.NotNil(t, p.LastCompleted)
	assert.Equal(t, "gloo:all_gather", p.LastCompleted.ProfilingName)
	assert.EqualValues(t, 2, p.LastCompleted.Seq)
}

func TestAnalyzeMismatchCap(t *testing.T) {
	j := newJob(2, 64)
	for range 15 {
		j[0].coll1(0, "all_reduce", flightrecorder.StateStarted)
		j[1].coll1(0, "all_reduce", flightrecorder.StateStarted, dtype("Int"))
	}
	rep := flightrecorder.Analyze(dumpsOf(j), flightrecorder.AnalyzeOptions{MaxMismatches: 3})
	var kinds []flightrecorder.FindingKind
	for _, f := range rep.Findings {
		kinds = append(kinds, f.Kind)
	}
	assert.Equal(t, []flightrecorder.FindingKind{flightrecorder.FindingDtypeMismatch, flightrecorder.FindingDtypeMismatch,
		flightrecorder.FindingDtypeMismatch, flightrecorder.FindingUnknown}, kinds)
	assert.Contains(t, rep.Findings[3].Message, "12 more mismatches")
}

func TestAnalyzePyTorchDeadlock(t *testing.T) {
	dumps, errs := flightrecorder.LoadDir("testdata/pytorch", "")
	require.Empty(t, errs)
	rep := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
	assert.False(t, rep.OK())
	assert.Equal(t, `rank 1 never joined broadcast #2 on group "0" (default_pg); it is at: all_gather #1 on group "1", started, not completed; last completed: all_reduce #1 on group "0" (default_pg)`, rep.Verdict)
	require.Len(t, rep.Findings, 2)
	assert.Equal(t, []int{0}, rep.Findings[1].Culprits)
	assert.Equal(t, "1", rep.Findings[1].Group)
	assert.Equal(t, "train_step", rep.Findings[1].Positions[0].InFlight.Frames[1].Name)
}

func TestReportJSONKeys(t *testing.T) {
	dumps, _ := flightrecorder.LoadDir("testdata/pytorch", "")
	var buf bytes.Buffer
	require.NoError(t, flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{}).WriteJSON(&buf))
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(buf.Bytes(), &m))
	assert.ElementsMatch(t, []string{"ok", "verdict", "ranks", "missing_ranks", "versions", "groups", "findings"}, keysOf(m))
	var findings []map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(m["findings"], &findings))
	require.NotEmpty(t, findings)
	assert.ElementsMatch(t, []string{"kind", "severity", "message", "group", "group_desc", "op", "seq", "is_p2p",
		"culprits", "ranks", "ops", "positions", "details"}, keysOf(findings[0]))
	assert.JSONEq(t, `false`, string(m["ok"]))
	assert.JSONEq(t, `[]`, string(m["missing_ranks"]))

	buf.Reset()
	require.NoError(t, flightrecorder.Analyze(nil, flightrecorder.AnalyzeOptions{}).WriteJSON(&buf))
	assert.Contains(t, buf.String(), `"findings": []`)
}

func keysOf[V any](m map[string]V) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
