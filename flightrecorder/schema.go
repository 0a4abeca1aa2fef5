package flightrecorder

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Version is the flight-recorder dump schema version, the value of the
// top-level "version" key. It is PyTorch's version for the same key set, so
// PyTorch's analysis tools (torchfrtrace) pick the matching code paths.
const Version = "2.10"

// The values of Entry.State. PyTorch derives the state from the discovery
// timestamps: completed if time_discovered_completed_ns is set, else started
// if time_discovered_started_ns is set, else scheduled.
const (
	StateScheduled = "scheduled"
	StateStarted   = "started"
	StateCompleted = "completed"
)

// UndefinedDesc is the description PyTorch gives a process group created
// without one; GroupInfo.Desc defaults to it.
const UndefinedDesc = "undefined"

// Frame is one stack frame of an entry, innermost first.
type Frame struct {
	// Name is the fully qualified function name.
	Name string `json:"name"`
	// Filename is the source file path.
	Filename string `json:"filename"`
	// Line is the line number in Filename.
	Line int `json:"line"`
}

// Entry is one recorded op. The JSON tags are PyTorch's dump keys, in the
// order PyTorch's pickle dump inserts them.
//
// Two keys are absent or null the way PyTorch writes them: duration_ms is
// left out until the op completed with a measured duration (PyTorch inserts
// it only when it has one), and time_discovered_started_ns /
// time_discovered_completed_ns are null until reached (PyTorch's pickle dump
// writes None).
type Entry struct {
	// Frames is the stack of the call that issued the op, innermost first,
	// without runtime and flightrecorder frames. Empty unless the op was
	// recorded with OpRecord.CaptureStack.
	Frames []Frame `json:"frames"`
	// RecordID is the op's position in the sequence of everything recorded
	// by this Recorder, starting at 0. It keeps increasing across ring
	// wraparound.
	RecordID uint64 `json:"record_id"`
	// PGID is the process group's id in this process (OpRecord.Group).
	PGID int `json:"pg_id"`
	// ProcessGroup is the group's [name, desc]. The name is the key of the
	// group in Dump.PGConfig.
	ProcessGroup [2]string `json:"process_group"`
	// ThreadName names the thread (goroutine role) that issued the op, if
	// the caller said; PyTorch writes the OS thread's name.
	ThreadName string `json:"thread_name"`
	// ThreadID identifies the thread that issued the op, if the caller said.
	ThreadID string `json:"thread_id"`
	// CollectiveSeqID counts true collectives (one per launch, a coalesced
	// group counting once) in the group.
	CollectiveSeqID int64 `json:"collective_seq_id"`
	// P2PSeqID counts point-to-point launches in the group.
	P2PSeqID int64 `json:"p2p_seq_id"`
	// OpID counts logical ops in the group, one per op inside a coalesced
	// group.
	OpID int64 `json:"op_id"`
	// ProfilingName is "<backend>:<op>", e.g. "gloo:all_reduce",
	// "gloo:send 0->1", "gloo:recv 1<-0" (peers in group ranks).
	ProfilingName string `json:"profiling_name"`
	// TimeCreatedNs is the wall-clock time of Record, ns since the Unix epoch.
	TimeCreatedNs int64 `json:"time_created_ns"`
	// DurationMs is the time from start to completion in milliseconds, nil
	// (key left out) until known.
	DurationMs *float64 `json:"duration_ms,omitempty"`
	// InputSizes holds the shape of every input tensor.
	InputSizes [][]int64 `json:"input_sizes"`
	// InputDtypes holds the dtype of every input tensor, in PyTorch's names
	// ("Float", "BFloat16", ...).
	InputDtypes []string `json:"input_dtypes"`
	// OutputSizes holds the shape of every output tensor.
	OutputSizes [][]int64 `json:"output_sizes"`
	// OutputDtypes holds the dtype of every output tensor.
	OutputDtypes []string `json:"output_dtypes"`
	// State is StateScheduled, StateStarted or StateCompleted.
	State string `json:"state"`
	// TimeDiscoveredStartedNs is the wall-clock time the op was seen to
	// start, nil until then.
	TimeDiscoveredStartedNs *int64 `json:"time_discovered_started_ns"`
	// TimeDiscoveredCompletedNs is the wall-clock time the op was seen to
	// complete, nil until then.
	TimeDiscoveredCompletedNs *int64 `json:"time_discovered_completed_ns"`
	// Retired reports that the op left the issuer's list of pending work. A
	// retired op that is not completed timed out or failed.
	Retired bool `json:"retired"`
	// TimeoutMs is the op's timeout in milliseconds.
	TimeoutMs int64 `json:"timeout_ms"`
	// IsP2P reports a point-to-point op (send, recv).
	IsP2P bool `json:"is_p2p"`
}

