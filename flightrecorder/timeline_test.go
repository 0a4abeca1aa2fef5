package flightrecorder_test

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/gccl/gccl/flightrecorder"
)

// The timeline's plot spans x = 170 to 170+Width (default 1200).
const (
	plotLeft  = 170.0
	plotRight = 170.0 + 1200
)

// plotX is the x coordinate of a time, in ms, on a plot of the given span:
// the times in the dumps and 5% more, where ops in flight end.
func plotX(ms, lastMs float64) float64 { return plotLeft + 1200*ms/(lastMs*1.05) }

// t0 is the synthetic dumps' time 0, in ns since the epoch.
const t0 = int64(1_700_000_000_000_000_000)

// at is t0 plus ms milliseconds, as a dump time.
func at(ms float64) *int64 {
	v := t0 + int64(ms*1e6)
	return &v
}

// synthOp is one synthetic entry: times in ms since t0, negative for none.
type synthOp struct {
	name                   string // profiling name
	group                  [2]string
	seq                    int64 // collective or, for p2p names, p2p sequence number
	state                  string
	created, started, done float64
	durationMs             float64 // 0: from started and done, if both
	retired                bool
	timeoutMs              int64
	frames                 []flightrecorder.Frame
}

func coll(name string, seq int64, state string, created, started, done float64) synthOp {
	return synthOp{name: "gloo:" + name, group: [2]string{"0", "default_pg"}, seq: seq, state: state,
		created: created, started: started, done: done}
}

// synthDump makes one rank's dump: groups maps a name to [desc, ranks].
func synthDump(groups map[string][2]string, ops ...synthOp) flightrecorder.Dump {
	d := flightrecorder.Dump{Version: flightrecorder.Version, PGConfig: map[string]flightrecorder.PGConfig{},
		PGStatus: map[string]flightrecorder.PGStatus{}, Entries: []flightrecorder.Entry{}}
	for name, g := range groups {
		d.PGConfig[name] = flightrecorder.PGConfig{Name: name, Desc: g[0], Ranks: g[1]}
	}
	for i, o := range ops {
		p2p := strings.Contains(o.name, "send ") || strings.Contains(o.name, "recv ")
		e := flightrecorder.Entry{
			Frames: o.frames, RecordID: uint64(i), ProcessGroup: o.group, ProfilingName: o.name, State: o.state,
			Retired: o.retired || o.state == flightrecorder.StateCompleted, TimeoutMs: o.timeoutMs, IsP2P: p2p,
			InputSizes: [][]int64{{1024}}, InputDtypes: []string{"Float"}, OutputSizes: [][]int64{{1024}}, OutputDtypes: []string{"Float"},
		}
		if p2p {
			e.P2PSeqID = o.seq
		} else {
			e.CollectiveSeqID = o.seq
		}
		if o.created >= 0 {
			e.TimeCreatedNs = *at(o.created)
		}
		if o.started >= 0 {
			e.TimeDiscoveredStartedNs = at(o.started)
		}
		if o.done >= 0 {
			e.TimeDiscoveredCompletedNs = at(o.done)
		}
		switch {
		case o.durationMs > 0:
			e.DurationMs = &o.durationMs
		case o.started >= 0 && o.done >= 0:
			v := o.done - o.started
			e.DurationMs = &v
		}
		d.Entries = append(d.Entries, e)
	}
	return d
}

// render writes the timeline and parses it as a browser would.
func render(t *testing.T, dumps map[int]flightrecorder.Dump, rep flightrecorder.Report, opts flightrecorder.TimelineOptions) (*html.Node, string) {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, flightrecorder.WriteTimeline(&b, dumps, rep, opts))
	require.True(t, utf8.Valid(b.Bytes()), "the page is valid UTF-8")
	doc, err := html.Parse(bytes.NewReader(b.Bytes()))
	require.NoError(t, err)
	return doc, b.String()
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	return slices.Contains(strings.Fields(attr(n, "class")), class)
}

