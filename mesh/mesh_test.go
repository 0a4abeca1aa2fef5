package mesh_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/internal/ranktest"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
)

// layoutCase is one mesh the ranks of TestLayout build, passed to them as ranktest's Case.
type layoutCase struct {
	Name     string
	Ranks    int
	Shape    []int
	Names    []string
	Backends map[string]string // Options.Dims[name].Backend
	World    string            // the world's backend (GCCL_BACKEND), "" for the default
	Want     map[string]string // the backend each dimension's group must have
	Long     bool              // skipped with -short (the race target): other cases cover it
}

// TestLayout: on every rank, for 1-, 2- and 3-D meshes over 4 and 8 real processes, the
// coordinates, local ranks, sizes and group members follow the row-major formula; an
// all-reduce on each dimension's group sums exactly the ranks that share the other
// coordinates; New creates one group per dimension, described mesh_<dim>; Sub and Dim create
// none; Flatten creates one, once; per-dimension backends are the ones asked for; Close closes
// the mesh's groups and not the parent.
func TestLayout(t *testing.T) {
	if ranktest.Child(t) {
		var tc layoutCase
		ranktest.ReadCase(t, &tc)
		layoutChild(t, tc)
		return
	}
	cases := []layoutCase{
		{Name: "1d_4", Ranks: 4, Shape: []int{4}, Names: []string{"tp"}},
		{Name: "2x2", Ranks: 4, Shape: []int{2, 2}, Names: []string{"dp", "tp"}},
		{Name: "1d_8", Long: true, Ranks: 8, Shape: []int{8}, Names: []string{"dp"}},
		{Name: "2x4", Long: true, Ranks: 8, Shape: []int{2, 4}, Names: []string{"dp", "tp"}},
		{Name: "4x2", Long: true, Ranks: 8, Shape: []int{4, 2}, Names: []string{"dp", "tp"}},
		{Name: "2x2x2", Long: true, Ranks: 8, Shape: []int{2, 2, 2}, Names: []string{"pp", "dp", "tp"}},
		{Name: "backends_2x2x2", Ranks: 8, Shape: []int{2, 2, 2}, Names: []string{"pp", "dp", "tp"},
			World: "shm", Backends: map[string]string{"tp": "shm", "dp": "gloo"},
			Want: map[string]string{"pp": "shm", "dp": "gloo", "tp": "shm"}},
		{Name: "backends_2x2", Ranks: 4, Shape: []int{2, 2}, Names: []string{"dp", "tp"},
			Backends: map[string]string{"tp": "shm"}, Want: map[string]string{"dp": "gloo", "tp": "shm"}},
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			if tc.Long && testing.Short() {
				t.Skip("-short: 3-D and 8 ranks are covered by backends_2x2x2")
			}
			env := []string{"GCCL_TIMEOUT=60s"}
			if tc.World != "" {
				env = append(env, "GCCL_BACKEND="+tc.World)
			} else {
				env = append(env, "GCCL_BACKEND=gloo")
			}
			res := ranktest.Spawn(t, ranktest.Config{Ranks: tc.Ranks, Timeout: 2 * time.Minute, Case: tc, Env: env})
			ranktest.AssertExitedZero(t, res)
		})
	}
}

// rowMajor is the coordinate of index i in shape, the last dimension fastest (written out
// again here rather than taken from the package under test).
func rowMajor(i int, shape []int) []int {
	c := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		c[d] = i % shape[d]
		i /= shape[d]
	}
	return c
}

// lineOf lists the ranks whose coordinates equal mine outside the dimensions in dims, in
// row-major order of their coordinates in dims (the order of a group or a view).
func lineOf(rank int, shape []int, dims []int) []int {
	me := rowMajor(rank, shape)
	var out []int
	n := 1
	for _, s := range shape {
		n *= s
	}
	for r := range n { // row-major over all ranks is row-major over the dims too
		c := rowMajor(r, shape)
		same := true
		for d := range shape {
			if !slices.Contains(dims, d) && c[d] != me[d] {
				same = false
			}
		}
		if same {
			out = append(out, r)
		}
	}
	return out
}

