package termtext

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/lmittmann/tint"
)

// hostile holds what an outsider controls: a provider's error_description,
// an imported subject, a label.
func logHostile(l *slog.Logger) {
	l.Warn("grant \x1b]0;pwned\x07 failed",
		"grant", "acme\x1b[2J",
		"subject", "user\u202egpj.exe",
		"description", "token\x1b[8m revoked",
		// Literal text: tint's colour mode makes a raw ESC of it.
		"error_description", `see \x1b[2J here`,
		tint.Err(errors.New("invalid_grant: \x1b[2Jgone")),
		slog.Group("labels", "team", "ops\x9b2J"),
	)
}

func TestReplaceAttrTint(t *testing.T) {
	for _, noColor := range []bool{false, true} {
		var buf bytes.Buffer
		l := slog.New(tint.NewHandler(&buf, &tint.Options{NoColor: noColor, ReplaceAttr: ReplaceAttr}))
		logHostile(l)
		out := buf.String()
		// tint's own colours are SGR sequences ("\x1b[…m"); nothing else may
		// start with ESC, and no bidi or C1 character may get through.
		for _, bad := range []string{"\x1b]", "\x1b[2J", "\x1b[8m", "\x07", "\u202e", "\u009b", "\x9b"} {
			if strings.Contains(out, bad) {
				t.Errorf("noColor=%v: output holds %q: %q", noColor, bad, out)
			}
		}
		if noColor && strings.Contains(out, "\x1b") {
			t.Errorf("noColor=true: output holds ESC: %q", out)
		}
		for _, want := range []string{"grant ^[]0;pwned\\x07 failed", "acme^[[2J", `\u202e`, "invalid_grant: ^[[2Jgone", `\x9b2J`} {
			if !strings.Contains(out, want) {
				t.Errorf("noColor=%v: output lacks %q: %q", noColor, want, out)
			}
		}
	}
}

// Without ReplaceAttr tint lets the sequences through: the test above would
// pass vacuously if it did not.
func TestTintPassesEscapesThrough(t *testing.T) {
	var buf bytes.Buffer
	logHostile(slog.New(tint.NewHandler(&buf, &tint.Options{})))
	if out := buf.String(); !strings.Contains(out, "\x1b]0;pwned") || !strings.Contains(out, "\\\x1b[2J") {
		t.Fatalf("tint escaped the message and the literal \\x1b itself; ReplaceAttr may be unneeded: %q", out)
	}
}

func TestReplaceAttrLeavesOtherKinds(t *testing.T) {
	for _, a := range []slog.Attr{
		slog.Int("n", 3),
		slog.Any(slog.LevelKey, slog.LevelWarn),
		slog.Any("raw", []byte("\x1b")),
	} {
		if got := ReplaceAttr(nil, a); got.Value.Kind() != a.Value.Kind() || got.Value.String() != a.Value.String() {
			t.Errorf("ReplaceAttr(%v) = %v, want it unchanged", a, got)
		}
	}
}
