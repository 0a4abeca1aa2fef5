package comm

import (
	"context"
	"log/slog"
	"os"
	"strings"
)

// defaultLogger is the logger of a job that passed none: slog.Default(), filtered by
// GCCL_LOG_LEVEL (debug, info, warn, error) when it is set, so that `gccl run`'s and the user's
// setting also quiets the library's own messages.
func defaultLogger() *slog.Logger {
	lvl, ok := ParseLogLevel(os.Getenv("GCCL_LOG_LEVEL"))
	if !ok {
		return slog.Default()
	}
	return slog.New(levelFilter{h: slog.Default().Handler(), min: lvl})
}

// ParseLogLevel reads a GCCL_LOG_LEVEL value: debug, info, warn or error (any case); ok is false
// for anything else, the empty string included.
func ParseLogLevel(s string) (lvl slog.Level, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

// levelFilter drops records below min before they reach h.
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: f.h.WithAttrs(a), min: f.min}
}
func (f levelFilter) WithGroup(name string) slog.Handler {
	return levelFilter{h: f.h.WithGroup(name), min: f.min}
}
