package flightrecorder

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TimelineOptions tunes WriteTimeline. The zero value draws every rank and
// every group.
type TimelineOptions struct {
	// Title heads the page. Default "gccl flight-recorder timeline".
	Title string
	// Ranks, if not empty, draws only these ranks' rows; a listed rank
	// without a dump gets an empty row. Default: every rank with a dump and
	// every member of the report's groups.
	Ranks []int
	// Groups, if not empty, draws only the ops of the groups whose name or
	// description is listed.
	Groups []string
	// MaxOpsPerRank caps the ops drawn per rank, the newest kept (the row's
	// label says how many older ones were left out). Default 5000; negative
	// means no cap.
	MaxOpsPerRank int
	// Width is the width of the plot area in CSS pixels. Default 1200.
	Width int
}

// The state classes of the boxes, one per op. An op that was retired
// (given up: timed out or failed) without completing is failed whatever its
// state says.
const (
	tlCompleted = "state-completed"
	tlStarted   = "state-started"
	tlScheduled = "state-scheduled"
	tlFailed    = "state-failed"
)

// Page geometry, in CSS pixels.
const (
	tlLabelWidth = 170 // the rank labels left of the plot
	tlAxisHeight = 34  // the time axis above the rows
	tlRowHeight  = 30
	tlBoxTop     = 6 // a box's offset in its row
	tlBoxHeight  = 18
	tlMinBox     = 2  // the narrowest box drawn, so that short ops stay visible
	tlMarker     = 2  // the width of a scheduled-only op's marker
	tlMissing    = 8  // the width of a missing-op marker
	tlRightPad   = 60 // room right of the plot for the last tick label
	tlMaxFrames  = 6  // stack frames per op in its details
)

// tlOp is one entry as drawn.
type tlOp struct {
	e       *Entry
	rank    int
	created int64 // ns since the epoch, 0 when unknown; likewise below
	started int64
	done    int64
	// begin and end are the box's span in ns; end == begin draws a marker.
	begin, end int64
	class      string
	untimed    bool // no time at all: drawn after the previous op of its row
	findings   []int
	severity   Severity // the worst of findings
}

type tlRow struct {
	rank    int
	hasDump bool
	total   int // entries in the dump (after the group filter)
	ops     []*tlOp
}

// WriteTimeline writes one self-contained HTML page that draws the dumps
// (by global rank) on a time axis: a row per rank, each op a box from when
// it started to when it completed, coloured by state (completed, started and
// still in flight, scheduled only, failed: retired without completing). An
// op in flight runs past the last time in any dump (a dashed line) to the
// plot's right edge, 5% of the trace further; a failed op to its timeout (or
// that edge); a scheduled-only op, or one whose dump holds only its creation
// or completion time, is a thin marker there. Times are milliseconds since
// the earliest time across the ranks.
// An op without any time (some PyTorch dumps hold 0) is drawn as a dashed
// marker just after the previous op of its row.
//
// rep is Analyze's report on the same dumps. Its verdict and findings head
// the page; the ops cited by its error findings are outlined in red (those
// of warnings in orange), and a rank that never joined an op gets a
// "missing" marker on its row at the time the other ranks started it. Ranks
// that are members of a group but left no dump get an empty, labelled row.
// Hovering an op shows its details: profiling name, group, sequence number,
// sizes, dtypes, state, times, duration, the findings that cite it and the
// top stack frames.
//
// The page needs no network: the chart is inline SVG, with a little inline
// CSS and JavaScript (only for the hover details; the chart is drawn
// without it). Every string from the dumps is escaped. Elements carry
// stable classes and data attributes for tools and tests: each op is a
// <rect class="op state-..."> with data-rank, data-group, data-seq (the
// collective sequence number, or the p2p one for class "p2p" ops), data-op
// (all_reduce, send, ...) and data-record; cited ops also have class
// "finding" (or "finding-warning") and data-finding, the indexes of the
// findings in rep.Findings; missing markers are <g class="missing"> with
// data-rank, data-group, data-seq, data-op and data-finding; each row is a
// <g class="row"> with data-rank (class "nodump" without a dump).
func WriteTimeline(w io.Writer, dumps map[int]Dump, rep Report, opts TimelineOptions) error {
	if opts.Title == "" {
		opts.Title = "gccl flight-recorder timeline"
	}
	if opts.MaxOpsPerRank == 0 {
		opts.MaxOpsPerRank = 5000
	}
	if opts.Width <= 0 {
		opts.Width = 1200
	}
	t := buildTimeline(dumps, rep, opts)
	bw := bufio.NewWriterSize(w, 64<<10)
	t.write(bw)
	return bw.Flush()
}

