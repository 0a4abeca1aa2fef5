package mesh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gccl/gccl/comm"
)

// DimOptions configure the process group of one mesh dimension. Zero values inherit from the
// process group the mesh was created over.
type DimOptions struct {
	Backend string        // default: the parent group's backend
	Timeout time.Duration // default: the parent group's timeout
}

func (o DimOptions) String() string {
	return fmt.Sprintf("{backend %q, timeout %v}", o.Backend, o.Timeout)
}

// Options configure New.
type Options struct {
	// Dims overrides the group options of some dimensions, by name: for example shm for "tp"
	// and gloo for "dp". Every key must be one of the mesh's dimension names. A dimension not
	// listed gets a group with the parent group's backend and timeout.
	Dims map[string]DimOptions
}

// Mesh is an N-dimensional, named layout of the ranks of a process group, in row-major order
// (the last dimension varies fastest), with one process group per dimension: the group of a
// dimension holds the ranks whose coordinates differ only in that dimension.
//
// A Mesh is either a root mesh, made by New, which owns the groups it created, or a view (Sub,
// Dim, Flatten), which shares the root's groups. After creation a Mesh is read-only and safe to
// use from several goroutines; New and Flatten are collective.
type Mesh struct {
	root *root
	dims []*dim // the view's dimensions, in the root's order
}

// dim is one dimension: a dimension of the root, or a flattened product of several.
type dim struct {
	name  string
	size  int
	coord int // this rank's coordinate in it
	group *comm.ProcessGroup
	roots []int      // the root dimensions it covers, ascending
	opts  DimOptions // as asked (for Flatten's cache)
	owned bool       // a flattened dimension whose group Flatten created
}

// root is what a mesh and its views share.
type root struct {
	pg    *comm.ProcessGroup
	shape []int
	dims  []*dim
	top   *Mesh // the mesh New returned, whose Close closes the groups

	mu     sync.Mutex
	flat   map[string]*Mesh // Flatten's cache, by name
	closed bool
}

// spec is what every rank must agree on before New or Flatten creates groups.
type spec struct {
	Op      string
	Shape   []int
	Names   []string
	Dims    []string // "name=backend/timeout", sorted
	Flatten []int
}

// New arranges the ranks of pg as a mesh of the given shape, with a name for each dimension:
// pg's rank r sits at the row-major coordinates of r in shape. It creates one process group per
// dimension, each with one pg.Split (the same splits, in the same order, on every rank),
// described "mesh_<name>" in flight-recorder dumps, with the backend and timeout of
// opts.Dims[name] (default: pg's).
//
// Every rank of pg calls New with the same shape, names and options. Ranks that disagree get
// an error wrapping comm.ErrMismatch; bad arguments (a shape whose product is not pg.Size(),
// sizes below 1, empty, duplicate or unknown names) an error wrapping comm.ErrInvalidArgument,
// on every rank, before any group is created. The mesh does not own pg: Close closes the
// groups the mesh created, and pg stays open.
func New(ctx context.Context, pg *comm.ProcessGroup, shape []int, names []string, opts Options) (*Mesh, error) {
	if pg == nil {
		return nil, fmt.Errorf("gccl: mesh.New: the process group is nil: %w; pass the group from comm.Init (or a sub-group)", comm.ErrInvalidArgument)
	}
	sp := spec{Op: "New", Shape: shape, Names: names}
	for name, o := range opts.Dims {
		sp.Dims = append(sp.Dims, fmt.Sprintf("%s: %s", name, o))
	}
	sort.Strings(sp.Dims)
	// Agree first, so that a rank with other arguments fails everywhere instead of hanging.
	if err := agree(ctx, pg, "mesh.New", sp); err != nil {
		return nil, err
	}
	if err := validate(pg, shape, names, opts); err != nil {
		return nil, err
	}
	r := &root{pg: pg, shape: slices.Clone(shape), flat: map[string]*Mesh{}}
	coord := coordinates(pg.Rank(), shape)
	for i, name := range names {
		d := &dim{name: name, size: shape[i], coord: coord[i], roots: []int{i}, opts: opts.Dims[name]}
		g, err := pg.Split(ctx, splitColor(shape, coord, d.roots), coord[i], groupOptions(name, d.opts))
		if err != nil {
			_ = r.closeGroups() // the groups made so far; the Split error says what went wrong
			return nil, fmt.Errorf("gccl: mesh.New on group %q (rank %d): creating the group of dimension %q: %w", pg.Name(), pg.Rank(), name, err)
		}
		d.group = g
		r.dims = append(r.dims, d)
	}
	r.top = &Mesh{root: r, dims: slices.Clone(r.dims)}
	return r.top, nil
}

