package comm

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeLookup is an environment made of vars, for discoverEnv.
func fakeLookup(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// TestDiscoverEnv checks the rank discovery of DESIGN.md against a fake environment: the
// launcher families in order (torchrun, OpenMPI, PMI, Slurm inside an srun step), and loud
// failures for partial sets and bad values.
func TestDiscoverEnv(t *testing.T) {
	tests := []struct {
		name    string
		vars    map[string]string
		want    Env
		wantErr []string // substrings of the error; nil means no error
	}{
		{
			name: "nothing set is a single rank",
			vars: map[string]string{},
			want: Env{},
		},
		{
			name: "torchrun",
			vars: map[string]string{"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
				"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"},
			want: Env{Rank: 3, WorldSize: 8, LocalRank: 1, LocalWorldSize: 2, MasterAddr: "10.0.0.1", MasterPort: 29500, Source: "torchrun"},
		},
		{
			name: "torchrun without local variables: one host",
			vars: map[string]string{"RANK": "2", "WORLD_SIZE": "4"},
			want: Env{Rank: 2, WorldSize: 4, LocalRank: 2, LocalWorldSize: 4, Source: "torchrun"},
		},
		{
			name: "torchrun with LOCAL_RANK only",
			vars: map[string]string{"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"},
			want: Env{Rank: 5, WorldSize: 8, LocalRank: 1, LocalWorldSize: 8, Source: "torchrun"},
		},
		{
			name: "master address without ranks",
			vars: map[string]string{"MASTER_ADDR": "localhost", "MASTER_PORT": "1234"},
			want: Env{MasterAddr: "localhost", MasterPort: 1234},
		},
		{
			name: "empty MASTER_PORT is unset",
			vars: map[string]string{"MASTER_PORT": "", "RANK": "0", "WORLD_SIZE": "1"},
			want: Env{Rank: 0, WorldSize: 1, LocalRank: 0, LocalWorldSize: 1, Source: "torchrun"},
		},
		{
			name: "openmpi",
			vars: map[string]string{"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "6",
				"OMPI_COMM_WORLD_LOCAL_RANK": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "3"},
			want: Env{Rank: 5, WorldSize: 6, LocalRank: 2, LocalWorldSize: 3, Source: "openmpi"},
		},
		{
			name: "pmi",
			vars: map[string]string{"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"},
			want: Env{Rank: 1, WorldSize: 2, LocalRank: 1, LocalWorldSize: 2, Source: "pmi"},
		},
		{
			name: "slurm inside an srun step",
			vars: map[string]string{"SLURM_STEP_ID": "0", "SLURM_PROCID": "7", "SLURM_NTASKS": "8",
				"SLURM_LOCALID": "3", "SLURM_NTASKS_PER_NODE": "4(x2)"},
			want: Env{Rank: 7, WorldSize: 8, LocalRank: 3, LocalWorldSize: 4, Source: "slurm"},
		},
		{
			name: "slurm list of tasks per node: this node's count",
			vars: map[string]string{"SLURM_STEP_ID": "0", "SLURM_PROCID": "5", "SLURM_NTASKS": "7",
				"SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NTASKS_PER_NODE": "4,3"},
			want: Env{Rank: 5, WorldSize: 7, LocalRank: 1, LocalWorldSize: 3, Source: "slurm"},
		},
		{
			// srun without --ntasks-per-node sets no SLURM_NTASKS_PER_NODE, but always the
			// per-node list; the step's list wins over the job's.
			name: "slurm without --ntasks-per-node reads the step's per-node list",
			vars: map[string]string{"SLURM_STEP_ID": "0", "SLURM_PROCID": "10", "SLURM_NTASKS": "11",
				"SLURM_LOCALID": "1", "SLURM_NODEID": "3", "SLURM_TASKS_PER_NODE": "4(x4)",
				"SLURM_STEP_TASKS_PER_NODE": "3(x3),2"},
			want: Env{Rank: 10, WorldSize: 11, LocalRank: 1, LocalWorldSize: 2, Source: "slurm"},
		},
		{
			name: "slurm job list when the step's is absent",
			vars: map[string]string{"SLURM_STEP_ID": "0", "SLURM_PROCID": "2", "SLURM_NTASKS": "8",
				"SLURM_LOCALID": "0", "SLURM_NODEID": "1", "SLURM_TASKS_PER_NODE": "2(x4)"},
			want: Env{Rank: 2, WorldSize: 8, LocalRank: 0, LocalWorldSize: 2, Source: "slurm"},
		},
		{
			name: "slurm outside an srun step is ignored (sbatch script)",
			vars: map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "8"},
			want: Env{},
		},
		{
			// torchrun started inside an srun step (one task per node) is a standard setup: the
			// torchrun variables describe the job, Slurm's describe torchrun itself.
			name: "torchrun wins over slurm",
			vars: map[string]string{"RANK": "6", "WORLD_SIZE": "8", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "4",
				"SLURM_STEP_ID": "0", "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0"},
			want: Env{Rank: 6, WorldSize: 8, LocalRank: 2, LocalWorldSize: 4, Source: "torchrun"},
		},
		{
			name: "openmpi wins over pmi",
			vars: map[string]string{"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "PMI_RANK": "0", "PMI_SIZE": "2"},
			want: Env{Rank: 1, WorldSize: 2, LocalRank: 1, LocalWorldSize: 2, Source: "openmpi"},
		},
		{
			name:    "RANK without WORLD_SIZE",
			vars:    map[string]string{"RANK": "0"},
			wantErr: []string{"RANK is set but WORLD_SIZE is not", "torchrun"},
		},
		{
			name:    "WORLD_SIZE without RANK",
			vars:    map[string]string{"WORLD_SIZE": "4"},
			wantErr: []string{"WORLD_SIZE is set but RANK is not"},
		},
		{
			name:    "partial openmpi set",
			vars:    map[string]string{"OMPI_COMM_WORLD_SIZE": "4"},
			wantErr: []string{"OMPI_COMM_WORLD_SIZE is set but OMPI_COMM_WORLD_RANK is not", "openmpi"},
		},
		{
			name: "slurm node id past the per-node list",
			vars: map[string]string{"SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_NTASKS": "4",
				"SLURM_NODEID": "2", "SLURM_TASKS_PER_NODE": "2(x2)"},
			wantErr: []string{"SLURM_NODEID=2", "SLURM_TASKS_PER_NODE", "2 nodes"},
		},
		{
			name: "slurm per-node list malformed",
			vars: map[string]string{"SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_NTASKS": "4",
				"SLURM_TASKS_PER_NODE": "2(y2)"},
			wantErr: []string{"SLURM_TASKS_PER_NODE", "2(y2)"},
		},
		{
			name:    "partial slurm set inside a step",
			vars:    map[string]string{"SLURM_STEP_ID": "0", "SLURM_PROCID": "0"},
			wantErr: []string{"SLURM_PROCID is set but SLURM_NTASKS is not"},
		},
		{
			name:    "RANK not a number",
			vars:    map[string]string{"RANK": "zero", "WORLD_SIZE": "2"},
			wantErr: []string{`RANK="zero"`, "not an integer"},
		},
		{
			name:    "WORLD_SIZE not a number",
			vars:    map[string]string{"RANK": "0", "WORLD_SIZE": "2.0"},
			wantErr: []string{`WORLD_SIZE="2.0"`, "not an integer"},
		},
		{
			name:    "empty RANK",
			vars:    map[string]string{"RANK": "", "WORLD_SIZE": "2"},
			wantErr: []string{`RANK=""`},
		},
		{
			name:    "RANK equal to WORLD_SIZE",
			vars:    map[string]string{"RANK": "2", "WORLD_SIZE": "2"},
			wantErr: []string{"RANK=2 is out of range for WORLD_SIZE=2"},
		},
		{
			name:    "negative RANK",
			vars:    map[string]string{"RANK": "-1", "WORLD_SIZE": "2"},
			wantErr: []string{"RANK=-1 is out of range"},
		},
		{
			name:    "zero WORLD_SIZE",
			vars:    map[string]string{"RANK": "0", "WORLD_SIZE": "0"},
			wantErr: []string{"out of range for WORLD_SIZE=0"},
		},
		{
			name:    "LOCAL_RANK not a number",
			vars:    map[string]string{"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "x"},
			wantErr: []string{`LOCAL_RANK="x"`},
		},
		{
			name:    "LOCAL_WORLD_SIZE not a number",
			vars:    map[string]string{"RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": ""},
			wantErr: []string{`LOCAL_WORLD_SIZE=""`},
		},
		{
			name:    "MASTER_PORT not a number",
			vars:    map[string]string{"MASTER_PORT": "http", "RANK": "0", "WORLD_SIZE": "1"},
			wantErr: []string{`MASTER_PORT="http"`, "1..65535"},
		},
		{
			name:    "MASTER_PORT zero",
			vars:    map[string]string{"MASTER_PORT": "0"},
			wantErr: []string{`MASTER_PORT="0"`},
		},
		{
			name:    "MASTER_PORT too large",
			vars:    map[string]string{"MASTER_PORT": "65536"},
			wantErr: []string{`MASTER_PORT="65536"`},
		},
		// The doc comment of DiscoverEnv promises errors for values that are out of range;
		// the local rank and size are not checked (see the report): these fail until they are.
		{
			name:    "LOCAL_RANK not below LOCAL_WORLD_SIZE",
			vars:    map[string]string{"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "2"},
			wantErr: []string{"LOCAL_RANK=3", "LOCAL_WORLD_SIZE=2"},
		},
		{
			name:    "negative LOCAL_RANK",
			vars:    map[string]string{"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "-1"},
			wantErr: []string{"LOCAL_RANK=-1"},
		},
		{
			name:    "LOCAL_WORLD_SIZE zero",
			vars:    map[string]string{"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "0"},
			wantErr: []string{"LOCAL_WORLD_SIZE=0"},
		},
		{
			name:    "LOCAL_WORLD_SIZE larger than WORLD_SIZE",
			vars:    map[string]string{"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "4"},
			wantErr: []string{"LOCAL_WORLD_SIZE=4", "WORLD_SIZE=2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := discoverEnv(fakeLookup(tc.vars))
			if tc.wantErr != nil {
				require.Error(t, err, "discoverEnv(%v) = %+v", tc.vars, got)
				assert.Contains(t, err.Error(), "gccl: ")
				for _, s := range tc.wantErr {
					assert.Contains(t, err.Error(), s)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestDiscoverEnvReadsTheProcessEnvironment checks that DiscoverEnv is discoverEnv over the
// real environment.
func TestDiscoverEnvReadsTheProcessEnvironment(t *testing.T) {
	t.Setenv("RANK", "1")
	t.Setenv("WORLD_SIZE", "3")
	t.Setenv("LOCAL_RANK", "1")
	t.Setenv("LOCAL_WORLD_SIZE", "3")
	t.Setenv("MASTER_ADDR", "127.0.0.1")
	t.Setenv("MASTER_PORT", "29501")
	got, err := DiscoverEnv()
	require.NoError(t, err)
	assert.Equal(t, Env{Rank: 1, WorldSize: 3, LocalRank: 1, LocalWorldSize: 3, MasterAddr: "127.0.0.1", MasterPort: 29501, Source: "torchrun"}, got)
}

func TestParseLogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, " warn ": slog.LevelWarn, "warning": slog.LevelWarn, "error": slog.LevelError} {
		got, ok := ParseLogLevel(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "loud", "3"} {
		_, ok := ParseLogLevel(in)
		assert.False(t, ok, in)
	}
}