type timeline struct {
	opts    TimelineOptions
	rep     Report
	rows    []*tlRow
	t0, t1  int64 // the first and last times in the dumps, ns
	end     int64 // the plot's right edge: t1 and a margin, where ops in flight end
	drawn   int
	missing []tlMissingMark
}

type tlMissingMark struct {
	rank, finding int
	at            int64
	f             *Finding
}

func buildTimeline(dumps map[int]Dump, rep Report, opts TimelineOptions) *timeline {
	t := &timeline{opts: opts, rep: rep}

	// Rows: the ranks asked for, else every rank with a dump or in a group.
	var ranks []int
	if len(opts.Ranks) > 0 {
		ranks = slices.Clone(opts.Ranks)
	} else {
		for r := range dumps {
			ranks = append(ranks, r)
		}
		ranks = append(ranks, rep.MissingRanks...)
		for _, g := range rep.Groups {
			ranks = append(ranks, g.Ranks...)
		}
	}
	slices.Sort(ranks)
	ranks = slices.Compact(ranks)

	wantGroup := func(e *Entry) bool {
		return len(opts.Groups) == 0 || slices.Contains(opts.Groups, e.ProcessGroup[0]) || slices.Contains(opts.Groups, e.ProcessGroup[1])
	}
	type opKey struct {
		rank   int
		record uint64
		group  string
		seq    int64
		p2p    bool
	}
	byKey := map[opKey]*tlOp{}
	t.t0, t.t1 = math.MaxInt64, math.MinInt64
	see := func(ns int64) {
		if ns > 0 {
			t.t0 = min(t.t0, ns)
			t.t1 = max(t.t1, ns)
		}
	}
	for _, r := range ranks {
		row := &tlRow{rank: r}
		t.rows = append(t.rows, row)
		d, ok := dumps[r]
		if !ok {
			continue
		}
		row.hasDump = true
		for i := range d.Entries {
			e := &d.Entries[i]
			if !wantGroup(e) {
				continue
			}
			row.total++
			op := &tlOp{e: e, rank: r, created: max(e.TimeCreatedNs, 0)}
			if e.TimeDiscoveredStartedNs != nil && *e.TimeDiscoveredStartedNs > 0 {
				op.started = *e.TimeDiscoveredStartedNs
			}
			if e.TimeDiscoveredCompletedNs != nil && *e.TimeDiscoveredCompletedNs > 0 {
				op.done = *e.TimeDiscoveredCompletedNs
			}
			row.ops = append(row.ops, op)
		}
		if opts.MaxOpsPerRank > 0 && len(row.ops) > opts.MaxOpsPerRank {
			row.ops = row.ops[len(row.ops)-opts.MaxOpsPerRank:]
		}
		for _, op := range row.ops {
			see(op.created)
			see(op.started)
			see(op.done)
			t.drawn++
			e := op.e
			seq := e.CollectiveSeqID
			if e.IsP2P {
				seq = e.P2PSeqID
			}
			byKey[opKey{r, e.RecordID, e.ProcessGroup[0], seq, e.IsP2P}] = op
		}
	}
	if t.t0 > t.t1 { // no time anywhere
		t.t0, t.t1 = 0, 0
	}
	// Ops in flight run past the last record, so that one started last
	// still shows.
	t.end = t.t1 + max((t.t1-t.t0)/20, int64(time.Microsecond))
	if t.t1 == t.t0 {
		t.end = t.t1 + int64(time.Millisecond)
	}

	// Spans and classes.
	for _, row := range t.rows {
		prev := t.t0
		for _, op := range row.ops {
			t.place(op, prev)
			prev = op.begin
		}
	}

	// Findings: outline the ops they cite, mark the ranks that never joined.
	for i := range rep.Findings {
		f := &rep.Findings[i]
		var at int64
		for _, ref := range f.Ops {
			op := byKey[opKey{ref.Rank, ref.RecordID, ref.Group, ref.Seq, ref.IsP2P}]
			if op == nil {
				continue
			}
			op.findings = append(op.findings, i)
			if f.Severity == SeverityError {
				op.severity = SeverityError
			} else if op.severity == "" {
				op.severity = f.Severity
			}
			if !op.untimed && (at == 0 || op.begin < at) {
				at = op.begin
			}
		}
		if f.Kind != FindingNotJoined || f.Severity != SeverityError || at == 0 {
			continue
		}
		for _, c := range f.Culprits {
			if _, ok := dumps[c]; ok && slices.Contains(ranks, c) {
				t.missing = append(t.missing, tlMissingMark{rank: c, finding: i, at: at, f: f})
			}
		}
	}
	return t
}

