package launch

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gccl/gccl/flightrecorder"
)

// FailureReport describes a failed job: the root cause (the earliest failure), every rank that
// failed on its own, and what the flight-recorder dumps say. Run writes it to
// LogDir/failure.json; Result.Err holds it as text.
type FailureReport struct {
	// Reason is "worker failed", "timeout" or "signal".
	Reason string `json:"reason"`
	// Message says what happened in one line.
	Message      string `json:"message"`
	RunID        string `json:"run_id"`
	RestartCount int    `json:"restart_count"`
	MaxRestarts  int    `json:"max_restarts"`
	// RootCause is the earliest failed rank (nil when no rank failed: a timeout or a signal).
	RootCause *RankFailure `json:"root_cause"`
	// Failures lists every rank that failed on its own, earliest first.
	Failures []RankFailure `json:"failures"`
	// DumpDir holds the flight-recorder dumps, FlightRecorder the summary of their analysis.
	DumpDir        string          `json:"dump_dir,omitempty"`
	FlightRecorder *FlightRecorder `json:"flight_recorder,omitempty"`
	// Path is where the report was written ("" when it was not).
	Path string `json:"-"`
}

// RankFailure is one failed rank.
type RankFailure struct {
	Host string `json:"host"`
	// Addr is the address of its node's agent and Node the node's rank (multi-node jobs).
	Addr      string    `json:"addr,omitempty"`
	Node      int       `json:"node"`
	Rank      int       `json:"rank"`
	LocalRank int       `json:"local_rank"`
	Pid       int       `json:"pid"`
	ExitCode  int       `json:"exit_code"`
	Signal    string    `json:"signal,omitempty"`
	Error     string    `json:"error,omitempty"` // why it could not start
	Time      time.Time `json:"time"`
	// StderrTail holds the last 20 lines of its stderr.
	StderrTail []string `json:"stderr_tail"`
	// ErrorFile is the worker's TORCHELASTIC_ERROR_FILE and ErrorFileData what it wrote there
	// (JSON, as torchrun's @record writes it), when it wrote anything.
	ErrorFile     string          `json:"error_file,omitempty"`
	ErrorFileData json.RawMessage `json:"error_file_data,omitempty"`
	// Status says how it ended in words.
	Status string `json:"status"`
}

// FlightRecorder summarises flightrecorder.Analyze on the job's dumps.
type FlightRecorder struct {
	Verdict  string   `json:"verdict"`
	Findings []string `json:"findings"`
	Ranks    []int    `json:"ranks"`
	// Culprits are the ranks the analysis blames (its errors' culprits), in rank order: in a
	// hang, the first rank to fail is usually a victim that timed out waiting for one of them.
	Culprits []int    `json:"culprits"`
	Errors   []string `json:"errors,omitempty"` // dumps that could not be read
}

// newFailureReport describes a failed job from this node's ranks (res), the ranks that failed on
// their own (failures: localFailures, then on several nodes those the other nodes reported) and,
// on several nodes, why the generation failed (cause).
func newFailureReport(cfg *Config, res *Result, failures []RankFailure, cause *remoteFailure) *FailureReport {
	rep := &FailureReport{RunID: cfg.RunID, RestartCount: res.RestartCount, MaxRestarts: cfg.MaxRestarts, DumpDir: res.DumpDir, Failures: []RankFailure{}}
	rep.Failures = append(rep.Failures, failures...) // [] in JSON, never null
	slices.SortStableFunc(rep.Failures, func(a, b RankFailure) int { return a.Time.Compare(b.Time) })
	if res.First != nil {
		for i := range rep.Failures {
			if rep.Failures[i].Rank == res.First.Rank {
				rep.RootCause = &rep.Failures[i]
			}
		}
	}
	if cfg.multiNode() && len(rep.Failures) > 0 {
		rep.RootCause = &rep.Failures[0] // the earliest failure on any node
	}
	switch {
	case res.TimedOut:
		rep.Reason, rep.Message = "timeout", fmt.Sprintf("job timed out after %v and was stopped", cfg.Timeout)
	case res.SignalNum != 0:
		rep.Reason, rep.Message = "signal", fmt.Sprintf("job stopped by %s", res.Signal())
	case cause != nil && cause.Reason != "worker failed":
		// A lost node or store: the failed ranks elsewhere are its victims.
		rep.Reason, rep.Message = cause.Reason, "job failed: "+cause.Message
	case rep.RootCause != nil:
		rep.Reason, rep.Message = "worker failed", "job failed: "+rep.RootCause.Status
		if rep.RootCause.Addr != "" {
			rep.Message += fmt.Sprintf(" on node %d (%s)", rep.RootCause.Node, rep.RootCause.Addr)
		}
	case cause != nil:
		rep.Reason, rep.Message = cause.Reason, "job failed: "+cause.Message
	default:
		rep.Reason, rep.Message = "worker failed", "job failed"
	}
	if res.DumpDir != "" {
		rep.FlightRecorder = analyzeDumps(res.DumpDir)
	}
	return rep
}

