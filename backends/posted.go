package backends

import "context"

// Posted tells the caller that the running op has posted this rank's part (its peers can see
// it) and is about to wait for theirs. A backend whose groups implement Poster calls it with the
// op's context after each post (calls after the first cost a type check); comm uses that moment,
// off the peers' critical path, to record the op in the flight recorder. Ops of other backends
// are recorded before they are called.
func Posted(ctx context.Context) {
	if p, ok := ctx.(poster); ok {
		p.Posted()
	}
}

type poster interface{ Posted() }

// Poster is implemented by groups that call Posted in every op before they can block on a peer
// (an op that never blocks may return without calling it), so that an op hanging on its peers
// is in the flight recorder.
type Poster interface {
	CallsPosted()
}
