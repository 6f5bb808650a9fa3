package probes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Rule is one line of the classification table: when every non-zero match
// field agrees with an answer, the answer has Cause. Rules are data; Classify
// is a loop over them, first match wins.
type Rule struct {
	// Name identifies the rule in explain's output and in logs, e.g.
	// "microsoft: AADSTS50173" or "rfc6749: invalid_client". Keep it stable.
	Name string
	// Error matches the error field (RFC 6749 §5.2 code or a provider's own
	// code), case-insensitively.
	Error string
	// Status matches the HTTP status exactly; StatusClass its hundreds digit
	// (4 for 4xx, 5 for 5xx).
	Status      int
	StatusClass int
	// Code matches a member of ErrorCodes (Microsoft error_codes, AADSTS codes
	// found in the description, a nested error's numeric code).
	Code int
	// Subtype matches Google's error_subtype, case-insensitively.
	Subtype string
	// Pattern matches the answer's words: each of its texts in turn
	// (Answer.Texts: error_description, a nested message, a plain-text
	// body...) with RFC 6749's definitions removed (see preambles), then a
	// provider's own error code, never an RFC one (see wordsOf); compile it
	// case-insensitive ("(?i)...") and keep it within a sentence ([^.\n]).
	Pattern *regexp.Regexp
	// Format matches Answer.Format ("json", "form", "html", "text", "empty").
	Format string
	// Cause is what the answer means when the rule matches.
	Cause Cause
}

// match reports whether r applies to a, whose texts are read as words
// (see wordsOf); from is the body member the Pattern matched in, if any.
func (r Rule) match(a Answer, words []word) (ok bool, from string) {
	switch {
	case r.Error != "" && !strings.EqualFold(r.Error, a.Error),
		r.Status != 0 && r.Status != a.Status,
		r.StatusClass != 0 && r.StatusClass != a.Status/100,
		r.Code != 0 && !slices.Contains(a.ErrorCodes, r.Code),
		r.Subtype != "" && !strings.EqualFold(r.Subtype, a.ErrorSubtype),
		r.Format != "" && r.Format != a.Format:
		return false, ""
	}
	if r.Pattern == nil {
		return true, ""
	}
	for _, w := range words {
		if r.Pattern.MatchString(w.text) {
			return true, w.from
		}
	}
	return false, ""
}

// read names the members of a that r read, for Result.Read.
func (r Rule) read(a Answer, patternFrom string) []string {
	var read []string
	for _, m := range []struct {
		used bool
		from string
	}{
		{r.Error != "", a.ErrorFrom}, {r.Code != 0, a.CodesFrom}, {r.Subtype != "", a.SubtypeFrom}, {r.Pattern != nil, patternFrom},
	} {
		if m.used && m.from != "" && !slices.Contains(read, m.from) {
			read = append(read, m.from)
		}
	}
	return read
}

// A word is one text of an answer as a Pattern reads it.
type word struct{ from, text string }

// preambles are RFC 6749 §5.2's definitions of the error codes, which Ory
// Hydra (fosite's errors.go), node-oauth2-server and others send before
// their own words: "The provided authorization grant ... or refresh token
// is invalid, expired, revoked, does not match the redirection URI used in
// the authorization request, or was issued to another client. The refresh
// token expired." A definition lists every reason an error may have, so it
// names none: it is removed before a Pattern reads the text, and what
// follows it (fosite's hint) is read on its own.
var preambles = re(`the provided authorization grant \(e\.g\., authorization code, resource owner credentials\) or refresh token is invalid, expired, revoked, does not match the redirection uri used in the authorization request, or was issued to another client\.?` +
	`|the request is missing a required parameter, [^.]*or is otherwise malformed\.?` +
	`|client authentication failed \(e\.g\., unknown client, no client authentication included, or unsupported authentication method\)\.?`)

// wordsOf returns the words of a as Patterns read them: its texts, then
// its error code when the code is a provider's own ("invalid_refresh_token",
// "token_revoked", "BAD_REFRESH_TOKEN"), read with spaces for underscores.
// An RFC 6749 or OpenID Connect code is not read as words: the code rules
// read it, and "invalid_grant" would otherwise say "invalid grant" of every
// answer. An Answer built without Texts (a test's, or an older caller's)
// is read from its ErrorDescription.
func wordsOf(a Answer) []word {
	texts := a.Texts
	if len(texts) == 0 && a.ErrorDescription != "" {
		texts = []Text{{From: "error_description", Value: a.ErrorDescription}}
	}
	words := make([]word, 0, len(texts)+1)
	for _, t := range texts {
		words = append(words, word{t.From, strings.TrimSpace(preambles.ReplaceAllString(t.Value, ""))})
	}
	if a.Error != "" && !rfcCodes[strings.ToLower(a.Error)] {
		words = append(words, word{a.ErrorFrom, strings.ReplaceAll(a.Error, "_", " ")})
	}
	return words
}

