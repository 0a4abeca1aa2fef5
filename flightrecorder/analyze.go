package flightrecorder

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// AnalyzeOptions tunes Analyze. The zero value analyzes every group and
// reports every rank, and treats a missing rank dump as a finding.
type AnalyzeOptions struct {
	// AllowIncompleteRanks analyzes what the dumps hold when some members'
	// dumps are missing, instead of reporting the missing dumps as an error
	// (torchfrtrace's --allow-incomplete-ranks). Missing ranks are still
	// listed in Report.MissingRanks.
	AllowIncompleteRanks bool
	// Ranks, if not empty, keeps only the findings that involve one of these
	// global ranks (as a culprit or a participant).
	Ranks []int
	// Groups, if not empty, analyzes only the groups whose name or
	// description is listed (torchfrtrace's --pg-filters).
	Groups []string
	// MaxMismatches caps the type, size, dtype and state mismatches reported
	// per group, earliest first (after one mismatch the rest are often
	// consequences). Default 10; negative means no cap.
	MaxMismatches int
}

// Severity says whether a finding is a problem (error) or something to know
// (warning). Report.OK is false when any error is found.
type Severity string

// The severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// FindingKind names what a finding is about.
type FindingKind string

// The finding kinds, in the order Report lists them (errors first).
const (
	// FindingNotJoined: members of a group never issued a collective (or the
	// peer of a point-to-point op never issued the matching op) that other
	// ranks started or completed. The culprits are the ranks that never
	// joined; Positions says where they are instead.
	FindingNotJoined FindingKind = "not_joined"
	// FindingTypeMismatch: ranks issued different collectives under one
	// sequence number.
	FindingTypeMismatch FindingKind = "type_mismatch"
	// FindingSizeMismatch: input or output sizes differ.
	FindingSizeMismatch FindingKind = "size_mismatch"
	// FindingDtypeMismatch: input or output dtypes differ.
	FindingDtypeMismatch FindingKind = "dtype_mismatch"
	// FindingStateMismatch: some members completed a collective that others
	// have not (they are still in it, or never started it).
	FindingStateMismatch FindingKind = "state_mismatch"
	// FindingMissingDump: a member of a group left no dump (an error unless
	// AllowIncompleteRanks).
	FindingMissingDump FindingKind = "missing_dump"
	// FindingGroupMismatch: ranks disagree on a group's members.
	FindingGroupMismatch FindingKind = "group_mismatch"
	// FindingVersionMismatch (warning): the dumps have different schema
	// versions.
	FindingVersionMismatch FindingKind = "version_mismatch"
	// FindingUnknownGroup (warning): entries name a group missing from the
	// rank's pg_config; its members are guessed from the entries.
	FindingUnknownGroup FindingKind = "unknown_group"
	// FindingStuck (warning): every member is in a collective and none
	// completed it. Nobody diverged; the op itself is slow or hung (or the
	// dumps were taken while it ran). When some members left no dump
	// (AllowIncompleteRanks), every member with a dump is in it and none
	// completed it: an error, with the members without a dump as the
	// culprits (the ones that may never have joined).
	FindingStuck FindingKind = "stuck"
	// FindingUnknown (warning): a rank's ring no longer holds ops that
	// others still have (ring wraparound), so they could not be checked for
	// it. Such a rank is "unknown" for those ops, never "missing".
	FindingUnknown FindingKind = "unknown"
	// FindingBadProfilingName (warning): a point-to-point op whose
	// profiling name does not say its peer ("<backend>:send a->b" or
	// "<backend>:recv a<-b"), so it was not matched.
	FindingBadProfilingName FindingKind = "bad_profiling_name"
)

var kindOrder = []FindingKind{
	FindingNotJoined, FindingTypeMismatch, FindingSizeMismatch, FindingDtypeMismatch,
	FindingStateMismatch, FindingMissingDump, FindingGroupMismatch, FindingVersionMismatch,
	FindingUnknownGroup, FindingStuck, FindingUnknown, FindingBadProfilingName,
}

// OpRef is one rank's entry for an op, as a finding cites it.
type OpRef struct {
	Rank          int       `json:"rank"`
	RecordID      uint64    `json:"record_id"`
	Group         string    `json:"group"`
	GroupDesc     string    `json:"group_desc"`
	ProfilingName string    `json:"profiling_name"`
	Op            string    `json:"op"`
	Seq           int64     `json:"seq"`
	IsP2P         bool      `json:"is_p2p"`
	State         string    `json:"state"`
	Retired       bool      `json:"retired"`
	InputSizes    [][]int64 `json:"input_sizes"`
	InputDtypes   []string  `json:"input_dtypes"`
	OutputSizes   [][]int64 `json:"output_sizes"`
	OutputDtypes  []string  `json:"output_dtypes"`
	Frames        []Frame   `json:"frames"`
}

// Position is where a rank is, from its dump: the newest op it completed
// and the op it is in (the newest started and not completed one, else the
// oldest scheduled one).
type Position struct {
	Rank          int    `json:"rank"`
	HasDump       bool   `json:"has_dump"`
	Entries       int    `json:"entries"`
	LastCompleted *OpRef `json:"last_completed"`
	InFlight      *OpRef `json:"in_flight"`
}

