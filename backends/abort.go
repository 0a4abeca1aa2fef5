package backends

import (
	"errors"
	"fmt"
	"strings"
)

// AbortClass is which sentinel an abort carries, for backends that tell their peers why they
// aborted (in a message header, a shared-memory word) so that the peers fail with the same kind
// of error.
type AbortClass uint8

// The abort classes.
const (
	AbortOther AbortClass = iota + 1
	AbortPeerLost
	AbortTimeout
	AbortMismatch
)

// AsAbort returns err as a group-aborting error: unchanged if it already is one of the sentinels
// callers branch on, else wrapped in ErrAborted.
func AsAbort(err error) error {
	if err == nil {
		err = errors.New("aborted")
	}
	if errors.Is(err, ErrAborted) || errors.Is(err, ErrPeerLost) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrMismatch) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrAborted, err)
}

// ClassifyAbort says which class err belongs to and, for a lost peer, its group rank (else -1).
func ClassifyAbort(err error) (AbortClass, int) {
	var pl *PeerLostError
	switch {
	case errors.As(err, &pl):
		return AbortPeerLost, pl.Rank
	case errors.Is(err, ErrTimeout):
		return AbortTimeout, -1
	case errors.Is(err, ErrMismatch):
		return AbortMismatch, -1
	}
	return AbortOther, -1
}

// PeerAbortError is the error a rank reports when group rank `from` told it that it aborted
// with class, lost rank (group and global) and reason.
func PeerAbortError(class AbortClass, from, lost, lostGlobal int, reason string) error {
	// The reason is the peer's error, which names the class's sentinel first, as this one does.
	switch class {
	case AbortTimeout:
		reason = strings.TrimPrefix(reason, ErrTimeout.Error()+": ")
	case AbortMismatch:
		reason = strings.TrimPrefix(reason, ErrMismatch.Error()+": ")
	}
	if reason != "" {
		reason = ": " + reason
	}
	switch class {
	case AbortPeerLost:
		return &PeerLostError{Rank: lost, GlobalRank: lostGlobal, Cause: fmt.Sprintf("reported by rank %d%s", from, reason)}
	case AbortTimeout:
		return fmt.Errorf("%w: rank %d timed out%s", ErrTimeout, from, reason)
	case AbortMismatch:
		return fmt.Errorf("%w: reported by rank %d%s", ErrMismatch, from, reason)
	}
	return fmt.Errorf("%w by rank %d%s", ErrAborted, from, reason)
}

// AbortedEarlier is the error for an op issued on a group that cause aborted earlier: cause
// itself if it already says ErrAborted, else ErrAborted wrapping it.
func AbortedEarlier(cause error) error {
	if errors.Is(cause, ErrAborted) {
		return cause
	}
	return fmt.Errorf("%w by an earlier failure: %w", ErrAborted, cause)
}
