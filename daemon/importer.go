package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/secret"
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

// Limits of import input, so a hostile file cannot exhaust memory.
const (
	maxImportLine   = 64 << 10
	maxImportErrors = 20
	maxIDLen        = 256
)

// ParseImport reads JSON Lines of grants and validates all of them before
// anything is imported: any bad line fails the whole input, with every
// problem reported as "line N: field: what is wrong" (the first 20).
// provider looks up a configured provider (Config.Provider): a grant of a
// provider in observe mode may come without refresh_token, and is imported
// as such (NewGrant.Observe). Blank lines and lines starting with # are
// skipped. Errors never quote a refresh token.
func ParseImport(r io.Reader, provider func(name string) (config.ProviderConfig, bool)) ([]store.NewGrant, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxImportLine)
	var (
		gs   []store.NewGrant
		errs []error
		ids  = map[string]int{}
		n    int
	)
	bad := func(format string, args ...any) {
		if len(errs) < maxImportErrors {
			errs = append(errs, fmt.Errorf("line %d: %s", n, fmt.Sprintf(format, args...)))
		} else if len(errs) == maxImportErrors {
			errs = append(errs, errors.New("… more errors not shown"))
		}
	}
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		var l importLine
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			bad("not a JSON object with id, provider, refresh_token, subject, labels: %s", jsonProblem(err))
			continue
		}
		if dec.More() {
			bad("more than one JSON value on the line")
			continue
		}
		ok := true
		switch {
		case l.ID == nil || strings.TrimSpace(*l.ID) == "":
			bad("id: is required")
			ok = false
		case len(*l.ID) > maxIDLen || !utf8.ValidString(*l.ID) || strings.ContainsAny(*l.ID, "/\x00\n"):
			bad("id: must be at most %d characters of valid UTF-8 without slashes", maxIDLen)
			ok = false
		case *l.ID == "." || *l.ID == "..":
			// A URL path segment that HTTP clients and ServeMux resolve
			// away: the control API could never name the grant.
			bad("id: %q is not a usable grant id", *l.ID)
			ok = false
		default:
			if first, dup := ids[*l.ID]; dup {
				bad("id: %q appears again (first on line %d)", *l.ID, first)
				ok = false
			}
			ids[*l.ID] = n
		}
		var pc config.ProviderConfig
		if l.Provider == nil || *l.Provider == "" {
			bad("provider: is required")
			ok = false
		} else if p, known := provider(*l.Provider); !known {
			bad("provider: %s is not a configured provider (add a [[providers]] entry named so)", quoteShort(*l.Provider))
			ok = false
		} else {
			pc = p
		}
		tok := ""
		if l.RefreshToken != nil {
			tok = strings.TrimSpace(*l.RefreshToken)
		}
		if tok == "" && !pc.Observe() {
			// An observe provider's app keeps the token; grantwatch
			// needs none. Only a provider's known mode waives it.
			bad("refresh_token: is required (only a provider with mode = %q takes grants without one)", config.ModeObserve)
			ok = false
		}
		if !ok {
			continue
		}
		gs = append(gs, store.NewGrant{
			ID: *l.ID, Provider: *l.Provider, Subject: l.Subject, Labels: l.Labels,
			RefreshToken: secret.Secret(tok), Observe: pc.Observe(),
		})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", n+1, maxImportLine)
		}
		return nil, fmt.Errorf("read import: %w", err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("nothing imported:\n%w", errors.Join(errs...))
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
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s: must be %s", te.Field, te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	return "invalid JSON"
}

// quoteShort quotes a value for an error unless it is long enough to be a
// token in the wrong column: such a value is described, never shown.
func quoteShort(v string) string {
	if len(v) > 40 {
		return fmt.Sprintf("a %d-character value", len(v))
	}
	return fmt.Sprintf("%q", v)
}
