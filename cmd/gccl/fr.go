package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gccl/gccl/flightrecorder"
)

// exitProblemFound is gccl fr analyze's exit status when the analysis found a
// problem (an error-level finding). Usage errors and dumps that cannot be
// loaded at all exit 1.
const exitProblemFound = 3

func frCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fr",
		Short: "Inspect flight-recorder dumps (analyze a hang, show entries, view a timeline)",
		Long: `gccl fr reads flight-recorder dumps, one file per rank named <prefix><rank>, in gccl's or
PyTorch's format (pickle or JSON, told apart by their first byte). Ranks write them to
GCCL_FR_DUMP_PREFIX<rank> (default /tmp/gccl_trace_rank_<rank>).`,
	}
	cmd.AddCommand(frAnalyzeCmd(), frShowCmd(), frViewCmd())
	return cmd
}

func frAnalyzeCmd() *cobra.Command {
	var prefix string
	var asJSON bool
	var opts flightrecorder.AnalyzeOptions
	cmd := &cobra.Command{
		Use:   "analyze DIR",
		Short: "Match every rank's ops across the dumps in DIR and say what went wrong",
		Long: `gccl fr analyze loads every dump in DIR, matches each process group's collectives across its
members by sequence number (and point-to-point ops per pair of ranks), and reports ranks that
never joined an op the others are in (and where they are instead), op type, size, dtype and
state mismatches, missing dumps and mixed versions. The first line is the verdict.

Without --prefix, the prefix is inferred: the files whose names end in a rank number must share
one prefix. A file that cannot be read is reported on stderr and its rank counts as missing.

Exit status: 0 when no problem was found (warnings allowed), 3 when one was, 1 when the dumps
could not be analyzed at all (bad usage, no dump in DIR, none readable).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dumps, err := loadDumps(cmd.ErrOrStderr(), args[0], prefix)
			if err != nil {
				return err
			}
			rep := flightrecorder.Analyze(dumps, opts)
			out := cmd.OutOrStdout()
			if asJSON {
				err = rep.WriteJSON(out)
			} else {
				err = rep.WriteText(out)
			}
			if err != nil {
				return fmt.Errorf("fr analyze: %w", err)
			}
			if !rep.OK() {
				n := problems(rep)
				return &exitError{code: exitProblemFound, err: fmt.Errorf("fr analyze: %d %s found in %s", n, plural(n, "problem", "problems"), args[0])}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&prefix, "prefix", "", "dump file prefix: files are <prefix><rank> (default: inferred)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&opts.AllowIncompleteRanks, "allow-incomplete-ranks", false, "analyze what there is when some ranks' dumps are missing")
	f.IntSliceVar(&opts.Ranks, "rank", nil, "only report findings that involve this rank (repeatable)")
	f.StringArrayVar(&opts.Groups, "group", nil, "only analyze the group with this name or description (repeatable)")
	f.IntVar(&opts.MaxMismatches, "max-mismatches", 10, "mismatches reported per group, earliest first (-1: all)")
	return cmd
}

func frShowCmd() *cobra.Command {
	var prefix string
	var ranks []int
	cmd := &cobra.Command{
		Use:   "show DIR",
		Short: "Print each rank's flight-recorder entries as a table",
		Long: `gccl fr show prints, for each rank's dump in DIR (or only the --rank ones), one line per entry,
oldest first: record id, group, sequence number (p2p ones as p<N>), op, input and output sizes,
dtypes, state, creation time (UTC) and duration. It exits 1 if a dump could not be read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, _, err := flightrecorder.FindDumps(args[0], prefix)
			if err != nil {
				return err
			}
			var failed []error
			out := cmd.OutOrStdout()
			first := true
			for _, r := range slices.Sorted(maps.Keys(files)) {
				if len(ranks) > 0 && !slices.Contains(ranks, r) {
					continue
				}
				d, err := flightrecorder.LoadFile(files[r])
				if err != nil {
					failed = append(failed, err)
					fmt.Fprintf(cmd.ErrOrStderr(), "gccl: %v\n", err)
					continue
				}
				if !first {
					fmt.Fprintln(out)
				}
				first = false
				if err := showDump(out, r, files[r], d); err != nil {
					return err
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("fr show: %d %s could not be read", len(failed), plural(len(failed), "dump", "dumps"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "dump file prefix: files are <prefix><rank> (default: inferred)")
	cmd.Flags().IntSliceVar(&ranks, "rank", nil, "only show this rank (repeatable)")
	return cmd
}

func frViewCmd() *cobra.Command {
	var prefix, out string
	var opts flightrecorder.AnalyzeOptions
	cmd := &cobra.Command{
		Use:   "view DIR",
		Short: "Write an HTML timeline of the dumps in DIR: a row per rank, each op a box, problems highlighted",
		Long: `gccl fr view loads every dump in DIR as gccl fr analyze does, analyzes them, and writes one
self-contained HTML page (inline SVG, nothing fetched from the network) to FILE (-o, default
timeline.html): a row per rank (an empty one for a member that left no dump), each op a box on a
time axis in ms from the earliest time in the dumps, coloured by state (completed, started and in
flight, scheduled, failed), the ops cited by the analysis outlined in red and a "missing" marker
where a rank never joined an op. Hovering an op shows its details and stack frames. The verdict and
the findings head the page. --rank draws only those ranks and keeps the findings that involve them;
--group draws and analyzes only those groups.

Exit status: 0 when the page was written, problems found or not; 1 when it could not be (bad
usage, no dump in DIR, none readable, FILE not writable).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dumps, err := loadDumps(cmd.ErrOrStderr(), args[0], prefix)
			if err != nil {
				return err
			}
			rep := flightrecorder.Analyze(dumps, opts)
			topts := flightrecorder.TimelineOptions{Title: "gccl fr view " + args[0], Ranks: opts.Ranks, Groups: opts.Groups}
			if err := writeTimelineFile(out, dumps, rep, topts); err != nil {
				return fmt.Errorf("fr view: %w", err)
			}
			path, err := filepath.Abs(out)
			if err != nil {
				path = out
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s\n", path)
			if n := problems(rep); n > 0 {
				fmt.Fprintf(w, "%d %s found: %s\n", n, plural(n, "problem", "problems"), rep.Verdict)
			} else {
				fmt.Fprintln(w, rep.Verdict)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "timeline.html", "the HTML file to write")
	f.StringVar(&prefix, "prefix", "", "dump file prefix: files are <prefix><rank> (default: inferred)")
	f.BoolVar(&opts.AllowIncompleteRanks, "allow-incomplete-ranks", false, "analyze what there is when some ranks' dumps are missing")
	f.IntSliceVar(&opts.Ranks, "rank", nil, "only draw this rank, and only report findings that involve it (repeatable)")
	f.StringArrayVar(&opts.Groups, "group", nil, "only draw and analyze the group with this name or description (repeatable)")
	return cmd
}

// writeTimelineFile writes the timeline page to path.
func writeTimelineFile(path string, dumps map[int]flightrecorder.Dump, rep flightrecorder.Report, opts flightrecorder.TimelineOptions) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := flightrecorder.WriteTimeline(f, dumps, rep, opts); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// problems counts the error-level findings.
func problems(rep flightrecorder.Report) int {
	n := 0
	for _, f := range rep.Findings {
		if f.Severity == flightrecorder.SeverityError {
			n++
		}
	}
	return n
}

// loadDumps loads DIR's dumps, reporting unreadable files on w. It fails only
// when nothing could be loaded.
func loadDumps(w io.Writer, dir, prefix string) (map[int]flightrecorder.Dump, error) {
	dumps, errs := flightrecorder.LoadDir(dir, prefix)
	if len(dumps) == 0 {
		if len(errs) == 0 {
			return nil, fmt.Errorf("fr: no dump in %s", dir)
		}
		return nil, fmt.Errorf("fr: %w", errors.Join(errs...))
	}
	for _, err := range errs {
		fmt.Fprintf(w, "gccl: skipping a dump: %v\n", err)
	}
	return dumps, nil
}

func showDump(w io.Writer, rank int, path string, d flightrecorder.Dump) error {
	fmt.Fprintf(w, "rank %d (%s): version %s, %d %s\n", rank, path, d.Version, len(d.Entries), plural(len(d.Entries), "entry", "entries"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGROUP\tSEQ\tOP\tIN\tOUT\tDTYPES\tSTATE\tCREATED\tDURATION")
	for _, e := range d.Entries {
		group := e.ProcessGroup[0]
		if desc := e.ProcessGroup[1]; desc != "" && desc != flightrecorder.UndefinedDesc {
			group += " (" + desc + ")"
		}
		seq := fmt.Sprint(e.CollectiveSeqID)
		if e.IsP2P {
			seq = fmt.Sprintf("p%d", e.P2PSeqID)
		}
		state := e.State
		if e.Retired && e.State != flightrecorder.StateCompleted {
			state += " (retired)"
		}
		dur := "-"
		if e.DurationMs != nil {
			dur = fmt.Sprintf("%.3fms", *e.DurationMs)
		}
		created := time.Unix(0, e.TimeCreatedNs).UTC().Format("2006-01-02 15:04:05.000000")
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.RecordID, group, seq, e.ProfilingName,
			shapes(e.InputSizes), shapes(e.OutputSizes), dtypes(e.InputDtypes, e.OutputDtypes), state, created, dur)
	}
	return tw.Flush()
}

func shapes(s [][]int64) string {
	if len(s) == 0 {
		return "-"
	}
	parts := make([]string, len(s))
	for i, sh := range s {
		dims := make([]string, len(sh))
		for j, n := range sh {
			dims[j] = fmt.Sprint(n)
		}
		parts[i] = "[" + strings.Join(dims, ",") + "]"
	}
	return strings.Join(parts, " ")
}

func dtypes(in, out []string) string {
	all := append(slices.Clone(in), out...)
	slices.Sort(all)
	all = slices.Compact(all)
	if len(all) == 0 {
		return "-"
	}
	return strings.Join(all, ",")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
