package dtensor

import (
	"fmt"
	"strings"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/tensor"
)

// Placement says how a DTensor lies along one mesh dimension: split into chunks (Shard),
// copied whole on every rank (Replicate), or held as per-rank parts still to be reduced
// (Partial). It is one of Shard, Replicate and Partial.
type Placement interface {
	// String is torch's short form: "S(0)", "R", "P(sum)".
	String() string
	placement()
}

// Shard splits tensor dimension Dim across the ranks of a mesh dimension by torch.chunk's
// rules: every rank but the trailing ones holds ceil(n/m) elements along Dim; the trailing ones
// may hold fewer, or none. A negative Dim counts from the end, as in PyTorch.
type Shard struct{ Dim int }

// Replicate holds the whole tensor (of this mesh dimension's level) on every rank.
type Replicate struct{}

// Partial holds, on each rank of a mesh dimension, a part whose reduction with Op across that
// dimension is the value. The zero Op is comm.Sum.
type Partial struct{ Op comm.ReduceOp }

func (Shard) placement()     {}
func (Replicate) placement() {}
func (Partial) placement()   {}

func (s Shard) String() string   { return fmt.Sprintf("S(%d)", s.Dim) }
func (Replicate) String() string { return "R" }
func (p Partial) String() string { return "P(" + strings.ToLower(p.Op.String()) + ")" }

// formatPlacements prints placements like torch: [S(0), R].
func formatPlacements(ps []Placement) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		if p == nil {
			parts[i] = "nil"
		} else {
			parts[i] = p.String()
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// shardDim is the tensor dimension p shards, or -1.
func shardDim(p Placement) int {
	if s, ok := p.(Shard); ok {
		return s.Dim
	}
	return -1
}

// normalizePlacements checks placements against a mesh of meshDims dimensions and a tensor of
// rank tdim, and returns them with negative shard dims made positive. Its errors leave naming the
// op to the caller.
func normalizePlacements(ps []Placement, meshDims, tdim int) ([]Placement, error) {
	if len(ps) != meshDims {
		return nil, fmt.Errorf("placements %s: %s for a mesh of %s; pass one placement per mesh dimension",
			formatPlacements(ps), plural(len(ps), "placement"), plural(meshDims, "dimension"))
	}
	out := make([]Placement, len(ps))
	for i, p := range ps {
		switch p := p.(type) {
		case Shard:
			d := p.Dim
			if d < 0 {
				d += tdim
			}
			if d < 0 || d >= tdim {
				return nil, fmt.Errorf("placement %d, %s, shards dimension %d of a %d-d tensor; pass a dim in [%d, %d)",
					i, p, p.Dim, tdim, -tdim, tdim)
			}
			out[i] = Shard{Dim: d}
		case Replicate:
			out[i] = p
		case Partial:
			if !p.Op.Valid() {
				return nil, fmt.Errorf("placement %d, %s, has an unknown reduce op; use comm.Sum, comm.Avg, comm.Max or another op of comm", i, p)
			}
			if p.Op == tensor.PreMulSum {
				return nil, fmt.Errorf("placement %d, %s: PreMulSum needs a factor that a placement cannot carry; use Partial{Op: comm.Sum} and scale", i, p)
			}
			out[i] = p
		case nil:
			return nil, fmt.Errorf("placement %d is nil; use Shard{Dim: d}, Replicate{} or Partial{}", i)
		default:
			return nil, fmt.Errorf("placement %d has unknown type %T; use Shard, Replicate or Partial", i, p)
		}
	}
	return out, nil
}

// plural is "1 placement", "2 placements".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