// Finding is one thing Analyze found.
type Finding struct {
	Kind     FindingKind `json:"kind"`
	Severity Severity    `json:"severity"`
	// Message says it in one line.
	Message string `json:"message"`
	// Group and GroupDesc name the process group, Op the op (all_reduce,
	// send, ...), Seq its collective (or, IsP2P, point-to-point) sequence
	// number, when the finding is about one op.
	Group     string `json:"group"`
	GroupDesc string `json:"group_desc"`
	Op        string `json:"op"`
	Seq       int64  `json:"seq"`
	IsP2P     bool   `json:"is_p2p"`
	// Culprits are the ranks at fault: the ones that never joined, the
	// minority, the ones behind.
	Culprits []int `json:"culprits"`
	// Ranks are all the ranks the finding involves.
	Ranks []int `json:"ranks"`
	// Ops holds the op as each involved rank recorded it, culprits first.
	Ops []OpRef `json:"ops"`
	// Positions says where each culprit is.
	Positions []Position `json:"positions"`
	// Details adds lines of explanation.
	Details []string `json:"details"`
}

// GroupSummary describes one analyzed process group.
type GroupSummary struct {
	Name  string `json:"name"`
	Desc  string `json:"desc"`
	Ranks []int  `json:"ranks"`
	// Matched counts the collectives every member recorded, identically,
	// and completed.
	Matched int `json:"matched"`
	// MatchedWithDumps, when some members left no dump
	// (AllowIncompleteRanks), counts the collectives every member with a
	// dump recorded, identically, and completed.
	MatchedWithDumps int `json:"matched_with_dumps"`
	// LastSeq is the highest collective sequence number any member recorded.
	LastSeq int64 `json:"last_seq"`
}

// Report is what Analyze found.
type Report struct {
	// Verdict is one line: the first error, or that no problem was found.
	Verdict string `json:"verdict"`
	// Ranks lists the ranks that left a dump; MissingRanks the members of a
	// group that did not.
	Ranks        []int `json:"ranks"`
	MissingRanks []int `json:"missing_ranks"`
	// Versions maps each rank to its dump's schema version.
	Versions map[int]string `json:"versions"`
	Groups   []GroupSummary `json:"groups"`
	Findings []Finding      `json:"findings"`
}

// OK reports whether no error was found (warnings allowed).
func (r Report) OK() bool {
	for _, f := range r.Findings {
		if f.Severity == SeverityError {
			return false
		}
	}
	return true
}

// groupKey identifies a process group across ranks: its name and members
// (two groups split from one parent may share a name).
type groupKey struct{ name, ranks string }

type analyzedGroup struct {
	key        groupKey
	desc       string
	members    []int
	registered bool
	// entries of each member with a dump, in record order
	coll map[int][]*Entry
	p2p  map[int][]*Entry
}

// Analyze matches the ops of every group across its members' dumps (dumps
// by global rank) and reports what does not line up, like PyTorch's
// torchfrtrace:
//
//   - groups and their members come from each rank's pg_config (a group is
//     its name and its ranks; ranks that disagree on a group's members are a
//     finding);
//   - collectives are matched by collective_seq_id within each group: a
//     member without the op is "not joined" (culprit: that member), or
//     "unknown" when its ring no longer reaches back that far (its oldest
//     retained entry is newer), or has no dump; members that recorded the op
//     are compared by op type, input/output sizes and dtypes (the minority
//     is the culprit; on an even split the side without the lowest rank)
//     and by state (the ones that have not completed it are the culprits);
//   - point-to-point ops are matched apart, per pair of ranks: the k-th send
//     from a to b with the k-th receive on b from a (only the pending ones
//     when either ring has wrapped), by sizes and dtypes, and a pending op
//     without its counterpart means the peer never joined;
//   - different schema versions, and missing dumps unless
//     AllowIncompleteRanks, are findings too.
//
// Each culprit's Position says where it is instead: its last completed op
// and the op it is in, with stack frames when the dump has them.
func Analyze(dumps map[int]Dump, opts AnalyzeOptions) Report {
	if opts.MaxMismatches == 0 {
		opts.MaxMismatches = 10
	}
	a := &analysis{dumps: dumps, opts: opts, positions: map[int]Position{}}
	a.report.Versions = map[int]string{}
	a.report.Ranks = sortedKeys(dumps)
	a.checkVersions()
	groups := a.buildGroups()
	world := map[int]bool{}
	for _, g := range groups {
		for _, m := range g.members {
			world[m] = true
		}
	}
	for r := range world {
		if _, ok := dumps[r]; !ok {
			a.report.MissingRanks = append(a.report.MissingRanks, r)
		}
	}
	slices.Sort(a.report.MissingRanks)
	if len(a.report.MissingRanks) > 0 && !opts.AllowIncompleteRanks {
		a.add(Finding{
			Kind: FindingMissingDump, Severity: SeverityError,
			Message: fmt.Sprintf("no dump from %s (members of the job's groups); analyze what there is with AllowIncompleteRanks (--allow-incomplete-ranks)",
				rankList(a.report.MissingRanks)),
			Culprits: a.report.MissingRanks, Ranks: a.report.MissingRanks,
		})
	}
	for _, g := range groups {
		if !a.wantGroup(g) {
			continue
		}
		sum := a.analyzeCollectives(g)
		a.analyzeP2P(g)
		a.report.Groups = append(a.report.Groups, sum)
	}
	a.finish()
	return a.report
}

type analysis struct {
	dumps     map[int]Dump
	opts      AnalyzeOptions
	report    Report
	positions map[int]Position
}

func (a *analysis) add(f Finding) {
	if f.Culprits == nil {
		f.Culprits = []int{}
	}
	if f.Ranks == nil {
		f.Ranks = []int{}
	}
	if f.Ops == nil {
		f.Ops = []OpRef{}
	}
	if f.Details == nil {
		f.Details = []string{}
	}
	slices.Sort(f.Culprits)
	slices.Sort(f.Ranks)
	f.Ranks = slices.Compact(f.Ranks)
	if f.Positions == nil {
		f.Positions = []Position{}
		for _, r := range f.Culprits {
			if f.Kind == FindingNotJoined || f.Kind == FindingStateMismatch || f.Kind == FindingTypeMismatch {
				f.Positions = append(f.Positions, a.position(r))
			}
		}
	}
	a.report.Findings = append(a.report.Findings, f)
}

