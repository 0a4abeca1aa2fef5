package flightrecorder_test

import (
	"bytes"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gccl/gccl/flightrecorder"
)

// checkLoad is the property both fuzz targets check: Load never panics,
// Analyze takes whatever it loads, and that survives a write and a load
// again, in both formats.
func checkLoad(t *testing.T, data []byte) {
	d, err := flightrecorder.Load(bytes.NewReader(data))
	if err != nil {
		return
	}
	// Whatever loads, Analyze and both report forms take without panicking.
	rep := flightrecorder.Analyze(map[int]flightrecorder.Dump{0: d, 1: d, 3: d}, flightrecorder.AnalyzeOptions{})
	if err := rep.WriteText(io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, f := range []flightrecorder.Format{flightrecorder.FormatPickle, flightrecorder.FormatJSON} {
		if f == flightrecorder.FormatJSON && !finiteDurations(d) {
			continue // JSON cannot hold NaN or infinities; WriteJSON leaves them out
		}
		var buf bytes.Buffer
		if err := d.Write(&buf, f); err != nil {
			t.Fatalf("%s: writing a loaded dump: %v", f, err)
		}
		again, err := flightrecorder.Load(&buf)
		if err != nil {
			t.Fatalf("%s: loading a written dump: %v\n%q", f, err, buf.Bytes())
		}
		if !reflect.DeepEqual(normalize(d), normalize(again)) {
			t.Fatalf("%s: round trip changed the dump:\n%+v\n%+v", f, d, again)
		}
	}
}

func finiteDurations(d flightrecorder.Dump) bool {
	for _, e := range d.Entries {
		if e.DurationMs != nil && (math.IsNaN(*e.DurationMs) || math.IsInf(*e.DurationMs, 0)) {
			return false
		}
	}
	return true
}

// normalize makes NaN durations comparable.
func normalize(d flightrecorder.Dump) flightrecorder.Dump {
	for i := range d.Entries {
		if p := d.Entries[i].DurationMs; p != nil && math.IsNaN(*p) {
			v := -1.0
			d.Entries[i].DurationMs = &v
		}
	}
	return d
}

func addSeeds(f *testing.F, format flightrecorder.Format, dirs ...string) {
	var buf bytes.Buffer
	if err := sampleDump(f).Write(&buf, format); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*"))
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
			}
		}
	}
}

func FuzzLoadJSON(f *testing.F) {
	addSeeds(f, flightrecorder.FormatJSON)
	f.Add([]byte(`{"version": "2.4", "pg_status": {"0": {"last_started_collective": "3"}}, "entries": [{"seq_id": 1}]}`))
	f.Fuzz(checkLoad)
}

func FuzzLoadPickle(f *testing.F) {
	addSeeds(f, flightrecorder.FormatPickle, "pytorch", "pytorch_old", "protocols")
	f.Fuzz(checkLoad)
}
