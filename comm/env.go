package comm

import (
	"fmt"
	"os"
	"strconv"
)

// Env is where this process sits in the job, as discovered from the environment.
type Env struct {
	Rank, WorldSize           int
	LocalRank, LocalWorldSize int
	MasterAddr                string
	MasterPort                int
	Source                    string // "torchrun", "openmpi", "pmi", "slurm", or "" when nothing was set
}

// envSource is one family of launcher variables.
type envSource struct {
	name                        string
	rank, size, localRank, locS string
	guard                       string // only considered when this variable is set (Slurm: inside an srun step)
}

// The discovery order of DESIGN.md: torchrun names first, then OpenMPI, PMI, Slurm.
var envSources = []envSource{
	{name: "torchrun", rank: "RANK", size: "WORLD_SIZE", localRank: "LOCAL_RANK", locS: "LOCAL_WORLD_SIZE"},
	{name: "openmpi", rank: "OMPI_COMM_WORLD_RANK", size: "OMPI_COMM_WORLD_SIZE", localRank: "OMPI_COMM_WORLD_LOCAL_RANK", locS: "OMPI_COMM_WORLD_LOCAL_SIZE"},
	{name: "pmi", rank: "PMI_RANK", size: "PMI_SIZE", localRank: "MPI_LOCALRANKID", locS: "MPI_LOCALNRANKS"},
	{name: "slurm", rank: "SLURM_PROCID", size: "SLURM_NTASKS", localRank: "SLURM_LOCALID", locS: "SLURM_NTASKS_PER_NODE", guard: "SLURM_STEP_ID"},
}

// DiscoverEnv reads the rank layout from the environment: torchrun's names, then OpenMPI's,
// PMI's, then Slurm's (only inside an srun step). The first family whose rank and size are both
// set wins; a family with only one of the two set is an error, as are values that are not
// numbers or out of range. MASTER_ADDR and MASTER_PORT are read whatever the family.
func DiscoverEnv() (Env, error) {
	return discoverEnv(os.LookupEnv)
}

func discoverEnv(lookup func(string) (string, bool)) (Env, error) {
	var e Env
	e.MasterAddr, _ = lookup("MASTER_ADDR")
	if p, ok := lookup("MASTER_PORT"); ok && p != "" {
		port, err := strconv.Atoi(p)
		if err != nil || port <= 0 || port > 65535 {
			return e, fmt.Errorf("gccl: MASTER_PORT=%q is not a TCP port: set it to a number in 1..65535", p)
		}
		e.MasterPort = port
	}
	for _, s := range envSources {
		if s.guard != "" {
			if _, ok := lookup(s.guard); !ok {
				continue
			}
		}
		rs, hasRank := lookup(s.rank)
		ws, hasSize := lookup(s.size)
		if !hasRank && !hasSize {
			continue
		}
		if hasRank != hasSize {
			set, unset := s.rank, s.size
			if !hasRank {
				set, unset = s.size, s.rank
			}
			return e, fmt.Errorf("gccl: %s is set but %s is not (%s launcher variables): set both, or neither", set, unset, s.name)
		}
		var err error
		if e.Rank, err = envInt(s.rank, rs); err != nil {
			return e, err
		}
		if e.WorldSize, err = envInt(s.size, ws); err != nil {
			return e, err
		}
		if e.WorldSize < 1 || e.Rank < 0 || e.Rank >= e.WorldSize {
			return e, fmt.Errorf("gccl: %s=%d is out of range for %s=%d: ranks run from 0 to world size - 1", s.rank, e.Rank, s.size, e.WorldSize)
		}
		e.LocalRank, e.LocalWorldSize = e.Rank, e.WorldSize
		if v, ok := lookup(s.localRank); ok {
			if e.LocalRank, err = envInt(s.localRank, v); err != nil {
				return e, err
			}
			e.LocalWorldSize = 0
		}
		if v, ok := lookup(s.locS); ok {
			if s.name == "slurm" {
				v = slurmTasksPerNode(v)
			}
			if e.LocalWorldSize, err = envInt(s.locS, v); err != nil {
				return e, err
			}
		}
		if _, ok := lookup(s.locS); !ok && e.LocalWorldSize == 0 {
			e.LocalWorldSize = e.WorldSize
		}
		if e.LocalWorldSize < 1 || e.LocalWorldSize > e.WorldSize {
			return e, fmt.Errorf("gccl: %s=%d is out of range: it must be between 1 and %s=%d", s.locS, e.LocalWorldSize, s.size, e.WorldSize)
		}
		if e.LocalRank < 0 || e.LocalRank >= e.LocalWorldSize {
			return e, fmt.Errorf("gccl: %s=%d is out of range for %s=%d: local ranks run from 0 to local world size - 1", s.localRank, e.LocalRank, s.locS, e.LocalWorldSize)
		}
		e.Source = s.name
		return e, nil
	}
	return e, nil
}

// slurmTasksPerNode reads the first count of SLURM_NTASKS_PER_NODE-style lists ("4(x2),3").
func slurmTasksPerNode(v string) string {
	for i, c := range v {
		if c < '0' || c > '9' {
			return v[:i]
		}
	}
	return v
}

func envInt(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("gccl: %s=%q is not an integer", name, v)
	}
	return n, nil
}