func groupOptions(name string, o DimOptions) comm.GroupOptions {
	return comm.GroupOptions{Backend: o.Backend, Timeout: o.Timeout, Desc: "mesh_" + name}
}

// agree all-gathers sp over pg and fails, on every rank, unless every rank passed the same.
func agree(ctx context.Context, pg *comm.ProcessGroup, op string, sp spec) error {
	all, err := comm.AllGatherObject(ctx, pg, sp)
	if err != nil {
		return fmt.Errorf("gccl: %s on group %q (rank %d): comparing arguments across ranks: %w", op, pg.Name(), pg.Rank(), err)
	}
	for r, other := range all {
		if fmt.Sprint(other) != fmt.Sprint(all[0]) {
			return fmt.Errorf("gccl: %s on group %q (rank %d): rank %d passed %s but rank 0 passed %s: %w; call it with the same arguments on every rank",
				op, pg.Name(), pg.Rank(), r, describe(other), describe(all[0]), comm.ErrMismatch)
		}
	}
	return nil
}

func describe(sp spec) string {
	if sp.Op == "Flatten" {
		return fmt.Sprintf("name %q over root dimensions %v with options %v", strings.Join(sp.Names, ""), sp.Flatten, sp.Dims)
	}
	return fmt.Sprintf("shape %v, names %q, options %v", sp.Shape, sp.Names, sp.Dims)
}

func validate(pg *comm.ProcessGroup, shape []int, names []string, opts Options) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("gccl: mesh.New on group %q (rank %d): %s: %w", pg.Name(), pg.Rank(), fmt.Sprintf(format, args...), comm.ErrInvalidArgument)
	}
	if len(shape) == 0 {
		return bad("the shape is empty; pass at least one dimension, e.g. []int{%d}", pg.Size())
	}
	if len(names) != len(shape) {
		return bad("shape %v has %d dimensions but %d names %q were given; pass one name per dimension", shape, len(shape), len(names), names)
	}
	for i, s := range shape {
		if s < 1 {
			return bad("dimension %q has size %d in shape %v; every size must be at least 1", names[i], s, shape)
		}
	}
	n := 1
	for _, s := range shape {
		n *= s
		if n > pg.Size() {
			break
		}
	}
	if n != pg.Size() {
		return bad("shape %v holds %s ranks but the group has %d; pass a shape whose sizes multiply to %d", shape, product(shape), pg.Size(), pg.Size())
	}
	seen := map[string]bool{}
	for i, name := range names {
		if name == "" {
			return bad("dimension %d has an empty name; name every dimension (e.g. \"dp\", \"tp\")", i)
		}
		if seen[name] {
			return bad("dimension name %q is used twice in %q; give every dimension its own name", name, names)
		}
		seen[name] = true
	}
	for name := range opts.Dims {
		if !seen[name] {
			return bad("Options.Dims names dimension %q, which is not one of %q; use the mesh's dimension names", name, names)
		}
	}
	return nil
}

// product multiplies sizes as text, without overflowing.
func product(shape []int) string {
	p := int64(1)
	for _, s := range shape {
		if s > 0 && p > (1<<62)/int64(s) {
			return "more than 2^62"
		}
		p *= int64(s)
	}
	return fmt.Sprint(p)
}

// coordinates are the row-major coordinates of index i in shape.
func coordinates(i int, shape []int) []int {
	c := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		c[d] = i % shape[d]
		i /= shape[d]
	}
	return c
}

// splitColor is the Split color of the group over the root dimensions roots: it numbers, row-major,
// this rank's coordinates coord in the other dimensions of shape, which the group's ranks share.
func splitColor(shape, coord, roots []int) int {
	color := 0
	for j, s := range shape {
		if !slices.Contains(roots, j) {
			color = color*s + coord[j]
		}
	}
	return color
}

// NDim is the number of dimensions.
func (m *Mesh) NDim() int { return len(m.dims) }

// Names lists the dimension names, in order.
func (m *Mesh) Names() []string {
	s := make([]string, len(m.dims))
	for i, d := range m.dims {
		s[i] = d.name
	}
	return s
}

// Shape lists the dimension sizes, in order.
func (m *Mesh) Shape() []int {
	s := make([]int, len(m.dims))
	for i, d := range m.dims {
		s[i] = d.size
	}
	return s
}