func (a *analysis) wantGroup(g *analyzedGroup) bool {
	if len(a.opts.Groups) == 0 {
		return true
	}
	return slices.Contains(a.opts.Groups, g.key.name) || slices.Contains(a.opts.Groups, g.desc)
}

func (a *analysis) checkVersions() {
	byVersion := map[string][]int{}
	for _, r := range a.report.Ranks {
		v := a.dumps[r].Version
		a.report.Versions[r] = v
		byVersion[v] = append(byVersion[v], r)
	}
	if len(byVersion) < 2 {
		return
	}
	versions := sortedKeys(byVersion)
	slices.SortStableFunc(versions, func(x, y string) int { return cmp.Compare(len(byVersion[y]), len(byVersion[x])) })
	var parts []string
	var minority []int
	for i, v := range versions {
		parts = append(parts, fmt.Sprintf("%q on %s", v, rankList(byVersion[v])))
		if i > 0 {
			minority = append(minority, byVersion[v]...)
		}
	}
	slices.Sort(minority)
	a.add(Finding{
		Kind: FindingVersionMismatch, Severity: SeverityWarning,
		Message:  "the dumps have different schema versions: " + strings.Join(parts, ", "),
		Culprits: minority, Ranks: a.report.Ranks,
	})
}

// buildGroups gathers the groups from every rank's pg_config and entries.
func (a *analysis) buildGroups() []*analyzedGroup {
	groups := map[groupKey]*analyzedGroup{}
	type listing struct {
		rank int
		key  groupKey
		desc string
	}
	byName := map[string][]listing{}
	for _, r := range a.report.Ranks {
		for name, c := range a.dumps[r].PGConfig {
			ranks, err := ParseRanks(c.Ranks)
			norm := c.Ranks
			if err == nil {
				norm = FormatRanks(ranks)
			}
			k := groupKey{name, norm}
			g := groups[k]
			if g == nil {
				g = &analyzedGroup{key: k, desc: c.Desc, members: ranks, registered: true,
					coll: map[int][]*Entry{}, p2p: map[int][]*Entry{}}
				groups[k] = g
			}
			byName[name] = append(byName[name], listing{r, k, c.Desc})
		}
	}
	// A member that lists the group's name with other members disagrees.
	for _, g := range groups {
		for _, m := range g.members {
			d, ok := a.dumps[m]
			if !ok {
				continue
			}
			c, ok := d.PGConfig[g.key.name]
			if !ok {
				continue
			}
			if theirs, err := ParseRanks(c.Ranks); err == nil && FormatRanks(theirs) != g.key.ranks {
				others := []int{}
				for _, l := range byName[g.key.name] {
					if l.key == g.key {
						others = append(others, l.rank)
					}
				}
				a.add(Finding{
					Kind: FindingGroupMismatch, Severity: SeverityError,
					Message: fmt.Sprintf("rank %d has group %q with ranks %s, but %s have it with ranks %s",
						m, g.key.name, FormatRanks(theirs), rankList(others), g.key.ranks),
					Group: g.key.name, GroupDesc: g.desc, Culprits: []int{m}, Ranks: append(others, m),
				})
			}
		}
	}
	// Entries.
	unregistered := map[string]bool{}
	for _, r := range a.report.Ranks {
		d := a.dumps[r]
		for i := range d.Entries {
			e := &d.Entries[i]
			name := e.ProcessGroup[0]
			var g *analyzedGroup
			if c, ok := d.PGConfig[name]; ok {
				ranks, err := ParseRanks(c.Ranks)
				norm := c.Ranks
				if err == nil {
					norm = FormatRanks(ranks)
				}
				g = groups[groupKey{name, norm}]
			} else {
				k := groupKey{name, "?"}
				g = groups[k]
				if g == nil {
					g = &analyzedGroup{key: k, desc: e.ProcessGroup[1], coll: map[int][]*Entry{}, p2p: map[int][]*Entry{}}
					groups[k] = g
				}
				if !slices.Contains(g.members, r) {
					g.members = append(g.members, r)
				}
				if !unregistered[name+"\x00"+strconv.Itoa(r)] {
					unregistered[name+"\x00"+strconv.Itoa(r)] = true
					a.add(Finding{
						Kind: FindingUnknownGroup, Severity: SeverityWarning,
						Message: fmt.Sprintf("rank %d has ops on group %q, which its pg_config does not list; its members are guessed from the ranks that have ops on it",
							r, name),
						Group: name, GroupDesc: e.ProcessGroup[1], Ranks: []int{r},
					})
				}
			}
			if e.IsP2P {
				g.p2p[r] = append(g.p2p[r], e)
			} else {
				g.coll[r] = append(g.coll[r], e)
			}
		}
	}
	out := make([]*analyzedGroup, 0, len(groups))
	for _, g := range groups {
		slices.Sort(g.members)
		if !g.registered {
			g.key.ranks = FormatRanks(g.members)
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(x, y *analyzedGroup) int {
		return cmp.Or(compareNames(x.key.name, y.key.name), strings.Compare(x.key.ranks, y.key.ranks))
	})
	return out
}

// compareNames orders group names numerically when both are numbers.
func compareNames(x, y string) int {
	a, errA := strconv.Atoi(x)
	b, errB := strconv.Atoi(y)
	if errA == nil && errB == nil {
		return cmp.Compare(a, b)
	}
	return strings.Compare(x, y)
}

// wrapped reports whether rank r's ring lost its oldest ops: its oldest
// retained entry is not the first it recorded.
func (a *analysis) wrapped(r int) bool {
	d := a.dumps[r]
	return len(d.Entries) > 0 && d.Entries[0].RecordID > 0
}

type seqRange struct{ min, max int64 }

func (a *analysis) analyzeCollectives(g *analyzedGroup) GroupSummary {
	sum := GroupSummary{Name: g.key.name, Desc: g.desc, Ranks: g.members}
	if sum.Ranks == nil {
		sum.Ranks = []int{}
	}
	bySeq := map[int]map[int64][]*Entry{}
	ranges := map[int]seqRange{}
	seqSet := map[int64]bool{}
	for r, es := range g.coll {
		m := map[int64][]*Entry{}
		rg := seqRange{es[0].CollectiveSeqID, es[0].CollectiveSeqID}
		for _, e := range es {
			m[e.CollectiveSeqID] = append(m[e.CollectiveSeqID], e)
			rg.min = min(rg.min, e.CollectiveSeqID)
			rg.max = max(rg.max, e.CollectiveSeqID)
			seqSet[e.CollectiveSeqID] = true
		}
		bySeq[r] = m
		ranges[r] = rg
	}
	seqs := sortedKeys(seqSet)
	if len(seqs) > 0 {
		sum.LastSeq = seqs[len(seqs)-1]
	}
	notJoined := map[int]bool{}
	unknownUpTo := map[int]int64{}
	mismatches, dropped := 0, 0
	stuckReported := false
	for _, s := range seqs {
		var present, unknown, absent []int
		for _, m := range g.members {
			if _, ok := a.dumps[m]; !ok {
				continue
			}
			if _, ok := bySeq[m][s]; ok {
				present = append(present, m)
				continue
			}
			rg, has := ranges[m]
			if a.wrapped(m) && (!has || rg.min > s) {
				unknown = append(unknown, m)
				unknownUpTo[m] = max(unknownUpTo[m], s)
				continue
			}
			absent = append(absent, m)
		}
		if len(present) == 0 {
			continue
		}
		ref := bySeq[present[0]][s]
		opName := opOf(ref[len(ref)-1].ProfilingName)

		// Never joined: report each rank once per group, at the first op it missed.
		var newAbsent []int
		for _, m := range absent {
			if !notJoined[m] {
				notJoined[m] = true
				newAbsent = append(newAbsent, m)
			}
		}
		if len(newAbsent) > 0 {
			f := Finding{
				Kind: FindingNotJoined, Severity: SeverityError,
				Group: g.key.name, GroupDesc: g.desc, Op: opName, Seq: s,
				Culprits: newAbsent, Ranks: append(slices.Clone(newAbsent), present...),
			}
			f.Message = fmt.Sprintf("%s never joined %s #%d on %s", rankList(newAbsent), opName, s, groupText(g.key.name, g.desc))
			for _, m := range newAbsent {
				if rg, has := ranges[m]; has && rg.max > s {
					f.Details = append(f.Details, fmt.Sprintf("rank %d skipped it: it has later collectives on this group (up to #%d)", m, rg.max))
				}
			}
			f.Details = append(f.Details, fmt.Sprintf("%s %s in it: %s", rankList(present), isAre(len(present)), stateSummary(bySeq, present, s)))
			for _, m := range present {
				f.Ops = append(f.Ops, opRef(m, bySeq[m][s][len(bySeq[m][s])-1]))
			}
			a.add(f)
		}

		mismatch := a.compareCollective(g, s, present, bySeq)
		if mismatch != nil {
			mismatches++
			if a.opts.MaxMismatches < 0 || mismatches <= a.opts.MaxMismatches {
				a.add(*mismatch)
			} else {
				dropped++
			}
			continue
		}
		if len(absent) > 0 || len(unknown) > 0 {
			continue
		}
		// Every member recorded it, identically; or, when some left no dump, every member
		// with one.
		noDump := len(g.members) - len(present)
		var completed, notCompleted []int
		for _, m := range present {
			if allCompleted(bySeq[m][s]) {
				completed = append(completed, m)
			} else {
				notCompleted = append(notCompleted, m)
			}
		}
		switch {
		case len(notCompleted) == 0 && noDump == 0:
			sum.Matched++
		case len(notCompleted) == 0:
			sum.MatchedWithDumps++
		case len(completed) > 0:
			mismatches++
			if a.opts.MaxMismatches >= 0 && mismatches > a.opts.MaxMismatches {
				dropped++
				continue
			}
			f := Finding{
				Kind: FindingStateMismatch, Severity: SeverityError,
				Group: g.key.name, GroupDesc: g.desc, Op: opName, Seq: s,
				Culprits: notCompleted, Ranks: present,
			}
			var states []string
			for _, m := range notCompleted {
				states = append(states, fmt.Sprintf("rank %d: %s", m, describeState(bySeq[m][s])))
			}
			f.Message = fmt.Sprintf("%s %s not completed %s #%d on %s, which %s completed (%s)",
				rankList(notCompleted), hasHave(len(notCompleted)), opName, s, groupText(g.key.name, g.desc),
				rankList(completed), strings.Join(states, "; "))
			for _, m := range notCompleted {
				f.Ops = append(f.Ops, opRef(m, bySeq[m][s][len(bySeq[m][s])-1]))
			}
			a.add(f)
		case !stuckReported:
			stuckReported = true
			f := Finding{
				Kind: FindingStuck, Severity: SeverityWarning,
				Group: g.key.name, GroupDesc: g.desc, Op: opName, Seq: s, Ranks: present,
				Message: fmt.Sprintf("%s in %s #%d on %s and none completed it (%s): no rank diverged; the op itself is slow or hung, or the dumps were taken while it ran",
					allMembers(len(present)), opName, s, groupText(g.key.name, g.desc), stateSummary(bySeq, present, s)),
			}
			if noDump > 0 {
				// Only the members with a dump are known to be in it: the others are the
				// likely culprits.
				for _, m := range g.members {
					if _, ok := a.dumps[m]; !ok {
						f.Culprits = append(f.Culprits, m)
					}
				}
				f.Severity, f.Ranks = SeverityError, append(slices.Clone(f.Culprits), present...)
				f.Message = fmt.Sprintf("%s %s in %s #%d on %s and none completed it (%s); %s left no dump and may never have joined it",
					rankList(present), isAre(len(present)), opName, s, groupText(g.key.name, g.desc), stateSummary(bySeq, present, s),
					rankList(f.Culprits))
				for _, m := range present {
					f.Ops = append(f.Ops, opRef(m, bySeq[m][s][len(bySeq[m][s])-1]))
				}
			}
			a.add(f)
		}
	}
	if dropped > 0 {
		a.add(Finding{
			Kind: FindingUnknown, Severity: SeverityWarning, Group: g.key.name, GroupDesc: g.desc,
			Message: fmt.Sprintf("%d more mismatches on %s are not shown (MaxMismatches %d); the first ones usually cause the rest",
				dropped, groupText(g.key.name, g.desc), a.opts.MaxMismatches),
		})
	}
	for _, m := range sortedKeys(unknownUpTo) {
		a.add(Finding{
			Kind: FindingUnknown, Severity: SeverityWarning, Group: g.key.name, GroupDesc: g.desc,
			Ranks: []int{m},
			Message: fmt.Sprintf("rank %d's ring no longer holds %s's collectives up to #%d (it wrapped), so they were not checked for rank %d",
				m, groupText(g.key.name, g.desc), unknownUpTo[m], m),
		})
	}
	return sum
}

// compareCollective compares the entries that ranks present recorded under
// seq s: op types, then sizes, then dtypes. It returns the first mismatch.
func (a *analysis) compareCollective(g *analyzedGroup, s int64, present []int, bySeq map[int]map[int64][]*Entry) *Finding {
	type check struct {
		kind FindingKind
		what string
		sig  func(es []*Entry) string
	}
	checks := []check{
		{FindingTypeMismatch, "op", func(es []*Entry) string {
			ops := make([]string, len(es))
			for i, e := range es {
				ops[i] = opOf(e.ProfilingName)
			}
			return strings.Join(ops, " + ")
		}},
		{FindingSizeMismatch, "input sizes", func(es []*Entry) string {
			var b strings.Builder
			for i, e := range es {
				if i > 0 {
					b.WriteString(" + ")
				}
				if op := opOf(e.ProfilingName); !sizesVary(op, true) {
					b.WriteString(formatSizes(e.InputSizes))
				} else {
					b.WriteString("*")
				}
			}
			return b.String()
		}},
		{FindingSizeMismatch, "output sizes", func(es []*Entry) string {
			var b strings.Builder
			for i, e := range es {
				if i > 0 {
					b.WriteString(" + ")
				}
				if op := opOf(e.ProfilingName); !sizesVary(op, false) {
					b.WriteString(formatSizes(e.OutputSizes))
				} else {
					b.WriteString("*")
				}
			}
			return b.String()
		}},
		{FindingDtypeMismatch, "dtypes", func(es []*Entry) string {
			var b strings.Builder
			for i, e := range es {
				if i > 0 {
					b.WriteString(" + ")
				}
				b.WriteString(dtypeSet(append(slices.Clone(e.InputDtypes), e.OutputDtypes...)))
			}
			return b.String()
		}},
	}
	for _, c := range checks {
		bySig := map[string][]int{}
		for _, m := range present {
			sig := c.sig(bySeq[m][s])
			bySig[sig] = append(bySig[sig], m)
		}
		if len(bySig) < 2 {
			continue
		}
		sigs := sortedKeys(bySig)
		// The expected value is the majority's; on a tie, the lowest rank's.
		slices.SortFunc(sigs, func(x, y string) int {
			return cmp.Or(cmp.Compare(len(bySig[y]), len(bySig[x])), cmp.Compare(bySig[x][0], bySig[y][0]))
		})
		expected := sigs[0]
		var culprits []int
		var found []string
		for _, sig := range sigs[1:] {
			culprits = append(culprits, bySig[sig]...)
			found = append(found, fmt.Sprintf("%s %s %s", rankList(bySig[sig]), hasHave(len(bySig[sig])), sig))
		}
		slices.Sort(culprits)
		ref := bySeq[bySig[expected][0]][s]
		opName := opOf(ref[len(ref)-1].ProfilingName)
		f := &Finding{
			Kind: c.kind, Severity: SeverityError,
			Group: g.key.name, GroupDesc: g.desc, Op: opName, Seq: s,
			Culprits: culprits, Ranks: present,
		}
		if c.kind == FindingTypeMismatch {
			var called []string
			for _, sig := range sigs[1:] {
				called = append(called, fmt.Sprintf("%s called %s", rankList(bySig[sig]), sig))
			}
			f.Message = fmt.Sprintf("%s as #%d on %s where %s called %s",
				strings.Join(called, " and "), s, groupText(g.key.name, g.desc), rankList(bySig[expected]), expected)
		} else {
			f.Message = fmt.Sprintf("%s mismatch in %s #%d on %s: %s, where %s %s %s",
				c.what, opName, s, groupText(g.key.name, g.desc), strings.Join(found, "; "),
				rankList(bySig[expected]), hasHave(len(bySig[expected])), expected)
		}
		if len(bySig[sigs[0]]) == len(bySig[sigs[1]]) {
			f.Details = append(f.Details, fmt.Sprintf("the ranks split evenly; rank %d's %s is taken as the expected one", bySig[expected][0], c.what))
		}
		for _, m := range culprits {
			f.Ops = append(f.Ops, opRef(m, bySeq[m][s][len(bySeq[m][s])-1]))
		}
		f.Ops = append(f.Ops, opRef(bySig[expected][0], ref[len(ref)-1]))
		return f
	}
	return nil
}

// sizesVary reports whether an op's input (or output) sizes may differ
// between ranks and so are not compared: all-to-all with uneven splits, the
// "_v" variants, scatter's inputs and gather's outputs (only the root has
// them).
func sizesVary(op string, input bool) bool {
	if strings.HasPrefix(op, "all_to_all") || strings.HasPrefix(op, "alltoall") || strings.HasSuffix(op, "_v") {
		return true
	}
	if input {
		return op == "scatter"
	}
	return op == "gather"
}

func dtypeSet(ds []string) string {
	set := slices.Clone(ds)
	slices.Sort(set)
	set = slices.Compact(set)
	return "{" + strings.Join(set, ", ") + "}"
}

type p2pOp struct {
	e        *Entry
	src, dst int // global ranks
}

// analyzeP2P matches sends and receives per ordered pair of ranks.
func (a *analysis) analyzeP2P(g *analyzedGroup) {
	sends := map[[2]int][]p2pOp{}
	recvs := map[[2]int][]p2pOp{}
	badNames := map[int]string{}
	for _, r := range sortedKeys(g.p2p) {
		for _, e := range g.p2p[r] {
			op, src, dst, ok := parseP2P(e.ProfilingName)
			if ok && (src < 0 || src >= len(g.members) || dst < 0 || dst >= len(g.members)) {
				ok = false
			}
			if !ok {
				if _, seen := badNames[r]; !seen {
					badNames[r] = e.ProfilingName
				}
				continue
			}
			gs, gd := g.members[src], g.members[dst]
			ch := [2]int{gs, gd}
			switch op {
			case "send":
				if gs == r {
					sends[ch] = append(sends[ch], p2pOp{e, gs, gd})
				}
			case "recv":
				if gd == r {
					recvs[ch] = append(recvs[ch], p2pOp{e, gs, gd})
				}
			}
		}
	}
	for _, byChannel := range []map[[2]int][]p2pOp{sends, recvs} {
		for _, ops := range byChannel {
			sortBatches(ops)
		}
	}
	for _, r := range sortedKeys(badNames) {
		a.add(Finding{
			Kind: FindingBadProfilingName, Severity: SeverityWarning, Group: g.key.name, GroupDesc: g.desc, IsP2P: true,
			Ranks: []int{r},
			Message: fmt.Sprintf("rank %d has point-to-point ops on %s whose profiling name does not say the peer (e.g. %q); they were not matched",
				r, groupText(g.key.name, g.desc), badNames[r]),
		})
	}
	channels := map[[2]int]bool{}
	for ch := range sends {
		channels[ch] = true
	}
	for ch := range recvs {
		channels[ch] = true
	}
	keys := make([][2]int, 0, len(channels))
	for ch := range channels {
		keys = append(keys, ch)
	}
	slices.SortFunc(keys, func(x, y [2]int) int { return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1])) })
	for _, ch := range keys {
		src, dst := ch[0], ch[1]
		_, okS := a.dumps[src]
		_, okD := a.dumps[dst]
		if !okS || !okD {
			continue
		}
		ss, rs := sends[ch], recvs[ch]
		if a.wrapped(src) || a.wrapped(dst) {
			ss, rs = pendingOnly(ss), pendingOnly(rs)
		}
		n := min(len(ss), len(rs))
		for i := range n {
			s, r := ss[i].e, rs[i].e
			what, sv, rv := "", "", ""
			switch {
			case formatSizes(s.InputSizes) != formatSizes(r.OutputSizes):
				what, sv, rv = "sizes", formatSizes(s.InputSizes), formatSizes(r.OutputSizes)
			case dtypeSet(s.InputDtypes) != dtypeSet(r.OutputDtypes):
				what, sv, rv = "dtypes", dtypeSet(s.InputDtypes), dtypeSet(r.OutputDtypes)
			default:
				continue
			}
			kind := FindingSizeMismatch
			if what == "dtypes" {
				kind = FindingDtypeMismatch
			}
			a.add(Finding{
				Kind: kind, Severity: SeverityError, Group: g.key.name, GroupDesc: g.desc,
				Op: "send", Seq: s.P2PSeqID, IsP2P: true, Culprits: []int{dst}, Ranks: []int{src, dst},
				Message: fmt.Sprintf("%s mismatch between rank %d's send (p2p #%d) and rank %d's matching recv (p2p #%d) on %s: %s sent, %s expected",
					what, src, s.P2PSeqID, dst, r.P2PSeqID, groupText(g.key.name, g.desc), sv, rv),
				Ops: []OpRef{opRef(dst, r), opRef(src, s)},
			})
			break // after a mismatch the pairing is unreliable
		}
		var extra []p2pOp
		var waiter, peer int
		var kind string
		switch {
		case len(ss) > n:
			extra, waiter, peer, kind = ss[n:], src, dst, "recv"
		case len(rs) > n:
			extra, waiter, peer, kind = rs[n:], dst, src, "send"
		}
		for _, op := range extra {
			if op.e.State == StateCompleted {
				continue // an eager send can complete before the receive is posted
			}
			mine := opOf(op.e.ProfilingName)
			a.add(Finding{
				Kind: FindingNotJoined, Severity: SeverityError, Group: g.key.name, GroupDesc: g.desc,
				Op: mine, Seq: op.e.P2PSeqID, IsP2P: true, Culprits: []int{peer}, Ranks: []int{peer, waiter},
				Message: fmt.Sprintf("rank %d never posted the %s matching rank %d's %s (p2p #%d, %s) on %s",
					peer, kind, waiter, mine, op.e.P2PSeqID, op.e.ProfilingName, groupText(g.key.name, g.desc)),
				Details: []string{fmt.Sprintf("rank %d's %s is %s", waiter, mine, describeState([]*Entry{op.e}))},
				Ops:     []OpRef{opRef(waiter, op.e)},
			})
			break
		}
	}
}