// findAll returns the elements below n named tag ("" for any) that have
// every class listed.
func findAll(n *html.Node, tag string, classes ...string) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (tag == "" || n.Data == tag) {
			ok := true
			for _, c := range classes {
				ok = ok && hasClass(n, c)
			}
			if ok {
				out = append(out, n)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

func fattr(t *testing.T, n *html.Node, key string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(attr(n, key), 64)
	require.NoError(t, err, "%s=%q", key, attr(n, key))
	return v
}

// rows maps each row's data-rank to its <g class="row">.
func rows(t *testing.T, doc *html.Node) map[string]*html.Node {
	t.Helper()
	m := map[string]*html.Node{}
	for _, g := range findAll(doc, "g", "row") {
		m[attr(g, "data-rank")] = g
	}
	return m
}

func findingIndex(rep flightrecorder.Report, kind flightrecorder.FindingKind) int {
	return slices.IndexFunc(rep.Findings, func(f flightrecorder.Finding) bool { return f.Kind == kind })
}

// hungJob is 4 ranks of a 5-member group (rank 4 left no dump): five
// all-reduces done (each 4 ms, from 1 ms every 10 ms), a send from 0 to 1,
// then ranks 0-2 in all_reduce #6 from 61 ms while rank 3 never joined it and
// is in an all_gather on its own group "1" from 62 ms, the end of the trace.
func hungJob() map[int]flightrecorder.Dump {
	groups := map[string][2]string{"0": {"default_pg", "[0, 1, 2, 3, 4]"}}
	dumps := map[int]flightrecorder.Dump{}
	for r := range 4 {
		var ops []synthOp
		for k := 1; k <= 5; k++ {
			c := float64(10 * (k - 1))
			ops = append(ops, coll("all_reduce", int64(k), flightrecorder.StateCompleted, c, c+1, c+5))
		}
		switch r {
		case 0:
			ops = append(ops, synthOp{name: "gloo:send 0->1", group: [2]string{"0", "default_pg"}, seq: 1, state: flightrecorder.StateCompleted, created: 50, started: 50, done: 52})
		case 1:
			ops = append(ops, synthOp{name: "gloo:recv 1<-0", group: [2]string{"0", "default_pg"}, seq: 1, state: flightrecorder.StateCompleted, created: 50, started: 50.5, done: 52})
		}
		if r < 3 {
			ops = append(ops, coll("all_reduce", 6, flightrecorder.StateStarted, 60, 61, -1))
			dumps[r] = synthDump(groups, ops...)
			continue
		}
		g := map[string][2]string{"0": groups["0"], "1": {"tp", "[3]"}}
		ops = append(ops, synthOp{name: "gloo:all_gather", group: [2]string{"1", "tp"}, seq: 1, state: flightrecorder.StateStarted, created: 61.5, started: 62, done: -1,
			frames: []flightrecorder.Frame{{Name: "main.gatherMetrics", Filename: "/src/train/main.go", Line: 77}}})
		dumps[r] = synthDump(g, ops...)
	}
	return dumps
}

func TestWriteTimelineStructure(t *testing.T) {
	dumps := hungJob()
	rep := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
	require.False(t, rep.OK())
	doc, _ := render(t, dumps, rep, flightrecorder.TimelineOptions{})

	assert.Equal(t, rep.Verdict, text(findAll(doc, "p", "verdict", "problem")[0]))
	assert.Len(t, findAll(doc, "svg"), 1+7, "the chart and the legend's swatches")
	assert.Len(t, findAll(doc, "li", "finding-item"), len(rep.Findings))
	assert.Len(t, findAll(doc, "script"), 1)

	rs := rows(t, doc)
	require.Len(t, rs, 5, "a row per rank, rank 4 without a dump included")
	assert.True(t, hasClass(rs["4"], "nodump"))
	assert.Contains(t, text(rs["4"]), "no dump")
	wantOps := map[string]int{"0": 7, "1": 7, "2": 6, "3": 6, "4": 0}
	for r, n := range wantOps {
		ops := findAll(rs[r], "rect", "op")
		assert.Len(t, ops, n, "rank %s", r)
		for _, op := range ops {
			assert.Equal(t, r, attr(op, "data-rank"))
			assert.Len(t, findAll(op, "title"), 1, "details on hover")
			x, w := fattr(t, op, "x"), fattr(t, op, "width")
			assert.GreaterOrEqual(t, x, plotLeft)
			assert.LessOrEqual(t, x+w, plotRight+0.1)
			assert.GreaterOrEqual(t, w, 2.0)
		}
	}
	assert.Len(t, findAll(doc, "rect", "op", "state-completed"), 4*5+2)
	assert.Len(t, findAll(doc, "rect", "op", "state-started"), 4)
	assert.Empty(t, findAll(doc, "rect", "op", "state-scheduled"))
	assert.Empty(t, findAll(doc, "rect", "op", "state-failed"))

	// Point-to-point ops sit in their ranks' rows, by p2p sequence number.
	p2p := findAll(doc, "rect", "op", "p2p")
	require.Len(t, p2p, 2)
	assert.Equal(t, "send", attr(p2p[0], "data-op"))
	assert.Equal(t, "0", attr(p2p[0], "data-rank"))
	assert.Equal(t, "recv", attr(p2p[1], "data-op"))
	assert.Equal(t, "1", attr(p2p[1], "data-seq"))

	// The op rank 3 never joined is outlined on the others, and rank 3's row
	// has a missing marker at the time they started it.
	nj := findingIndex(rep, flightrecorder.FindingNotJoined)
	require.GreaterOrEqual(t, nj, 0)
	cited := findAll(doc, "rect", "finding")
	require.Len(t, cited, 3)
	for i, op := range cited {
		assert.Equal(t, strconv.Itoa(i), attr(op, "data-rank"))
		assert.Equal(t, "6", attr(op, "data-seq"))
		assert.Equal(t, "all_reduce", attr(op, "data-op"))
		assert.Equal(t, "0", attr(op, "data-group"))
		assert.Equal(t, strconv.Itoa(nj), attr(op, "data-finding"))
		assert.True(t, hasClass(op, "state-started"))
		// In flight: from its start (61 of 62 ms) past the last record (62 ms) to the edge.
		assert.InDelta(t, plotX(61, 62), fattr(t, op, "x"), 0.1)
		assert.InDelta(t, plotRight, fattr(t, op, "x")+fattr(t, op, "width"), 0.1)
		assert.Contains(t, text(op), "never joined")
	}
	missing := findAll(doc, "g", "missing")
	require.Len(t, missing, 1)
	m := missing[0]
	assert.Equal(t, "3", attr(m, "data-rank"))
	assert.Equal(t, "6", attr(m, "data-seq"))
	assert.Equal(t, "all_reduce", attr(m, "data-op"))
	assert.Equal(t, "0", attr(m, "data-group"))
	assert.Same(t, rs["3"], m.Parent)
	mr := findAll(m, "rect")[0]
	assert.InDelta(t, plotX(61, 62), fattr(t, mr, "x")+fattr(t, mr, "width")/2, 0.1)
	assert.Contains(t, text(m), "missing all_reduce #6")

	// Rank 3's op in flight carries its details, stack included.
	r3 := findAll(rs["3"], "rect", "op", "state-started")
	require.Len(t, r3, 1)
	details := text(r3[0])
	for _, want := range []string{"rank 3: gloo:all_gather", `group "1" (tp), #1`, "state: started, not completed",
		"in: [[1024]] {Float}; out: [[1024]] {Float}", "created 61.500 ms, started 62.000 ms, completed -",
		"main.gatherMetrics (/src/train/main.go:77)"} {
		assert.Contains(t, details, want)
	}
	done := findAll(rs["0"], "rect", "op", "state-completed")[0]
	assert.Contains(t, text(done), "duration 4.000 ms")
	// Completed all_reduce #1: 1 to 5 ms.
	assert.InDelta(t, plotX(1, 62), fattr(t, done, "x"), 0.1)
	assert.InDelta(t, plotX(5, 62)-plotX(1, 62), fattr(t, done, "width"), 0.1)
	end := findAll(doc, "line", "trace-end")
	require.Len(t, end, 1)
	assert.InDelta(t, plotX(62, 62), fattr(t, end[0], "x1"), 0.1)

	// The axis: ticks every 10 ms from 0, labelled.
	ticks := findAll(doc, "g", "tick")
	require.NotEmpty(t, ticks)
	assert.Equal(t, "0", text(ticks[0]))
	assert.Equal(t, "60", text(ticks[len(ticks)-1]))
}

func TestWriteTimelineStatesAndMissingTimes(t *testing.T) {
	one := map[string][2]string{"0": {"default_pg", "[0]"}}
	ops := []synthOp{
		// Completed, only its creation time and duration (PyTorch without timing).
		{name: "gloo:all_reduce", group: [2]string{"0", "default_pg"}, seq: 1, state: flightrecorder.StateCompleted, created: 0, started: -1, done: -1, durationMs: 3},
		// Scheduled, never started: a marker at creation.
		coll("broadcast", 2, flightrecorder.StateScheduled, 10, -1, -1),
		// Started, retired after its 5 ms timeout: failed.
		{name: "gloo:all_gather", group: [2]string{"0", "default_pg"}, seq: 3, state: flightrecorder.StateStarted, created: 19, started: 20, done: -1, retired: true, timeoutMs: 5},
		// No time at all: a dashed marker after the previous op.
		coll("barrier", 4, flightrecorder.StateCompleted, -1, -1, -1),
		// In flight.
		coll("reduce", 5, flightrecorder.StateStarted, 30, 30, -1),
		// Completed with only its completion time.
		coll("scatter", 6, flightrecorder.StateCompleted, -1, -1, 40),
		// Completed at 39 ms after 50 ms, by its duration: it starts at time 0, the earliest record.
		{name: "gloo:gather", group: [2]string{"0", "default_pg"}, seq: 7, state: flightrecorder.StateCompleted, created: -1, started: -1, done: 39, durationMs: 50},
		// Created at 38 ms, lasting 10 ms by its duration: it ends at the plot's edge.
		{name: "gloo:all_to_all", group: [2]string{"0", "default_pg"}, seq: 8, state: flightrecorder.StateCompleted, created: 38, started: -1, done: -1, durationMs: 10},
	}
	dumps := map[int]flightrecorder.Dump{0: synthDump(one, ops...)}
	rep := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
	doc, _ := render(t, dumps, rep, flightrecorder.TimelineOptions{})
	rs := rows(t, doc)
	require.Len(t, rs, 1)
	got := findAll(rs["0"], "rect", "op")
	require.Len(t, got, len(ops))
	x := func(ms float64) float64 { return plotX(ms, 40) }
	tests := []struct {
		classes []string
		x, w    float64
	}{
		{[]string{"state-completed"}, x(0), x(3) - x(0)},
		{[]string{"state-scheduled", "marker"}, x(10), 2},
		{[]string{"state-failed"}, x(20), x(25) - x(20)},
		{[]string{"state-completed", "marker", "untimed"}, x(20), 2},
		{[]string{"state-started"}, x(30), plotRight - x(30)},
		{[]string{"state-completed", "marker"}, x(40), 2},
		{[]string{"state-completed"}, x(0), x(39) - x(0)},
		{[]string{"state-completed"}, x(38), plotRight - x(38)},
	}
	for i, tt := range tests {
		op := got[i]
		assert.Equal(t, strconv.Itoa(i+1), attr(op, "data-seq"))
		for _, c := range tt.classes {
			assert.True(t, hasClass(op, c), "op %d: class %q in %q", i+1, c, attr(op, "class"))
		}
		assert.InDelta(t, tt.x, fattr(t, op, "x"), 0.1, "op %d", i+1)
		assert.InDelta(t, tt.w, fattr(t, op, "width"), 0.1, "op %d", i+1)
	}
	assert.Contains(t, text(got[2]), "started, never completed, and given up")
	assert.Contains(t, text(got[3]), "no time in the dump")
}

func TestWriteTimelineEmpty(t *testing.T) {
	t.Run("no entries", func(t *testing.T) {
		dumps := map[int]flightrecorder.Dump{0: synthDump(map[string][2]string{"0": {"default_pg", "[0, 1]"}})}
		rep := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
		doc, _ := render(t, dumps, rep, flightrecorder.TimelineOptions{})
		rs := rows(t, doc)
		require.Len(t, rs, 2)
		assert.Contains(t, text(rs["0"]), "no ops")
		assert.Contains(t, text(rs["1"]), "no dump")
		assert.Empty(t, findAll(doc, "rect", "op"))
		ticks := findAll(doc, "g", "tick")
		require.NotEmpty(t, ticks, "an axis all the same")
		assert.Equal(t, "0.0", text(ticks[0]))
		assert.Empty(t, findAll(doc, "line", "trace-end"))
	})
	t.Run("nothing", func(t *testing.T) {
		doc, _ := render(t, nil, flightrecorder.Report{}, flightrecorder.TimelineOptions{})
		assert.Empty(t, rows(t, doc))
		assert.Len(t, findAll(doc, "svg"), 1+7)
	})
}

func TestWriteTimelineOptions(t *testing.T) {
	dumps := hungJob()
	rep := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})

	doc, _ := render(t, dumps, rep, flightrecorder.TimelineOptions{Ranks: []int{3, 1, 9}, Title: "job 42"})
	assert.Equal(t, "job 42", text(findAll(doc, "title")[0]))
	rs := rows(t, doc)
	assert.Len(t, rs, 3)
	assert.True(t, hasClass(rs["9"], "nodump"))
	assert.Len(t, findAll(rs["1"], "rect", "op"), 7)
	assert.Len(t, findAll(doc, "g", "missing"), 1, "rank 3's row is drawn")

	doc, _ = render(t, dumps, rep, flightrecorder.TimelineOptions{Groups: []string{"tp"}})
	ops := findAll(doc, "rect", "op")
	require.Len(t, ops, 1)
	assert.Equal(t, "1", attr(ops[0], "data-group"))
	assert.Empty(t, findAll(doc, "g", "missing"), "the not-joined op is not drawn")
}

func TestWriteTimelineLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("24000 entries: not in -short (the race pass; nothing here is concurrent)")
	}
	const n = 6000
	groups := map[string][2]string{"0": {"default_pg", "[0, 1, 2, 3]"}}
	dumps := map[int]flightrecorder.Dump{}
	for r := range 4 {
		ops := make([]synthOp, n)
		for k := range ops {
			c := float64(k)
			ops[k] = coll("all_reduce", int64(k+1), flightrecorder.StateCompleted, c, c+0.1, c+0.6)
			ops[k].frames = []flightrecorder.Frame{{Name: "main.step", Filename: "/src/train/main.go", Line: 120}}
		}
		dumps[r] = synthDump(groups, ops...)
	}
	rep := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
	require.True(t, rep.OK(), rep.Verdict)

	doc, page := render(t, dumps, rep, flightrecorder.TimelineOptions{})
	rs := rows(t, doc)
	require.Len(t, rs, 4)
	for r := range 4 {
		assert.Len(t, findAll(rs[strconv.Itoa(r)], "rect", "op"), 5000, "the newest 5000 by default")
		assert.Contains(t, text(rs[strconv.Itoa(r)]), "newest 5000 of 6000 ops")
	}
	perOp := len(page) / (4 * 5000)
	t.Logf("%d ops: %d bytes, %d per op", 4*5000, len(page), perOp)
	assert.Less(t, perOp, 600, "bytes per op")

	doc, _ = render(t, dumps, rep, flightrecorder.TimelineOptions{MaxOpsPerRank: -1, Ranks: []int{2}})
	assert.Len(t, findAll(doc, "rect", "op"), n)
}

