package comm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/comm/store"
)

// What comm knows of whether the members of a job are still there, beside what the backends
// see on their connections:
//   - each rank records its process at init (under "init/rank/<rank>", see process), so that a
//     member on the same host can be checked by pid;
//   - each rank leaves a will with the store server (store.Client.OnConnectionLost): should its
//     connection to the store break, as when its process dies or its host goes, the server
//     records it as exited ("lost"); a rank that closes its world group records it itself
//     ("closed"). The records are exitedKey (the first rank to go) and exitedKey/<rank>.
//
// A group being set up uses both to stop waiting for a member that is gone (watchMembers), and
// an op that lost a peer its backend cannot name asks the records whom (exitedMember).

// A group being set up looks, after memberWatchDelay (most are set up by then), every
// memberWatchEvery for members on this host that have exited, and every exitedPoll (once a
// rank of the job has exited) for members recorded as exited.
const (
	memberWatchDelay = time.Second
	memberWatchEvery = 250 * time.Millisecond
	exitedPoll       = time.Second
	// exitedLookup bounds how long an op that lost a peer it cannot name waits for the store to
	// record whom (both see the same process die, each on its own connection).
	exitedLookup = time.Second
)

// exitedKey records the first rank that exited, as "<rank>|<record>"; exitedKey/<rank> records
// each one, as "lost|<process>" (its connection to the store broke) or "closed|<process>" (it
// closed its world group).
const exitedKey = "exited"

func exitedRankKey(global int) string { return exitedKey + "/" + strconv.Itoa(global) }

// process names process pid of this host and pid namespace, as each rank records itself at
// init (under "init/rank/<rank>"): "host/boot-id pid 1234 pid:[4026531836]" (the host as
// backends.HostID has it).
func (w *world) process(pid int) string {
	return fmt.Sprintf("%s pid %d %s", w.hostID, pid, w.pidNS)
}

// leaveWill, once this rank has joined the job, sets w.exits and asks the store server to
// record this rank as exited ("lost") should its connection to the store break. The records
// need a store server (a store.Client) and a world of more than one; without them w.exits
// stays nil and nothing reads or writes records. Best effort, as recordClosed: a store that
// cannot take the records only costs the other ranks the wait for a group's timeout.
func (w *world) leaveWill(ctx context.Context) {
	c, ok := w.store.(*store.Client)
	if !ok || w.size == 1 {
		return
	}
	w.exits = c
	w.warnExitRecords(c.OnConnectionLost(ctx, w.exitRecords("lost")))
}

// recordClosed records this rank as exited ("closed"), as it closes its world group. A rank
// that did not join (w.exits nil) records nothing: it must not speak for the one that did.
func (w *world) recordClosed(ctx context.Context) {
	if w.exits == nil {
		return
	}
	var err error
	for k, v := range w.exitRecords("closed") {
		if _, e := w.exits.CompareAndSet(ctx, k, nil, v); e != nil {
			err = e
		}
	}
	w.warnExitRecords(err)
}

// exitRecords returns this rank's exit records for how ("lost", "closed").
func (w *world) exitRecords(how string) map[string][]byte {
	record := how + "|" + w.hostname + " pid " + strconv.Itoa(os.Getpid())
	return map[string][]byte{
		exitedRankKey(w.rank): []byte(record),
		exitedKey:             []byte(strconv.Itoa(w.rank) + "|" + record),
	}
}

func (w *world) warnExitRecords(err error) {
	if errors.Is(err, errors.ErrUnsupported) {
		w.log.Debug("gccl: the store takes no exit records (an older server): a member that exits is seen only by the backends", "rank", w.rank, "err", err)
	} else if err != nil {
		w.log.Warn("gccl: cannot leave this rank's exit record in the store; the others may wait for it until a timeout", "rank", w.rank, "err", err)
	}
}

// exitedCause turns an exit record into a PeerLostError's cause.
func exitedCause(record []byte) string {
	how, who, _ := strings.Cut(string(record), "|")
	if how == "closed" {
		return fmt.Sprintf("it closed its world group (%s), so it takes part in no more groups or ops", who)
	}
	return fmt.Sprintf("the job's store lost its connection (%s) without a Close: its process died, or its host or network failed; see its output for why", who)
}

// peek returns key's value in st, empty when key is missing, without waiting for it (a
// compare-and-set that never matches changes nothing).
func peek(ctx context.Context, st store.Store, key string) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return st.CompareAndSet(cctx, key, []byte("\x00never"), []byte("\x00never"))
}

