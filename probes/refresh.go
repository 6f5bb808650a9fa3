package probes

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// Endpoint is where and how a provider's grants are refreshed.
type Endpoint struct {
	// Preset names the classification rules to use; "" uses the generic
	// rules only. When TokenURL is empty it comes from the preset, and so
	// does AuthStyle when it is oauth2.AuthStyleAutoDetect.
	Preset       string
	TokenURL     string
	ClientID     string
	ClientSecret secret.Secret
	// AuthStyle is how the client authenticates. AutoDetect tries the Basic
	// header, then the parameters, and remembers what worked (per Prober,
	// token URL and client).
	AuthStyle oauth2.AuthStyle
	// Scopes are the scopes the grant was given, for the authorization
	// flow. A refresh does not send them (x/oauth2 sends only grant_type
	// and refresh_token), so it keeps the granted scopes.
	Scopes []string
}

// Prober runs refresh probes. Safe for concurrent use; set its fields before
// the first probe and do not copy it after.
type Prober struct {
	// Client is shared by every probe; nil uses a default
	// NewHTTPClient(16, 30*time.Second) shared by all such Probers.
	Client *http.Client
	// Now stamps Result.Started; nil means time.Now. Latency is always
	// measured on the monotonic clock.
	Now func() time.Time

	// configs keeps one oauth2.Config per auto-detecting endpoint, so that
	// the auth style x/oauth2 learned is not lost between probes (it would
	// otherwise cost a second request on every probe of a params-only
	// provider).
	configs sync.Map // configKey → *oauth2.Config
}

var defaultClient = sync.OnceValue(func() *http.Client {
	return NewHTTPClient(16, 30*time.Second)
})

// maxBody is how much of an answer is read: as much as x/oauth2 reads
// (internal/token.go, io.LimitReader(r.Body, 1<<20)), so that the body kept
// for classification is the one x/oauth2 judged.
const maxBody = 1 << 20

// Refresh exchanges token at ep.TokenURL (RFC 6749 §6) through
// golang.org/x/oauth2 and returns the classified result. ctx carries the
// per-probe deadline.
//
// The presented token never appears in the Result, nor does any part of the
// answer's body other than its parsed error fields; a rotated refresh token
// is in Result.NewRefreshToken. Result.Lost is set when the request may have
// reached the provider but no answer came back.
func (p *Prober) Refresh(ctx context.Context, ep Endpoint, token secret.Secret) Result {
	now := p.Now
	if now == nil {
		now = time.Now
	}
	if token.IsZero() {
		// x/oauth2 would not even send the request. Nothing to probe:
		// the grant needs a token, which only the user can give.
		return Result{
			Cause: CauseInvalidGrant, Action: CauseInvalidGrant.Action(),
			Rule: "no refresh token", ErrorDescription: "no refresh token is stored for this grant",
			Started: now(),
		}
	}
	ep = ep.withPreset()

	base := p.Client
	if base == nil {
		base = defaultClient()
	}
	rec := &recorder{base: base.Transport}
	if rec.base == nil {
		rec.base = http.DefaultTransport
	}
	hc := *base // shares the pool: only the RoundTripper wrapper is per probe
	hc.Transport = rec
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &hc)

	var res Result
	started, start := now(), time.Now()
	tok, err := p.config(ep).TokenSource(ctx, &oauth2.Token{RefreshToken: token.Reveal()}).Token()
	latency := time.Since(start)

	var rerr *oauth2.RetrieveError
	switch {
	case err == nil:
		res = Result{
			OK: true, Rule: "ok",
			Status: rec.status,
			Date:   parseDate(rec.header),
		}
		if tok.RefreshToken != "" && tok.RefreshToken != token.Reveal() {
			res.NewRefreshToken = secret.Secret(tok.RefreshToken)
		}
	case errors.As(err, &rerr) && rerr.Response != nil:
		// An error answer (RFC 6749 §5.2), or a 2xx carrying an error
		// field (GitHub, Slack). Its Error() would quote the body; only
		// the parsed fields go on.
		res = Evaluate(ep.Preset, rerr.Response.StatusCode, rerr.Response.Header, rerr.Body)
	case rec.readErr != nil:
		// The answer broke off mid-body; x/oauth2 wraps this with %v,
		// which loses the cause, so classify what the reader saw.
		res.Cause, res.Rule, res.Lost = ClassifyErr(rec.readErr)
		res.Action = res.Cause.Action()
		res.Status = rec.status
	case rec.status != 0:
		// A whole 2xx answer x/oauth2 could not use: empty, not JSON, or
		// without access_token ("server response missing access_token").
		res = Evaluate(ep.Preset, rec.status, rec.header, rec.body)
		if res.OK {
			// The body holds a token x/oauth2 could not read because of
			// its Content-Type (JSON sent as text/plain, which x/oauth2
			// parses as a form; a form sent as JSON or untyped). The
			// provider accepted the grant, and if it rotated, the new
			// refresh token is in the body we kept: losing it would kill
			// the grant.
			res.Rule = "ok (token read despite its Content-Type)"
			if rt := refreshTokenIn(rec.body); rt != "" && rt != token.Reveal() {
				res.NewRefreshToken = secret.Secret(rt)
			}
		}
	default:
		res.Cause, res.Rule, res.Lost = ClassifyErr(err)
		res.Action = res.Cause.Action()
	}
	rec.wipe()
	res.Started, res.Latency = started, latency
	redact(&res, token, ep.ClientSecret, ep.ClientID)
	return res
}

