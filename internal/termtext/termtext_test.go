package termtext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	tests := []struct {
		name, in, want, wantText string
	}{
		{"printable ASCII is unchanged", `acme-0 user@example.com k=v \x1b`, `acme-0 user@example.com k=v \x1b`, ""},
		{"non-ASCII letters are unchanged", "Zoë 東京 ☃ \uFFFD", "Zoë 東京 ☃ \uFFFD", ""},
		// CVE-2021-25743: a colour or screen-clearing sequence in a field.
		{"ESC as kubectl shows it", "a\x1b[2Jb", "a^[[2Jb", ""},
		// An OSC 8 hyperlink or OSC 0 title change ends in BEL or ST.
		{"OSC with BEL", "\x1b]0;pwned\x07", `^[]0;pwned\x07`, ""},
		{"CR cannot overwrite the line", "ok\rFAIL", `ok\rFAIL`, ""},
		{"newline and tab in a single-line field", "a\nb\tc", `a\nb\tc`, "a\nb\tc"},
		{"CRLF in multi-line text", "a\r\nb", `a\r\nb`, "a\\r\nb"},
		{"NUL and DEL", "a\x00b\x7f", `a\x00b\x7f`, ""},
		// U+009B is the 8-bit CSI: some terminals act on it in UTF-8 mode.
		{"C1 CSI as a UTF-8 rune", "a\u009b31mb", `a\u009b31mb`, ""},
		{"invalid UTF-8 bytes", "a\x9b\xffb", `a\x9b\xffb`, ""},
		{"truncated UTF-8 sequence", "a\xe2\x80", `a\xe2\x80`, ""},
		// Trojan Source (CVE-2021-42574): text that reads in another order.
		{"RLO override", "user\u202egpj.exe", `user\u202egpj.exe`, ""},
		{"isolates and marks", "\u2066a\u2069\u200e\u200f\u061c", `\u2066a\u2069\u200e\u200f\u061c`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Escape(tt.in); got != tt.want {
				t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
			}
			wantText := tt.wantText
			if wantText == "" {
				wantText = tt.want
			}
			if got := EscapeText(tt.in); got != wantText {
				t.Errorf("EscapeText(%q) = %q, want %q", tt.in, got, wantText)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name, in, want string // want: "" for nil, else a substring of the error
	}{
		{"plain id", "acme-0", ""},
		{"subject with non-ASCII", "zoë@example.com", ""},
		{"ESC names the character and offset", "ab\x1b[31m", "control character U+001B (^[) at byte 2"},
		{"newline is refused in a single-line field", "a\nb", `control character U+000A (\n) at byte 1`},
		{"C1", "x\u0085", "C1 control character U+0085 at byte 1"},
		{"bidi override, offset in bytes", "é\u202e", "bidirectional control character U+202E at byte 2"},
		{"invalid byte", "ok\xff", "invalid UTF-8 byte 0xff at byte 2"},
		{"first offender is named", "\u202ea\x1b", "U+202E at byte 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.in)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Check(%q) = %v, want nil", tt.in, err)
			case tt.want != "" && err == nil:
				t.Fatalf("Check(%q) = nil, want an error with %q", tt.in, tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Check(%q) = %q, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

// FuzzEscape checks the promise callers print on: the output of Escape holds
// no byte a terminal acts on, no C1 or bidi rune, is valid UTF-8, and text
// that Check accepts passes unchanged. EscapeText differs only in keeping
// newline and tab.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "acme-0", "a\x1b[2J", "\u202e", "\xff\xfe", "a\r\n\tb", "\u009b", "é\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, keepLayout := range []bool{false, true} {
			out := escape(s, keepLayout)
			if !utf8.ValidString(out) {
				t.Fatalf("escape(%q, %v) = %q: not valid UTF-8", s, keepLayout, out)
			}
			for _, r := range out {
				if unsafe(r) && !(keepLayout && (r == '\n' || r == '\t')) {
					t.Fatalf("escape(%q, %v) = %q: holds %U", s, keepLayout, out, r)
				}
			}
		}
		out := Escape(s)
		if err := Check(out); err != nil {
			t.Fatalf("Check(Escape(%q)) = %v", s, err)
		}
		if Check(s) == nil && out != s {
			t.Fatalf("Escape(%q) = %q, want it unchanged: Check accepts it", s, out)
		}
	})
}
