package flightrecorder

import (
	"encoding/json"
	"io"
	"math"
	"strconv"
)

// The shapes of PyTorch's JSON dump (FlightRecorder::dump_json). Its JSON
// library keeps object keys sorted, so the fields below are in sorted order.

type jsonPGConfig struct {
	Desc  string `json:"desc"`
	Name  string `json:"name"`
	Ranks string `json:"ranks"`
}

// jsonPGStatus holds decimal strings: PyTorch's JSON dump writes pg_status
// values as strings (its pickle dump writes integers).
type jsonPGStatus struct {
	LastCompletedCollective string `json:"last_completed_collective"`
	LastEnqueuedCollective  string `json:"last_enqueued_collective"`
	LastStartedCollective   string `json:"last_started_collective"`
}

type jsonEntry struct {
	CollectiveSeqID           int64     `json:"collective_seq_id"`
	DurationMs                *float64  `json:"duration_ms,omitempty"`
	Frames                    []Frame   `json:"frames"`
	InputDtypes               []string  `json:"input_dtypes"`
	InputSizes                [][]int64 `json:"input_sizes"`
	IsP2P                     bool      `json:"is_p2p"`
	OpID                      int64     `json:"op_id"`
	OutputDtypes              []string  `json:"output_dtypes"`
	OutputSizes               [][]int64 `json:"output_sizes"`
	P2PSeqID                  int64     `json:"p2p_seq_id"`
	PGID                      int       `json:"pg_id"`
	ProcessGroup              [2]string `json:"process_group"`
	ProfilingName             string    `json:"profiling_name"`
	RecordID                  uint64    `json:"record_id"`
	Retired                   bool      `json:"retired"`
	State                     string    `json:"state"`
	ThreadID                  string    `json:"thread_id"`
	ThreadName                string    `json:"thread_name"`
	TimeCreatedNs             int64     `json:"time_created_ns"`
	TimeDiscoveredCompletedNs int64     `json:"time_discovered_completed_ns"`
	TimeDiscoveredStartedNs   int64     `json:"time_discovered_started_ns"`
	TimeoutMs                 int64     `json:"timeout_ms"`
}

type jsonDump struct {
	CommLibVersion string                       `json:"comm_lib_version"`
	Entries        []jsonEntry                  `json:"entries,omitempty"`
	NCCLCommState  map[string]map[string]string `json:"nccl_comm_state,omitempty"`
	PGConfig       map[string]jsonPGConfig      `json:"pg_config"`
	PGStatus       map[string]jsonPGStatus      `json:"pg_status"`
	Version        string                       `json:"version"`
}

// WriteJSON writes d in the shape of PyTorch's JSON dump
// (FlightRecorder::dump_json), on one line followed by a newline:
//
//   - keys are sorted, as PyTorch's JSON library writes them;
//   - pg_status values are decimal strings ("last_started_collective": "57");
//   - time_discovered_started_ns and time_discovered_completed_ns are 0, not
//     null, until reached;
//   - duration_ms is left out until known (and when it is not finite, which
//     JSON cannot hold);
//   - the "entries" key is left out when there are none, and
//     "nccl_comm_state" when it is empty.
//
// One addition: each entry carries its "frames" (PyTorch's JSON dump has no
// stack traces; its readers ignore the extra key), so a JSON dump loses
// nothing that the pickle dump holds. Load reads both this shape and
// encoding/json's rendering of a Dump.
func (d Dump) WriteJSON(w io.Writer) error {
	out := jsonDump{
		CommLibVersion: d.CommLibVersion,
		NCCLCommState:  d.NCCLCommState,
		PGConfig:       make(map[string]jsonPGConfig, len(d.PGConfig)),
		PGStatus:       make(map[string]jsonPGStatus, len(d.PGStatus)),
		Version:        d.Version,
	}
	for name, c := range d.PGConfig {
		out.PGConfig[name] = jsonPGConfig{Desc: c.Desc, Name: c.Name, Ranks: c.Ranks}
	}
	for id, s := range d.PGStatus {
		out.PGStatus[id] = jsonPGStatus{
			LastCompletedCollective: strconv.FormatInt(s.LastCompletedCollective, 10),
			LastEnqueuedCollective:  strconv.FormatInt(s.LastEnqueuedCollective, 10),
			LastStartedCollective:   strconv.FormatInt(s.LastStartedCollective, 10),
		}
	}
	if len(d.Entries) > 0 {
		out.Entries = make([]jsonEntry, len(d.Entries))
	}
	for i := range d.Entries {
		e := &d.Entries[i]
		j := &out.Entries[i]
		j.CollectiveSeqID = e.CollectiveSeqID
		if e.DurationMs != nil && !math.IsNaN(*e.DurationMs) && !math.IsInf(*e.DurationMs, 0) {
			j.DurationMs = e.DurationMs
		}
		j.Frames = nonNil(e.Frames)
		j.InputDtypes = nonNil(e.InputDtypes)
		j.InputSizes = nonNilSizes(e.InputSizes)
		j.IsP2P = e.IsP2P
		j.OpID = e.OpID
		j.OutputDtypes = nonNil(e.OutputDtypes)
		j.OutputSizes = nonNilSizes(e.OutputSizes)
		j.P2PSeqID = e.P2PSeqID
		j.PGID = e.PGID
		j.ProcessGroup = e.ProcessGroup
		j.ProfilingName = e.ProfilingName
		j.RecordID = e.RecordID
		j.Retired = e.Retired
		j.State = e.State
		j.ThreadID = e.ThreadID
		j.ThreadName = e.ThreadName
		j.TimeCreatedNs = e.TimeCreatedNs
		if e.TimeDiscoveredCompletedNs != nil {
			j.TimeDiscoveredCompletedNs = *e.TimeDiscoveredCompletedNs
		}
		if e.TimeDiscoveredStartedNs != nil {
			j.TimeDiscoveredStartedNs = *e.TimeDiscoveredStartedNs
		}
		j.TimeoutMs = e.TimeoutMs
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

// nonNil returns s, or an empty slice for nil, so JSON shows [] not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func nonNilSizes(s [][]int64) [][]int64 {
	if s == nil {
		return [][]int64{}
	}
	for i, sh := range s {
		if sh == nil {
			c := make([][]int64, len(s))
			copy(c, s)
			for k := i; k < len(c); k++ {
				c[k] = nonNil(c[k])
			}
			return c
		}
	}
	return s
}
