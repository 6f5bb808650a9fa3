package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// Sender delivers one notification to one receiver. A nil error means the
// receiver accepted it. On error, Delivery says whether retrying may help and
// how long the receiver asked to wait. Send must not retry by itself: the
// dispatcher owns retries and their bookkeeping.
type Sender interface {
	Send(ctx context.Context, n Notification) (Delivery, error)
}

// Delivery is a receiver's answer to one attempt.
type Delivery struct {
	// Status is the HTTP status (0 when no answer came) or, for exec, the
	// exit code.
	Status int
	// Answer is the start of the receiver's reply (body or stderr), short and
	// redacted, for `notify test` and error messages.
	Answer string
	// Retry reports that a later attempt may succeed (5xx, 429, 408, network
	// errors, timeouts, a failing command). A false Retry on error means the
	// receiver refused the request itself (4xx): it is still retried until
	// max_age, at the longest backoff, since an operator may fix the receiver.
	Retry bool
	// RetryAfter is the wait the receiver asked for (Retry-After); 0 if none.
	RetryAfter time.Duration
}

// SenderFunc adapts a function to Sender (tests, custom receivers).
type SenderFunc func(ctx context.Context, n Notification) (Delivery, error)

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, n Notification) (Delivery, error) { return f(ctx, n) }

// StatusError is a receiver's refusal: an HTTP answer outside 2xx, or a
// command's non-zero exit.
type StatusError struct {
	Receiver string
	Status   int
	// Answer is the start of the reply, redacted.
	Answer string
}

func (e *StatusError) Error() string {
	if e.Answer == "" {
		return fmt.Sprintf("receiver %s answered %d", e.Receiver, e.Status)
	}
	return fmt.Sprintf("receiver %s answered %d: %s", e.Receiver, e.Status, e.Answer)
}

// RedactURL returns u safe to print: scheme and host, and the first path
// segment only when more follow, the rest replaced by "…"; user info, query
// and fragment dropped. https://hooks.slack.com/services/T0/B0/XXXX becomes
// https://hooks.slack.com/services/…. A string that does not parse becomes
// "<redacted url>".
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "<redacted url>"
	}
	out := p.Scheme + "://" + p.Host
	segs := strings.Split(strings.Trim(p.EscapedPath(), "/"), "/")
	switch {
	case len(segs) == 1 && segs[0] == "":
	case len(segs) == 1:
		out += "/…"
	default:
		out += "/" + segs[0] + "/…"
	}
	return out
}

// redactor removes a receiver's secrets (its URL, signing key, routing key)
// from text that may have echoed them: errors, answers, stderr.
type redactor struct {
	url     string
	secrets []string
}

func newRedactor(rawURL string, secrets ...secret.Secret) redactor {
	r := redactor{url: rawURL}
	if rawURL != "" {
		r.secrets = append(r.secrets, rawURL)
		if p, err := url.Parse(rawURL); err == nil {
			// A long path is likely a token (Slack's /services/T…/B…/…);
			// a short one (/hook) is not, and redacting it would mangle text.
			for _, ps := range []string{p.Path, p.EscapedPath()} {
				if len(ps) >= 16 {
					r.secrets = append(r.secrets, ps)
				}
			}
			r.secrets = append(r.secrets, p.String())
			if p.RawQuery != "" {
				r.secrets = append(r.secrets, p.RawQuery)
			}
			if pw, ok := p.User.Password(); ok && pw != "" {
				// net/http sends user info as Authorization: Basic, which a
				// receiver may echo in its answer.
				basic := base64.StdEncoding.EncodeToString([]byte(p.User.Username() + ":" + pw))
				r.secrets = append(r.secrets, pw, basic)
			}
		}
	}
	for _, s := range secrets {
		if len(s.Reveal()) >= 4 {
			r.secrets = append(r.secrets, s.Reveal())
		}
	}
	return r
}

func (r redactor) String(s string) string {
	if r.url != "" {
		s = strings.ReplaceAll(s, r.url, RedactURL(r.url))
	}
	for _, sec := range r.secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "<secret>")
		}
	}
	return s
}

// Error returns err with its text redacted. net/http's *url.Error repeats
// the full URL; the redacted error keeps the original in its chain so
// errors.Is works for sentinels such as context.DeadlineExceeded.
func (r redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := r.String(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactedError carries a redacted message; Unwrap keeps errors.Is working
// for sentinels such as context.DeadlineExceeded.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// maxAnswer caps the stored start of a receiver's reply.
const maxAnswer = 200

// short returns the start of s on one line, at most maxAnswer bytes.
func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxAnswer {
		return s
	}
	cut := maxAnswer
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// httpClient is the client of the HTTP receivers: no redirects (a redirect
// could carry the body, and a secret URL, elsewhere), per-attempt timeouts
// come from the context.
func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// post sends body to u and classifies the answer: 2xx is accepted; 408, 429
// and 5xx are retried (honouring Retry-After); other statuses are refusals.
// Errors and answers are redacted with red.
func post(ctx context.Context, client *http.Client, receiver, u string, header http.Header, body []byte, red redactor, now func() time.Time) (Delivery, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return Delivery{}, red.Error(fmt.Errorf("build request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "grantwatch")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return Delivery{Retry: true}, red.Error(fmt.Errorf("send to %s: %w", receiver, err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	// Redact before cutting: a cut inside a secret leaves a prefix of it
	// that the redactor no longer recognises.
	d := Delivery{Status: resp.StatusCode, Answer: short(red.String(string(raw)))}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return d, nil
	}
	d.Retry = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500
	d.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now())
	return d, &StatusError{Receiver: receiver, Status: resp.StatusCode, Answer: d.Answer}
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3). It returns 0 when absent or unparsable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
