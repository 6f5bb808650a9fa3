package daemon

// The import line parser and its limits. Every line is checked here; the
// pipeline that streams, spools and writes an import is import.go.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/termtext"
	"github.com/grantwatch/grantwatch/store"
)

// importLine is one line of `grants import` input (JSON Lines).
type importLine struct {
	ID           *string           `json:"id"`
	Provider     *string           `json:"provider"`
	RefreshToken *string           `json:"refresh_token"`
	Subject      string            `json:"subject"`
	Labels       map[string]string `json:"labels"`
}

// Limits of import input. With them, what an import holds in memory is
// bounded whatever the input: one line (maxImportLine), the first
// maxImportErrors problems, and 8 bytes per line for the duplicate check
// (at most maxImportLines lines: 80 MB). The input itself is spooled to a
// file (import.go), never held; its size is bounded by daemon.import_max_bytes.
const (
	maxImportLine   = 64 << 10
	maxImportErrors = 20
	maxImportLines  = 10_000_000
	maxIDLen        = 256
	maxSubjectLen   = 512
	maxLabels       = 32
	maxLabelName    = 63
	maxLabelValue   = 256
)

// reservedID is the store's own: the key canary is sealed under it
// (store/seal.go canaryAD), and the store refuses to import it
// (TestReservedIDMatchesStore keeps the two in step).
const reservedID = "grantwatch-canary"

