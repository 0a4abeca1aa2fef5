package comm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/comm/store"
	"github.com/gccl/gccl/flightrecorder"
)

// Flight-recorder dumps. Each rank writes its own file, <prefix><global rank>, with the prefix
// from GCCL_FR_DUMP_PREFIX (or PyTorch's TORCH_FR_DUMP_TEMP_FILE; default
// /tmp/gccl_trace_rank_) and the format from GCCL_FR_DUMP_FORMAT (pickle, PyTorch's default,
// or json). A rank dumps:
//   - when an op fails or times out: before the error reaches the caller (a process that exits
//     on the error still leaves its dump), and the first rank to fail asks every other rank to
//     dump through the store;
//   - when asked through the store: by a failing rank, by RequestFlightRecorderDumps on any rank,
//     or by the launcher (gccl run) when a worker died;
//   - when anything is written to its pipe, <prefix><rank>.pipe, created when
//     GCCL_FR_DUMP_PIPE=1 (or at PyTorch's TORCH_NCCL_DEBUG_INFO_PIPE_FILE<rank>.pipe): the job
//     goes on;
//   - on DumpFlightRecorder.

// DumpRequestKey is the store key of the n-th request that every rank dump its flight recorder
// (n from 1). A launcher that hosts the store asks for dumps by adding 1 to DumpGenerationKey
// and setting this key for the number it got (the value says why).
func DumpRequestKey(n int64) string { return "fr/dump/" + strconv.FormatInt(n, 10) }

// DumpGenerationKey is the store counter of dump requests (see DumpRequestKey).
const DumpGenerationKey = "fr/dump/gen"

// dumpFailureKey is claimed by the first rank whose op failed: that rank asks for the dumps.
const dumpFailureKey = "fr/dump/failure"

// dumper writes one rank's dumps and serves its triggers.
type dumper struct {
	rank   int
	prefix string
	format flightrecorder.Format
	rec    *flightrecorder.Recorder
	store  store.Store
	log    *slog.Logger

	mu       sync.Mutex // one dump at a time
	failed   atomic.Bool
	ownGen   atomic.Int64 // the request this rank made after its own failure (it dumped already)
	stop     context.CancelFunc
	done     sync.WaitGroup
	pipePath string
	pipe     *os.File
}

func newDumper(w *world) *dumper {
	return &dumper{
		rank: w.rank, prefix: flightrecorder.DumpPrefixFromEnv(), format: flightrecorder.DumpFormatFromEnv(),
		rec: w.recorder, store: w.store, log: w.log,
	}
}

// start runs the watchers: the store's dump requests (for a job of several ranks) and the pipe.
func (d *dumper) start(size int) {
	if !d.rec.Enabled() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	if size > 1 && d.store != nil {
		d.done.Add(1)
		go d.watchStore(ctx)
	}
	if path := pipePath(d.prefix, d.rank); path != "" {
		if err := d.openPipe(path); err != nil {
			d.log.Warn("gccl: flight recorder: cannot create the dump pipe", "path", path, "err", err)
		} else {
			d.done.Add(1)
			go d.watchPipe()
		}
	}
}

// close stops the watchers and removes the pipe.
func (d *dumper) close() {
	if d.stop == nil {
		return
	}
	d.stop()
	if d.pipe != nil {
		_ = d.pipe.Close()
		_ = os.Remove(d.pipePath)
	}
	d.done.Wait()
}

