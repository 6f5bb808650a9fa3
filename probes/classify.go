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
	// Pattern matches the error and error_description, written as
	// "error\nerror_description"; compile it case-insensitive ("(?i)...").
	Pattern *regexp.Regexp
	// Format matches Answer.Format ("json", "form", "html", "text", "empty").
	Format string
	// Cause is what the answer means when the rule matches.
	Cause Cause
}

func (r Rule) match(a Answer, text string) bool {
	switch {
	case r.Error != "" && !strings.EqualFold(r.Error, a.Error),
		r.Status != 0 && r.Status != a.Status,
		r.StatusClass != 0 && r.StatusClass != a.Status/100,
		r.Code != 0 && !slices.Contains(a.ErrorCodes, r.Code),
		r.Subtype != "" && !strings.EqualFold(r.Subtype, a.ErrorSubtype),
		r.Pattern != nil && !r.Pattern.MatchString(text),
		r.Format != "" && r.Format != a.Format:
		return false
	}
	return true
}

// re compiles a case-insensitive pattern for a Rule.
func re(pattern string) *regexp.Regexp { return regexp.MustCompile("(?i)" + pattern) }

// genericRules apply to every provider, after the preset's own rules: wording
// no provider owns, then the RFC 6749 §5.2 and OpenID Connect error codes,
// then the HTTP status, then the format.
//
// An error code not in this table (say "foo" on a 400) is deliberately not
// read as invalid_grant: only the provider saying invalid_grant (or a preset
// rule) makes a grant reconnect_required. It falls through to the status rules
// and, for a 4xx, to the final rule, malformed, whose action is retry: a
// wrong guess then costs a few retries and a degraded grant, where a wrong
// reconnect would have cost a user's consent. invalid_request goes the same
// way: it means our request was off, which says nothing about the grant.
var genericRules = []Rule{
	// Wording that places the request outside a validity window: the host's
	// clock, not the grant. Before the codes, since it comes as invalid_grant.
	{Name: "wording: not within its valid time range", Pattern: re(`not (yet )?(within|in) (its|the) valid(ity)? time (range|window)`), Cause: CauseClockSkew},
	{Name: "wording: JWT iat/exp/nbf", Pattern: re(`\b(iat|nbf|exp)\b[^\n]*\b(not yet valid|in the future|too far|reasonable timeframe|clock)\b|reasonable timeframe|clock skew|token used before issued|not yet valid`), Cause: CauseClockSkew},

	// A rotated refresh token (or a code) presented a second time, in any
	// provider's words ("already used", Ory Hydra/fosite; "reuse detected").
	{Name: "wording: token already used", Error: "invalid_grant", Pattern: re(`already (been )?(used|redeemed)|\breuse(d)?\b|reuse detect`), Cause: CauseCodeReused},
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
	if a.Status/100 == 2 && a.HasAccessToken && a.Error == "" {
		return CauseNone, "ok"
	}
	text := a.Error + "\n" + a.ErrorDescription
	transient := a.Status == http.StatusTooManyRequests || a.Status/100 == 5
	p, _ := LookupPreset(preset)
	for _, rules := range [][]Rule{p.Rules, genericRules} {
		for _, r := range rules {
			if transient && !r.Cause.Retryable() {
				continue
			}
			if r.match(a, text) {
				return r.Cause, r.Name
			}
		}
	}
	if a.Error != "" {
		return CauseMalformed, "unknown error code"
	}
	return CauseMalformed, "no error, no token"
}

// Evaluate is the one path from an HTTP answer to a Result: the refresh probe
// calls it on an error answer, and `grantwatch explain` on a pasted body. It
// fills OK, Cause, Action, Rule, Status, the error fields, RetryAfter and
// Date; Started, Latency, Lost and NewRefreshToken are the caller's.
func Evaluate(preset string, status int, h http.Header, body []byte) Result {
	a := ParseAnswer(status, h, body)
	return evaluate(preset, a)
}

// evaluateToken is Evaluate for the refresh probe: it also returns the
// answer's refresh_token (a rotation), which goes nowhere else.
func evaluateToken(preset string, status int, h http.Header, body []byte) (Result, string) {
	var rt string
	a := parseAnswerAt(status, h, body, time.Now(), &rt)
	return evaluate(preset, a), rt
}

func evaluate(preset string, a Answer) Result {
	cause, rule := Classify(preset, a)
	return Result{
		OK:               cause == CauseNone,
		Cause:            cause,
		Action:           cause.Action(),
		Rule:             rule,
		Status:           a.Status,
		Error:            a.Error,
		ErrorDescription: a.ErrorDescription,
		ErrorSubtype:     a.ErrorSubtype,
		ErrorCodes:       a.ErrorCodes,
		RetryAfter:       a.RetryAfter,
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
