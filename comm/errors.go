package comm

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/gccl/gccl/backends"
)

// Sentinel errors, for errors.Is. Every error gccl returns wraps one of these or a cause from
// the store or the operating system, and says which op, group and rank it concerns.
var (
	// ErrTimeout: an op did not complete within its timeout; the group is aborted.
	ErrTimeout = backends.ErrTimeout
	// ErrAborted: the group was aborted, by an earlier failure here or on a peer, or by Abort.
	ErrAborted = backends.ErrAborted
	// ErrPeerLost: a member of the group died; errors.As with *PeerLostError names it.
	ErrPeerLost = backends.ErrPeerLost
	// ErrMismatch: ranks called different collectives, dtypes, counts, roots or reduce ops; or
	// their all-to-all splits, a send and its receive, or their Split options disagree; or an
	// object collective's value does not decode into the receiver's type; or they issued a
	// group's ops in orders that leave them waiting for each other for good (found about two
	// seconds in, where a receive is one of the waits).
	ErrMismatch = backends.ErrMismatch
	// ErrUnsupported: the backend cannot run this op or dtype.
	ErrUnsupported = backends.ErrUnsupported
	// ErrInvalidArgument: a call's arguments are wrong on this rank (nil or wrongly sized
	// tensors, rank out of range, ...). Nothing was sent. The object collectives (GatherObject,
	// ...) also return it on every rank taking part when one rank's value cannot be encoded, or
	// ScatterObject's root passes a list of the wrong length: then the ranks have exchanged
	// sizes first, and the group still works.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrClosed: the group was closed.
	ErrClosed = errors.New("process group closed")
)

// PeerLostError names the lost member; errors.Is(err, ErrPeerLost) holds for it.
type PeerLostError = backends.PeerLostError

// opError wraps err with the op, group and rank it happened in.
func (pg *ProcessGroup) opError(kind backends.OpKind, seq uint64, err error) error {
	if seq == 0 {
		return fmt.Errorf("gccl: %s on group %s (rank %d of %d): %w", kind, pg.label, pg.rank, pg.size, err)
	}
	return fmt.Errorf("gccl: %s #%d on group %s (rank %d of %d): %w", kind, seq, pg.label, pg.rank, pg.size, err)
}

// invalid is a bad-argument error for kind: what is wrong, and what to do.
func (pg *ProcessGroup) invalid(kind backends.OpKind, format string, args ...any) error {
	return pg.opError(kind, 0, fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidArgument))
}

// groupLabel is how errors name a group: `"0/split0/color0" (mesh_tp)`, as the flight recorder's
// analysis does; the name alone when it has no description.
func groupLabel(name, desc string) string {
	if desc == "" || desc == "undefined" {
		return strconv.Quote(name)
	}
	return strconv.Quote(name) + " (" + desc + ")"
}

// rankName names group rank r as errors do: "rank 1 (global rank 3)".
func (pg *ProcessGroup) rankName(r int) string {
	return fmt.Sprintf("rank %d (global rank %d)", r, pg.globalRanks[r])
}
