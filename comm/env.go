package comm

import (
	"fmt"
	"os"
	"strconv"
	"strings"
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
	name                             string
	rank, size, localRank, localSize string // localSize: none for Slurm (see slurmTasksOnThisNode)
	guard                            string // only considered when this variable is set (Slurm: inside an srun step)
}

// The discovery order of DESIGN.md: torchrun names first, then OpenMPI, PMI, Slurm.
var envSources = []envSource{
	{name: "torchrun", rank: "RANK", size: "WORLD_SIZE", localRank: "LOCAL_RANK", localSize: "LOCAL_WORLD_SIZE"},
	{name: "openmpi", rank: "OMPI_COMM_WORLD_RANK", size: "OMPI_COMM_WORLD_SIZE", localRank: "OMPI_COMM_WORLD_LOCAL_RANK", localSize: "OMPI_COMM_WORLD_LOCAL_SIZE"},
	{name: "pmi", rank: "PMI_RANK", size: "PMI_SIZE", localRank: "MPI_LOCALRANKID", localSize: "MPI_LOCALNRANKS"},
	{name: "slurm", rank: "SLURM_PROCID", size: "SLURM_NTASKS", localRank: "SLURM_LOCALID", guard: "SLURM_STEP_ID"},
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
		sizeVar, local, ok, err := s.localWorldSize(lookup)
		if err != nil {
			return e, err
		}
		if ok {
			e.LocalWorldSize = local
		} else if e.LocalWorldSize == 0 {
			e.LocalWorldSize = e.WorldSize
		}
		if e.LocalWorldSize < 1 || e.LocalWorldSize > e.WorldSize {
			return e, fmt.Errorf("gccl: %s=%d is out of range: it must be between 1 and %s=%d", sizeVar, e.LocalWorldSize, s.size, e.WorldSize)
		}
		if e.LocalRank < 0 || e.LocalRank >= e.LocalWorldSize {
			return e, fmt.Errorf("gccl: %s=%d is out of range for %s=%d: local ranks run from 0 to local world size - 1", s.localRank, e.LocalRank, sizeVar, e.LocalWorldSize)
		}
		e.Source = s.name
		return e, nil
	}
	return e, nil
}

// localWorldSize reads the family's local world size: the variable it read (for errors), its
// value, and whether it was set.
func (s envSource) localWorldSize(lookup func(string) (string, bool)) (name string, count int, ok bool, err error) {
	if s.name == "slurm" {
		return slurmTasksOnThisNode(lookup)
	}
	v, set := lookup(s.localSize)
	if set {
		count, err = envInt(s.localSize, v)
	}
	return s.localSize, count, set, err
}

// slurmTasksOnThisNode returns the number of tasks of the srun step on this node: from the
// step's per-node list (SLURM_STEP_TASKS_PER_NODE, else SLURM_TASKS_PER_NODE, which srun always
// sets, else SLURM_NTASKS_PER_NODE, set only with --ntasks-per-node), lists such as "4(x2),3"
// meaning 4, 4, 3, at this node's index SLURM_NODEID. It returns the variable it read, the count,
// and whether any was set.
func slurmTasksOnThisNode(lookup func(string) (string, bool)) (name string, count int, ok bool, err error) {
	for _, name = range []string{"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE"} {
		list, set := lookup(name)
		if !set {
			continue
		}
		node := 0
		if v, set := lookup("SLURM_NODEID"); set {
			if node, err = envInt("SLURM_NODEID", v); err != nil {
				return name, 0, false, err
			}
		}
		count, nodes, err := slurmCountAt(list, node)
		if err != nil {
			return name, 0, false, fmt.Errorf("gccl: %s=%q: %v; want counts such as 4(x2),3", name, list, err)
		}
		if node < 0 || node >= nodes {
			return name, 0, false, fmt.Errorf("gccl: SLURM_NODEID=%d is out of range for %s=%q (%d nodes)", node, name, list, nodes)
		}
		return name, count, true, nil
	}
	return "SLURM_TASKS_PER_NODE", 0, false, nil
}

// slurmCountAt reads Slurm's compressed per-node counts ("4(x2),3" is 4, 4, 3): the count of
// node (0 when node is past the list) and how many nodes the list covers.
func slurmCountAt(list string, node int) (count, nodes int, err error) {
	for _, item := range strings.Split(list, ",") {
		c, repeat := item, "1"
		if i := strings.Index(item, "(x"); i >= 0 && strings.HasSuffix(item, ")") {
			c, repeat = item[:i], item[i+2:len(item)-1]
		}
		n, err1 := strconv.Atoi(c)
		r, err2 := strconv.Atoi(repeat)
		if err1 != nil || err2 != nil || n < 0 || r < 1 || r > 1<<20 {
			return 0, 0, fmt.Errorf("%q is not a count or count(xrepeat)", item)
		}
		if node >= nodes && node < nodes+r {
			count = n
		}
		nodes += r
	}
	return count, nodes, nil
}

func envInt(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("gccl: %s=%q is not an integer", name, v)
	}
	return n, nil
}
