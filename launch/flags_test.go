package launch_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/launch"
)

func parseFlags(t *testing.T, args ...string) (launch.Config, error) {
	t.Helper()
	var f launch.Flags
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	f.Register(fs)
	require.NoError(t, fs.Parse(args))
	return f.Config(fs.Args())
}

func TestFlags(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600))
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, c launch.Config)
		err   string
	}{
		{"defaults", []string{"prog", "a"}, func(t *testing.T, c launch.Config) {
			assert.Equal(t, 1, c.NProcs)
			assert.Equal(t, "prog", c.Program)
			assert.Equal(t, []string{"a"}, c.Args)
			assert.Equal(t, "127.0.0.1", c.MasterAddr)
			assert.True(t, c.Bind)
			assert.True(t, c.ForwardSignals)
		}, ""},
		{"torchrun underscores", []string{"--nproc_per_node=3", "--max_restarts", "2", "--master_port", "29500", "prog"}, func(t *testing.T, c launch.Config) {
			assert.Equal(t, 3, c.NProcs)
			assert.Equal(t, 2, c.MaxRestarts)
			assert.Equal(t, 29500, c.MasterPort)
		}, ""},
		{"auto", []string{"--nproc-per-node", "auto", "prog"}, func(t *testing.T, c launch.Config) {
			assert.Equal(t, runtime.NumCPU(), c.NProcs)
		}, ""},
		{"single node", []string{"--nnodes", "1:1", "--node-rank", "0", "--standalone", "prog"}, nil, ""},
		{"rdzv endpoint", []string{"--rdzv-endpoint", "localhost:29400", "--rdzv-id", "j1", "--role", "trainer", "prog"}, func(t *testing.T, c launch.Config) {
			assert.Equal(t, "localhost", c.MasterAddr)
			assert.Equal(t, 29400, c.MasterPort)
			assert.Equal(t, "j1", c.RunID)
			assert.Equal(t, "trainer", c.Role)
		}, ""},
		{"python", []string{"train.py", "--lr", "1"}, func(t *testing.T, c launch.Config) {
			assert.Equal(t, "python3", c.Program)
			assert.Equal(t, []string{"-u", "train.py", "--lr", "1"}, c.Args)
		}, ""},
		{"no python", []string{"--no-python", "train.py"}, func(t *testing.T, c launch.Config) {
			assert.Equal(t, "train.py", c.Program)
		}, ""},
		{"streams", []string{"--redirects", "0:1,1:3", "--tee", "2", "--local-ranks-filter", "0,1", "--nproc-per-node", "2", "prog"}, func(t *testing.T, c launch.Config) {
			assert.Equal(t, launch.StdOut, c.Redirects.For(0))
			assert.Equal(t, launch.StdAll, c.Redirects.For(1))
			assert.Equal(t, launch.StdErr, c.Tee.For(5))
			assert.Equal(t, []int{0, 1}, c.ConsoleRanks)
		}, ""},
		{"timeout and token", []string{"--timeout", "90s", "--token-file", tokenFile, "--bind-to", "none", "prog"}, func(t *testing.T, c launch.Config) {
			assert.Equal(t, 90*time.Second, c.Timeout)
			assert.Equal(t, "s3cret", c.Token)
			assert.False(t, c.Bind)
		}, ""},
		{"multi-node", []string{"--nnodes", "3", "--node-rank", "2", "--rdzv-endpoint", "10.0.0.1:29400", "--token-file", tokenFile,
			"--rdzv-conf", "join_timeout=20,last_call_timeout=1.5,read_timeout=60", "--local-addr", "10.0.0.3", "prog"}, func(t *testing.T, c launch.Config) {
			assert.Equal(t, 3, c.MinNodes)
			assert.Equal(t, 3, c.MaxNodes)
			assert.Equal(t, 2, c.NodeRank)
			assert.Equal(t, "10.0.0.1:29400", c.RdzvEndpoint)
			assert.Equal(t, 20*time.Second, c.JoinTimeout)
			assert.Equal(t, 1500*time.Millisecond, c.LastCall)
			assert.Equal(t, "10.0.0.3", c.LocalAddr)
		}, ""},
		{"elastic, static endpoint", []string{"--nnodes", "1:4", "--master-addr", "node0", "--token-file", tokenFile, "prog"}, func(t *testing.T, c launch.Config) {
			assert.Equal(t, 1, c.MinNodes)
			assert.Equal(t, 4, c.MaxNodes)
			assert.Equal(t, -1, c.NodeRank, "numbered by the rendezvous")
			assert.Equal(t, "node0:29500", c.RdzvEndpoint, "torchrun's default port")
		}, ""},
		{"multi-node without endpoint", []string{"--nnodes", "2", "--token-file", tokenFile, "prog"}, nil, "--rdzv-endpoint HOST:PORT"},
		{"multi-node without token", []string{"--nnodes", "2", "--rdzv-endpoint", "h:1", "prog"}, nil, "same job token"},
		{"bad nnodes", []string{"--nnodes", "3:2", "prog"}, nil, "MIN <= MAX"},
		{"bad rdzv conf", []string{"--rdzv-conf", "join_timeout=soon", "prog"}, nil, "join_timeout"},
		{"node rank out of range", []string{"--node-rank", "1", "prog"}, nil, "want 0..0"},
		{"zero procs", []string{"--nproc-per-node", "0", "prog"}, nil, "at least 1"},
		{"bad redirects", []string{"--redirects", "4", "prog"}, nil, "--redirects"},
		{"bad per-rank redirects", []string{"--redirects", "0:1,x:2", "prog"}, nil, "LOCAL_RANK:STD"},
		{"bad filter", []string{"--local-ranks-filter", "3", "prog"}, nil, "--local-ranks-filter"},
		{"bad endpoint", []string{"--rdzv-endpoint", "nohostport", "prog"}, nil, "HOST:PORT"},
		{"bad bind", []string{"--bind-to", "socket", "prog"}, nil, "core or none"},
		{"missing token file", []string{"--token-file", "/nonexistent/token", "prog"}, nil, "--token-file"},
		{"negative restarts", []string{"--max-restarts", "-1", "prog"}, nil, "negative"},
		{"no program", nil, nil, "no program"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseFlags(t, c.args...)
			if c.err != "" {
				assert.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			if c.check != nil {
				c.check(t, cfg)
			}
		})
	}
}