// place sets op's span and class; prev is where the previous op of the row
// begins, where an op without any time goes.
func (t *timeline) place(op *tlOp, prev int64) {
	e := op.e
	var dur int64
	if e.DurationMs != nil && *e.DurationMs >= 0 && !math.IsInf(*e.DurationMs, 0) && *e.DurationMs < 1e12 {
		dur = int64(*e.DurationMs * 1e6)
	}
	begin := op.started
	if begin == 0 && op.done > 0 && dur > 0 && dur < op.done {
		begin = op.done - dur
	}
	if begin == 0 {
		begin = op.created
	}
	switch {
	case e.Retired && e.State != StateCompleted:
		op.class = tlFailed
	case e.State == StateCompleted:
		op.class = tlCompleted
	case e.State == StateStarted:
		op.class = tlStarted
	default:
		op.class = tlScheduled
	}
	end := begin
	switch op.class {
	case tlCompleted:
		switch {
		case op.done > 0:
			end = op.done
		case dur > 0:
			end = begin + dur
		}
	case tlStarted:
		end = t.end
	case tlFailed:
		if op.started > 0 || e.State == StateStarted {
			end = t.end
			if e.TimeoutMs > 0 && begin > 0 && e.TimeoutMs <= (end-begin)/int64(time.Millisecond) {
				end = begin + e.TimeoutMs*int64(time.Millisecond)
			}
		}
	}
	if begin == 0 {
		if op.done > 0 {
			begin, end = op.done, op.done
		} else {
			op.untimed = true
			begin, end = prev, prev
		}
	}
	// A begin derived from a duration may precede the earliest record, an
	// end derived from one pass the edge: keep both in the plot.
	begin = min(max(begin, t.t0), t.end)
	op.begin, op.end = begin, min(max(end, begin), t.end)
}

// x maps a time to the plot's x coordinate.
func (t *timeline) x(ns int64) float64 {
	span := t.end - t.t0
	if span <= 0 {
		return tlLabelWidth
	}
	return tlLabelWidth + float64(ns-t.t0)/float64(span)*float64(t.opts.Width)
}

// ms writes ns as milliseconds since the trace's start.
func (t *timeline) ms(ns int64) string {
	return strconv.FormatFloat(float64(ns-t.t0)/1e6, 'f', 3, 64) + " ms"
}

