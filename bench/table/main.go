// Command table turns benchmark JSON lines (from gccl bench --json and bench/peers) into Markdown
// tables: per implementation and size, the median over the passes of each pass's median time,
// with the best and worst pass. On VMs whose speed changes from minute to minute the best pass
// alone says more about the moment than about the implementation. When gccl ran beside one
// peer, a last column counts the passes in which gccl was at least as fast, pairing the two
// implementations' rows of each size in the order they came (bench/compare.sh interleaves them,
// one pass of each in turn). There is one table per (op, dtype, ranks), in the order they first
// appear; a run of float32 all-reduce at one rank count gives exactly one table.
//
//	bench/compare.sh 2 3 | go run ./bench/table
//
// Lines without an "impl" key are gccl's (impl "gccl"); lines without "op" or "dtype" count as
// allreduce and float32.
//
// With -mean the tables use each pass's mean op time ("mean_us", the time nccl-tests and OSU
// report) instead of its median ("time_us"); lines without a mean are left out and counted.
// The median of a pass hides how its ops' times spread: with more ranks than cores, a rank's
// ops alternate between short and long, and the median lands on either.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gccl/gccl/internal/bench"
)

type row struct {
	Impl   string   `json:"impl"`
	Op     string   `json:"op"`
	DType  string   `json:"dtype"`
	NRanks int      `json:"nranks"`
	Bytes  int64    `json:"bytes"`
	TimeUs float64  `json:"time_us"`
	MeanUs *float64 `json:"mean_us"`
	Wrong  int64    `json:"wrong"`
}

// cell is one implementation's times at one size, one per pass, in the order they came.
type cell struct{ times []float64 }

func (c *cell) median() float64 { return bench.Median(slices.Clone(c.times)) }

// group is one table: the rows of one op, dtype and rank count.
type group struct {
	op, dtype string
	nranks    int
	cells     map[string]map[int64]*cell
	impls     []string
	sizes     map[int64]bool
}

type groupKey struct {
	op, dtype string
	nranks    int
}

func main() {
	useMean := flag.Bool("mean", false, "tabulate each pass's mean op time (mean_us), not its median (time_us)")
	flag.Parse()
	render(os.Stdin, os.Stdout, *useMean)
}

// render reads the JSON lines from in and writes the tables to out, of each pass's median op
// time, or of its mean with useMean.
func render(in io.Reader, out io.Writer, useMean bool) {
	groups := map[groupKey]*group{}
	var order []*group
	noMean := 0
	wrong := map[string]int64{}
	var wrongImpls []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r row
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			continue
		}
		if r.Impl == "" {
			r.Impl = "gccl"
		}
		t := r.TimeUs
		if useMean {
			if r.MeanUs == nil {
				noMean++
				continue
			}
			t = *r.MeanUs
		}
		if r.Op == "" {
			r.Op = "allreduce"
		}
		if r.DType == "" {
			r.DType = "float32"
		}
		k := groupKey{r.Op, r.DType, r.NRanks}
		g := groups[k]
		if g == nil {
			g = &group{op: r.Op, dtype: r.DType, nranks: r.NRanks,
				cells: map[string]map[int64]*cell{}, sizes: map[int64]bool{}}
			groups[k] = g
			order = append(order, g)
		}
		if g.cells[r.Impl] == nil {
			g.cells[r.Impl] = map[int64]*cell{}
			g.impls = append(g.impls, r.Impl)
		}
		c := g.cells[r.Impl][r.Bytes]
		if c == nil {
			c = &cell{}
			g.cells[r.Impl][r.Bytes] = c
		}
		c.times = append(c.times, t)
		g.sizes[r.Bytes] = true
		if r.Wrong > 0 {
			if wrong[r.Impl] == 0 {
				wrongImpls = append(wrongImpls, r.Impl)
			}
			wrong[r.Impl] += r.Wrong
		}
	}
	for i, g := range order {
		if i > 0 {
			fmt.Fprintln(out)
		}
		g.print(out, useMean)
	}
	if noMean > 0 {
		fmt.Fprintf(out, "\nNOTE: left out %d line(s) without mean_us\n", noMean)
	}
	for _, im := range wrongImpls {
		fmt.Fprintf(out, "\nWARNING: %s reported %d wrong elements\n", im, wrong[im])
	}
}

// opNames are the table titles' names of the ops.
var opNames = map[string]string{
	"allreduce":     "all-reduce",
	"allgather":     "all-gather",
	"reducescatter": "reduce-scatter",
	"broadcast":     "broadcast",
	"barrier":       "barrier",
}

func (g *group) print(out io.Writer, useMean bool) {
	var sz []int64
	for s := range g.sizes {
		sz = append(sz, s)
	}
	sort.Slice(sz, func(i, j int) bool { return sz[i] < sz[j] })
	name := opNames[g.op]
	if name == "" {
		name = g.op
	}
	dt := ""
	if g.dtype != "float32" {
		dt = ", " + g.dtype
	}
	stat := ""
	if useMean {
		stat = " (each pass's mean)"
	}
	fmt.Fprintf(out, "%d ranks%s: time per %s in µs%s, median over the passes (best–worst)\n\n", g.nranks, dt, name, stat)
	// With gccl and one peer, count gccl's wins pass by pass.
	peer := ""
	if len(g.impls) == 2 && slices.Contains(g.impls, "gccl") {
		peer = g.impls[0]
		if peer == "gccl" {
			peer = g.impls[1]
		}
	}
	fmt.Fprintf(out, "| bytes | %s |", strings.Join(g.impls, " | "))
	if peer != "" {
		fmt.Fprintf(out, " gccl ≤ %s |", peer)
	}
	fmt.Fprintf(out, "\n|---:|%s", strings.Repeat("---:|", len(g.impls)))
	if peer != "" {
		fmt.Fprint(out, "---:|")
	}
	fmt.Fprintln(out)
	for _, s := range sz {
		fmt.Fprintf(out, "| %s |", human(s))
		for _, im := range g.impls {
			if c := g.cells[im][s]; c != nil {
				fmt.Fprintf(out, " %s (%s–%s) |", num(c.median(), 1), num(slices.Min(c.times), 1), num(slices.Max(c.times), 1))
			} else {
				fmt.Fprint(out, " – |")
			}
		}
		if peer != "" {
			fmt.Fprintf(out, " %s |", wins(g.cells["gccl"][s], g.cells[peer][s]))
		}
		fmt.Fprintln(out)
	}
}

// wins is "k of n": in k of the n passes both ran, gccl's time was at most the peer's.
func wins(gccl, peer *cell) string {
	if gccl == nil || peer == nil {
		return "–"
	}
	n := min(len(gccl.times), len(peer.times))
	k := 0
	for i := range n {
		if gccl.times[i] <= peer.times[i] {
			k++
		}
	}
	return fmt.Sprintf("%d of %d", k, n)
}

// num prints v with prec decimals, and sub-µs values (shared memory) with two significant
// digits more, so that 0.23 does not print as 0.2 or its range as 0–0.
func num(v float64, prec int) string {
	if v < 1 && v > 0 {
		prec += 2
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func human(b int64) string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%dM", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%dK", b>>10)
	}
	return fmt.Sprint(b)
}