// watchMembers returns a context cancelled, with a PeerLostError as its cause, when a member of
// the group being set up (ranks, global) is gone, so that the others stop waiting for it: a
// member recorded as exited, or (with local, for sub-groups, whose members all recorded their
// process at init) a member on this host whose process exited. Stop it with the returned func
// once the setup is over.
func (w *world) watchMembers(ctx context.Context, ranks []int, local bool) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	lost := func(r int, cause string) {
		cancel(&backends.PeerLostError{Rank: r, GlobalRank: ranks[r], Cause: cause})
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-wctx.Done():
			return
		case <-time.After(memberWatchDelay):
		}
		// The members here first: a pid says more than the store's record.
		var pids map[int]int
		if local {
			pids = w.localProcesses(wctx, ranks)
		}
		if exitedProcess(pids, lost) {
			return
		}
		if len(pids) > 0 {
			wg.Go(func() {
				tick := time.NewTicker(memberWatchEvery)
				defer tick.Stop()
				for {
					select {
					case <-wctx.Done():
						return
					case <-tick.C:
					}
					if exitedProcess(pids, lost) {
						return
					}
				}
			})
		}
		w.watchExited(wctx, ranks, lost)
	})
	return wctx, func() {
		if context.Cause(wctx) == nil {
			cancel(nil)
		}
		wg.Wait()
	}
}

// localProcesses returns the pids of the members of ranks (global) that run on this host, by
// group rank, as they recorded them at init.
func (w *world) localProcesses(ctx context.Context, ranks []int) map[int]int {
	pids := map[int]int{}
	for r, g := range ranks {
		if g == w.rank {
			continue
		}
		rctx, rcancel := context.WithTimeout(ctx, memberWatchEvery)
		v, err := w.store.Get(rctx, "init/rank/"+strconv.Itoa(g))
		rcancel()
		// A process here: the same host and the same pid namespace (containers may share a
		// host name but not their pids).
		_, pid, _ := strings.Cut(string(v), " pid ")
		pid, _, _ = strings.Cut(pid, " ")
		if n, perr := strconv.Atoi(pid); err == nil && perr == nil && string(v) == w.process(n) {
			pids[r] = n
		}
	}
	return pids
}

// exitedProcess calls lost for a process of pids (by group rank) that has exited, and reports
// whether there was one.
func exitedProcess(pids map[int]int, lost func(r int, cause string)) bool {
	for r, pid := range pids {
		if !backends.ProcessAlive(pid) {
			lost(r, fmt.Sprintf("its process (%d, on this host) exited before the group was set up: see its output for why", pid))
			return true
		}
	}
	return false
}

// watchExited calls lost for the first member recorded as exited. It waits (in the store, at
// no cost) until some rank of the job has exited, then looks up the members' records every
// exitedPoll.
func (w *world) watchExited(ctx context.Context, ranks []int, lost func(r int, cause string)) {
	if w.exits == nil {
		return
	}
	if _, err := w.exits.Get(ctx, exitedKey); err != nil {
		return
	}
	for {
		r, record, err := w.exitedRecord(ctx, ranks, false)
		if err != nil {
			return
		}
		if r >= 0 {
			lost(r, "before the group was set up, "+exitedCause(record))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(exitedPoll):
		}
	}
}

// exitedRecord returns the group rank and the record of the first member of ranks (global,
// not this rank) recorded as exited (with lostOnly, as lost), or -1.
func (w *world) exitedRecord(ctx context.Context, ranks []int, lostOnly bool) (int, []byte, error) {
	for r, g := range ranks {
		if g == w.rank {
			continue
		}
		v, err := peek(ctx, w.exits, exitedRankKey(g))
		if err != nil {
			return -1, nil, err
		}
		if len(v) > 0 && !(lostOnly && bytes.HasPrefix(v, []byte("closed|"))) {
			return r, v, nil
		}
	}
	return -1, nil, nil
}

// exitedMember names the lost peer of err when err is a PeerLostError that does not (a backend
// saw a connection end without knowing whose it was): the member of ranks (global) that the
// store saw lose its connection, if one did within exitedLookup. Only the first lookup (of
// those that share looked) waits: the ops that fail after it fail at once. Otherwise err is
// returned as it is.
func (w *world) exitedMember(err error, ranks []int, looked *atomic.Bool) error {
	var pl *backends.PeerLostError
	if !errors.As(err, &pl) || pl.GlobalRank >= 0 || w.exits == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), exitedLookup)
	defer cancel()
	wait := !looked.Swap(true)
	for {
		r, record, lerr := w.exitedRecord(ctx, ranks, true)
		if lerr != nil {
			return err
		}
		if r >= 0 {
			return &backends.PeerLostError{Rank: r, GlobalRank: ranks[r], Cause: fmt.Sprintf("%s; this rank saw: %v", exitedCause(record), err)}
		}
		if !wait {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(exitedLookup / 10):
		}
	}
}
