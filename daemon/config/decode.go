package config

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// decode reads the TOML document b into c. toml.Decode alone stops at the
// first value of the wrong type and reports an unknown key of an
// [[providers]] entry once per entry without saying which; decode reports
// every unknown key and every ill-typed value at once, each naming its key
// (an array entry by its name, else its index) and its line, with "did you
// mean" for a near miss. Keys in error are left out, so that the rest of the
// file decodes and validates as if they were not there: a bad workers
// brings no errors about keys that were never set. A syntax error is
// returned as err (a toml.ParseError with its position); the problems of a
// document that parsed are returned as problems. defined reports whether
// the file sets a key.
func decode(b []byte, c *Config) (defined func(key ...string) bool, problems []error, err error) {
	var raw map[string]any
	if _, err := toml.Decode(string(b), &raw); err != nil {
		return nil, nil, err
	}
	defined = func(key ...string) bool {
		var v any = raw
		for _, k := range key {
			m, ok := v.(map[string]any)
			if !ok {
				return false
			}
			if v, ok = m[k]; !ok {
				return false
			}
		}
		return true
	}
	ck := checker{lines: keyLines(string(b))}
	ck.table(raw, reflect.TypeOf(*c), "", "")
	if len(ck.problems) == 0 {
		_, err := toml.Decode(string(b), c)
		return defined, nil, err
	}
	// Decode what is left: raw without the keys in error.
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(raw); err != nil {
		return nil, nil, err
	}
	if _, err := toml.Decode(buf.String(), c); err != nil {
		return nil, nil, err
	}
	sort.SliceStable(ck.problems, func(i, j int) bool { return ck.problems[i].line < ck.problems[j].line })
	for _, p := range ck.problems {
		problems = append(problems, p)
	}
	return defined, problems, nil
}

// problem is one finding of the checker, "key: message (line N)".
type problem struct {
	key, msg string
	line     int
}

func (p problem) Error() string {
	if p.line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", p.key, p.msg, p.line)
	}
	return fmt.Sprintf("%s: %s", p.key, p.msg)
}

// checker walks a decoded document against the config's types. Each key
// has two names: the one shown (providers.google.interval) and the one
// keyLines knows (providers[0].interval).
type checker struct {
	lines    map[string]int
	problems []problem
}

var durationType = reflect.TypeOf(time.Duration(0))

// line is the line of key, or of the nearest table around it (a key of an
// inline table).
func (ck *checker) line(at string) int {
	for at != "" {
		if n, ok := ck.lines[at]; ok {
			return n
		}
		i := strings.LastIndexAny(at, ".[")
		if i < 0 {
			break
		}
		at = at[:i]
	}
	return 0
}

func (ck *checker) bad(key, at, format string, args ...any) {
	ck.problems = append(ck.problems, problem{key: key, msg: fmt.Sprintf(format, args...), line: ck.line(at)})
}

// table checks the keys of m against struct type t, dropping those in
// error from m.
func (ck *checker) table(m map[string]any, t reflect.Type, key, at string) {
	fields := map[string]reflect.Type{}
	var names []string
	for i := range t.NumField() {
		if name := t.Field(i).Tag.Get("toml"); name != "" && name != "-" {
			fields[name] = t.Field(i).Type
			names = append(names, name)
		}
	}
	for k, v := range m {
		fk, fat := joinKey(key, k), join(at, k)
		ft, ok := fields[k]
		if !ok {
			msg := "unknown key"
			if s := nearest(k, names); s != "" {
				msg += "; did you mean " + s + "?"
			} else {
				msg += " (config.example.toml shows the keys there are)"
			}
			ck.bad(fk, fat, "%s", msg)
			delete(m, k)
			continue
		}
		if !ck.value(v, ft, fk, fat) {
			delete(m, k)
		}
	}
}

// value checks v against type t and reports whether it may be decoded.
func (ck *checker) value(v any, t reflect.Type, key, at string) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	wrong := func(want string) bool {
		ck.bad(key, at, "must be %s, not %s", want, tomlKind(v))
		return false
	}
	switch {
	case t == durationType:
		s, ok := v.(string)
		if _, isInt := v.(int64); isInt {
			ck.bad(key, at, "a duration is a string with a unit, such as \"30s\" or \"24h\", not a bare number")
			return false
		}
		if !ok {
			return wrong(`a duration such as "30s" or "24h"`)
		}
		if _, err := time.ParseDuration(s); err != nil {
			ck.bad(key, at, "%q is not a duration: write a number and a unit, such as \"30s\" or \"24h\"", s)
			return false
		}
		return true
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return wrong(fmt.Sprintf("a table ([%s])", key))
		}
		ck.table(m, t, key, at)
		return true
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		entries, ok := v.([]map[string]any)
		if !ok {
			return wrong(fmt.Sprintf("a list of tables ([[%s]] entries)", key))
		}
		for i, e := range entries {
			ek := fmt.Sprintf("%s[%d]", key, i)
			if name, ok := e["name"].(string); ok && providerName.MatchString(name) {
				ek = key + "." + name
			}
			ck.table(e, t.Elem(), ek, fmt.Sprintf("%s[%d]", at, i))
		}
		return true
	case t.Kind() == reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			return wrong("a list, such as [\"a\", \"b\"]")
		}
		okAll := true
		for i, e := range list {
			okAll = ck.value(e, t.Elem(), fmt.Sprintf("%s[%d]", key, i), at) && okAll
		}
		return okAll
	case t.Kind() == reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return wrong("a table of names and values, such as {tenant = \"acme\"}")
		}
		okAll := true
		for k, e := range m {
			okAll = ck.value(e, t.Elem(), joinKey(key, k), join(at, k)) && okAll
		}
		return okAll
	case t.Kind() == reflect.String:
		if _, ok := v.(string); !ok {
			return wrong("a string")
		}
	case t.Kind() == reflect.Bool:
		if _, ok := v.(bool); !ok {
			return wrong("true or false")
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		if _, ok := v.(int64); !ok {
			return wrong("an integer")
		}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		switch v.(type) {
		case float64, int64:
		default:
			return wrong("a number")
		}
	}
	return true
}