// Coordinate is this rank's coordinate in each dimension, in order: for each dimension, its
// rank in that dimension's group.
func (m *Mesh) Coordinate() []int {
	s := make([]int, len(m.dims))
	for i, d := range m.dims {
		s[i] = d.coord
	}
	return s
}

// Rank is this rank's row-major index in the mesh (in a root mesh, its rank in the parent
// group).
func (m *Mesh) Rank() int {
	r := 0
	for _, d := range m.dims {
		r = r*d.size + d.coord
	}
	return r
}

// Ranks lists the global ranks of this rank's mesh in row-major order (for a view, the ranks
// that share this rank's coordinates in the root's other dimensions), like torch's
// DeviceMesh.mesh flattened.
func (m *Mesh) Ranks() []int {
	root := m.root
	n := 1
	for _, d := range m.dims {
		n *= d.size
	}
	base := coordinates(root.pg.Rank(), root.shape)
	out := make([]int, n)
	for i := range out {
		c := slices.Clone(base)
		rest := i
		for k := len(m.dims) - 1; k >= 0; k-- {
			d := m.dims[k]
			sub := rest % d.size
			rest /= d.size
			// Spread the coordinate in d over the root dimensions it covers, row-major.
			for j := len(d.roots) - 1; j >= 0; j-- {
				rd := d.roots[j]
				c[rd] = sub % root.shape[rd]
				sub /= root.shape[rd]
			}
		}
		idx := 0
		for j, s := range root.shape {
			idx = idx*s + c[j]
		}
		out[i] = root.pg.GlobalRank(idx)
	}
	return out
}

// Parent is the process group the root mesh was created over.
func (m *Mesh) Parent() *comm.ProcessGroup { return m.root.pg }

// index finds a dimension by name.
func (m *Mesh) index(op, name string) (int, error) {
	for i, d := range m.dims {
		if d.name == name {
			return i, nil
		}
	}
	return -1, m.invalid(op, "no dimension is named %q; the mesh's dimensions are %q", name, m.Names())
}

func (m *Mesh) invalid(op, format string, args ...any) error {
	pg := m.root.pg
	return fmt.Errorf("gccl: mesh.%s on group %q (rank %d): %s: %w", op, pg.Name(), pg.Rank(), fmt.Sprintf(format, args...), comm.ErrInvalidArgument)
}

// Group is the process group of the named dimension: the ranks whose coordinates differ from
// this rank's only in that dimension, ordered by their coordinate in it.
func (m *Mesh) Group(name string) (*comm.ProcessGroup, error) {
	i, err := m.index("Group", name)
	if err != nil {
		return nil, err
	}
	return m.dims[i].group, nil
}

// GroupAt is the process group of dimension i (0 is the first).
func (m *Mesh) GroupAt(i int) (*comm.ProcessGroup, error) {
	if i < 0 || i >= len(m.dims) {
		return nil, m.invalid("GroupAt", "dimension %d is out of range: the mesh has dimensions 0..%d (%q)", i, len(m.dims)-1, m.Names())
	}
	return m.dims[i].group, nil
}

// LocalRank is this rank's coordinate in the named dimension (its rank in that dimension's
// group).
func (m *Mesh) LocalRank(name string) (int, error) {
	i, err := m.index("LocalRank", name)
	if err != nil {
		return -1, err
	}
	return m.dims[i].coord, nil
}

// Size is the size of the named dimension.
func (m *Mesh) Size(name string) (int, error) {
	i, err := m.index("Size", name)
	if err != nil {
		return 0, err
	}
	return m.dims[i].size, nil
}

// Dim is the one-dimensional view of the named dimension. It creates no group.
func (m *Mesh) Dim(name string) (*Mesh, error) {
	i, err := m.index("Dim", name)
	if err != nil {
		return nil, err
	}
	return &Mesh{root: m.root, dims: []*dim{m.dims[i]}}, nil
}

// Sub is the view of the named dimensions, which must be given in the mesh's order (like
// torch's mesh["dp", "tp"]). It shares the mesh's groups and creates none.
func (m *Mesh) Sub(names ...string) (*Mesh, error) {
	if len(names) == 0 {
		return nil, m.invalid("Sub", "no dimension names given; name at least one of %q", m.Names())
	}
	dims := make([]*dim, 0, len(names))
	last := -1
	for _, name := range names {
		i, err := m.index("Sub", name)
		if err != nil {
			return nil, err
		}
		if i == last {
			return nil, m.invalid("Sub", "dimension %q is named twice in %q; name each dimension once", name, names)
		}
		if i < last {
			return nil, m.invalid("Sub", "dimensions %q are not in the mesh's order %q; list them in that order", names, m.Names())
		}
		last = i
		dims = append(dims, m.dims[i])
	}
	return &Mesh{root: m.root, dims: dims}, nil
}