// labelName is what a label may be called: it is a TOML key in [[notify]]
// match.labels, a group_by "label:NAME" and, with the characters Prometheus
// does not allow replaced, an Alertmanager label.
var labelName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./-]*$`)

var (
	utf8BOM    = []byte("\xef\xbb\xbf")
	utf16BOMLE = []byte("\xff\xfe")
	utf16BOMBE = []byte("\xfe\xff")
)

// lineError is a problem of one input line.
type lineError struct {
	line int
	msg  string
}

// lineChecker validates import lines one at a time and remembers what the
// whole input needs: the problems (the first maxImportErrors), the number of
// grants and a hash of each grant id, for finding duplicates once every line
// is read (duplicates).
type lineChecker struct {
	// provider looks up a configured provider (Config.Provider): a grant
	// of a provider in observe mode may come without refresh_token, and is
	// imported as such (NewGrant.Observe).
	provider func(name string) (config.ProviderConfig, bool)
	seed     maphash.Seed
	hashes   []uint64
	errs     []lineError
	more     int // problems beyond maxImportErrors
	grants   int
}

func newLineChecker(provider func(string) (config.ProviderConfig, bool)) *lineChecker {
	return &lineChecker{provider: provider, seed: maphash.MakeSeed()}
}

func (c *lineChecker) bad(n int, format string, args ...any) {
	if len(c.errs) == maxImportErrors {
		c.more++
		return
	}
	c.errs = append(c.errs, lineError{n, fmt.Sprintf(format, args...)})
}

// check validates line n (1-based) of the input. It returns the grant and
// true for a valid grant line; false for a blank or comment line and for a
// line with problems, which it records. Errors never quote a refresh token.
func (c *lineChecker) check(n int, raw []byte) (store.NewGrant, bool) {
	line := bytes.TrimSpace(raw)
	if n == 1 {
		switch {
		case bytes.HasPrefix(line, utf16BOMLE), bytes.HasPrefix(line, utf16BOMBE):
			c.bad(n, "the input is UTF-16 (it starts with a UTF-16 byte order mark): convert it to UTF-8, for example with iconv -f UTF-16 -t UTF-8")
			return store.NewGrant{}, false
		case bytes.HasPrefix(line, utf8BOM):
			line = bytes.TrimSpace(line[len(utf8BOM):]) // as written by Windows tools
		}
	}
	if len(line) == 0 || line[0] == '#' {
		return store.NewGrant{}, false
	}
	if bytes.HasPrefix(line, utf8BOM) {
		c.bad(n, "starts with a UTF-8 byte order mark, which only the first line may: remove it (was the input joined from several files?)")
		return store.NewGrant{}, false
	}
	var l importLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		c.bad(n, "%s", jsonProblem(err))
		return store.NewGrant{}, false
	}
	if dec.More() {
		c.bad(n, "more than one JSON value on the line: each line must be one JSON object")
		return store.NewGrant{}, false
	}
	ok := true
	bad := func(format string, args ...any) {
		c.bad(n, format, args...)
		ok = false
	}
	switch {
	case l.ID == nil || strings.TrimSpace(*l.ID) == "":
		bad("id: is required")
	case len(*l.ID) > maxIDLen:
		bad("id: longer than %d bytes", maxIDLen)
	case termtext.Check(*l.ID) != nil:
		bad("id: %v", termtext.Check(*l.ID))
	case strings.Contains(*l.ID, "/"):
		bad("id: must not contain a slash (it is a path segment of the control API)")
	case *l.ID == "." || *l.ID == "..":
		// A URL path segment that HTTP clients and ServeMux resolve
		// away: the control API could never name the grant.
		bad("id: %q is not a usable grant id", *l.ID)
	case *l.ID == reservedID:
		bad("id: %q is reserved by grantwatch: give the grant another id", *l.ID)
	}
	var pc config.ProviderConfig
	if l.Provider == nil || *l.Provider == "" {
		bad("provider: is required")
	} else if p, known := c.provider(*l.Provider); !known {
		bad("provider: %s is not a configured provider (add a [[providers]] entry named so)", quoteShort(*l.Provider))
	} else {
		pc = p
	}
	tok := ""
	if l.RefreshToken != nil {
		tok = strings.TrimSpace(*l.RefreshToken)
	}
	if tok == "" && !pc.Observe() {
		// An observe provider's app keeps the token; grantwatch needs
		// none. Only a provider's known mode waives it.
		bad("refresh_token: is required (only a provider with mode = %q takes grants without one)", config.ModeObserve)
	}
	switch {
	case len(l.Subject) > maxSubjectLen:
		bad("subject: longer than %d bytes", maxSubjectLen)
	case termtext.Check(l.Subject) != nil:
		bad("subject: %v", termtext.Check(l.Subject))
	}
	if len(l.Labels) > maxLabels {
		bad("labels: %d labels, at most %d are allowed", len(l.Labels), maxLabels)
	}
	// In name order, so that the same input always gives the same errors.
	for _, k := range slices.Sorted(maps.Keys(l.Labels)) {
		v := l.Labels[k]
		switch {
		case k == "":
			bad("labels: a label name is empty")
		case len(k) > maxLabelName:
			bad("labels: name %s is longer than %d bytes", quoteShort(k), maxLabelName)
		case termtext.Check(k) != nil:
			bad("labels: a label name: %v", termtext.Check(k))
		case !labelName.MatchString(k):
			bad("labels: name %q: use letters, digits and _ . / - and start with a letter or _", k)
		case len(v) > maxLabelValue:
			bad("labels.%s: value longer than %d bytes", k, maxLabelValue)
		case termtext.Check(v) != nil:
			bad("labels.%s: %v", k, termtext.Check(v))
		}
	}
	if !ok {
		return store.NewGrant{}, false
	}
	c.grants++
	if len(c.hashes) < maxImportLines {
		c.hashes = append(c.hashes, maphash.String(c.seed, *l.ID))
	}
	return store.NewGrant{
		ID: *l.ID, Provider: *l.Provider, Subject: l.Subject, Labels: l.Labels,
		RefreshToken: secret.Secret(tok), Observe: pc.Observe(),
	}, true
}

// dupHashes returns the id hashes that occur more than once: the candidates
// for a duplicate id, which a second read of the input confirms (a hash may
// be shared by two ids). It sorts c.hashes.
func (c *lineChecker) dupHashes() map[uint64]bool {
	slices.Sort(c.hashes)
	var dup map[uint64]bool
	for i := 1; i < len(c.hashes); i++ {
		if c.hashes[i] == c.hashes[i-1] {
			if dup == nil {
				dup = map[uint64]bool{}
			}
			dup[c.hashes[i]] = true
		}
	}
	return dup
}

// duplicates reads the input again (as it was checked, from line 1) and
// records every id that appears on more than one line. Only ids whose hash
// is in cand are remembered, so it holds little more than the duplicates.
func (c *lineChecker) duplicates(r io.Reader, cand map[uint64]bool) error {
	first := map[string]int{}
	sc := newLineScanner(r)
	for n := 1; sc.Scan(); n++ {
		id, ok := lineID(sc.Bytes())
		if !ok || !cand[maphash.String(c.seed, id)] {
			continue
		}
		if at, seen := first[id]; seen {
			c.bad(n, "id: %q appears again (first on line %d)", id, at)
			continue
		}
		first[id] = n
	}
	return sc.Err()
}

// lineID is the id of an import line that check accepted.
func lineID(raw []byte) (string, bool) {
	line := bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(raw), utf8BOM))
	if len(line) == 0 || line[0] == '#' {
		return "", false
	}
	var l struct {
		ID *string `json:"id"`
	}
	if json.Unmarshal(line, &l) != nil || l.ID == nil {
		return "", false
	}
	return *l.ID, true
}

// err is every problem found, in line order, or nil.
func (c *lineChecker) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(c.errs, func(a, b lineError) int { return a.line - b.line })
	more := c.more
	if len(c.errs) > maxImportErrors { // duplicates came on top
		more += len(c.errs) - maxImportErrors
		c.errs = c.errs[:maxImportErrors]
	}
	errs := make([]error, 0, len(c.errs)+1)
	for _, e := range c.errs {
		errs = append(errs, fmt.Errorf("line %d: %s", e.line, e.msg))
	}
	if more > 0 {
		errs = append(errs, fmt.Errorf("… and %d more problems", more))
	}
	return fmt.Errorf("nothing imported:\n%w", errors.Join(errs...))
}

// newLineScanner splits import input into lines of at most maxImportLine
// bytes.
func newLineScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxImportLine)
	return sc
}

// scanErr describes a failed read of line n.
func scanErr(err error, n int) error {
	if errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("nothing imported: line %d: longer than %d KiB", n, maxImportLine>>10)
	}
	return fmt.Errorf("read import: %w", err)
}

// ParseImport reads JSON Lines of grants and validates all of them, as
// `grants import` does, and returns them: for small inputs (the demo,
// tests), since it holds every grant. Any bad line fails the whole input,
// with every problem reported as "line N: field: what is wrong" (the first
// 20). known says whether a provider is configured. Blank lines and lines
// starting with # are skipped. Errors never quote a refresh token.
func ParseImport(r io.Reader, provider func(name string) (config.ProviderConfig, bool)) ([]store.NewGrant, error) {
	var buf bytes.Buffer
	c := newLineChecker(provider)
	var gs []store.NewGrant
	sc := newLineScanner(io.TeeReader(r, &buf))
	n := 0
	for sc.Scan() {
		n++
		if g, ok := c.check(n, sc.Bytes()); ok {
			gs = append(gs, g)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, scanErr(err, n+1)
	}
	if cand := c.dupHashes(); cand != nil {
		if err := c.duplicates(&buf, cand); err != nil {
			return nil, scanErr(err, 0)
		}
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	if len(gs) == 0 {
		return nil, errors.New("nothing to import: the input has no grants")
	}
	return gs, nil
}

// jsonProblem describes a decode error without quoting the input (which may
// hold a token).
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field == "":
		return fmt.Sprintf("each line must be a JSON object with id, provider and refresh_token (and optionally subject and labels), not a JSON %s", te.Value)
	case errors.As(err, &te) && (te.Field == "labels" || strings.HasPrefix(te.Field, "labels.")):
		return fmt.Sprintf("%s: must be an object of string values, not a JSON %s", te.Field, te.Value)
	case errors.As(err, &te):
		return fmt.Sprintf("%s: must be a string, not a JSON %s", te.Field, te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: each line must be one JSON object", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ") + " (the fields are id, provider, refresh_token, subject, labels)"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON: each line must be one whole JSON object"
	}
	return "invalid JSON: each line must be one JSON object"
}

// quoteShort quotes a value for an error unless it is long enough to be a
// token in the wrong column: such a value is described, never shown.
func quoteShort(v string) string {
	if len(v) > 40 {
		return fmt.Sprintf("a %d-character value", len(v))
	}
	return fmt.Sprintf("%q", v)
}