// sortBatches puts the ops of each batch in ops (one channel's, in a rank's order) in an order
// of their own, by message shape and dtype: a batch (batch_isend_irecv, coalesced) records its
// ops in a row with one p2p sequence number, in the order its rank listed them, and the dumps
// carry no tags, so two ranks that list a batch's sends and receives differently would
// otherwise be paired wrongly.
func sortBatches(ops []p2pOp) {
	for i := 0; i < len(ops); {
		j := i + 1
		for j < len(ops) && ops[i].e.P2PSeqID > 0 && ops[j].e.P2PSeqID == ops[i].e.P2PSeqID {
			j++
		}
		if j-i > 1 {
			slices.SortStableFunc(ops[i:j], func(x, y p2pOp) int { return strings.Compare(messageKey(x.e), messageKey(y.e)) })
		}
		i = j
	}
}

// messageKey is the shape and dtype of a send's input or a receive's output.
func messageKey(e *Entry) string {
	if len(e.InputSizes) > 0 {
		return formatSizes(e.InputSizes) + dtypeSet(e.InputDtypes)
	}
	return formatSizes(e.OutputSizes) + dtypeSet(e.OutputDtypes)
}

func pendingOnly(ops []p2pOp) []p2pOp {
	var out []p2pOp
	for _, op := range ops {
		if op.e.State != StateCompleted {
			out = append(out, op)
		}
	}
	return out
}