// groupCount is how many groups this rank has registered with its flight recorder, and how
// many of them carry each description.
func groupCount(pg *comm.ProcessGroup) (int, map[string]int) {
	cfg := pg.Recorder().Snapshot().PGConfig
	descs := map[string]int{}
	for _, c := range cfg {
		descs[c.Desc]++
	}
	return len(cfg), descs
}

func layoutChild(t *testing.T, tc layoutCase) {
	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{})
	require.NoError(t, err)
	defer pg.Close()
	rank := pg.Rank()
	n0, _ := groupCount(pg)

	opts := mesh.Options{}
	if tc.Backends != nil {
		opts.Dims = map[string]mesh.DimOptions{}
		for name, b := range tc.Backends {
			opts.Dims[name] = mesh.DimOptions{Backend: b}
		}
	}
	m, err := mesh.New(ctx, pg, tc.Shape, tc.Names, opts)
	require.NoError(t, err)

	n1, descs := groupCount(pg)
	assert.Equal(t, n0+len(tc.Shape), n1, "New creates one group per dimension")
	for _, name := range tc.Names {
		assert.Equal(t, 1, descs["mesh_"+name], "one group described mesh_%s in pg_config: %v", name, descs)
	}

	me := rowMajor(rank, tc.Shape)
	assert.Equal(t, me, m.Coordinate())
	assert.Equal(t, tc.Shape, m.Shape())
	assert.Equal(t, tc.Names, m.Names())
	assert.Equal(t, rank, m.Rank())
	assert.Equal(t, pg.GlobalRanks(), m.Ranks())
	for i, name := range tc.Names {
		g, err := m.Group(name)
		require.NoError(t, err)
		gi, err := m.GroupAt(i)
		require.NoError(t, err)
		assert.Same(t, g, gi)
		lr, err := m.LocalRank(name)
		require.NoError(t, err)
		size, err := m.Size(name)
		require.NoError(t, err)
		assert.Equal(t, me[i], lr, "local rank in %s", name)
		assert.Equal(t, tc.Shape[i], size)
		assert.Equal(t, tc.Shape[i], g.Size())
		assert.Equal(t, me[i], g.Rank(), "group rank in %s is the coordinate", name)
		want := lineOf(rank, tc.Shape, []int{i})
		assert.Equal(t, want, g.GlobalRanks(), "members of %s", name)
		checkSum(t, ctx, g, want, name)
		if b, ok := tc.Want[name]; ok {
			assert.Equal(t, b, g.Backend(), "backend of %s", name)
		} else {
			assert.Equal(t, pg.Backend(), g.Backend(), "%s inherits the parent's backend", name)
		}

		d, err := m.Dim(name)
		require.NoError(t, err)
		assert.Equal(t, []string{name}, d.Names())
		assert.Equal(t, []int{me[i]}, d.Coordinate())
		assert.Equal(t, me[i], d.Rank())
		assert.Equal(t, want, d.Ranks())
		dg, err := d.GroupAt(0)
		require.NoError(t, err)
		assert.Same(t, g, dg, "Dim shares the root's group")
	}

	// Every view of two or more dimensions, in order: no new group, the same groups.
	for mask := 1; mask < 1<<len(tc.Names); mask++ {
		var names []string
		var dims []int
		for i, name := range tc.Names {
			if mask&(1<<i) != 0 {
				names, dims = append(names, name), append(dims, i)
			}
		}
		sub, err := m.Sub(names...)
		require.NoError(t, err)
		assert.Equal(t, names, sub.Names())
		wantCoord := make([]int, len(dims))
		for k, d := range dims {
			wantCoord[k] = me[d]
		}
		assert.Equal(t, wantCoord, sub.Coordinate(), "Sub%q", names)
		assert.Equal(t, lineOf(rank, tc.Shape, dims), sub.Ranks(), "Sub%q", names)
		for _, name := range names {
			a, _ := sub.Group(name)
			b, _ := m.Group(name)
			assert.Same(t, b, a)
		}
		assert.NoError(t, sub.Close(), "a view's Close does nothing")
	}
	n2, _ := groupCount(pg)
	assert.Equal(t, n1, n2, "Sub and Dim create no groups")

	// Flatten every dimension but the first (all of them for a 1-D mesh), then all of them.
	tail := tc.Names[min(1, len(tc.Names)-1):]
	sub, err := m.Sub(tail...)
	require.NoError(t, err)
	flatName := strings.Join(tail, "_") + "_flat"
	flat, err := sub.Flatten(ctx, flatName, mesh.DimOptions{})
	require.NoError(t, err)
	n3, descs := groupCount(pg)
	created := 1
	if len(tail) == 1 {
		created = 0 // flattening one dimension reuses its group
	}
	assert.Equal(t, n2+created, n3, "Flatten of %q creates %d group", tail, created)
	if created == 1 {
		assert.Equal(t, 1, descs["mesh_"+flatName])
	}
	var tailDims []int
	for i := len(tc.Names) - len(tail); i < len(tc.Names); i++ {
		tailDims = append(tailDims, i)
	}
	wantFlat := lineOf(rank, tc.Shape, tailDims)
	fg, err := flat.Group(flatName)
	require.NoError(t, err)
	assert.Equal(t, wantFlat, fg.GlobalRanks())
	assert.Equal(t, slices.Index(wantFlat, rank), fg.Rank())
	assert.Equal(t, []int{fg.Rank()}, flat.Coordinate())
	assert.Equal(t, []int{len(wantFlat)}, flat.Shape())
	assert.Equal(t, wantFlat, flat.Ranks())
	checkSum(t, ctx, fg, wantFlat, flatName)
	again, err := sub.Flatten(ctx, flatName, mesh.DimOptions{})
	require.NoError(t, err)
	assert.Same(t, flat, again, "the second Flatten returns the cached mesh")
	again, err = m.Sub(tail...)
	require.NoError(t, err)
	again, err = again.Flatten(ctx, flatName, mesh.DimOptions{})
	require.NoError(t, err)
	assert.Same(t, flat, again, "Flatten of another view over the same dimensions is cached too")
	n4, _ := groupCount(pg)
	assert.Equal(t, n3, n4, "a cached Flatten creates no group")

	all, err := m.Flatten(ctx, "all", mesh.DimOptions{})
	require.NoError(t, err)
	ag, _ := all.GroupAt(0)
	assert.Equal(t, pg.GlobalRanks(), ag.GlobalRanks())
	checkSum(t, ctx, ag, pg.GlobalRanks(), "all")

	// Close closes the mesh's groups (ops fail with ErrClosed), and the parent stays open.
	groups := []*comm.ProcessGroup{fg, ag}
	for i := range tc.Names {
		g, _ := m.GroupAt(i)
		groups = append(groups, g)
	}
	require.NoError(t, m.Close())
	require.NoError(t, m.Close(), "Close is idempotent")
	for _, g := range groups {
		assert.ErrorIs(t, g.AllReduce(ctx, tensor.New(tensor.Int64, 1), comm.Sum), comm.ErrClosed)
	}
	checkSum(t, ctx, pg, pg.GlobalRanks(), "the parent")
}

// checkSum all-reduces 1<<(global rank) over g: the result has exactly the bits of want.
func checkSum(t *testing.T, ctx context.Context, g *comm.ProcessGroup, want []int, what string) {
	t.Helper()
	x := tensor.FromSlice([]int64{1 << g.GlobalRank(g.Rank())})
	require.NoError(t, g.AllReduce(ctx, x, comm.Sum), "all-reduce on %s", what)
	var bits int64
	for _, r := range want {
		bits |= 1 << r
	}
	assert.Equal(t, bits, x.Int64s()[0], "all-reduce on %s sums ranks %v", what, want)
}