// rfcCodes are the error codes of RFC 6749 §5.2, RFC 8628 and OpenID
// Connect: those genericRules read by code, and invalid_request, which no
// rule reads by code (see genericRules).
var rfcCodes = func() map[string]bool {
	codes := map[string]bool{"invalid_request": true}
	for _, r := range genericRules {
		if r.Error != "" {
			codes[r.Error] = true
		}
	}
	return codes
}()

// re compiles a case-insensitive pattern for a Rule.
func re(pattern string) *regexp.Regexp { return regexp.MustCompile("(?i)" + pattern) }

// Words for the wording rules. subject is what a verdict is about: the
// refresh token, the grant or code (not "tokens", not "grant_type"); the
// rest are what a sentence about it may say between the subject and the
// verdict ("The refresh token passed is", "Refresh token has been").
const (
	subject = `(?:refresh[ _-]?token|authorization code|\bgrant\b|\btoken\b|\bcode\b)`
	filler  = `(?:\s+(?:passed|provided|presented|given|supplied|used))?`
	aux     = `(?:\s+(?:has|have|is|was|been|now))*`
	reason  = `(?:invalid|incorrect|malformed|not valid|expired|revoked|unknown)`
)

// genericRules apply to every provider, after the preset's own rules: wording
// no provider owns, then the RFC 6749 §5.2 and OpenID Connect error codes,
// then the HTTP status, then the format.
//
// The grant's own words are a verdict, whatever the error code says: a
// description that says the refresh token (or grant, or code) is revoked,
// expired, invalid or unknown is read before the code, since providers send
// such words with a code that blames the request or the client (Atlassian's
// unauthorized_client, Zoom's and DeviantArt's invalid_request) or with no
// RFC code at all (Twitch's {"status","message"}, Fitbit's and Strava's
// errors lists). A sentence that names several reasons ("invalid or
// expired", Google's "expired or revoked") is read as invalid_grant, not as
// its first or last reason, and RFC 6749's own definitions are no words at
// all (see preambles).
//
// An error code not in this table (say "foo" on a 400) and without such
// words is deliberately not read as invalid_grant: only the provider saying
// so makes a grant reconnect_required. It falls through to the status rules
// and, for a 4xx, to the final rule, malformed, whose action is retry: a
// wrong guess then costs a few retries and a degraded grant (and, when it
// persists, an alert: see Result.Unreadable), where a wrong reconnect would
// have cost a user's consent. invalid_request without words about the grant
// goes the same way: it means our request was off, which says nothing about
// the grant, and providers send it for passing conditions too (fosite's
// "Failed to refresh token. Please retry the request.", xee's bare
// {"error":"invalid_request"} for a dead token) — so it is not made a
// provider-wide configuration problem either, which one odd grant would
// then raise and clear on every probe.
var genericRules = []Rule{
	// Wording that places the request outside a validity window: the host's
	// clock, not the grant. Before the codes, since it comes as invalid_grant.
	{Name: "wording: not within its valid time range", Pattern: re(`not (yet )?(within|in) (its|the) valid(ity)? time (range|window)`), Cause: CauseClockSkew},
	{Name: "wording: JWT iat/exp/nbf", Pattern: re(`\b(iat|nbf|exp)\b[^\n]*\b(not yet valid|in the future|too far|reasonable timeframe|clock)\b|reasonable timeframe|clock skew|token used before issued|not yet valid`), Cause: CauseClockSkew},

	// A signed client assertion or service-account JWT that the provider
	// cannot verify (its key was deleted or rotated, Google's "Invalid JWT
	// Signature."; Microsoft's AADSTS50013): the app's credentials are
	// wrong, whatever code it comes with (invalid_grant), and no user can
	// fix it by reconnecting.
	{Name: "wording: assertion signature", Pattern: re(`invalid jwt signature|assertion failed signature validation`), Cause: CauseInvalidClient},

	// A rotated refresh token (or a code) presented a second time, in any
	// provider's words ("already used", Ory Hydra/fosite; "reuse detected").
	{Name: "wording: token already used", Error: "invalid_grant", Pattern: re(`already (been )?(used|redeemed)|\breuse(d)?\b|reuse detect`), Cause: CauseCodeReused},

	// The grant's words (see above), most specific first.
	{Name: "wording: several reasons", Pattern: re(subject + `[^.\n]*\b` + reason + `(?:,|,? or|,? and/or)\s+(?:(?:is|has|been|was|otherwise)\s+)*` + reason + `\b`), Cause: CauseInvalidGrant},
	{Name: "wording: revoked", Pattern: re(subject + `[^.\n]*\brevoked\b|\brevoked (?:refresh[ _-]?token|token|grant)\b`), Cause: CauseRevoked},
	{Name: "wording: expired", Pattern: re(subject + filler + aux + `\s+(?:expired\b|exceeded (?:its |the )?(?:inactivity|idle|maximum|max)\b)|\bexpired (?:access/)?(?:refresh[ _-]?token|token|grant|authorization code|code)\b`), Cause: CauseExpired},
	// "Invalid grant type" is about grant_type, not the grant: the words
	// after the subject must not be " type".
	{Name: "wording: invalid token", Pattern: re(`\b(?:invalid|unknown|bad|incorrect)[ _-](?:refresh[ _-]?token|token|grant|authorization code|code)\b(?:$|[^ ]| [^t]| t[^y])` +
		`|` + subject + filler + aux + `\s+(?:(?:invalid|unknown|malformed|incorrect)\b|not(?:\s+been)?\s+(?:valid|found|recogni[sz]ed)\b)`), Cause: CauseInvalidGrant},
	// grantwatch always sends refresh_token (Refresh refuses to probe
	// without one), so an endpoint that says it is missing did not get the
	// request as sent: a token_url that points elsewhere (in
	// microsoftgraph/msgraph-sample-pythondjangoapp#10 it was the URL) or a
	// proxy that drops the form body. That is the provider entry's problem,
	// shared by all its grants; a reconnect would not help.
	{Name: "wording: refresh_token parameter missing", Pattern: re(`missing (?:a )?(?:required )?parameters?\b[^.\n]*\brefresh_token\b|must contain the following parameter: '?refresh_token\b|\brefresh_token\b["']? (?:parameter )?(?:is )?(?:missing|required)\b`), Cause: CauseInvalidRequest},

	{Name: "rfc6749: invalid_grant", Error: "invalid_grant", Cause: CauseInvalidGrant},
	{Name: "rfc6749: invalid_client", Error: "invalid_client", Cause: CauseInvalidClient},
	{Name: "rfc6749: unauthorized_client", Error: "unauthorized_client", Cause: CauseUnauthorizedClient},
	{Name: "rfc6749: unsupported_grant_type", Error: "unsupported_grant_type", Cause: CauseUnauthorizedClient},
	{Name: "rfc6749: invalid_scope", Error: "invalid_scope", Cause: CauseInvalidScope},
	{Name: "rfc6749: temporarily_unavailable", Error: "temporarily_unavailable", Cause: CauseServerError},
	{Name: "rfc6749: server_error", Error: "server_error", Cause: CauseServerError},
	{Name: "rfc8628: slow_down", Error: "slow_down", Cause: CauseRateLimited},
	{Name: "oidc: interaction_required", Error: "interaction_required", Cause: CauseInteractionRequired},
	{Name: "oidc: consent_required", Error: "consent_required", Cause: CauseInteractionRequired},
	{Name: "oidc: login_required", Error: "login_required", Cause: CauseInteractionRequired},

	// Without a known code, words that the client is unknown or its secret
	// wrong (Twitch's "invalid client secret", Strava's "Application
	// client_id invalid"): the provider entry's problem.
	{Name: "wording: client rejected", Pattern: re(`\b(?:invalid|unknown|bad|wrong|incorrect|missing)[ _-]client(?:[ _-](?:id|secret|credentials?))?\b|\bclient(?:[ _-](?:id|secret))?\s+(?:(?:is|was)\s+)?(?:invalid|unknown|not found|disabled|expired|missing)\b`), Cause: CauseInvalidClient},

	{Name: "status 429", Status: http.StatusTooManyRequests, Cause: CauseRateLimited},
	{Name: "status 5xx", StatusClass: 5, Cause: CauseServerError},
	{Name: "status 408", Status: http.StatusRequestTimeout, Cause: CauseServerError},
	// RFC 6749 §5.2: a 401 from the token endpoint means client authentication
	// failed, whatever the body (often none, with WWW-Authenticate: Basic).
	{Name: "status 401", Status: http.StatusUnauthorized, Cause: CauseInvalidClient},

	{Name: "format html", Format: "html", Cause: CauseMalformed},
	{Name: "format text", Format: "text", Cause: CauseMalformed},
	{Name: "format empty", Format: "empty", Cause: CauseMalformed},
}