func (t *timeline) write(w *bufio.Writer) {
	p := func(s string) { w.WriteString(s) }
	pf := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	rep := &t.rep

	p("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	pf("<title>%s</title>\n", esc(t.opts.Title))
	p(tlStyle)
	p("</head>\n<body>\n<header>\n")
	pf("<h1>%s</h1>\n", esc(t.opts.Title))
	verdictClass := "ok"
	if !rep.OK() {
		verdictClass = "problem"
	}
	verdict := rep.Verdict
	if verdict == "" {
		verdict = "no analysis"
	}
	pf("<p class=\"verdict %s\">%s</p>\n", verdictClass, esc(verdict))
	t.writeSummary(w)
	t.writeFindings(w)
	p("</header>\n")
	p(tlLegend)
	t.writeChart(w)
	p("<div id=\"tip\" hidden></div>\n")
	p(tlScript)
	p("</body>\n</html>\n")
}

func (t *timeline) writeSummary(w *bufio.Writer) {
	var withDump, without []int
	for _, row := range t.rows {
		if row.hasDump {
			withDump = append(withDump, row.rank)
		} else {
			without = append(without, row.rank)
		}
	}
	var parts []string
	parts = append(parts, "dumps: "+rankList(withDump))
	if len(without) > 0 {
		parts = append(parts, "no dump from "+rankList(without))
	}
	parts = append(parts, fmt.Sprintf("%d %s drawn", t.drawn, plural(t.drawn, "op", "ops")))
	if t.t1 > t.t0 || t.t0 > 0 {
		parts = append(parts, fmt.Sprintf("time 0 is %s UTC, the trace spans %s",
			time.Unix(0, t.t0).UTC().Format("2006-01-02 15:04:05.000000"), strings.TrimSuffix(t.ms(t.t1), " ms")+" ms"))
	}
	if len(t.opts.Groups) > 0 {
		parts = append(parts, "groups: "+strings.Join(t.opts.Groups, ", "))
	}
	fmt.Fprintf(w, "<p class=\"summary\">%s</p>\n", esc(strings.Join(parts, "; ")))
}

func (t *timeline) writeFindings(w *bufio.Writer) {
	fs := t.rep.Findings
	if len(fs) == 0 {
		return
	}
	errs := 0
	for _, f := range fs {
		if f.Severity == SeverityError {
			errs++
		}
	}
	fmt.Fprintf(w, "<section class=\"findings\">\n<h2>Findings: %d %s, %d %s</h2>\n<ol>\n",
		errs, plural(errs, "error", "errors"), len(fs)-errs, plural(len(fs)-errs, "warning", "warnings"))
	for i, f := range fs {
		sev := "warning"
		if f.Severity == SeverityError {
			sev = "error"
		}
		fmt.Fprintf(w, "<li class=\"finding-item severity-%s\" data-finding=\"%d\" data-kind=\"%s\"><span class=\"sev\">%s</span> <code>%s</code>: %s",
			sev, i, esc(string(f.Kind)), sev, esc(string(f.Kind)), esc(f.Message))
		var lines []string
		lines = append(lines, f.Details...)
		for _, pos := range f.Positions {
			lines = append(lines, fmt.Sprintf("rank %d is at: %s", pos.Rank, pos.Where()))
		}
		if len(lines) > 0 {
			w.WriteString("<ul>")
			for _, l := range lines {
				fmt.Fprintf(w, "<li>%s</li>", esc(l))
			}
			w.WriteString("</ul>")
		}
		w.WriteString("</li>\n")
	}
	w.WriteString("</ol>\n</section>\n")
}

func (t *timeline) writeChart(w *bufio.Writer) {
	width := tlLabelWidth + t.opts.Width + tlRightPad
	height := tlAxisHeight + len(t.rows)*tlRowHeight + 4
	fmt.Fprintf(w, "<div class=\"chart\">\n<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n",
		width, height, width, height)
	w.WriteString("<defs><pattern id=\"hatch\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"8\" height=\"8\" fill=\"#f4f4f4\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#d8d8d8\" stroke-width=\"3\"/></pattern></defs>\n")

	// The axis: ticks at 1, 2 or 5 times a power of ten, with grid lines.
	bottom := tlAxisHeight + len(t.rows)*tlRowHeight
	w.WriteString("<g class=\"axis\">\n")
	fmt.Fprintf(w, "<text class=\"axis-title\" x=\"%d\" y=\"12\">ms</text>\n", tlLabelWidth-24)
	spanMs := float64(t.end-t.t0) / 1e6
	step := niceStep(spanMs / 10)
	for i := 0; ; i++ {
		v := float64(i) * step
		if v > spanMs*(1+1e-9) || i > 100 {
			break
		}
		x := tlLabelWidth + float64(t.opts.Width)*v/spanMs
		fmt.Fprintf(w, "<g class=\"tick\"><line x1=\"%s\" y1=\"%d\" x2=\"%s\" y2=\"%d\"/><text x=\"%s\" y=\"%d\">%s</text></g>\n",
			num(x), tlAxisHeight-6, num(x), bottom, num(x), tlAxisHeight-10, tickLabel(v, step))
	}
	w.WriteString("</g>\n")

	for i, row := range t.rows {
		cls := "row"
		if !row.hasDump {
			cls += " nodump"
		}
		fmt.Fprintf(w, "<g class=\"%s\" data-rank=\"%d\" transform=\"translate(0,%d)\">\n", cls, row.rank, tlAxisHeight+i*tlRowHeight)
		fmt.Fprintf(w, "<rect class=\"band\" x=\"%d\" y=\"0\" width=\"%d\" height=\"%d\"/>\n", tlLabelWidth, t.opts.Width, tlRowHeight)
		var sub string
		switch {
		case !row.hasDump:
			sub = "no dump"
		case row.total == 0:
			sub = "no ops"
		case len(row.ops) < row.total:
			sub = fmt.Sprintf("newest %d of %d ops", len(row.ops), row.total)
		default:
			sub = fmt.Sprintf("%d %s", row.total, plural(row.total, "op", "ops"))
		}
		fmt.Fprintf(w, "<text class=\"label\" x=\"8\" y=\"14\">rank %d</text><text class=\"sublabel\" x=\"8\" y=\"26\">%s</text>\n", row.rank, sub)
		// Cited ops last, so that their outlines are on top.
		for _, op := range row.ops {
			if op.severity == "" {
				t.writeOp(w, op)
			}
		}
		for _, op := range row.ops {
			if op.severity != "" {
				t.writeOp(w, op)
			}
		}
		for _, m := range t.missing {
			if m.rank == row.rank {
				t.writeMissing(w, m)
			}
		}
		w.WriteString("</g>\n")
	}
	if t.drawn > 0 {
		x := num(t.x(t.t1))
		fmt.Fprintf(w, "<line class=\"trace-end\" x1=\"%s\" y1=\"%d\" x2=\"%s\" y2=\"%d\"><title>%s: the last time in the dumps; ops still in flight run past it to the edge</title></line>\n",
			x, tlAxisHeight-6, x, bottom, t.ms(t.t1))
	}
	w.WriteString("</svg>\n</div>\n")
}

func (t *timeline) writeOp(w *bufio.Writer, op *tlOp) {
	e := op.e
	cls := "op " + op.class
	seq := e.CollectiveSeqID
	if e.IsP2P {
		cls += " p2p"
		seq = e.P2PSeqID
	}
	x := t.x(op.begin)
	width := t.x(op.end) - x
	if op.end == op.begin {
		cls += " marker"
		width = tlMarker
	} else {
		width = max(width, tlMinBox)
	}
	x = min(x, tlLabelWidth+float64(t.opts.Width)-width) // a box starting at the end stays in the plot
	if op.untimed {
		cls += " untimed"
	}
	switch op.severity {
	case SeverityError:
		cls += " finding"
	case SeverityWarning:
		cls += " finding-warning"
	}
	fmt.Fprintf(w, "<rect class=\"%s\" x=\"%s\" y=\"%d\" width=\"%s\" height=\"%d\" data-rank=\"%d\" data-group=\"%s\" data-seq=\"%d\" data-op=\"%s\" data-record=\"%d\"",
		cls, num(x), tlBoxTop, num(width), tlBoxHeight, op.rank, esc(e.ProcessGroup[0]), seq, esc(opOf(e.ProfilingName)), e.RecordID)
	if e.IsP2P {
		w.WriteString(" rx=\"5\"")
	}
	if len(op.findings) > 0 {
		w.WriteString(" data-finding=\"")
		for i, f := range op.findings {
			if i > 0 {
				w.WriteByte(' ')
			}
			w.WriteString(strconv.Itoa(f))
		}
		w.WriteByte('"')
	}
	w.WriteString("><title>")
	w.WriteString(esc(t.details(op)))
	w.WriteString("</title></rect>\n")
}

// details is an op's hover text, one fact per line.
func (t *timeline) details(op *tlOp) string {
	e := op.e
	var b strings.Builder
	fmt.Fprintf(&b, "rank %d: %s\n", op.rank, e.ProfilingName)
	if e.IsP2P {
		fmt.Fprintf(&b, "%s, p2p #%d", groupText(e.ProcessGroup[0], e.ProcessGroup[1]), e.P2PSeqID)
	} else {
		fmt.Fprintf(&b, "%s, #%d", groupText(e.ProcessGroup[0], e.ProcessGroup[1]), e.CollectiveSeqID)
	}
	fmt.Fprintf(&b, " (op id %d, record %d)\n", e.OpID, e.RecordID)
	fmt.Fprintf(&b, "state: %s\n", describeState([]*Entry{e}))
	fmt.Fprintf(&b, "in: %s %s; out: %s %s\n", formatSizes(e.InputSizes), dtypeSet(e.InputDtypes), formatSizes(e.OutputSizes), dtypeSet(e.OutputDtypes))
	when := func(ns int64) string {
		if ns <= 0 {
			return "-"
		}
		return t.ms(ns)
	}
	fmt.Fprintf(&b, "created %s, started %s, completed %s\n", when(op.created), when(op.started), when(op.done))
	if e.DurationMs != nil {
		fmt.Fprintf(&b, "duration %s ms", strconv.FormatFloat(*e.DurationMs, 'f', 3, 64))
	} else {
		b.WriteString("duration -")
	}
	if e.TimeoutMs > 0 {
		fmt.Fprintf(&b, ", timeout %d ms", e.TimeoutMs)
	}
	b.WriteByte('\n')
	if op.untimed {
		b.WriteString("(no time in the dump: drawn after the previous op)\n")
	}
	for _, i := range op.findings {
		f := t.rep.Findings[i]
		fmt.Fprintf(&b, "%s %s: %s\n", f.Severity, f.Kind, f.Message)
	}
	for i, fr := range e.Frames {
		if i == 0 {
			b.WriteString("stack:\n")
		}
		if i == tlMaxFrames {
			fmt.Fprintf(&b, "  ... %d more frames\n", len(e.Frames)-i)
			break
		}
		fmt.Fprintf(&b, "  %s (%s:%d)\n", fr.Name, fr.Filename, fr.Line)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (t *timeline) writeMissing(w *bufio.Writer, m tlMissingMark) {
	f := m.f
	x := t.x(m.at)
	what := fmt.Sprintf("%s #%d", f.Op, f.Seq)
	if f.IsP2P {
		what = fmt.Sprintf("%s (p2p #%d)", f.Op, f.Seq)
	}
	fmt.Fprintf(w, "<g class=\"missing\" data-rank=\"%d\" data-group=\"%s\" data-seq=\"%d\" data-op=\"%s\" data-finding=\"%d\"><title>%s</title>",
		m.rank, esc(f.Group), f.Seq, esc(f.Op), m.finding,
		esc(fmt.Sprintf("rank %d: missing %s on %s\nthe others started it at %s\n%s %s: %s", m.rank, what, groupText(f.Group, f.GroupDesc), t.ms(m.at), f.Severity, f.Kind, f.Message)))
	fmt.Fprintf(w, "<rect x=\"%s\" y=\"2\" width=\"%d\" height=\"%d\"/>", num(x-tlMissing/2), tlMissing, tlRowHeight-4)
	// The label goes left of the marker when the marker is near the right edge.
	anchor, lx := "start", x+tlMissing
	if x > tlLabelWidth+float64(t.opts.Width)*0.7 {
		anchor, lx = "end", x-tlMissing
	}
	fmt.Fprintf(w, "<text x=\"%s\" y=\"19\" text-anchor=\"%s\">missing %s</text></g>\n", num(lx), anchor, esc(what))
}

// niceStep rounds a tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// tickLabel writes a tick's value with as many decimals as the step needs.
func tickLabel(v, step float64) string {
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step)))
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// num writes a coordinate with one decimal, without a trailing ".0".
func num(v float64) string {
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0")
}

// esc makes untrusted text safe in HTML text and quoted attributes: invalid
// UTF-8 replaced, control characters other than tab and newline dropped,
// and <, >, &, ' and " escaped.
func esc(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\t' && r != '\n') || r == 0x7f {
			return -1
		}
		return r
	}, s)
	return html.EscapeString(s)
}

