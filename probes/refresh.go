package probes

import (
	"bytes"
	"context"
	"encoding/base64"
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
	// flow. A refresh does not send them (only grant_type and
	// refresh_token), so it keeps the granted scopes.
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

	// styles remembers, per token URL and client, the auth style an
	// auto-detecting endpoint accepted, so that detection costs a second
	// request once rather than on every probe.
	styles sync.Map // styleKey → oauth2.AuthStyle
}

var defaultClient = sync.OnceValue(func() *http.Client {
	return NewHTTPClient(16, 30*time.Second)
})

// maxBody is how much of an answer is read, as x/oauth2 reads
// (io.LimitReader(r.Body, 1<<20)): a token answer is a few hundred bytes.
const maxBody = 1 << 20

// Refresh exchanges token at ep.TokenURL (RFC 6749 §6: a POST of
// grant_type=refresh_token and the token, the client authenticated as
// ep.AuthStyle says, exactly as golang.org/x/oauth2 sends it) and returns
// the classified result. ctx carries the per-probe deadline.
//
// The answer is read once, up to 1 MiB, and judged by Evaluate — the same
// path as `grantwatch explain` — whatever its status, Content-Type or
// shape: a 2xx with an access token and no error is OK, anything else gets
// its cause. (x/oauth2's TokenSource hides the status, headers and body of
// what it rejects, and decodes each answer twice; a probe needs all three.)
//
// The presented token never appears in the Result, nor does any part of the
// answer's body other than its parsed error fields; a rotated refresh token
// is in Result.NewRefreshToken, the access token a success returned (with
// its type, scope and lifetime) in Result.AccessToken. Result.Lost is set when the request may have
// reached the provider but no answer came back.
func (p *Prober) Refresh(ctx context.Context, ep Endpoint, token secret.Secret) Result {
	now := p.Now
	if now == nil {
		now = time.Now
	}
	if token.IsZero() {
		// Nothing to probe: the grant needs a token, which only the user
		// can give.
		return Result{
			Cause: CauseInvalidGrant, Action: CauseInvalidGrant.Action(),
			Rule: "no refresh token", ErrorDescription: "no refresh token is stored for this grant",
			Started: now(),
		}
	}
	ep = ep.withPreset()
	hc := p.Client
	if hc == nil {
		hc = defaultClient()
	}

	started, start := now(), time.Now()
	var res Result
	if ep.AuthStyle != oauth2.AuthStyleAutoDetect {
		res = exchange(ctx, hc, ep, token, ep.AuthStyle)
	} else {
		res = p.detect(ctx, hc, ep, token)
	}
	res.Started, res.Latency = started, time.Since(start)
	redact(&res, token, ep.ClientSecret, ep.ClientID)
	return res
}

type styleKey struct{ tokenURL, clientID string }

// detect is Refresh for an endpoint whose auth style is not configured: the
// Basic header first, then the parameters, as x/oauth2 does, with two
// differences a probe needs. The parameters are tried only after an answer
// that refused the client (a 4xx that is no verdict on the grant), not
// after a timeout or a 5xx; and a style is remembered once an answer shows
// the client was accepted — a verdict on the grant counts as well as a new
// token — so a revoked grant costs one request, not two on every probe.
func (p *Prober) detect(ctx context.Context, hc *http.Client, ep Endpoint, token secret.Secret) Result {
	k := styleKey{ep.TokenURL, ep.ClientID}
	if v, ok := p.styles.Load(k); ok {
		return exchange(ctx, hc, ep, token, v.(oauth2.AuthStyle))
	}
	res := exchange(ctx, hc, ep, token, oauth2.AuthStyleInHeader)
	if clientAccepted(res) {
		p.styles.Store(k, oauth2.AuthStyleInHeader)
		return res
	}
	if res.Status/100 != 4 || res.Cause == CauseRateLimited {
		return res
	}
	second := exchange(ctx, hc, ep, token, oauth2.AuthStyleInParams)
	if clientAccepted(second) {
		p.styles.Store(k, oauth2.AuthStyleInParams)
	}
	return second
}

// clientAccepted reports whether an answer shows that the endpoint took the
// client's credentials: a token, or a verdict on the grant itself.
func clientAccepted(r Result) bool {
	return r.OK || r.Action == ActionReconnect
}

// exchange sends one refresh request with the client authenticated in style
// (header or params) and classifies the answer.
func exchange(ctx context.Context, hc *http.Client, ep Endpoint, token secret.Secret, style oauth2.AuthStyle) Result {
	var res Result
	req, err := refreshRequest(ctx, ep, token, style)
	if err != nil {
		res.Cause, res.Rule, res.Lost = ClassifyErr(err)
		res.Action = res.Cause.Action()
		return res
	}
	resp, err := hc.Do(req)
	if err != nil {
		res.Cause, res.Rule, res.Lost = ClassifyErr(err)
		res.Action = res.Cause.Action()
		return res
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	defer putBody(buf)
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if err != nil {
		// The answer broke off mid-body: what was read is no answer.
		res.Cause, res.Rule, res.Lost = ClassifyErr(err)
		res.Action = res.Cause.Action()
		res.Status = resp.StatusCode
		return res
	}
	res, tp := evaluateToken(ep.Preset, resp.StatusCode, resp.Header, buf.Bytes())
	if res.OK {
		if tp.refresh != "" && tp.refresh != token.Reveal() {
			res.NewRefreshToken = secret.Secret(tp.refresh)
		}
		res.AccessToken = secret.Secret(tp.access)
		res.TokenType, res.Scope = tp.tokenType, tp.scope
		res.ExpiresIn = time.Duration(tp.expiresIn) * time.Second
	}
	res.Lost = LostStatus(resp.StatusCode)
	return res
}

// refreshRequest builds the request x/oauth2 sends for a refresh
// (internal/token.go newTokenRequest): the form grant_type=refresh_token and
// refresh_token (no scope, so the granted scopes stay), and the client as a
// Basic header of the query-escaped id and secret, or as client_id and
// client_secret parameters (each only when set).
func refreshRequest(ctx context.Context, ep Endpoint, token secret.Secret, style oauth2.AuthStyle) (*http.Request, error) {
	v := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token.Reveal()}}
	if style == oauth2.AuthStyleInParams {
		if ep.ClientID != "" {
			v.Set("client_id", ep.ClientID)
		}
		if !ep.ClientSecret.IsZero() {
			v.Set("client_secret", ep.ClientSecret.Reveal())
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.TokenURL, strings.NewReader(v.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if style == oauth2.AuthStyleInHeader {
		req.SetBasicAuth(url.QueryEscape(ep.ClientID), url.QueryEscape(ep.ClientSecret.Reveal()))
	}
	return req, nil
}

// bodyPool holds the buffers answers are read into. A buffer may have held
// a token: putBody wipes it before it goes back.
var bodyPool = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 1024)) }}

func putBody(b *bytes.Buffer) {
	all := b.Bytes()
	clear(all[:cap(all)])
	b.Reset()
	if b.Cap() <= 64<<10 { // a rare huge answer is not kept
		bodyPool.Put(b)
	}
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