// Classify chooses the cause of an answer: the preset's own rules first (they
// refine, e.g. an invalid_grant whose description says the password
// changed), then the generic rules (RFC code, HTTP status, format). preset ""
// or an unknown name uses the generic rules only.
//
// A 2xx answer with an access token and no error is CauseNone, rule "ok".
// A 429 or 5xx answer only ever gets a cause whose action is retry: rules
// that would blame the grant or the config are skipped for it, since a
// failing server's body is not evidence about the grant. An answer no rule
// matches is malformed (see genericRules for why).
//
// rule is the matching rule's name, for explain.
func Classify(preset string, a Answer) (cause Cause, rule string) {
	cause, rule, _ = classify(preset, a)
	return cause, rule
}

// classify is Classify that also names the body members the rule read.
func classify(preset string, a Answer) (cause Cause, rule string, read []string) {
	if a.Status/100 == 2 && a.HasAccessToken && a.Error == "" {
		return CauseNone, "ok", nil
	}
	words := wordsOf(a)
	transient := a.Status == http.StatusTooManyRequests || a.Status/100 == 5
	p, _ := LookupPreset(preset)
	for _, rules := range [][]Rule{p.Rules, genericRules} {
		for _, r := range rules {
			if transient && !r.Cause.Retryable() {
				continue
			}
			if ok, from := r.match(a, words); ok {
				return r.Cause, r.Name, r.read(a, from)
			}
		}
	}
	if a.Error != "" && a.ErrorFrom != "" {
		return CauseMalformed, "unknown error code", []string{a.ErrorFrom}
	}
	if a.Error != "" {
		return CauseMalformed, "unknown error code", nil
	}
	return CauseMalformed, "no error, no token", nil
}

