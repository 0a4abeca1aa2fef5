// Command table turns benchmark JSON lines (from gccl bench --json and bench/peers) into one
// Markdown table: per implementation and size, the best median over all passes, with the range.
//
//	bench/compare.sh 2 3 | go run ./bench/table
//
// Lines without an "impl" key are gccl's (impl "gccl").
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
)

type row struct {
	Impl   string  `json:"impl"`
	Op     string  `json:"op"`
	NRanks int     `json:"nranks"`
	Bytes  int64   `json:"bytes"`
	TimeUs float64 `json:"time_us"`
	Wrong  int64   `json:"wrong"`
}

type cell struct{ best, worst float64 }

func main() {
	cells := map[string]map[int64]*cell{}
	var impls []string
	sizes := map[int64]bool{}
	wrong := map[string]int64{}
	nranks := 0
	sc := bufio.NewScanner(os.Stdin)
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
		nranks = r.NRanks
		if cells[r.Impl] == nil {
			cells[r.Impl] = map[int64]*cell{}
			impls = append(impls, r.Impl)
		}
		c := cells[r.Impl][r.Bytes]
		if c == nil {
			c = &cell{best: math.Inf(1)}
			cells[r.Impl][r.Bytes] = c
		}
		c.best = math.Min(c.best, r.TimeUs)
		c.worst = math.Max(c.worst, r.TimeUs)
		sizes[r.Bytes] = true
		if r.Wrong > 0 {
			wrong[r.Impl] += r.Wrong
		}
	}
	var sz []int64
	for s := range sizes {
		sz = append(sz, s)
	}
	sort.Slice(sz, func(i, j int) bool { return sz[i] < sz[j] })
	fmt.Printf("%d ranks: median time per all-reduce in µs, best of the passes (range over passes)\n\n", nranks)
	fmt.Printf("| bytes | %s |\n", strings.Join(impls, " | "))
	fmt.Printf("|---:|%s\n", strings.Repeat("---:|", len(impls)))
	for _, s := range sz {
		fmt.Printf("| %s |", human(s))
		for _, im := range impls {
			if c := cells[im][s]; c != nil {
				fmt.Printf(" %.1f (%.0f–%.0f) |", c.best, c.best, c.worst)
			} else {
				fmt.Print(" – |")
			}
		}
		fmt.Println()
	}
	for im, w := range wrong {
		fmt.Printf("\nWARNING: %s reported %d wrong elements\n", im, w)
	}
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