const tlStyle = `<style>
body{font:14px system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:18px;margin:0 0 8px}
h2{font-size:15px;margin:12px 0 4px}
.verdict{font-weight:600;margin:4px 0}
.verdict.ok{color:#1b7f3b}
.verdict.problem{color:#b00020}
.summary{color:#555;margin:4px 0}
.findings ol{margin:4px 0;padding-left:24px}
.findings li ul{margin:2px 0;padding-left:18px;color:#555;font-size:13px}
.finding-item .sev{font-weight:600;text-transform:uppercase;font-size:11px}
.severity-error .sev{color:#b00020}
.severity-warning .sev{color:#b36b00}
.legend{margin:10px 0;font-size:13px;display:flex;flex-wrap:wrap;gap:14px;align-items:center}
.legend svg{vertical-align:middle}
.chart{overflow-x:auto}
#timeline{display:block;font-family:inherit}
.band{fill:#f7f8fa}
.row:nth-of-type(even) .band{fill:#eef0f4}
.row.nodump .band{fill:url(#hatch)!important}
.label{font-size:13px;font-weight:600;fill:#222}
.sublabel{font-size:10px;fill:#777}
.tick line{stroke:#d5d8de;stroke-width:1}
.tick text{font-size:11px;fill:#555;text-anchor:middle}
.axis-title{font-size:11px;fill:#555}
.trace-end{stroke:#555;stroke-width:1;stroke-dasharray:3 3}
.op{stroke:none}
.state-completed{fill:#4e9a4a}
.state-started{fill:#f0a030}
.state-scheduled{fill:#8a94a6}
.state-failed{fill:#8e1b3e}
.op.untimed{stroke:#444;stroke-width:1;stroke-dasharray:2 2}
.op.finding{stroke:#ff1a1a;stroke-width:3;paint-order:stroke}
.op.finding-warning{stroke:#ff9800;stroke-width:2;stroke-dasharray:4 2}
.missing rect,.swatch-missing rect{fill:rgba(255,26,26,.18);stroke:#ff1a1a;stroke-width:1.5;stroke-dasharray:4 2}
.missing text{font-size:11px;font-weight:600;fill:#c00000}
.op.flash,.missing.flash rect{stroke:#000!important;stroke-width:3!important}
.op:hover,.missing:hover rect{stroke:#000;stroke-width:2}
#tip{position:fixed;z-index:10;max-width:70ch;padding:6px 8px;background:#1e1e1e;color:#f2f2f2;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;border-radius:4px;box-shadow:0 2px 8px rgba(0,0,0,.35);pointer-events:none}
#tip[hidden]{display:none}
</style>
`

