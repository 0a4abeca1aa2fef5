// Package backendtest is the conformance suite every gccl backend must pass. It runs real OS
// processes (the test binary re-executes itself as each rank) through comm, the API users call,
// so it checks a backend together with what comm does around it: every collective, every dtype
// the backend supports, every reduce op, sizes from empty to 16 MiB, world sizes 1 to 8, every
// root, in-place and out-of-place, sub-groups, concurrent groups, tagged point-to-point and
// uneven all-to-all. Integer results are checked exactly, floating-point results against a
// float64 reference.
//
// Use it from a backend's tests:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, backendtest.Config{Backend: "gloo"})
//	}
package backendtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/comm/store"
)

// Config selects what to run.
type Config struct {
	Backend    string
	WorldSizes []int         // default 1, 2, 3, 4, 8
	Large      bool          // include the 1 MiB and 16 MiB cases (default true unless -short)
	Timeout    time.Duration // per world size (default 5 minutes)
	// Run, if set, is a regexp: only cases whose name matches run (also GCCL_CONFORMANCE_RUN).
	Run string
	// RankEnv, if set, gives rank `rank` of a world of `size` ranks extra KEY=VALUE
	// environment variables, added after the suite's own (so they win). For example, a
	// different GCCL_HOST_ID per rank makes ranks of one machine look like ranks of several
	// hosts to backend "auto".
	RankEnv func(rank, size int) []string
}

const (
	envChild = "GCCL_BACKENDTEST_CHILD"
	envLarge = "GCCL_BACKENDTEST_LARGE"
	envRun   = "GCCL_BACKENDTEST_RUN"
)

// Run runs the suite, one subtest per world size and one per case. In the re-executed child it
// runs the cases as one rank and exits.
func Run(t *testing.T, cfg Config) {
	if os.Getenv(envChild) == t.Name() {
		os.Exit(child(cfg.Backend))
	}
	if len(cfg.WorldSizes) == 0 {
		cfg.WorldSizes = []int{1, 2, 3, 4, 8}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	large := !testing.Short()
	if cfg.Large {
		large = true
	}
	if cfg.Run == "" {
		cfg.Run = os.Getenv("GCCL_CONFORMANCE_RUN")
	}
	for _, n := range cfg.WorldSizes {
		t.Run(fmt.Sprintf("world%d", n), func(t *testing.T) {
			runWorld(t, cfg, n, large)
		})
	}
}

var caseLine = regexp.MustCompile(`^CASE (\S+) (ok|FAIL)(?: (.*))?$`)

func runWorld(t *testing.T, cfg Config, n int, large bool) {
	srv, err := store.NewServer(store.ServerOptions{Token: "conformance"})
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	defer srv.Close()
	host, port, _ := strings.Cut(srv.Addr(), ":")
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	type out struct {
		buf bytes.Buffer
		err error
	}
	outs := make([]*out, n)
	cmds := make([]*exec.Cmd, n)
	top := strings.SplitN(t.Name(), "/", 2)[0]
	dumps := filepath.Join(t.TempDir(), "fr_rank_") // a failing case's flight-recorder dumps
	for r := 0; r < n; r++ {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+regexp.QuoteMeta(top)+"$", "-test.timeout=0")
		cmd.Env = append(os.Environ(),
			envChild+"="+top, "RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(n),
			"LOCAL_RANK="+strconv.Itoa(r), "LOCAL_WORLD_SIZE="+strconv.Itoa(n),
			"MASTER_ADDR="+host, "MASTER_PORT="+port, "GCCL_STORE_HOSTED=1", "GCCL_TOKEN=conformance",
			"GCCL_BACKEND="+cfg.Backend, envLarge+"="+strconv.FormatBool(large), envRun+"="+cfg.Run,
			"GCCL_TIMEOUT=90s", "GOMAXPROCS=2", "GCCL_FR_DUMP_PREFIX="+dumps,
		)
		if cfg.RankEnv != nil {
			cmd.Env = append(cmd.Env, cfg.RankEnv(r, n)...)
		}
		outs[r] = &out{}
		cmd.Stdout = &outs[r].buf
		cmd.Stderr = &outs[r].buf
		cmds[r] = cmd
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting rank %d: %v", r, err)
		}
	}
	for r, cmd := range cmds {
		outs[r].err = cmd.Wait()
	}
	// Collect per-case results from every rank, in the order the cases ran.
	type result struct {
		fails []string
		ranks int
	}
	results := map[string]*result{}
	var order []string
	for r, o := range outs {
		sc := bufio.NewScanner(bytes.NewReader(o.buf.Bytes()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			m := caseLine.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			res := results[m[1]]
			if res == nil {
				res = &result{}
				results[m[1]] = res
				order = append(order, m[1])
			}
			res.ranks++
			if m[2] == "FAIL" {
				res.fails = append(res.fails, fmt.Sprintf("rank %d: %s", r, m[3]))
			}
		}
	}
	for _, name := range order {
		res := results[name]
		t.Run(name, func(t *testing.T) {
			sort.Strings(res.fails)
			for _, f := range res.fails {
				t.Error(f)
			}
			if res.ranks != n {
				t.Errorf("only %d of %d ranks reported this case", res.ranks, n)
			}
		})
	}
	for r, o := range outs {
		if o.err != nil {
			t.Errorf("rank %d exited with %v; its output:\n%s", r, o.err, lastLines(o.buf.String(), 40))
		}
	}
	if len(order) == 0 {
		t.Errorf("no case ran")
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// child runs every case as one rank, printing "CASE name ok|FAIL msg" lines.
func child(backend string) int {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Backend: backend})
	if err != nil {
		fmt.Println("init failed:", err)
		return 2
	}
	large := os.Getenv(envLarge) == "true"
	var filter *regexp.Regexp
	if f := os.Getenv(envRun); f != "" {
		filter = regexp.MustCompile(f)
	}
	status := 0
	for _, c := range cases(pg.Size(), large) {
		if filter != nil && !filter.MatchString(c.name) {
			continue
		}
		err := c.run(ctx, pg)
		if err != nil {
			fmt.Printf("CASE %s FAIL %s\n", c.name, strings.ReplaceAll(err.Error(), "\n", " | "))
			status = 1
			if isFatal(err) {
				fmt.Println("the group failed; stopping")
				return 1
			}
			continue
		}
		fmt.Printf("CASE %s ok\n", c.name)
	}
	if err := pg.Close(); err != nil {
		fmt.Println("close:", err)
		return 1
	}
	return status
}

// isFatal: errors from the backend abort the group; wrong data does not.
func isFatal(err error) bool {
	_, wrong := err.(*wrongData)
	return !wrong
}