// dump writes this rank's dump and returns its path.
func (d *dumper) dump(reason string) (string, error) {
	if !d.rec.Enabled() {
		return "", errors.New("gccl: flight recorder is disabled (GCCL_FR_BUFFER_SIZE=0): nothing to dump")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	path := flightrecorder.DumpPath(d.prefix, d.rank)
	if err := d.rec.Snapshot().WriteFile(path, d.format); err != nil {
		return "", fmt.Errorf("gccl: rank %d: writing the flight-recorder dump: %w", d.rank, err)
	}
	d.log.Info("gccl: flight recorder dumped", "rank", d.rank, "path", path, "reason", reason)
	return path, nil
}

// onFailure dumps after a failed op; the first rank of the job to fail asks the others too.
func (d *dumper) onFailure(err error) {
	if !d.rec.Enabled() || !d.failed.CompareAndSwap(false, true) {
		return
	}
	reason := fmt.Sprintf("rank %d: %v", d.rank, err)
	if _, derr := d.dump(reason); derr != nil {
		d.log.Warn("gccl: flight recorder", "err", derr)
	}
	if d.store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	got, cerr := d.store.CompareAndSet(ctx, dumpFailureKey, nil, []byte(reason))
	if cerr != nil || string(got) != reason {
		return // another rank failed first and asked already (or the store is gone)
	}
	_ = requestDumps(ctx, d.store, reason, &d.ownGen)
}

// RequestDumps asks every rank of the job that uses st to dump its flight recorder, with reason
// (what a launcher does when a worker fails): one request through DumpGenerationKey and
// DumpRequestKey.
func RequestDumps(ctx context.Context, st store.Store, reason string) error {
	return requestDumps(ctx, st, reason, nil)
}

// requestDumps asks every rank to dump, through st; the request's number goes to gen first.
func requestDumps(ctx context.Context, st store.Store, reason string, gen *atomic.Int64) error {
	n, err := st.Add(ctx, DumpGenerationKey, 1)
	if err != nil {
		return err
	}
	if gen != nil {
		gen.Store(n)
	}
	return st.Set(ctx, DumpRequestKey(n), []byte(reason))
}

// watchStore dumps on every request published in the store.
func (d *dumper) watchStore(ctx context.Context) {
	defer d.done.Done()
	for n := int64(1); ; n++ {
		v, err := d.store.Get(ctx, DumpRequestKey(n))
		if err != nil {
			return // closing, or the store is gone
		}
		if n == d.ownGen.Load() {
			continue // this rank's own request: it dumped just before making it
		}
		if _, err := d.dump("requested: " + string(v)); err != nil {
			d.log.Warn("gccl: flight recorder", "err", err)
		}
	}
}

// pipePath is where this rank's dump pipe goes, or "" when none is asked for.
func pipePath(prefix string, rank int) string {
	if p := os.Getenv("TORCH_NCCL_DEBUG_INFO_PIPE_FILE"); p != "" {
		return p + strconv.Itoa(rank) + ".pipe"
	}
	if os.Getenv("GCCL_FR_DUMP_PIPE") == "1" {
		return flightrecorder.DumpPath(prefix, rank) + ".pipe"
	}
	return ""
}

// openPipe creates the named pipe (replacing a stale one) and opens it for reading. Opened
// read-write, it never reports end-of-file when a writer closes, and opening does not block.
func (d *dumper) openPipe(path string) error {
	_ = os.Remove(path)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		_ = os.Remove(path)
		return err
	}
	d.pipe, d.pipePath = f, path
	return nil
}

// watchPipe dumps whenever something is written to the pipe.
func (d *dumper) watchPipe() {
	defer d.done.Done()
	buf := make([]byte, 256)
	for {
		if _, err := d.pipe.Read(buf); err != nil {
			return // closed
		}
		if _, err := d.dump("pipe " + d.pipePath); err != nil {
			d.log.Warn("gccl: flight recorder", "err", err)
		}
	}
}

// DumpFlightRecorder writes this rank's flight-recorder dump to <prefix><global rank> and
// returns the file's path (see GCCL_FR_DUMP_PREFIX and GCCL_FR_DUMP_FORMAT).
func (pg *ProcessGroup) DumpFlightRecorder() (string, error) {
	return pg.w.dumper.dump("DumpFlightRecorder")
}

// RequestFlightRecorderDumps asks every rank of the job, this one included, to write its
// flight-recorder dump, through the store; each rank dumps within about a second, without
// stopping. Use it when a job looks stuck: then run gccl fr analyze on the dumps.
func (pg *ProcessGroup) RequestFlightRecorderDumps(ctx context.Context) error {
	if pg.w.size == 1 {
		_, err := pg.DumpFlightRecorder()
		return err
	}
	if err := requestDumps(ctx, pg.w.store, fmt.Sprintf("RequestFlightRecorderDumps by rank %d", pg.w.rank), nil); err != nil {
		return fmt.Errorf("gccl: rank %d: requesting flight-recorder dumps: %w", pg.w.rank, err)
	}
	return nil
}