// joinKey appends part k to a key as it is shown, quoted as TOML quotes it
// unless it is a bare key.
func joinKey(key, k string) string {
	if k == "" || strings.TrimLeft(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
		k = strconv.Quote(k)
	}
	return join(key, k)
}

// join appends part k to a dotted key.
func join(key, k string) string {
	if key == "" {
		return k
	}
	return key + "." + k
}

// tomlKind names the TOML type of a decoded value, never the value itself:
// it may be a secret.
func tomlKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case []map[string]any:
		return "a list of tables"
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}

// nearest is the name among names closest to typed, if it is near enough
// to be what was meant: at most two edits apart (a third of its length for
// short names), ignoring case.
func nearest(typed string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		d := editDistance(strings.ToLower(typed), n)
		if d < bestD && d <= max(1, len(n)/3) {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// keyLines maps the keys and tables of a TOML document to the line each is
// defined on. An [[array]] entry is named by its index, as in
// "providers[1].interval"; a key of an inline table is not listed (its
// table's line stands for it). It reads only as much TOML as it needs:
// headers, keys, strings (to skip their content) and brackets (to skip
// multi-line arrays). toml.Decode has parsed the document already; keyLines
// only finds lines.
func keyLines(doc string) map[string]int {
	lines := map[string]int{}
	arrays := map[string]int{} // array of tables (unindexed path) → entries so far
	// path names a dotted key with the current index of each array of
	// tables along it.
	path := func(parts []string) (indexed, plain string) {
		for _, p := range parts {
			plain = join(plain, p)
			indexed = join(indexed, p)
			if n := arrays[plain]; n > 0 {
				indexed += fmt.Sprintf("[%d]", n-1)
			}
		}
		return indexed, plain
	}
	var (
		table     string // current table, indexed
		mlDelim   string // open multi-line string's delimiter
		depth     int    // open brackets and braces of a value
		lineNo    int
		remaining = doc
	)
	for remaining != "" {
		var line string
		line, remaining, _ = strings.Cut(remaining, "\n")
		lineNo++
		rest := line
		if mlDelim == "" && depth == 0 {
			t := strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(t, "[["):
				name, after, _ := strings.Cut(t[2:], "]]")
				parts := splitKey(name)
				_, plain := path(parts)
				arrays[plain]++
				table, _ = path(parts)
				lines[table] = lineNo
				rest = after
			case strings.HasPrefix(t, "["):
				name, after, _ := strings.Cut(t[1:], "]")
				table, _ = path(splitKey(name))
				lines[table] = lineNo
				rest = after
			case t != "" && t[0] != '#':
				k, v, ok := cutKey(t)
				if !ok {
					continue
				}
				lines[join(table, strings.Join(splitKey(k), "."))] = lineNo
				rest = v
			default:
				continue
			}
		}
		mlDelim, depth = scanValue(rest, mlDelim, depth)
	}
	return lines
}

// cutKey splits "key = value" at its "=", outside quotes.
func cutKey(s string) (key, value string, ok bool) {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// splitKey splits a dotted TOML key into its parts, unquoted.
func splitKey(k string) []string {
	var parts []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c != ' ' && c != '\t':
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

// scanValue follows the strings and brackets of one line of values: it
// returns the delimiter of a multi-line string still open at its end, and
// the brackets still open.
func scanValue(s, mlDelim string, depth int) (string, int) {
	for i := 0; i < len(s); i++ {
		if mlDelim != "" {
			if mlDelim == `"""` && s[i] == '\\' {
				i++
				continue
			}
			if strings.HasPrefix(s[i:], mlDelim) {
				i += 2
				mlDelim = ""
			}
			continue
		}
		switch c := s[i]; c {
		case '#':
			return "", depth
		case '"', '\'':
			if strings.HasPrefix(s[i:], strings.Repeat(string(c), 3)) {
				mlDelim = strings.Repeat(string(c), 3)
				i += 2
				continue
			}
			for i++; i < len(s) && s[i] != c; i++ {
				if c == '"' && s[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		}
	}
	return mlDelim, depth
}
