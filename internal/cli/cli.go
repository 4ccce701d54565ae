// Package cli holds what mars-server and node share on the command line:
// loggers (-log-level, -log-format) and the start-up warning about unknown
// DIARKIS_* variables.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/marsmesh/marsmesh/config"
)

// Exit codes shared by both binaries.
const (
	ExitOK    = 0
	ExitFail  = 1 // the program ran and failed (a port taken, MARS silent)
	ExitUsage = 2 // bad usage or configuration: a bad flag, argument or value
)

// LogFormats lists the values -log-format takes.
const LogFormats = "json or text"

// NewLogger returns a logger to w at level (debug, info, warn, error) in
// format (json or text). Both formats write durations as text ("1.5s").
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		opts.ReplaceAttr = durationText
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want %s", format, LogFormats)
}

// durationText writes durations as text ("1.5s", as the text format
// does), not as the JSON handler's integer nanoseconds.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// WarnUnknownEnv logs one warning per DIARKIS_* variable that no
// configuration key reads (extra: variables the program reads itself).
func WarnUnknownEnv(log *slog.Logger, extra ...string) {
	for _, w := range config.UnknownEnv(os.Environ(), extra...) {
		log.Warn(w)
	}
}
