package probes

import (
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// Answer is a token endpoint's answer, parsed. It never holds a token: the
// parser keeps only the error fields and whether a token was present.
type Answer struct {
	// Status is the HTTP status code.
	Status int
	// Format is how the body was read: "json", "form", "html", "text" or
	// "empty".
	Format string
	// Error, ErrorDescription, ErrorSubtype and ErrorCodes are the error
	// fields of RFC 6749 §5.2 and their provider extensions (Microsoft's
	// error_codes, Google's error_subtype), read from whatever shape the
	// body has (see ParseAnswer). Strings are trimmed and capped.
	// ErrorDescription is the first of Texts.
	Error            string
	ErrorDescription string
	ErrorSubtype     string
	ErrorCodes       []int
	// ErrorFrom, SubtypeFrom and CodesFrom name the body member each was
	// read from, in explain's notation ("error", "error.code",
	// "errors[0].errorType", "status", "error_codes"); "" when absent.
	// CodesFrom names the first member that gave a code.
	ErrorFrom   string
	SubtypeFrom string
	CodesFrom   string
	// Texts are the answer's human-readable words, in the order the
	// classifier trusts them: the error's own description first, then
	// nested and listed errors, then generic members such as "message" or
	// "detail", and the whole body when it is plain text. At most
	// maxTexts, each capped like ErrorDescription; duplicates are dropped.
	Texts []Text
	// HasAccessToken reports that the body carried an access_token.
	HasAccessToken bool
	// RefreshExpiresIn is the lifetime a token answer announced for its
	// refresh token (see lifetimeKeys: GitHub's refresh_token_expires_in,
	// Intuit's x_refresh_token_expires_in, Keycloak's refresh_expires_in),
	// the shortest when it names several; 0 when it announced none.
	RefreshExpiresIn time.Duration
	// RetryAfter is the wait a 429 or 503 asked for (Retry-After in seconds or
	// as an HTTP date, or an X-RateLimit-Reset style header); 0 if none.
	RetryAfter time.Duration
	// Date is the answer's Date header; zero if absent or unparsable.
	Date time.Time
}

// Text is one human-readable string of an answer and the body member it
// was read from.
type Text struct {
	// From names the member in explain's notation: "error_description",
	// "error.message", "errors[0].message", "message"; "errors[0]" for a
	// list entry without a message, whose resource, field and code are
	// read as one phrase ("RefreshToken refresh_token invalid"); "body" for
	// a plain-text body.
	From  string
	Value string
}

// Result is the outcome of one refresh probe. It never holds the token that
// was presented; a rotated refresh token is in NewRefreshToken and the
// access token a success returned in AccessToken, each a secret.Secret, so
// that neither is printed by fmt, slog or encoding/json.
type Result struct {
	// OK reports a successful refresh; then Cause is CauseNone.
	OK     bool
	Cause  Cause
	Action Action
	// Rule names the classification rule that chose Cause, for explain.
	Rule string
	// Read names the members of the body the verdict was read from, in
	// explain's notation ("error", "error_description", "error.code",
	// "errors[0].message", "body"; see Text.From). nil when the verdict
	// rests on the HTTP status or the body's format alone (a bare 401, a
	// 5xx, an HTML page), on no answer (a transport error), or on success.
	Read []string
	// Status, Error, ErrorDescription, ErrorSubtype and ErrorCodes are copied
	// from the answer (Status 0 when no answer came).
	Status           int
	Error            string
	ErrorDescription string
	ErrorSubtype     string
	ErrorCodes       []int
	// RetryAfter is the wait the provider asked for, 0 if none.
	RetryAfter time.Duration
	// RefreshExpiresIn is the lifetime the answer announced for the refresh
	// token (Answer.RefreshExpiresIn); 0 if none.
	RefreshExpiresIn time.Duration
	// Date is the provider's Date header, zero if absent.
	Date time.Time
	// Started is when the request was sent; Latency how long the answer took.
	Started time.Time
	Latency time.Duration
	// Lost reports that the request may have reached the provider but its
	// answer did not reach us (timeout or reset after sending, or a
	// gateway's 502/504): with rotation, the provider may have rotated the
	// token and the new one is lost.
	Lost bool
	// NewRefreshToken is set when the provider rotated the refresh token.
	NewRefreshToken secret.Secret
	// AccessToken is the access token of a successful refresh, with its
	// TokenType ("Bearer"), Scope (as granted, "" when the answer did not
	// say) and lifetime (ExpiresIn, 0 when the answer did not say). The
	// refresh probe fills them; Evaluate (explain) never does.
	AccessToken secret.Secret
	TokenType   string
	Scope       string
	ExpiresIn   time.Duration
}

// Unreadable reports that the answer could not be read: a token endpoint
// answered (a 4xx, or a 2xx or 3xx without a token) but no rule found a
// verdict in it — an HTML page, an empty or truncated body, or an error
// code and words no rule knows. Its cause is CauseMalformed, whose action
// is retry: one such answer says nothing about the grant, but the same
// grant answered so again and again needs a person (a changed token_url, a
// proxy, a provider's new wording), which is why the daemon counts these
// per grant. A 5xx, 429 or 408 is an outage, never Unreadable; nor is a
// transport failure, which has no answer.
func (r Result) Unreadable() bool { return r.Cause == CauseMalformed }