// parseP2P reads "<backend>:send a->b" or "<backend>:recv a<-b" (group
// ranks; for recv, a is the receiver).
func parseP2P(name string) (op string, src, dst int, ok bool) {
	_, rest, found := strings.Cut(name, ":")
	if !found {
		rest = name
	}
	op, peers, found := strings.Cut(strings.TrimSpace(rest), " ")
	if !found {
		return "", 0, 0, false
	}
	var x, y string
	switch op {
	case "send":
		x, y, found = strings.Cut(peers, "->")
	case "recv":
		y, x, found = strings.Cut(peers, "<-") // recv dst<-src
	default:
		return "", 0, 0, false
	}
	if !found {
		return "", 0, 0, false
	}
	s, err1 := strconv.Atoi(strings.TrimSpace(x))
	d, err2 := strconv.Atoi(strings.TrimSpace(y))
	if err1 != nil || err2 != nil {
		return "", 0, 0, false
	}
	return op, s, d, true
}

// opOf returns the op part of a profiling name: "all_reduce" of
// "gloo:all_reduce", "send" of "gloo:send 0->1". A name without a backend
// prefix is its own op.
func opOf(profilingName string) string {
	_, rest, found := strings.Cut(profilingName, ":")
	if !found {
		rest = profilingName
	}
	op, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	if op == "" {
		return profilingName
	}
	return op
}

