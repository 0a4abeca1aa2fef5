package comm

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// GroupOptions configure NewGroup and Split. Zero values inherit from the parent group.
type GroupOptions struct {
	Backend string        // default: the parent's backend
	Timeout time.Duration // default: the parent's timeout
	Desc    string        // free-form description, shown in flight-recorder dumps
}

// NewGroup creates a group of the given global ranks (members of pg, in the order given: the
// first is group rank 0). Every listed rank calls it, with the same list, in the same order
// relative to its other NewGroup calls with that list; ranks not in the list may call it too
// and get (nil, nil), like torch.distributed.new_group's non-members.
func (pg *ProcessGroup) NewGroup(ctx context.Context, ranks []int, opts GroupOptions) (*ProcessGroup, error) {
	if len(ranks) == 0 {
		return nil, fmt.Errorf("gccl: NewGroup on group %s (rank %d): the rank list is empty: %w", pg.label, pg.rank, ErrInvalidArgument)
	}
	seen := map[int]bool{}
	for _, r := range ranks {
		if !slices.Contains(pg.globalRanks, r) {
			return nil, fmt.Errorf("gccl: NewGroup on group %s (rank %d): global rank %d is not a member of the parent group %v: %w",
				pg.label, pg.rank, r, pg.globalRanks, ErrInvalidArgument)
		}
		if seen[r] {
			return nil, fmt.Errorf("gccl: NewGroup on group %s (rank %d): rank %d is listed twice: %w", pg.label, pg.rank, r, ErrInvalidArgument)
		}
		seen[r] = true
	}
	key := "ranks=" + joinInts(ranks)
	n := pg.nextChild(key)
	if !seen[pg.w.rank] {
		return nil, nil
	}
	name := fmt.Sprintf("%s/%s#%d", pg.name, joinInts(ranks), n)
	return pg.child(ctx, name, ranks, opts)
}

// Split partitions the group: ranks that pass the same color form a new group, ordered by key
// (ties broken by rank in pg). Every rank of pg calls it; a negative color means "in no group"
// and returns (nil, nil). It costs one all-gather on pg.
func (pg *ProcessGroup) Split(ctx context.Context, color, key int, opts GroupOptions) (*ProcessGroup, error) {
	type entry struct {
		Color, Key, Rank int
		Backend          string
	}
	backend := pg.childBackend(opts)
	all, err := AllGatherObject(ctx, pg, entry{Color: color, Key: key, Rank: pg.rank, Backend: backend})
	if err != nil {
		return nil, fmt.Errorf("gccl: Split on group %s (rank %d): exchanging colors: %w", pg.label, pg.rank, err)
	}
	n := pg.nextChild("split")
	if color < 0 {
		return nil, nil
	}
	var members []entry
	for _, e := range all {
		if e.Color == color {
			if e.Backend != backend {
				// Every member sees the same entries, so every member of the color fails here.
				return nil, fmt.Errorf("gccl: Split on group %s (rank %d): %w: rank %d asks for backend %q for color %d, this rank for %q: pass the same GroupOptions.Backend on every member",
					pg.label, pg.rank, ErrMismatch, e.Rank, e.Backend, color, backend)
			}
			members = append(members, e)
		}
	}
	sort.SliceStable(members, func(i, j int) bool {
		if members[i].Key != members[j].Key {
			return members[i].Key < members[j].Key
		}
		return members[i].Rank < members[j].Rank
	})
	ranks := make([]int, len(members))
	for i, e := range members {
		ranks[i] = pg.globalRanks[e.Rank]
	}
	name := fmt.Sprintf("%s/split%d/color%d", pg.name, n, color)
	return pg.child(ctx, name, ranks, opts)
}

func (pg *ProcessGroup) nextChild(key string) int {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.children == nil {
		pg.children = map[string]int{}
	}
	n := pg.children[key]
	pg.children[key] = n + 1
	return n
}

// childBackend is the backend of a group pg creates with opts.
func (pg *ProcessGroup) childBackend(opts GroupOptions) string {
	if opts.Backend != "" {
		return opts.Backend
	}
	return pg.backendName
}

func (pg *ProcessGroup) child(ctx context.Context, name string, ranks []int, opts GroupOptions) (*ProcessGroup, error) {
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = pg.timeout
	}
	desc := opts.Desc
	if desc == "" {
		desc = "undefined"
	}
	return pg.w.newGroup(ctx, name, desc, append([]int(nil), ranks...), pg.childBackend(opts), timeout)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