// Evaluate is the one path from an HTTP answer to a Result: the refresh probe
// calls it on an error answer, and `grantwatch explain` on a pasted body. It
// fills OK, Cause, Action, Rule, Read, Status, the error fields, RetryAfter,
// RefreshExpiresIn and Date; Started, Latency, Lost and NewRefreshToken are
// the caller's.
func Evaluate(preset string, status int, h http.Header, body []byte) Result {
	a := ParseAnswer(status, h, body)
	return evaluate(preset, a)
}

// evaluateToken is Evaluate for the refresh probe: it also returns the
// answer's tokens, which go nowhere but the Result's secret fields.
func evaluateToken(preset string, status int, h http.Header, body []byte) (Result, tokenParts) {
	var tp tokenParts
	a := parseAnswerAt(status, h, body, time.Now(), &tp)
	return evaluate(preset, a), tp
}

func evaluate(preset string, a Answer) Result {
	cause, rule, read := classify(preset, a)
	return Result{
		OK:               cause == CauseNone,
		Cause:            cause,
		Action:           cause.Action(),
		Rule:             rule,
		Read:             read,
		Status:           a.Status,
		Error:            a.Error,
		ErrorDescription: a.ErrorDescription,
		ErrorSubtype:     a.ErrorSubtype,
		ErrorCodes:       a.ErrorCodes,
		RetryAfter:       a.RetryAfter,
		RefreshExpiresIn: a.RefreshExpiresIn,
		Date:             a.Date,
	}
}

// ClassifyErr maps a transport failure (no HTTP answer) to a cause: a timeout
// or context deadline is server_error (the endpoint did not answer in time);
// DNS, refused, reset, unreachable and TLS failures are network. nil is
// CauseNone.
//
// lost reports that the request may have reached the server, so that a
// rotating provider may have issued a new refresh token we never saw: true
// for a timeout or a reset/EOF after the connection was made, false when the
// failure was in DNS, dialing or the TLS handshake. An unrecognised error
// counts as lost, the cautious answer.
func ClassifyErr(err error) (cause Cause, rule string, lost bool) {
	if err == nil {
		return CauseNone, "ok", false
	}
	var (
		dnsErr   *net.DNSError
		opErr    *net.OpError
		netErr   net.Error
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
	)
	dialing := errors.As(err, &opErr) && opErr.Op == "dial"
	switch {
	case errors.As(err, &dnsErr):
		return CauseNetwork, "dns", false
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &hostErr),
		errors.As(err, &invalid), errors.As(err, &recErr), errors.As(err, &alertErr):
		return CauseNetwork, "tls", false
	case errors.Is(err, syscall.ECONNREFUSED):
		return CauseNetwork, "connection refused", false
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return CauseNetwork, "unreachable", false
	case dialing && errors.As(err, &netErr) && netErr.Timeout():
		// The TCP handshake timed out: nothing was sent.
		return CauseNetwork, "dial timeout", false
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return CauseServerError, "timeout", true
	case errors.Is(err, context.Canceled):
		return CauseServerError, "canceled", true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return CauseNetwork, "connection reset", !dialing
	case dialing:
		return CauseNetwork, "dial", false
	case opErr != nil:
		return CauseNetwork, "network", true
	}
	return CauseNetwork, "transport error", true
}