func allCompleted(es []*Entry) bool {
	for _, e := range es {
		if e.State != StateCompleted {
			return false
		}
	}
	return true
}

func describeState(es []*Entry) string {
	e := es[len(es)-1]
	for _, x := range es {
		if x.State != StateCompleted {
			e = x
			break
		}
	}
	switch {
	case e.State == StateScheduled && e.Retired:
		return "scheduled, never started, and given up (retired)"
	case e.State == StateScheduled:
		return "scheduled, never started"
	case e.State == StateStarted && e.Retired:
		return "started, never completed, and given up (retired: timed out or failed)"
	case e.State == StateStarted:
		return "started, not completed"
	}
	return e.State
}

func stateSummary(bySeq map[int]map[int64][]*Entry, ranks []int, s int64) string {
	byState := map[string][]int{}
	for _, m := range ranks {
		st := describeState(bySeq[m][s])
		byState[st] = append(byState[st], m)
	}
	if len(byState) == 1 {
		for st := range byState {
			return st
		}
	}
	var parts []string
	for _, st := range sortedKeys(byState) {
		parts = append(parts, fmt.Sprintf("%s %s", rankList(byState[st]), st))
	}
	return strings.Join(parts, "; ")
}

func opRef(rank int, e *Entry) OpRef {
	seq := e.CollectiveSeqID
	if e.IsP2P {
		seq = e.P2PSeqID
	}
	return OpRef{
		Rank: rank, RecordID: e.RecordID, Group: e.ProcessGroup[0], GroupDesc: e.ProcessGroup[1],
		ProfilingName: e.ProfilingName, Op: opOf(e.ProfilingName), Seq: seq, IsP2P: e.IsP2P,
		State: e.State, Retired: e.Retired,
		InputSizes: nonNilSizes(e.InputSizes), InputDtypes: nonNil(e.InputDtypes),
		OutputSizes: nonNilSizes(e.OutputSizes), OutputDtypes: nonNil(e.OutputDtypes),
		Frames: nonNil(e.Frames),
	}
}

