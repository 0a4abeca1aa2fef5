package flightrecorder

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Format is a dump file format.
type Format string

// The dump formats. FormatPickle is PyTorch's default dump format (what its
// DebugInfoWriter writes and torchfrtrace reads); FormatJSON is PyTorch's
// JSON dump shape.
const (
	FormatPickle Format = "pickle"
	FormatJSON   Format = "json"
)

// DefaultFormat is the format dumps are written in when GCCL_FR_DUMP_FORMAT
// does not say: pickle, like PyTorch.
const DefaultFormat = FormatPickle

// ParseFormat reads a format name: "json", or "pickle" (also "pkl"), in any
// case.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "json":
		return FormatJSON, nil
	case "pickle", "pkl":
		return FormatPickle, nil
	}
	return "", fmt.Errorf("flightrecorder: unknown dump format %q: want json or pickle", s)
}

// DefaultDumpPrefix is the dump file prefix when no environment variable
// sets one; rank r's dump is DefaultDumpPrefix + r, like PyTorch's
// /tmp/nccl_trace_rank_<r>.
const DefaultDumpPrefix = "/tmp/gccl_trace_rank_"

// DumpPrefixEnvVars are the variables DumpPrefixFromEnv reads, first set one
// wins: gccl's own, then PyTorch's, then PyTorch's older NCCL-only name.
var DumpPrefixEnvVars = []string{"GCCL_FR_DUMP_PREFIX", "TORCH_FR_DUMP_TEMP_FILE", "TORCH_NCCL_DEBUG_INFO_TEMP_FILE"}

// DumpFormatEnvVar names the variable DumpFormatFromEnv reads ("json" or
// "pickle").
const DumpFormatEnvVar = "GCCL_FR_DUMP_FORMAT"

// DumpPrefixFromEnv returns the dump file prefix: the first of
// DumpPrefixEnvVars set to a non-empty value, else DefaultDumpPrefix.
func DumpPrefixFromEnv() string {
	for _, name := range DumpPrefixEnvVars {
		if v := strings.TrimSpace(os.Getenv(name)); v != "" {
			return v
		}
	}
	return DefaultDumpPrefix
}

// DumpFormatFromEnv returns the dump format set in GCCL_FR_DUMP_FORMAT, else
// DefaultFormat. A value that names no format logs a warning and gives
// DefaultFormat.
func DumpFormatFromEnv() Format {
	raw := os.Getenv(DumpFormatEnvVar)
	if strings.TrimSpace(raw) == "" {
		return DefaultFormat
	}
	f, err := ParseFormat(raw)
	if err != nil {
		slog.Warn("flightrecorder: unknown dump format, using the default",
			"var", DumpFormatEnvVar, "value", raw, "default", DefaultFormat)
		return DefaultFormat
	}
	return f
}

// DumpPath returns rank's dump file name, prefix followed by the rank in
// decimal: DumpPath("/tmp/gccl_trace_rank_", 3) is "/tmp/gccl_trace_rank_3".
func DumpPath(prefix string, rank int) string {
	return prefix + strconv.Itoa(rank)
}

// Write writes d to w in format f.
func (d Dump) Write(w io.Writer, f Format) error {
	switch f {
	case FormatJSON:
		return d.WriteJSON(w)
	case FormatPickle:
		return d.WritePickle(w)
	}
	return fmt.Errorf("flightrecorder: unknown dump format %q: want json or pickle", string(f))
}

// WriteFile writes d to path in format f, atomically: it writes a hidden
// temporary file in path's directory (".<name>.tmp<random>"), syncs it and
// renames it over path, so a reader never sees half a dump. The file's mode
// is 0644. The directory must exist.
func (d Dump) WriteFile(path string, f Format) (err error) {
	if f != FormatJSON && f != FormatPickle {
		return fmt.Errorf("flightrecorder: unknown dump format %q: want json or pickle", string(f))
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("flightrecorder: writing dump %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 64<<10)
	if err = d.Write(bw, f); err != nil {
		return fmt.Errorf("flightrecorder: writing dump %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("flightrecorder: writing dump %s: %w", path, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("flightrecorder: writing dump %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("flightrecorder: writing dump %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("flightrecorder: writing dump %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("flightrecorder: writing dump %s: %w", path, err)
	}
	return nil
}