// Flatten returns a one-dimensional mesh named name over all of m's dimensions, whose group
// holds the ranks of m (Ranks), in row-major order. The first call for a name creates that group,
// with one Split over the root's parent group, described "mesh_<name>", with opts' backend and
// timeout (zero: the parent's); the root mesh caches it, and later calls with the same name, on
// m or any view over the same dimensions, return the cached mesh without creating anything. The
// root's Close closes it. Flattening a one-dimensional mesh reuses its group (opts do not
// apply). While a Flatten creates its group, other Flatten and Close calls on the same root
// wait for it.
//
// Flatten is collective over the root's parent group: every rank calls it, with the same name
// and dimensions, in the same order relative to its other collectives. Calling it on some ranks
// only is an error the caller must avoid, as with torch: the others wait for them until the
// timeout. Ranks that disagree get comm.ErrMismatch on every rank.
func (m *Mesh) Flatten(ctx context.Context, name string, opts DimOptions) (*Mesh, error) {
	r := m.root
	var roots []int
	for _, d := range m.dims {
		roots = append(roots, d.roots...)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.flat[name]; ok {
		d := c.dims[0]
		if !slices.Equal(d.roots, roots) || d.opts != opts {
			return nil, m.invalid("Flatten", "the name %q is taken by a flattened mesh over dimensions %q with options %v; pick another name, or flatten the same dimensions with the same options",
				name, r.rootNames(d.roots), d.opts)
		}
		return c, nil
	}
	sp := spec{Op: "Flatten", Names: []string{name}, Flatten: roots, Dims: []string{opts.String()}}
	if err := agree(ctx, r.pg, "mesh.Flatten", sp); err != nil {
		return nil, err
	}
	if r.closed {
		return nil, m.invalid("Flatten", "the mesh is closed; flatten before Close")
	}
	if name == "" {
		return nil, m.invalid("Flatten", "the name is empty; name the flattened dimension (e.g. \"dp_tp\")")
	}
	for _, d := range r.dims {
		if d.name == name {
			return nil, m.invalid("Flatten", "the name %q is a dimension of the mesh %q; pick another name", name, r.rootNames(nil))
		}
	}
	size, coord := 1, 0
	for _, d := range m.dims {
		size *= d.size
		coord = coord*d.size + d.coord
	}
	d := &dim{name: name, size: size, coord: coord, roots: roots, opts: opts}
	if len(m.dims) == 1 {
		d.group = m.dims[0].group
	} else {
		color := splitColor(r.shape, coordinates(r.pg.Rank(), r.shape), roots)
		g, err := r.pg.Split(ctx, color, coord, groupOptions(name, opts))
		if err != nil {
			return nil, fmt.Errorf("gccl: mesh.Flatten on group %q (rank %d): creating the group of %q: %w", r.pg.Name(), r.pg.Rank(), name, err)
		}
		d.group, d.owned = g, true
	}
	c := &Mesh{root: r, dims: []*dim{d}}
	r.flat[name] = c
	return c, nil
}

func (r *root) rootNames(idx []int) []string {
	var s []string
	for i, d := range r.dims {
		if idx == nil || slices.Contains(idx, i) {
			s = append(s, d.name)
		}
	}
	return s
}

// String describes the mesh, e.g. mesh(dp=2, tp=4) at [1 3].
func (m *Mesh) String() string {
	parts := make([]string, len(m.dims))
	for i, d := range m.dims {
		parts[i] = fmt.Sprintf("%s=%d", d.name, d.size)
	}
	return fmt.Sprintf("mesh(%s) at %v", strings.Join(parts, ", "), m.Coordinate())
}

// Close closes the groups the root mesh created: one per dimension and one per flattened
// mesh. It does not close the parent group passed to New, which the caller owns. On a view
// (Sub, Dim, Flatten) Close does nothing: the root owns every group. Close is idempotent.
func (m *Mesh) Close() error {
	if m != m.root.top {
		return nil
	}
	return m.root.closeGroups()
}

func (r *root) closeGroups() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	names := make([]string, 0, len(r.flat))
	for name := range r.flat {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		d := r.flat[name].dims[0]
		if d.owned {
			errs = append(errs, d.group.Close())
		}
	}
	for i := len(r.dims) - 1; i >= 0; i-- {
		errs = append(errs, r.dims[i].group.Close())
	}
	return errors.Join(errs...)
}