// redact removes the presented token and the client secret from the error
// fields, for the provider that echoes what it was sent ("refresh token
// 1//0g… is invalid"): those fields go to logs and notifications. Each is
// removed as sent, too: form-encoded (a gateway quoting the raw request
// body) and, for the secret, as the Basic credential x/oauth2 builds from
// the query-escaped client id and secret.
func redact(res *Result, token, clientSecret secret.Secret, clientID string) {
	var forms []string
	for _, s := range []secret.Secret{token, clientSecret} {
		if len(s) < 4 { // too short to tell from ordinary text
			continue
		}
		forms = append(forms, s.Reveal())
		if esc := url.QueryEscape(s.Reveal()); esc != s.Reveal() {
			forms = append(forms, esc)
		}
	}
	if len(clientSecret) >= 4 {
		forms = append(forms, base64.StdEncoding.EncodeToString(
			[]byte(url.QueryEscape(clientID)+":"+url.QueryEscape(clientSecret.Reveal()))))
	}
	mask := secret.Secret("").String()
	for _, plain := range forms {
		for _, f := range []*string{&res.Error, &res.ErrorDescription, &res.ErrorSubtype} {
			*f = strings.ReplaceAll(*f, plain, mask)
			*f = redactCutTail(*f, plain, mask)
		}
	}
}

// redactCutTail redacts a secret the parser's length cap cut in two: a
// field that ends with the secret's first bytes (4 or more).
func redactCutTail(f, plain, mask string) string {
	for k := min(len(plain)-1, len(f)); k >= 4; k-- {
		if strings.HasSuffix(f, plain[:k]) {
			return f[:len(f)-k] + mask
		}
	}
	return f
}

// withPreset fills the fields a preset knows and ep leaves zero.
func (ep Endpoint) withPreset() Endpoint {
	if ep.Preset == "" {
		return ep
	}
	pr, ok := LookupPreset(ep.Preset)
	if !ok {
		return ep
	}
	if ep.TokenURL == "" {
		ep.TokenURL = pr.TokenURL
	}
	if ep.AuthStyle == oauth2.AuthStyleAutoDetect {
		ep.AuthStyle = pr.AuthStyle
	}
	return ep
}

type configKey struct {
	tokenURL, clientID, secret string
}

// config returns the oauth2.Config for ep: a fresh one for a fixed auth
// style, the remembered one for auto-detection.
func (p *Prober) config(ep Endpoint) *oauth2.Config {
	c := &oauth2.Config{
		ClientID:     ep.ClientID,
		ClientSecret: ep.ClientSecret.Reveal(),
		Endpoint:     oauth2.Endpoint{TokenURL: ep.TokenURL, AuthStyle: ep.AuthStyle},
		Scopes:       ep.Scopes,
	}
	if ep.AuthStyle != oauth2.AuthStyleAutoDetect {
		return c
	}
	k := configKey{ep.TokenURL, ep.ClientID, ep.ClientSecret.Reveal()}
	v, _ := p.configs.LoadOrStore(k, c)
	return v.(*oauth2.Config)
}

// refreshTokenIn returns the refresh_token of a 2xx token answer, read as a
// JSON object or else as a form; "" if there is none.
func refreshTokenIn(body []byte) string {
	body = bytes.TrimSpace(body)
	var tj struct {
		RefreshToken string `json:"refresh_token"`
	}
	if len(body) > 0 && body[0] == '{' {
		if json.Unmarshal(body, &tj) == nil {
			return strings.TrimSpace(tj.RefreshToken)
		}
		return ""
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(v.Get("refresh_token"))
}

// parseDate returns h's Date, or the zero time.
func parseDate(h http.Header) time.Time {
	d, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return d
}

// recorder is a probe's RoundTripper: it passes the request on and keeps
// what x/oauth2 does not hand back — the status, the headers and a copy of
// the body of the last answer — so that a successful refresh still yields
// its Date and an answer x/oauth2 rejects without a RetrieveError can still
// be classified. One recorder serves one probe, whose requests (two when
// x/oauth2 auto-detects the auth style) run one after the other.
type recorder struct {
	base    http.RoundTripper
	status  int
	header  http.Header
	body    []byte // at most maxBody; may hold tokens until wipe
	readErr error  // the body read failed (not io.EOF)
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.wipe()
	r.status, r.header, r.body, r.readErr = 0, nil, r.body[:0], nil
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &recordingBody{rc: resp.Body, rec: r, status: resp.StatusCode, header: resp.Header}
	return resp, nil
}

// wipe zeroes the kept body: it may hold an access or refresh token.
func (r *recorder) wipe() { clear(r.body[:cap(r.body)]) }

// recordingBody copies what is read into its recorder and publishes the
// status and headers only once the body was read to its end (or to the cap),
// so that a half-read answer is never classified as a whole one.
type recordingBody struct {
	rc     io.ReadCloser
	rec    *recorder
	status int
	header http.Header
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	r := b.rec
	if room := maxBody - len(r.body); room > 0 {
		r.body = append(r.body, p[:min(n, room)]...)
	}
	switch {
	case err == io.EOF || len(r.body) >= maxBody:
		r.status, r.header = b.status, b.header
	case err != nil:
		r.readErr = err
		r.status = b.status
	}
	return n, err
}

func (b *recordingBody) Close() error { return b.rc.Close() }
