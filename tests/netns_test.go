package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/backends"
)

// cluster is a set of Linux network namespaces standing for hosts: node i is namespace
// gccl<id>n<i> with address 10.77.0.<i+1>/24 on eth0, a veth whose other end is on a bridge in a
// namespace of its own (gccl<id>b), so the test touches none of the machine's own interfaces.
// Everything it creates (namespaces, processes) is removed by t.Cleanup, even when the test fails.
type cluster struct {
	t     testing.TB
	id    string
	nodes []string // namespace names
	addrs []string

	mu    sync.Mutex
	procs []*proc
}

// needRoot skips the test when it cannot create network namespaces: only when not root (CI runs
// as root, where a missing ip command is a failure).
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("multi-node tests create network namespaces: run as root")
	}
	_, err := exec.LookPath("ip")
	require.NoError(t, err, "the ip command (iproute2) is needed for network namespaces")
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
}

func newCluster(t testing.TB, n int) *cluster {
	needRoot(t)
	var b [3]byte
	_, _ = rand.Read(b[:])
	c := &cluster{t: t, id: hex.EncodeToString(b[:])}
	bridge := "gccl" + c.id + "b"
	t.Cleanup(c.cleanup)
	ip(t, "netns", "add", bridge)
	c.nodes = append(c.nodes, bridge) // deleted with the others; not a node
	ip(t, "-n", bridge, "link", "add", "br0", "type", "bridge")
	ip(t, "-n", bridge, "link", "set", "br0", "up")
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("gccl%sn%d", c.id, i)
		ip(t, "netns", "add", ns)
		c.nodes = append(c.nodes, ns)
		inner, outer := fmt.Sprintf("gi%s%d", c.id, i), fmt.Sprintf("go%s%d", c.id, i)
		ip(t, "link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer, "netns", bridge)
		ip(t, "-n", ns, "link", "set", inner, "name", "eth0")
		addr := fmt.Sprintf("10.77.0.%d", i+1)
		ip(t, "-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		ip(t, "-n", ns, "link", "set", "eth0", "up")
		ip(t, "-n", ns, "link", "set", "lo", "up")
		ip(t, "-n", bridge, "link", "set", outer, "master", "br0")
		ip(t, "-n", bridge, "link", "set", outer, "up")
		c.addrs = append(c.addrs, addr)
	}
	c.nodes = c.nodes[1:]
	t.Cleanup(func() { // after c.cleanup's registration: runs first
		out, err := exec.Command("ip", "netns", "del", bridge).CombinedOutput()
		if err != nil {
			t.Logf("ip netns del %s: %v: %s", bridge, err, out)
		}
	})
	return c
}

// cleanup kills what the test started and every process left in the namespaces, then deletes
// them.
func (c *cluster) cleanup() {
	c.mu.Lock()
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	for _, ns := range c.nodes {
		if out, _ := exec.Command("ip", "netns", "pids", ns).Output(); len(out) > 0 {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					c.t.Logf("killing pid %d left in namespace %s", pid, ns)
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			c.t.Logf("ip netns del %s: %v: %s", ns, err, out)
		}
	}
}

// proc is a process running in a node's namespace, its output collected.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu  sync.Mutex
	out bytes.Buffer
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// wait waits for the process to end (failing the test after d) and returns its exit status.
func (p *proc) wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s still running after %v; output:\n%s", p.name, d, p.output())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

// waitFor waits until the output matches re n times and returns the matches.
func (p *proc) waitFor(t testing.TB, re *regexp.Regexp, n int, d time.Duration) [][]string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		m := re.FindAllStringSubmatch(p.output(), -1)
		if len(m) >= n {
			return m
		}
		select {
		case <-p.done:
			t.Fatalf("%s ended before printing %d line(s) matching %s; output:\n%s", p.name, n, re, p.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %d line(s) matching %s after %v; output:\n%s", p.name, n, re, d, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start runs name args... in node i's namespace.
func (c *cluster) start(node int, env []string, name string, args ...string) *proc {
	c.t.Helper()
	p := &proc{name: fmt.Sprintf("node %d (%s): %s", node, c.addrs[node], filepath.Base(name)), done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", c.nodes[node], name}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	require.NoError(c.t, p.cmd.Start())
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// waitGone waits until none of pids is alive and returns how long that took, failing after d.
func waitGone(t testing.TB, pids []int, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		var left []int
		for _, pid := range pids {
			if backends.ProcessAlive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("worker(s) %v still alive %v after the failure", left, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
