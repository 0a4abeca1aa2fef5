package main

import (
	"strings"
	"testing"
)

// Two implementations over three interleaved passes: the cells are the median with the best and
// the worst pass, and the last column counts gccl's wins pass by pass (a tie counts for gccl).
func TestRenderMediansAndWins(t *testing.T) {
	in := strings.Join([]string{
		`{"op":"allreduce","dtype":"float32","nranks":2,"bytes":8,"time_us":0.30,"wrong":0}`,
		`{"op":"allreduce","dtype":"float32","nranks":2,"bytes":8,"time_us":0.25,"impl":"openmpi-shm"}`,
		`{"op":"allreduce","dtype":"float32","nranks":2,"bytes":8,"time_us":0.20,"wrong":0}`,
		`{"op":"allreduce","dtype":"float32","nranks":2,"bytes":8,"time_us":0.40,"impl":"openmpi-shm"}`,
		`not json: skipped`,
		`{"op":"allreduce","dtype":"float32","nranks":2,"bytes":8,"time_us":0.90,"wrong":0}`,
		`{"op":"allreduce","dtype":"float32","nranks":2,"bytes":8,"time_us":0.90,"impl":"openmpi-shm"}`,
	}, "\n")
	var out strings.Builder
	render(strings.NewReader(in), &out, false)
	got := out.String()
	for _, want := range []string{
		"2 ranks: time per all-reduce in µs, median over the passes (best–worst)",
		"| bytes | gccl | openmpi-shm | gccl ≤ openmpi-shm |",
		"| 8 | 0.300 (0.200–0.900) | 0.400 (0.250–0.900) | 2 of 3 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// Without a peer there is no wins column; wrong elements are reported.
func TestRenderAloneAndWrong(t *testing.T) {
	in := `{"op":"barrier","dtype":"float32","nranks":4,"bytes":0,"time_us":5.5,"wrong":0}
{"op":"barrier","dtype":"float32","nranks":4,"bytes":0,"time_us":4.5,"wrong":3}`
	var out strings.Builder
	render(strings.NewReader(in), &out, false)
	got := out.String()
	if strings.Contains(got, "gccl ≤") {
		t.Errorf("a wins column with no peer:\n%s", got)
	}
	if !strings.Contains(got, "| 0 | 5.0 (4.5–5.5) |") {
		t.Errorf("want the median of 4.5 and 5.5, 5.0:\n%s", got)
	}
	if !strings.Contains(got, "WARNING: gccl reported 3 wrong elements") {
		t.Errorf("the wrong elements are not reported:\n%s", got)
	}
}

// With -mean the cells are each pass's mean op time, and lines without one are left out.
func TestRenderMeans(t *testing.T) {
	in := `{"op":"barrier","nranks":4,"bytes":0,"time_us":2.4,"mean_us":2.0}
{"op":"barrier","nranks":4,"bytes":0,"time_us":2.0,"mean_us":2.1,"impl":"openmpi-shm"}
{"op":"barrier","nranks":4,"bytes":0,"time_us":2.5,"mean_us":1.8}
{"op":"barrier","nranks":4,"bytes":0,"time_us":2.0,"mean_us":2.3,"impl":"openmpi-shm"}
{"op":"barrier","nranks":4,"bytes":0,"time_us":1.0}`
	var out strings.Builder
	render(strings.NewReader(in), &out, true)
	got := out.String()
	for _, want := range []string{
		"4 ranks: time per barrier in µs (each pass's mean), median over the passes (best–worst)",
		"| 0 | 1.9 (1.8–2.0) | 2.2 (2.1–2.3) | 2 of 2 |",
		"NOTE: left out 1 line(s) without mean_us",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	out.Reset()
	render(strings.NewReader(in), &out, false)
	if got := out.String(); !strings.Contains(got, "| 0 | 2.4 (1.0–2.5) | 2.0 (2.0–2.0) | 0 of 2 |") {
		t.Errorf("without -mean, want the medians:\n%s", got)
	}
}