// position finds where rank r is, from its dump.
func (a *analysis) position(r int) Position {
	if p, ok := a.positions[r]; ok {
		return p
	}
	p := Position{Rank: r}
	d, ok := a.dumps[r]
	if ok {
		p.HasDump = true
		p.Entries = len(d.Entries)
		var oldestScheduled *Entry
		for i := len(d.Entries) - 1; i >= 0; i-- {
			e := &d.Entries[i]
			switch e.State {
			case StateCompleted:
				if p.LastCompleted == nil {
					ref := opRef(r, e)
					p.LastCompleted = &ref
				}
			case StateStarted:
				if p.InFlight == nil {
					ref := opRef(r, e)
					p.InFlight = &ref
				}
			default:
				oldestScheduled = e
			}
		}
		if p.InFlight == nil && oldestScheduled != nil {
			ref := opRef(r, oldestScheduled)
			p.InFlight = &ref
		}
	}
	a.positions[r] = p
	return p
}

// finish filters by rank, orders the findings and writes the verdict.
func (a *analysis) finish() {
	fs := a.report.Findings
	if len(a.opts.Ranks) > 0 {
		kept := fs[:0]
		for _, f := range fs {
			if slices.ContainsFunc(f.Ranks, func(r int) bool { return slices.Contains(a.opts.Ranks, r) }) ||
				slices.ContainsFunc(f.Culprits, func(r int) bool { return slices.Contains(a.opts.Ranks, r) }) {
				kept = append(kept, f)
			}
		}
		fs = kept
	}
	rank := func(f Finding) int {
		sev := 0
		if f.Severity != SeverityError {
			sev = 1
		}
		return sev*100 + slices.Index(kindOrder, f.Kind)
	}
	slices.SortStableFunc(fs, func(x, y Finding) int {
		return cmp.Or(cmp.Compare(rank(x), rank(y)), compareNames(x.Group, y.Group), cmp.Compare(x.Seq, y.Seq))
	})
	if fs == nil {
		fs = []Finding{}
	}
	a.report.Findings = fs
	if a.report.Groups == nil {
		a.report.Groups = []GroupSummary{}
	}
	if a.report.MissingRanks == nil {
		a.report.MissingRanks = []int{}
	}
	if a.report.Ranks == nil {
		a.report.Ranks = []int{}
	}
	a.report.Verdict = a.verdict()
}

