// Package termtext owns the one rule for printing text that came from outside
// grantwatch (grant ids, subjects, label names and values from an import file;
// a provider's error and error_description) on an operator's terminal: every
// character a terminal would act on instead of show is replaced by a visible
// escape. It also validates such text at import (Check) and escapes string
// attributes for the coloured log handler (ReplaceAttr).
//
// The characters it treats as unsafe: C0 controls (U+0000–U+001F), DEL, C1
// controls (U+0080–U+009F, which include the 8-bit CSI and OSC), the bidi
// embedding, override, isolate and mark characters of "Trojan Source"
// (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), and bytes that are
// not valid UTF-8. It does not touch homoglyphs or zero-width spaces: they
// can mislead a reader but cannot move the cursor, recolour or reorder text.
//
// The escapes follow kubectl's fix for CVE-2021-25743
// (kubernetes/kubernetes staging/src/k8s.io/cli-runtime/pkg/printers/terminal.go,
// EscapeTerminal: ESC as "^[", CR as `\r`) and extend it to the rest of the
// set: `\n` and `\t` for newline and tab, `\xNN` for the other C0 controls,
// DEL and invalid bytes, `\uNNNN` for C1 and bidi characters. Like kubectl's,
// the escaping is for display only and not reversible: a literal backslash is
// left as it is.
//
// termtext does no I/O and knows nothing of grants; callers decide which
// fields are external.
package termtext

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Escape returns s with every unsafe character replaced by a visible escape,
// for a single-line field (a table cell, a log attribute, an error message):
// newline and tab are escaped too. Text without unsafe characters is returned
// unchanged.
func Escape(s string) string { return escape(s, false) }

// EscapeText is Escape for multi-line text (a response body, a description
// printed on its own lines): it keeps newline and tab, and escapes everything
// else Escape does, carriage return included, since a bare CR lets the text
// overwrite the line it is on.
func EscapeText(s string) string { return escape(s, true) }

// Check returns nil when s holds no unsafe character, and otherwise an error
// naming the first one and its byte offset, for refusing an id, subject or
// label at import. Newline and tab are refused too: these fields are single
// lines. The error does not name the field; the caller adds it.
func Check(s string) error {
	i, r, size := next(s, false)
	switch {
	case i < 0:
		return nil
	case r == utf8.RuneError && size == 1:
		return fmt.Errorf("invalid UTF-8 byte 0x%02x at byte %d: only printable UTF-8 text is allowed", s[i], i)
	case r < 0x20 || r == 0x7f:
		return fmt.Errorf("control character %U (%s) at byte %d: only printable UTF-8 text is allowed", r, escapeRune(r), i)
	case r <= 0x9f:
		return fmt.Errorf("C1 control character %U at byte %d: only printable UTF-8 text is allowed", r, i)
	}
	return fmt.Errorf("bidirectional control character %U at byte %d: it can make the text read in another order than it is stored; only printable UTF-8 text is allowed", r, i)
}

// unsafe reports whether the valid rune r is replaced by an escape.
func unsafe(r rune) bool {
	switch {
	case r < 0x20 || r == 0x7f:
		return true
	case r < 0x80:
		return false
	case r <= 0x9f: // C1
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f: // ALM, LRM, RLM
		return true
	case r >= 0x202a && r <= 0x202e: // LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	}
	return false
}

// next returns the byte offset of the first character of s that needs an
// escape, with the rune and its encoded size (utf8.RuneError and 1 for an
// invalid byte), or -1 when there is none. keepLayout lets newline and tab
// through.
func next(s string, keepLayout bool) (int, rune, int) {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || (unsafe(r) && !(keepLayout && (r == '\n' || r == '\t'))) {
			return i, r, size
		}
		i += size
	}
	return -1, 0, 0
}

func escape(s string, keepLayout bool) string {
	i, _, _ := next(s, keepLayout)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLayout && (r == '\n' || r == '\t'), !unsafe(r):
			b.WriteString(s[i : i+size])
		default:
			b.WriteString(escapeRune(r))
		}
		i += size
	}
	return b.String()
}

// escapeRune is the visible form of an unsafe rune.
func escapeRune(r rune) string {
	switch r {
	case 0x1b:
		return "^[" // as kubectl prints it, and cat -v
	case '\r':
		return `\r`
	case '\n':
		return `\n`
	case '\t':
		return `\t`
	}
	if r < 0x80 {
		return fmt.Sprintf(`\x%02x`, r)
	}
	return fmt.Sprintf(`\u%04x`, r)
}