const tlLegend = `<div class="legend">
<span><svg width="26" height="14"><rect class="swatch state-completed" width="26" height="14"/></svg> completed</span>
<span><svg width="26" height="14"><rect class="swatch state-started" width="26" height="14"/></svg> started, in flight (past the last record, dashed, to the edge)</span>
<span><svg width="26" height="14"><rect class="swatch state-scheduled" x="12" width="2" height="14"/></svg> scheduled, never started (marker at creation)</span>
<span><svg width="26" height="14"><rect class="swatch state-failed" width="26" height="14"/></svg> failed (given up without completing)</span>
<span><svg width="26" height="14"><rect class="swatch state-completed" width="26" height="14" rx="5"/></svg> rounded: send/recv</span>
<span><svg width="30" height="18"><rect class="swatch state-started" x="3" y="3" width="24" height="12" style="stroke:#ff1a1a;stroke-width:3"/></svg> cited by a finding</span>
<span><svg width="26" height="18" class="swatch-missing"><rect x="9" y="1" width="8" height="16"/></svg> missing: the rank never joined</span>
</div>
`

// tlScript shows an op's details (its <title>) in a styled box on hover, and
// outlines a finding's ops while the mouse is over the finding.
const tlScript = `<script>
(function(){
var tip=document.getElementById('tip'),svg=document.getElementById('timeline'),held=null,title=null;
function move(ev){var x=ev.clientX+14,y=ev.clientY+14,r=tip.getBoundingClientRect();
if(x+r.width>innerWidth)x=Math.max(0,ev.clientX-r.width-14);
if(y+r.height>innerHeight)y=Math.max(0,ev.clientY-r.height-14);
tip.style.left=x+'px';tip.style.top=y+'px';}
function hide(){if(held&&title)held.insertBefore(title,held.firstChild);held=title=null;tip.hidden=true;}
function show(el,ev){var t=el.querySelector(':scope>title');if(!t)return;held=el;title=t;
tip.textContent=t.textContent;el.removeChild(t);tip.hidden=false;move(ev);}
if(svg){
svg.addEventListener('mouseover',function(ev){var el=ev.target.closest('.op,.missing');if(el===held)return;hide();if(el)show(el,ev);});
svg.addEventListener('mousemove',function(ev){if(held)move(ev);});
svg.addEventListener('mouseleave',hide);}
document.querySelectorAll('li.finding-item').forEach(function(li){var i=li.getAttribute('data-finding');
li.addEventListener('mouseenter',function(){document.querySelectorAll('#timeline [data-finding~="'+i+'"]').forEach(function(e){e.classList.add('flash');});});
li.addEventListener('mouseleave',function(){document.querySelectorAll('#timeline .flash').forEach(function(e){e.classList.remove('flash');});});});
})();
</script>
`