func (a *analysis) verdict() string {
	r := &a.report
	if len(r.Findings) > 0 && r.Findings[0].Severity == SeverityError {
		f := r.Findings[0]
		v := f.Message
		for _, p := range f.Positions {
			if len(f.Positions) == 1 {
				v += "; it is at: " + p.Where()
			} else {
				v += fmt.Sprintf("; rank %d is at: %s", p.Rank, p.Where())
			}
		}
		return v
	}
	if len(r.Ranks) == 0 {
		return "no dumps to analyze"
	}
	matched, withDumps := 0, 0
	for _, g := range r.Groups {
		matched += g.Matched
		withDumps += g.MatchedWithDumps
	}
	v := fmt.Sprintf("no problem found in the dumps of %s: %d %s, %d %s matched on every member",
		rankList(r.Ranks), len(r.Groups), plural(len(r.Groups), "group", "groups"), matched,
		plural(matched, "collective", "collectives"))
	if withDumps > 0 {
		v += fmt.Sprintf(", %d more on every member with a dump", withDumps)
	}
	if n := len(r.Findings); n > 0 {
		v += fmt.Sprintf(" (%d %s)", n, plural(n, "warning", "warnings"))
	}
	return v
}

// Where says in words where the rank is.
func (p Position) Where() string {
	if !p.HasDump {
		return fmt.Sprintf("unknown: no dump from rank %d", p.Rank)
	}
	if p.Entries == 0 {
		return "it recorded no ops"
	}
	var s string
	if p.InFlight != nil {
		s = p.InFlight.String() + ", " + describeState([]*Entry{{State: p.InFlight.State, Retired: p.InFlight.Retired}})
	} else {
		s = "in no op"
	}
	if p.LastCompleted != nil {
		s += "; last completed: " + p.LastCompleted.String()
	} else {
		s += "; it completed no op it still holds"
	}
	return s
}

// String names the op: `all_reduce #57 on group "0" (default_pg)`, or for
// point-to-point ops `send 0->1 (p2p #3) on group "0" (default_pg)`.
func (o OpRef) String() string {
	if o.IsP2P {
		_, rest, found := strings.Cut(o.ProfilingName, ":")
		if !found {
			rest = o.ProfilingName
		}
		return fmt.Sprintf("%s (p2p #%d) on %s", rest, o.Seq, groupText(o.Group, o.GroupDesc))
	}
	return fmt.Sprintf("%s #%d on %s", o.Op, o.Seq, groupText(o.Group, o.GroupDesc))
}

func groupText(name, desc string) string {
	if desc == "" || desc == UndefinedDesc {
		return fmt.Sprintf("group %q", name)
	}
	return fmt.Sprintf("group %q (%s)", name, desc)
}

// rankList writes "rank 3" or "ranks 0, 1 and 3".
func rankList(ranks []int) string {
	switch len(ranks) {
	case 0:
		return "no rank"
	case 1:
		return "rank " + strconv.Itoa(ranks[0])
	}
	parts := make([]string, len(ranks))
	for i, r := range ranks {
		parts[i] = strconv.Itoa(r)
	}
	return "ranks " + strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

func formatSizes(s [][]int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, sh := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('[')
		for j, n := range sh {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.FormatInt(n, 10))
		}
		b.WriteByte(']')
	}
	b.WriteByte(']')
	return b.String()
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func hasHave(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// allMembers says "the only member is" or "all N members are".
func allMembers(n int) string {
	if n == 1 {
		return "the only member is"
	}
	return fmt.Sprintf("all %d members are", n)
}
