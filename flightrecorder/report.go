package flightrecorder

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// maxTextFrames bounds the stack frames WriteText prints per op.
const maxTextFrames = 12

// WriteText writes the report for a person. The first line is the verdict;
// then the dumps, the groups, and every finding with the culprits' ops,
// where they are, and their stack frames when the dumps have them.
func (r Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, r.Verdict)
	fmt.Fprintln(bw)

	versions := map[string][]int{}
	for _, rank := range r.Ranks {
		versions[r.Versions[rank]] = append(versions[r.Versions[rank]], rank)
	}
	var vs []string
	for _, v := range sortedKeys(versions) {
		if len(versions) == 1 {
			vs = append(vs, fmt.Sprintf("%q", v))
		} else {
			vs = append(vs, fmt.Sprintf("%q (%s)", v, rankList(versions[v])))
		}
	}
	fmt.Fprintf(bw, "dumps: %s; schema version %s\n", rankList(r.Ranks), strings.Join(vs, ", "))
	if len(r.MissingRanks) > 0 {
		fmt.Fprintf(bw, "no dump from: %s\n", rankList(r.MissingRanks))
	}
	if len(r.Groups) > 0 {
		fmt.Fprintln(bw, "groups:")
	}
	for _, g := range r.Groups {
		more := ""
		if g.MatchedWithDumps > 0 {
			more = fmt.Sprintf(" (%d more on every member with a dump)", g.MatchedWithDumps)
		}
		fmt.Fprintf(bw, "  %s, ranks %s: %d %s matched on every member%s, last #%d\n",
			groupText(g.Name, g.Desc), FormatRanks(g.Ranks), g.Matched, plural(g.Matched, "collective", "collectives"), more, g.LastSeq)
	}

	errs, warns := 0, 0
	for _, f := range r.Findings {
		if f.Severity == SeverityError {
			errs++
		} else {
			warns++
		}
	}
	if len(r.Findings) > 0 {
		fmt.Fprintf(bw, "findings: %d %s, %d %s\n", errs, plural(errs, "error", "errors"), warns, plural(warns, "warning", "warnings"))
	}
	for _, f := range r.Findings {
		fmt.Fprintf(bw, "  [%s] %s: %s\n", f.Severity, f.Kind, f.Message)
		for _, d := range f.Details {
			fmt.Fprintf(bw, "      %s\n", d)
		}
		culprit := map[int]bool{}
		for _, c := range f.Culprits {
			culprit[c] = true
		}
		if f.Kind != FindingNotJoined {
			for _, op := range f.Ops {
				if !culprit[op.Rank] || len(op.Frames) == 0 {
					continue
				}
				fmt.Fprintf(bw, "      rank %d's %s was issued at:\n", op.Rank, op.String())
				writeFrames(bw, op.Frames)
			}
		}
		for _, p := range f.Positions {
			fmt.Fprintf(bw, "      rank %d is at: %s\n", p.Rank, p.Where())
			if p.InFlight != nil && len(p.InFlight.Frames) > 0 {
				writeFrames(bw, p.InFlight.Frames)
			}
		}
	}
	return bw.Flush()
}

func writeFrames(w io.Writer, frames []Frame) {
	for i, fr := range frames {
		if i == maxTextFrames {
			fmt.Fprintf(w, "          ... %d more frames\n", len(frames)-i)
			return
		}
		fmt.Fprintf(w, "          %s (%s:%d)\n", fr.Name, fr.Filename, fr.Line)
	}
}

// reportJSON is the JSON form's wire shape: Report's fields plus "ok".
type reportJSON struct {
	OK           bool           `json:"ok"`
	Verdict      string         `json:"verdict"`
	Ranks        []int          `json:"ranks"`
	MissingRanks []int          `json:"missing_ranks"`
	Versions     map[int]string `json:"versions"`
	Groups       []GroupSummary `json:"groups"`
	Findings     []Finding      `json:"findings"`
}

// WriteJSON writes the report as one indented JSON object with stable keys:
// ok, verdict, ranks, missing_ranks, versions (by rank), groups (name, desc,
// ranks, matched, last_seq) and findings (kind, severity, message, group,
// group_desc, op, seq, is_p2p, culprits, ranks, ops, positions, details).
// Lists are [] rather than null when empty.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(reportJSON{
		OK: r.OK(), Verdict: r.Verdict, Ranks: nonNil(r.Ranks), MissingRanks: nonNil(r.MissingRanks),
		Versions: r.Versions, Groups: nonNil(r.Groups), Findings: nonNil(r.Findings),
	})
}
