package termtext

import (
	"encoding"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
)

// ReplaceAttr is a ReplaceAttr function for the text log handler
// (tint.Options or slog.HandlerOptions): it escapes the message and every
// string-like attribute value and key with Escape, so that a provider's
// error_description or an imported subject cannot drive the terminal that
// shows the log. Chain it after any other ReplaceAttr:
//
//	ReplaceAttr: func(g []string, a slog.Attr) slog.Attr { return termtext.ReplaceAttr(g, dropTime(g, a)) }
//
// It is needed with tint v1.2.1, which writes the message and unquoted values
// as they are, and, with colours on, turns every `\x1b` that strconv.Quote
// produced back into a raw ESC, including one that stood for a literal
// backslash followed by "x1b" in the text. ReplaceAttr therefore also writes
// that literal backslash as `\x5c`.
//
// Values other than strings are rendered as tint renders them (MarshalText,
// else fmt's %+v) and escaped; times, numbers, durations, levels, sources and
// byte slices (which tint always quotes) are left as they are. Do not use it
// with the JSON handler: JSON escapes control characters itself, and its
// readers want the value, not a display form.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	a.Key = displayString(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(displayString(v.String()))
	case slog.KindAny:
		if s, ok := anyString(v.Any()); ok {
			a.Value = slog.StringValue(displayString(s))
		}
	}
	return a
}

// displayString is Escape made safe for tint's colour mode (see ReplaceAttr).
func displayString(s string) string {
	s = Escape(s)
	if strings.Contains(s, `\x1b`) {
		s = strings.ReplaceAll(s, `\x1b`, `\x5cx1b`)
	}
	return s
}

// anyString is the text tint would print for v, and false for the kinds it
// prints safely itself.
func anyString(v any) (string, bool) {
	switch v := v.(type) {
	case slog.Level, *slog.Source, nil:
		return "", false
	case encoding.TextMarshaler:
		b, err := v.MarshalText()
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	if t := reflect.TypeOf(v); t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
		return "", false
	}
	return fmt.Sprintf("%+v", v), true
}
