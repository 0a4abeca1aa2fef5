package comm

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/gloo"
	"github.com/gccl/gccl/shm"
)

// autoName is the name backend "auto" registers under.
const autoName = "auto"

func init() { backends.Register(autoName, autoBackend{}) }

// The modes backend "auto" picks from, as AutoMode reports them.
const (
	autoShm          = "shm"
	autoGloo         = "gloo"
	autoHierarchical = "hierarchical"
)

// autoBackend is backend "auto". For each group it learns every member's host
// (backends.HostID: GCCL_HOST_ID, else hostname and boot id) through the group's store, then
// runs the group on shm when every member is on one host, on gloo when every member is alone
// on its host, and otherwise hierarchically: shm inside each host, gloo between one leader per
// host (see hierarchical). Every member sees the same host list, so every member picks the same.
type autoBackend struct{}

var _ backends.Backend = autoBackend{}

// NewGroup exchanges host ids and builds the group the layout calls for.
func (autoBackend) NewGroup(ctx context.Context, cfg backends.Config) (backends.Group, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ids, err := exchangeHostIDs(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("auto: group %q rank %d of %d: exchanging host ids: %w", cfg.Name, cfg.Rank, cfg.Size, err)
	}
	lay := newHostLayout(ids)
	mode := lay.mode()
	log.Debug("gccl: backend auto", "group", cfg.Name, "rank", cfg.Rank, "size", cfg.Size,
		"mode", mode, "hosts", len(lay.members), "host", ids[cfg.Rank])
	switch mode {
	case autoShm:
		return shm.Backend{}.NewGroup(ctx, cfg)
	case autoGloo:
		return gloo.Backend{}.NewGroup(ctx, cfg)
	}
	return newHierarchical(ctx, cfg, lay, log)
}

// exchangeHostIDs publishes this rank's host id in the group's store and reads every member's.
func exchangeHostIDs(ctx context.Context, cfg backends.Config) ([]string, error) {
	mine := backends.HostID(cfg.Hostname)
	if cfg.Size == 1 {
		return []string{mine}, nil
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	if err := cfg.Store.Set(ctx, "auto/host/"+strconv.Itoa(cfg.Rank), []byte(mine)); err != nil {
		return nil, err
	}
	ids := make([]string, cfg.Size)
	for p := range ids {
		v, err := cfg.Store.Get(ctx, "auto/host/"+strconv.Itoa(p))
		if err != nil {
			return nil, fmt.Errorf("waiting for rank %d: %w", p, err)
		}
		ids[p] = string(v)
	}
	return ids, nil
}

// hostLayout is where a group's members run: hosts are numbered in the order of their lowest
// group rank (host 0 holds group rank 0), and a host's members are in group-rank order, so the
// first member of each host is its leader.
type hostLayout struct {
	hostOf    []int   // hostOf[r] is group rank r's host
	localRank []int   // localRank[r] is group rank r's position among its host's members
	members   [][]int // members[h] lists host h's group ranks, ascending
	maxLocal  int     // the most members any host has
	// hostMajor: every host has maxLocal members, and host h holds group ranks
	// h*maxLocal ... (h+1)*maxLocal-1, so per-host blocks are already in group-rank order.
	hostMajor bool
}

func newHostLayout(ids []string) hostLayout {
	n := len(ids)
	l := hostLayout{hostOf: make([]int, n), localRank: make([]int, n)}
	index := map[string]int{}
	for r, id := range ids {
		h, ok := index[id]
		if !ok {
			h = len(l.members)
			index[id] = h
			l.members = append(l.members, nil)
		}
		l.hostOf[r], l.localRank[r] = h, len(l.members[h])
		l.members[h] = append(l.members[h], r)
		l.maxLocal = max(l.maxLocal, len(l.members[h]))
	}
	l.hostMajor = true
	for h, m := range l.members {
		if len(m) != l.maxLocal || m[0] != h*l.maxLocal || m[len(m)-1] != (h+1)*l.maxLocal-1 {
			l.hostMajor = false
		}
	}
	return l
}

// mode is what backend "auto" runs a group of this layout on.
func (l hostLayout) mode() string {
	switch {
	case len(l.members) == 1:
		return autoShm
	case l.maxLocal == 1:
		return autoGloo
	}
	return autoHierarchical
}

// AutoMode says how backend "auto" runs the group: "shm" (every member on one host), "gloo"
// (every member alone on its host) or "hierarchical" (shm inside each host, gloo between one
// leader per host). It returns "" for a group of another backend.
func (pg *ProcessGroup) AutoMode() string {
	if pg.backendName != autoName {
		return ""
	}
	switch pg.backend.(type) {
	case *shm.Group:
		return autoShm
	case *gloo.Group:
		return autoGloo
	case *hierarchical:
		return autoHierarchical
	}
	return ""
}