// PGConfig describes one process group in Dump.PGConfig.
type PGConfig struct {
	// Name is the group's name, also its key in Dump.PGConfig.
	Name string `json:"name"`
	// Desc is the group's description ("default_pg", "undefined", ...).
	Desc string `json:"desc"`
	// Ranks lists the members' global ranks, written as PyTorch writes them:
	// a string such as "[0, 1, 2, 3]". See FormatRanks and ParseRanks.
	Ranks string `json:"ranks"`
}

// PGStatus is the progress of one process group in Dump.PGStatus. Each value
// is the sequence number of the last op that reached that point, -1 if none:
// the collective sequence number for collectives and the p2p sequence number
// for point-to-point ops, as PyTorch does (it uses the work's sequence
// number).
type PGStatus struct {
	LastEnqueuedCollective  int64 `json:"last_enqueued_collective"`
	LastStartedCollective   int64 `json:"last_started_collective"`
	LastCompletedCollective int64 `json:"last_completed_collective"`
}

// Dump is the whole recorder state in PyTorch's dump schema.
type Dump struct {
	// Version is Version.
	Version string `json:"version"`
	// CommLibVersion is the communication library's version, as set with
	// Recorder.SetCommLibVersion ("" if never set).
	CommLibVersion string `json:"comm_lib_version"`
	// PGConfig maps a group's name to its description. Only registered
	// groups appear.
	PGConfig map[string]PGConfig `json:"pg_config"`
	// PGStatus maps a group's id, in decimal, to its progress. A group
	// appears once an op was recorded on it.
	PGStatus map[string]PGStatus `json:"pg_status"`
	// Entries holds the recorded ops, oldest first.
	Entries []Entry `json:"entries"`
	// NCCLCommState is PyTorch's optional per-communicator state map
	// ("nccl_comm_state"), left out when empty. Snapshot never fills it.
	NCCLCommState map[string]map[string]string `json:"nccl_comm_state,omitempty"`
}

// FormatRanks writes ranks as PyTorch writes a pg_config "ranks" value:
// "[0, 1, 2, 3]", "[]" for none.
func FormatRanks(ranks []int) string {
	b := make([]byte, 0, 2+len(ranks)*4)
	b = append(b, '[')
	for i, r := range ranks {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendInt(b, int64(r), 10)
	}
	b = append(b, ']')
	return string(b)
}

// ErrBadRanks is returned (wrapped) by ParseRanks for a malformed value.
var ErrBadRanks = errors.New("malformed ranks list")

// ParseRanks reads a pg_config "ranks" value such as "[0, 1, 2, 3]".
func ParseRanks(s string) ([]int, error) {
	t := strings.TrimSpace(s)
	if len(t) < 2 || t[0] != '[' || t[len(t)-1] != ']' {
		return nil, fmt.Errorf("flightrecorder: ranks %q: want \"[r0, r1, ...]\": %w", s, ErrBadRanks)
	}
	body := strings.TrimSpace(t[1 : len(t)-1])
	if body == "" {
		return []int{}, nil
	}
	parts := strings.Split(body, ",")
	ranks := make([]int, 0, len(parts))
	for _, p := range parts {
		r, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("flightrecorder: ranks %q: %w: %w", s, ErrBadRanks, err)
		}
		ranks = append(ranks, r)
	}
	return ranks, nil
}
