package daemon

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/lmittmann/tint"
)

// NewLogger builds the process logger from [log]: tint's colored text on a
// terminal, JSON otherwise (format "auto"); under journald no colors and no
// time attribute, since the journal stamps each line itself.
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
	dropTime := func(groups []string, a slog.Attr) slog.Attr {
		if journald && len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime}))
	}
	return slog.New(tint.NewHandler(w, &tint.Options{
		Level:       level,
		TimeFormat:  time.DateTime,
		NoColor:     !tty || journald,
		ReplaceAttr: dropTime,
	}))
}