func TestWriteTimelineEscapes(t *testing.T) {
	hostile := `<script>alert(1)</script>`
	group := `"><img src=x onerror=alert(1)>`
	desc := "</title><script>alert(2)</script>\x00\x1b\xff"
	groups := map[string][2]string{group: {desc, "[0, 1]"}}
	op := func(state string) synthOp {
		return synthOp{name: "gloo:" + hostile, group: [2]string{group, desc}, seq: 1, state: state, created: 0, started: 1, done: -1,
			frames: []flightrecorder.Frame{{Name: "<b>main.run</b>", Filename: "a&b.go", Line: 1}}}
	}
	dumps := map[int]flightrecorder.Dump{
		0: synthDump(groups, op(flightrecorder.StateStarted)),
		1: synthDump(groups),
	}
	rep := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
	require.False(t, rep.OK())
	require.Contains(t, rep.Verdict, hostile[:8], "the verdict quotes the hostile name")
	doc, page := render(t, dumps, rep, flightrecorder.TimelineOptions{Title: hostile})

	assert.Len(t, findAll(doc, "script"), 1, "only the page's own script")
	assert.Empty(t, findAll(doc, "img"))
	assert.Empty(t, findAll(doc, "b"))
	assert.Equal(t, 1, strings.Count(page, "<script>"))
	assert.Equal(t, hostile, text(findAll(doc, "title")[0]))

	ops := findAll(doc, "rect", "op")
	require.Len(t, ops, 1)
	assert.Equal(t, group, attr(ops[0], "data-group"))
	assert.True(t, hasClass(ops[0], "finding"))
	details := text(ops[0])
	assert.Contains(t, details, "rank 0: gloo:"+hostile)
	assert.Contains(t, details, "<b>main.run</b> (a&b.go:1)")
	assert.NotContains(t, details, "\x00")
	assert.NotContains(t, details, "\x1b")
	missing := findAll(doc, "g", "missing")
	require.Len(t, missing, 1)
	assert.Equal(t, group, attr(missing[0], "data-group"))
	assert.Contains(t, text(findAll(doc, "p", "verdict")[0]), group)
}
