package fsdp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor"
	"github.com/gccl/gccl/tensor"
	"github.com/gccl/gccl/tensor/safetensors"
)

// ShardedStateDict returns every parameter's master shard as a DTensor (torch's sharded state
// dict): no communication, no copy; the local tensors are views of this rank's true rows.
func (md *Model) ShardedStateDict() map[string]*dtensor.DTensor {
	out := make(map[string]*dtensor.DTensor, len(md.byName))
	for name, p := range md.byName {
		out[name] = p.dt
	}
	return out
}

// checkKeys says what is wrong with the keys and shapes of sd ("" if nothing): shapeOf gives the
// shape sd must have for a parameter.
func (md *Model) checkKeys(names []string, shapeOf func(p *param) []int, shape func(name string) ([]int, bool)) string {
	var missing, extra []string
	for name := range md.byName {
		if !slices.Contains(names, name) {
			missing = append(missing, name)
		}
	}
	for _, name := range names {
		if md.byName[name] == nil {
			extra = append(extra, name)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	switch {
	case len(missing) > 0:
		return fmt.Sprintf("missing key %q (missing: %s); pass every parameter of the model", missing[0], strings.Join(missing, ", "))
	case len(extra) > 0:
		return fmt.Sprintf("unexpected key %q (extra: %s); pass only the model's parameters", extra[0], strings.Join(extra, ", "))
	}
	sort.Strings(names)
	for _, name := range names {
		got, ok := shape(name)
		want := shapeOf(md.byName[name])
		if !ok {
			return fmt.Sprintf("key %q is nil or not floating-point; pass a float tensor of shape %v", name, want)
		}
		if !slices.Equal(got, want) {
			return fmt.Sprintf("key %q has shape %v but the model's is %v; pass a state dict of this model", name, got, want)
		}
	}
	return ""
}

func tensorShape(sd map[string]*tensor.Tensor) func(string) ([]int, bool) {
	return func(name string) ([]int, bool) {
		t := sd[name]
		if t == nil || !t.DType().IsFloat() {
			return nil, false
		}
		return t.Shape(), true
	}
}

// LoadShardedStateDict copies local shards (each parameter's true rows on this rank, the Local of
// a ShardedStateDict of the same mesh layout) into the master shards. No communication. A missing
// or extra key, or a shard of the wrong shape, is an error naming the key; nothing is loaded then.
func (md *Model) LoadShardedStateDict(sd map[string]*tensor.Tensor) error {
	const op = "LoadShardedStateDict"
	names := slices.Collect(maps.Keys(sd))
	if problem := md.checkKeys(names, func(p *param) []int { return p.local(p.group.master).Shape() }, tensorShape(sd)); problem != "" {
		return errorf(op, globalRank(md.mesh), "%s", problem)
	}
	for name, t := range sd {
		p := md.byName[name]
		convertInto(p.local(p.group.master), t.Contiguous())
	}
	return nil
}

// isRoot reports whether this rank is the mesh's first (coordinate 0 in every dimension).
func (md *Model) isRoot() bool { return md.rank == 0 && md.replRank == 0 }

// FullStateDict gathers every parameter's full value (float32) to the mesh's first rank
// (coordinate 0 in every dimension), which gets the map; the others get nil. One gather per
// group over the shard group (HSDP: in the first replica only).
func (md *Model) FullStateDict(ctx context.Context) (map[string]*tensor.Tensor, error) {
	const op = "FullStateDict"
	if md.replRank != 0 {
		return nil, nil
	}
	var out map[string]*tensor.Tensor
	if md.rank == 0 {
		out = make(map[string]*tensor.Tensor, len(md.byName))
	}
	for _, g := range md.groups {
		var all *tensor.Tensor
		if md.rank == 0 {
			all = tensor.New(masterDT, md.n*g.size)
		}
		if err := md.shardPG.Gather(ctx, all, g.master, 0); err != nil {
			return nil, opErr(op, globalRank(md.mesh), err)
		}
		if md.rank != 0 {
			continue
		}
		full := g.copyOut(all, masterDT)
		md.pool.forget(full...) // the caller's now
		for i, p := range g.params {
			out[p.name] = full[i]
		}
	}
	return out, nil
}

// broadcastFromRoot broadcasts the root's t to every rank of the mesh: over the replicate group
// among the ranks at shard coordinate 0, then over every shard group.
func (md *Model) broadcastFromRoot(ctx context.Context, t *tensor.Tensor) error {
	if md.replPG != nil && md.rank == 0 {
		if err := md.replPG.Broadcast(ctx, t, 0); err != nil {
			return err
		}
	}
	return md.shardPG.Broadcast(ctx, t, 0)
}

func (md *Model) broadcastString(ctx context.Context, s *string) error {
	if md.replPG != nil && md.rank == 0 {
		if err := comm.BroadcastObject(ctx, md.replPG, s, 0); err != nil {
			return err
		}
	}
	return comm.BroadcastObject(ctx, md.shardPG, s, 0)
}

// LoadFullStateDict loads full parameter values held by the mesh's first rank (the others pass
// nil or anything: only the first rank's sd is read), like torch's set_model_state_dict with
// full_state_dict and broadcast_from_rank0: the first rank checks the keys and shapes (a missing
// or extra key or a wrong shape fails every rank with an error naming the key), then broadcasts
// each group's parameters in one flat float32 buffer, and every rank keeps its shard.
// Collective over the mesh.
func (md *Model) LoadFullStateDict(ctx context.Context, sd map[string]*tensor.Tensor) error {
	const op = "LoadFullStateDict"
	rank := globalRank(md.mesh)
	if err := md.WaitGradients(); err != nil { // their HSDP all-reduces use the replicate group
		return err
	}
	problem := ""
	if md.isRoot() {
		problem = md.checkKeys(slices.Collect(maps.Keys(sd)), func(p *param) []int { return p.shape }, tensorShape(sd))
	}
	if err := md.broadcastString(ctx, &problem); err != nil {
		return opErr(op, rank, err)
	}
	if problem != "" {
		return errorf(op, rank, "the state dict on rank %d: %s", md.mesh.Ranks()[0], problem)
	}
	for _, g := range md.groups {
		total := 0
		for _, p := range g.params {
			total += p.shape[0] * p.rowSize
		}
		flat := tensor.New(masterDT, total)
		if md.isRoot() {
			off := 0
			for _, p := range g.params {
				n := p.shape[0] * p.rowSize
				v, _ := flat.Narrow(0, off, n)
				convertInto(v, sd[p.name].Contiguous())
				off += n
			}
		}
		if err := md.broadcastFromRoot(ctx, flat); err != nil {
			return opErr(op, rank, err)
		}
		off := 0
		for _, p := range g.params {
			v, _ := flat.Narrow(0, off+p.startRow*p.rowSize, p.localRows*p.rowSize)
			copy(p.local(g.master).Bytes(), v.Bytes())
			off += p.shape[0] * p.rowSize
		}
	}
	return nil
}

// checkpointMeta is a sharded checkpoint's metadata.json.
type checkpointMeta struct {
	Format string           `json:"format"`
	Shards int              `json:"shards"` // files shard-<i>-of-<Shards>.safetensors
	Params []checkpointParm `json:"params"`
	// The optimizer's state, when saved: its kind (sgd, adamw), the groups that have state
	// (tensors optim.<buffer>.<param> in the shard files) and their step counts.
	Optimizer       string `json:"optimizer,omitempty"`
	OptimizerGroups []int  `json:"optimizer_groups,omitempty"`
	OptimizerSteps  []int  `json:"optimizer_steps,omitempty"`
}

type checkpointParm struct {
	Name  string `json:"name"`
	Group int    `json:"group"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
}

const checkpointFormat = "gccl-fsdp-sharded-v1"

// ErrCheckpoint is wrapped by the errors of LoadCheckpoint about a checkpoint that does not fit
// the model (another model's, or a damaged one), together with comm.ErrInvalidArgument.
var ErrCheckpoint = errors.New("checkpoint does not fit the model")

func optimKey(buffer, param string) string { return "optim." + buffer + "." + param }

func shardFile(dir string, i, n int) string {
	return filepath.Join(dir, fmt.Sprintf("shard-%d-of-%d.safetensors", i, n))
}

// SaveCheckpoint writes a sharded checkpoint to dir (which it creates): one safetensors file per
// shard rank, shard-<i>-of-<N>.safetensors, holding that rank's true rows of every parameter
// (HSDP: written by the first replica), and metadata.json with every parameter's name, group,
// dtype and global shape, written by the mesh's first rank. With an optimizer (nil: none), its
// state goes along, sharded the same way (tensors optim.<buffer>.<param>, step counts in the
// metadata). No parameter data moves between ranks; the ranks agree on the outcome, so all
// return an error if one failed. Collective over the mesh.
func (md *Model) SaveCheckpoint(ctx context.Context, dir string, opt Optimizer) error {
	const op = "SaveCheckpoint"
	rank := globalRank(md.mesh)
	if err := md.WaitGradients(); err != nil { // their HSDP all-reduces use the replicate group
		return err
	}
	problem := ""
	if md.replRank == 0 {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			problem = err.Error()
		} else {
			ts := make(map[string]*tensor.Tensor, len(md.byName))
			for name, p := range md.byName {
				ts[name] = p.local(p.group.master)
			}
			if opt != nil {
				st := opt.state()
				for gi, g := range md.groups {
					bufs := st.bufs(gi, false)
					for bi, buf := range bufs {
						for _, p := range g.params {
							ts[optimKey(st.names[bi], p.name)] = p.local(buf)
						}
					}
				}
			}
			if err := safetensors.WriteFile(shardFile(dir, md.rank, md.n), ts, map[string]string{"format": checkpointFormat}); err != nil {
				problem = err.Error()
			}
		}
		if problem == "" && md.rank == 0 {
			meta := checkpointMeta{Format: checkpointFormat, Shards: md.n}
			if opt != nil {
				st := opt.state()
				meta.Optimizer = st.kind
				for gi := range md.groups {
					if st.bufs(gi, false) != nil || (st.names == nil && st.steps == nil) {
						meta.OptimizerGroups = append(meta.OptimizerGroups, gi)
						step := 0
						if st.steps != nil {
							step = st.steps[gi]
						}
						meta.OptimizerSteps = append(meta.OptimizerSteps, step)
					}
				}
			}
			for _, g := range md.groups {
				for _, p := range g.params {
					meta.Params = append(meta.Params, checkpointParm{Name: p.name, Group: g.index, DType: masterDT.String(), Shape: p.shape})
				}
			}
			js, _ := json.MarshalIndent(meta, "", "  ")
			if err := os.WriteFile(filepath.Join(dir, "metadata.json"), append(js, '\n'), 0o644); err != nil {
				problem = err.Error()
			}
		}
		all, err := comm.AllGatherObject(ctx, md.shardPG, problem)
		if err != nil {
			return opErr(op, rank, err)
		}
		for i, p := range all {
			if p != "" {
				problem = fmt.Sprintf("shard rank %d: %s", i, p)
				break
			}
		}
	}
	if md.replPG != nil {
		if err := comm.BroadcastObject(ctx, md.replPG, &problem, 0); err != nil {
			return opErr(op, rank, err)
		}
	}
	if problem != "" {
		return fmt.Errorf("gccl: fsdp.%s (rank %d): writing %s: %s; check that the directory is writable on every rank", op, rank, dir, problem)
	}
	return nil
}

// LoadCheckpoint loads a sharded checkpoint written by SaveCheckpoint, with any number of shards:
// every rank reads metadata.json, checks that the checkpoint holds exactly this model's parameters
// with their shapes (an error naming the key, wrapping ErrCheckpoint, otherwise), and reads its
// rows of each parameter from the files that hold them, resharding from the saved world size to
// this one. With an optimizer (nil: none) of the kind that was saved, its state is restored the
// same way. The directory must be readable by every rank (a shared or local filesystem). It is
// collective over the mesh only to agree at the end: when any rank fails, every rank returns an
// error (wrapping ErrCheckpoint) naming the first rank that failed and why, instead of the others
// going on into a training step that would wait for it.
func (md *Model) LoadCheckpoint(ctx context.Context, dir string, opt Optimizer) error {
	err := md.loadCheckpoint(dir, opt)
	problem := ""
	if err != nil {
		problem = err.Error()
	}
	if aerr := agree(ctx, md, "LoadCheckpoint", "", problem); aerr != nil && err == nil {
		return fmt.Errorf("%w: %w", aerr, ErrCheckpoint)
	}
	return err
}

func (md *Model) loadCheckpoint(dir string, opt Optimizer) error {
	const op = "LoadCheckpoint"
	rank := globalRank(md.mesh)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("gccl: fsdp.%s (rank %d): %s: %w: %w", op, rank, fmt.Sprintf(format, args...), ErrCheckpoint, comm.ErrInvalidArgument)
	}
	js, err := os.ReadFile(filepath.Join(dir, "metadata.json"))
	if err != nil {
		return fmt.Errorf("gccl: fsdp.%s (rank %d): %w; pass a directory written by SaveCheckpoint", op, rank, err)
	}
	var meta checkpointMeta
	if err := json.Unmarshal(js, &meta); err != nil || meta.Format != checkpointFormat || meta.Shards < 1 {
		return fail("%s/metadata.json is not a gccl FSDP checkpoint (format %q, %d shards, %v); pass a directory written by SaveCheckpoint", dir, meta.Format, meta.Shards, err)
	}
	saved := map[string][]int{}
	var names []string
	for _, p := range meta.Params {
		saved[p.Name] = p.Shape
		names = append(names, p.Name)
	}
	if problem := md.checkKeys(names, func(p *param) []int { return p.shape }, func(name string) ([]int, bool) {
		return saved[name], true
	}); problem != "" {
		return fail("the checkpoint in %s was written by a different model: %s", dir, problem)
	}
	files := make([]*safetensors.File, meta.Shards)
	defer func() {
		for _, f := range files {
			if f != nil {
				_ = f.Close()
			}
		}
	}()
	var st optimizerState
	if opt != nil {
		st = opt.state()
		if st.model != md {
			return fmt.Errorf("gccl: fsdp.%s (rank %d): the optimizer was made for another model; pass this model's optimizer: %w", op, rank, comm.ErrInvalidArgument)
		}
		if meta.Optimizer != st.kind {
			return fail("the checkpoint in %s holds %q optimizer state, not %s's; pass the optimizer it was saved with (or nil to load the parameters only)", dir, meta.Optimizer, st.kind)
		}
		if len(meta.OptimizerGroups) != len(meta.OptimizerSteps) {
			return fail("%s/metadata.json: %d optimizer groups but %d step counts", dir, len(meta.OptimizerGroups), len(meta.OptimizerSteps))
		}
	}
	// read copies this rank's rows of the saved tensor key (of global shape p.shape) into dst.
	read := func(p *param, key string, dst *tensor.Tensor) error {
		for i := range meta.Shards {
			start, n := dtensor.ChunkRange(p.shape[0], meta.Shards, i)
			lo, hi := max(start, p.startRow), min(start+n, p.startRow+p.localRows)
			if lo >= hi {
				continue
			}
			if files[i] == nil {
				if files[i], err = safetensors.Open(shardFile(dir, i, meta.Shards)); err != nil {
					return fail("shard %d of %d: %v; restore the checkpoint's files", i, meta.Shards, err)
				}
			}
			src, err := files[i].Tensor(key)
			if err != nil {
				return fail("shard %d of %d, key %q: %v", i, meta.Shards, key, err)
			}
			if src.Dim() != len(p.shape) || src.Shape()[0] != n || src.Numel() != n*p.rowSize {
				return fail("shard %d of %d, key %q has shape %v, not the %d rows the metadata gives it", i, meta.Shards, key, src.Shape(), n)
			}
			part, _ := src.Narrow(0, lo-start, hi-lo)
			into, _ := dst.Narrow(0, lo-p.startRow, hi-lo)
			if part.DType() != masterDT {
				part = part.To(masterDT)
			}
			if err := into.CopyFrom(part); err != nil {
				return fail("key %q: %v", key, err)
			}
		}
		return nil
	}
	for _, g := range md.groups {
		for _, p := range g.params {
			if err := read(p, p.name, p.local(g.master)); err != nil {
				return err
			}
		}
	}
	if opt == nil {
		return nil
	}
	for k, gi := range meta.OptimizerGroups {
		if gi < 0 || gi >= len(md.groups) {
			return fail("%s/metadata.json: optimizer state for group %d, but the model has %d groups", dir, gi, len(md.groups))
		}
		g := md.groups[gi]
		for bi, buf := range st.bufs(gi, true) {
			for _, p := range g.params {
				if err := read(p, optimKey(st.names[bi], p.name), p.local(buf)); err != nil {
					return err
				}
			}
		}
		if st.steps != nil {
			st.steps[gi] = meta.OptimizerSteps[k]
		}
	}
	return nil
}
