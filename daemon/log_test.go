package daemon

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
)

// TestLoggerDurationsReadable: JSON logs write every duration as the
// string a person reads, as the text handler does, not as bare nanoseconds
// (issue 12 item 12: "retry_in":909913127, "offset":-29784).
func TestLoggerDurationsReadable(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(config.LogConfig{Level: "info", Format: "json"}, &buf)
	log.Info("delivery failed", slog.Duration("retry_in", 909913127*time.Nanosecond),
		slog.Group("clock", slog.Duration("offset", -29784*time.Nanosecond)), "max_age", 24*time.Hour)
	var got struct {
		RetryIn string `json:"retry_in"`
		MaxAge  string `json:"max_age"`
		Clock   struct {
			Offset string `json:"offset"`
		} `json:"clock"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	if got.RetryIn != "910ms" || got.Clock.Offset != "-30µs" || got.MaxAge != "24h0m0s" {
		t.Errorf("durations %+v, want 910ms, -30µs, 24h0m0s:\n%s", got, buf.Bytes())
	}

	buf.Reset()
	NewLogger(config.LogConfig{Level: "info", Format: "text"}, &buf).Info("x", "retry_in", 909913127*time.Nanosecond)
	if !strings.Contains(buf.String(), "retry_in=910ms") {
		t.Errorf("text log: %q, want retry_in=910ms", buf.String())
	}
}

// TestTextLoggerEscapesControls: the foreground text log shows control
// characters from outside (a provider's error_description, an imported
// subject) as visible escapes, so that they cannot clear or recolour the
// operator's terminal (issue 13 item 4).
func TestTextLoggerEscapesControls(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(config.LogConfig{Level: "info", Format: "text"}, &buf)
	log.Warn("grant needs reconnect \x1b[31m", "grant", "g\x1b[2J", "error_description", "gone\x1b]0;title\a\u202e", "subject", "ann\r\n")
	out := buf.String()
	for _, c := range []string{"\x1b", "\a", "\u202e", "\r"} {
		if strings.Contains(out, c) {
			t.Errorf("text log holds %q: %q", c, out)
		}
	}
	if !strings.Contains(out, "g^[[2J") {
		t.Errorf("escaped id not shown: %q", out)
	}
}
