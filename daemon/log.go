package daemon

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/termtext"
)

// NewLogger builds the process logger from [log]: tint's colored text on a
// terminal, JSON otherwise (format "auto"); under journald no colors and no
// time attribute, since the journal stamps each line itself. Every duration
// is written the same way in both formats, as a string a person reads
// ("909ms", "-30µs", "1m30s"), not JSON's bare nanoseconds; and the text
// handler escapes control characters and bidi overrides in messages and
// values (a provider's error_description, an imported subject), which JSON
// escapes itself.
func NewLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	journald := os.Getenv("JOURNAL_STREAM") != ""
	tty := false
	if f, ok := w.(*os.File); ok {
		fi, err := f.Stat()
		tty = err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	format := c.Format
	if format == "auto" {
		format = "json"
		if tty || journald {
			format = "text"
		}
	}
	replace := func(groups []string, a slog.Attr) slog.Attr {
		if journald && len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(humanDuration(a.Value.Duration()))
		}
		return a
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: replace}))
	}
	return slog.New(tint.NewHandler(w, &tint.Options{
		Level:      level,
		TimeFormat: time.DateTime,
		NoColor:    !tty || journald,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			return termtext.ReplaceAttr(groups, replace(groups, a))
		},
	}))
}

// humanDuration is how grantwatch writes a duration for a person: to the
// millisecond from 1ms on ("909ms", "1m30.5s"), to the microsecond below
// ("-30µs"), so that an offset of a few microseconds is not "0s".
func humanDuration(d time.Duration) string {
	if d >= time.Millisecond || d <= -time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Microsecond).String()
}