// localFailures lists this node's ranks that failed on their own.
func localFailures(cfg *Config, res *Result) []RankFailure {
	host, _ := os.Hostname()
	var out []RankFailure
	for _, rr := range res.Ranks {
		if !rr.Failed() || (rr.Pid == 0 && rr.Err == nil) {
			continue
		}
		f := RankFailure{
			Host: host, Addr: cfg.advertised, Node: cfg.nodeRank, Rank: rr.Rank, LocalRank: rr.LocalRank, Pid: rr.Pid, ExitCode: rr.ExitCode,
			Signal: rr.Signal, Time: rr.Time, StderrTail: rr.Tail, Status: rr.String(),
		}
		if f.StderrTail == nil {
			f.StderrTail = []string{}
		}
		if rr.Err != nil {
			f.Error = rr.Err.Error()
		}
		if data, err := os.ReadFile(rr.ErrorFile); rr.ErrorFile != "" && err == nil && len(data) > 0 {
			f.ErrorFile = rr.ErrorFile
			if json.Valid(data) {
				f.ErrorFileData = data
			} else {
				f.ErrorFileData, _ = json.Marshal(string(data))
			}
		}
		out = append(out, f)
	}
	return out
}

// analyzeDumps runs flightrecorder.Analyze on the dumps in dir.
func analyzeDumps(dir string) *FlightRecorder {
	dumps, errs := flightrecorder.LoadDir(dir, "rank_")
	fr := &FlightRecorder{Findings: []string{}, Culprits: []int{}}
	for _, err := range errs {
		fr.Errors = append(fr.Errors, err.Error())
	}
	if len(dumps) == 0 {
		fr.Verdict = "no readable flight-recorder dump"
		return fr
	}
	rep := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
	fr.Verdict, fr.Ranks = rep.Verdict, rep.Ranks
	for _, f := range rep.Findings {
		fr.Findings = append(fr.Findings, fmt.Sprintf("%s: %s", f.Severity, f.Message))
		if f.Severity == flightrecorder.SeverityError {
			for _, c := range f.Culprits {
				if !slices.Contains(fr.Culprits, c) {
					fr.Culprits = append(fr.Culprits, c)
				}
			}
		}
	}
	slices.Sort(fr.Culprits)
	return fr
}

// describe writes how the rank failed, its error file and its last stderr lines.
func (f *RankFailure) describe(w io.Writer, indent string) {
	when := ""
	if !f.Time.IsZero() {
		when = " at " + f.Time.Format("15:04:05.000")
	}
	where := f.Host
	if f.Addr != "" {
		where = fmt.Sprintf("%s (%s, node %d)", f.Host, f.Addr, f.Node)
	}
	fmt.Fprintf(w, "%s%s on %s (local rank %d)%s\n", indent, f.Status, where, f.LocalRank, when)
	if len(f.ErrorFileData) > 0 {
		fmt.Fprintf(w, "%s  error file %s: %s\n", indent, f.ErrorFile, errorFileMessage(f.ErrorFileData))
	}
	if len(f.StderrTail) > 0 {
		fmt.Fprintf(w, "%s  last stderr lines:\n", indent)
		for _, l := range f.StderrTail {
			fmt.Fprintf(w, "%s    %s\n", indent, l)
		}
	}
}

// errorFileMessage pulls the message out of a torchrun error file ({"message": {"message": ...}}
// or {"message": "..."}), else returns the JSON as it is.
func errorFileMessage(data json.RawMessage) string {
	var v struct {
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(data, &v) == nil && v.Message != nil {
		var s string
		if json.Unmarshal(v.Message, &s) == nil {
			return s
		}
		var inner struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(v.Message, &inner) == nil && inner.Message != "" {
			return inner.Message
		}
	}
	return strings.TrimSpace(string(data))
}

// WriteText writes the report for a person: what happened, the root cause, the other failed
// ranks, then the flight recorder's verdict and findings.
func (r *FailureReport) WriteText(w io.Writer) {
	fmt.Fprintln(w, r.Message)
	if r.MaxRestarts > 0 {
		fmt.Fprintf(w, "restarts: %d of %d\n", r.RestartCount, r.MaxRestarts)
	}
	if fr := r.FlightRecorder; fr != nil && len(fr.Culprits) > 0 {
		fmt.Fprintf(w, "the flight recorder blames rank(s) %v: %s\n", fr.Culprits, fr.Verdict)
	}
	if r.RootCause != nil {
		if fr := r.FlightRecorder; fr != nil && len(fr.Culprits) > 0 && !slices.Contains(fr.Culprits, r.RootCause.Rank) {
			fmt.Fprintln(w, "first to fail (a victim of the above, by the flight recorder):")
		} else {
			fmt.Fprintln(w, "root cause:")
		}
		r.RootCause.describe(w, "  ")
	}
	var others []RankFailure
	for _, f := range r.Failures {
		if r.RootCause == nil || f.Rank != r.RootCause.Rank {
			others = append(others, f)
		}
	}
	if len(others) > 0 {
		fmt.Fprintln(w, "other failed ranks:")
		for i := range others {
			others[i].describe(w, "  ")
		}
	}
	if fr := r.FlightRecorder; fr != nil {
		fmt.Fprintf(w, "flight recorder (%d dump(s)): %s\n", len(fr.Ranks), fr.Verdict)
		for _, f := range fr.Findings {
			fmt.Fprintf(w, "  %s\n", f)
		}
		for _, e := range fr.Errors {
			fmt.Fprintf(w, "  unreadable: %s\n", e)
		}
	}
	if r.DumpDir != "" {
		fmt.Fprintf(w, "flight-recorder dumps are in %s: run gccl fr analyze %s\n", r.DumpDir, r.DumpDir)
	}
	if r.Path != "" {
		fmt.Fprintf(w, "failure report: %s\n", r.Path)
	}
}

func (r *FailureReport) writeJSONFile(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
