package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/reconnect"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// The hosted reconnect link: GET /reconnect/{secret} shows which account of
// which service it is about and a Reconnect button; its POST starts the
// authorization-code flow (reconnect.Flow, PKCE S256 and state) and sends
// the browser to the provider; GET /reconnect/callback exchanges the code,
// checks that the account is the grant's, spends the link, stores the new
// refresh token through Service.SetToken (which probes it once) and says
// how it went. A link is spent only by a reconnect that stored its token:
// the user may try again after declining, a provider error or signing in as
// the wrong account.

// flowLifetime is how long a started sign-in may take.
const flowLifetime = 15 * time.Minute

// maxFlows bounds the sign-ins under way (each holds a PKCE verifier).
const maxFlows = 10000

// flowCookie binds a sign-in to the browser that started it (RFC 9700
// §4.7.1): the callback of a state started elsewhere is refused.
const flowCookie = "grantwatch_flow"

// pending is a sign-in under way.
type pending struct {
	flow    *reconnect.Flow
	hash    []byte // the link's
	grantID string
	subject string
	title   string // the provider's, for people
	browser string // the flow cookie's value
	expires time.Time
}

// flows are the sign-ins under way, by state, in memory: after a restart
// the user opens the link again.
type flows struct {
	mu sync.Mutex
	m  map[string]*pending
}

func newFlows() *flows { return &flows{m: map[string]*pending{}} }

// put adds p, unless too many sign-ins are under way.
func (f *flows) put(p *pending, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for st, q := range f.m {
		if now.After(q.expires) {
			delete(f.m, st)
		}
	}
	if len(f.m) >= maxFlows {
		return false
	}
	f.m[p.flow.State()] = p
	return true
}

// take removes and returns the live sign-in of state: a callback is
// handled once.
func (f *flows) take(state string, now time.Time) *pending {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.m[state]
	delete(f.m, state)
	if p == nil || now.After(p.expires) {
		return nil
	}
	return p
}

// linkView is what the pages say about a link: the service, the account.
type linkView struct {
	Title    string // provider title
	Subject  string // the grant's subject, "" when it has none
	Expires  time.Time
	UsedAt   time.Time
	Action   string // the form's target
	Signed   string // the account that signed in (mismatch)
	Detail   string // the provider's words (provider error)
	Kind     string
	ProbeOK  bool
	ProbeMsg string
}

// title is a provider's name for people: its preset's title, else its name.
func title(p config.ProviderConfig) string {
	if pr, ok := probes.LookupPreset(p.Preset); ok && pr.Title != "" {
		return pr.Title
	}
	return p.Name
}

// openLink finds the link of the request's secret and its grant. On
// failure it has written the page.
func (s *server) openLink(w http.ResponseWriter, r *http.Request) (store.Link, store.Grant, config.ProviderConfig, []byte, bool) {
	hash := store.LinkHash(r.PathValue("secret"))
	l, err := s.Links.Link(hash, s.Now())
	if err != nil {
		s.linkError(w, r, err, l, linkView{})
		return l, store.Grant{}, config.ProviderConfig{}, nil, false
	}
	d, err := s.Service.Grant(l.GrantID)
	if err != nil {
		s.linkError(w, r, err, l, linkView{})
		return l, store.Grant{}, config.ProviderConfig{}, nil, false
	}
	cfg := s.Service.Config()
	p, ok := cfg.Provider(d.Provider)
	if !ok || p.AuthURL == "" || cfg.Reconnect.PublicURL == "" {
		s.Log.Error("reconnect link cannot start", "grant", l.GrantID, "provider", d.Provider,
			"fix", "configure the provider with an auth_url, and reconnect.public_url")
		s.message(w, http.StatusInternalServerError, linkView{Kind: "internal", Title: d.Provider})
		return l, store.Grant{}, config.ProviderConfig{}, nil, false
	}
	return l, d.Grant, p, hash, true
}

// landing shows the link's page: which service, which account, Reconnect.
func (s *server) landing(w http.ResponseWriter, r *http.Request) {
	l, g, p, _, ok := s.openLink(w, r)
	if !ok {
		return
	}
	s.Log.Info("reconnect link opened", "grant", g.ID, "by", l.By)
	// The form is answered with a redirect to the provider: CSP's
	// form-action must allow its origin too.
	s.render(w, http.StatusOK, "link", page{Title: "Reconnect " + title(p), Body: linkView{
		Title: title(p), Subject: g.Subject, Expires: l.ExpiresAt, Action: r.URL.Path,
	}}, origin(p.AuthURL))
}

// origin is the scheme://host of u, for a CSP source list.
func origin(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	return p.Scheme + "://" + p.Host
}

// start begins the sign-in: a flow, its cookie, and the provider.
func (s *server) start(w http.ResponseWriter, r *http.Request) {
	_, g, p, hash, ok := s.openLink(w, r)
	if !ok {
		return
	}
	cfg := s.Service.Config()
	flow, err := reconnect.NewFlow(p, cfg.Reconnect.CallbackURL(), reconnect.FlowOptions{LoginHint: g.Subject, HTTPClient: s.HTTPClient})
	if err != nil {
		s.Log.Error("reconnect link cannot start", "grant", g.ID, "provider", p.Name, "err", err)
		s.message(w, http.StatusInternalServerError, linkView{Kind: "internal", Title: title(p)})
		return
	}
	now := s.Now()
	pd := &pending{flow: flow, hash: hash, grantID: g.ID, subject: g.Subject, title: title(p),
		browser: rand.Text(), expires: now.Add(flowLifetime)}
	if !s.flows.put(pd, now) {
		s.Log.Warn("reconnect: too many sign-ins under way", "max", maxFlows)
		s.message(w, http.StatusServiceUnavailable, linkView{Kind: "busy", Title: title(p)})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: flowCookie, Value: pd.browser, Path: config.CallbackPath, MaxAge: int(flowLifetime.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(cfg.Reconnect.PublicURL, "https://"),
	})
	http.Redirect(w, r, flow.AuthCodeURL(), http.StatusSeeOther)
}

// callback finishes the sign-in the provider redirected back from.
func (s *server) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := s.Now()
	pd := s.flows.take(q.Get("state"), now)
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Path: config.CallbackPath, MaxAge: -1, HttpOnly: true})
	if pd == nil {
		s.message(w, http.StatusBadRequest, linkView{Kind: "restart"})
		return
	}
	v := linkView{Title: pd.title, Subject: pd.subject}
	log := s.Log.With("grant", pd.grantID)
	if c, err := r.Cookie(flowCookie); err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(pd.browser)) != 1 {
		log.Warn("reconnect link refused", "reason", "the sign-in was started in another browser")
		v.Kind = "restart"
		s.message(w, http.StatusBadRequest, v)
		return
	}
	code, err := pd.flow.Redirect(q)
	if err != nil {
		var re *reconnect.Error
		if errors.As(err, &re) && re.Code == "access_denied" {
			log.Info("reconnect link: the user declined")
			v.Kind = "denied"
			s.message(w, http.StatusOK, v)
			return
		}
		s.providerError(w, log, v, err)
		return
	}
	// The link may have been used or expired meanwhile: do not spend the
	// code for nothing.
	if l, err := s.Links.Link(pd.hash, now); err != nil {
		s.linkError(w, r, err, l, v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	res, err := pd.flow.Exchange(ctx, code)
	if err != nil {
		s.providerError(w, log, v, err)
		return
	}
	if err := reconnect.CheckAccount(res.Account, pd.subject, true); err != nil {
		log.Warn("reconnect link refused", "reason", err.Error())
		v.Kind, v.Signed = "mismatch", res.Account.String()
		s.message(w, http.StatusForbidden, v)
		return
	}
	// Spend the link, then store: of two sign-ins racing on one link,
	// only one attaches its token.
	if l, err := s.Links.UseLink(pd.hash, s.Now()); err != nil {
		s.linkError(w, r, err, l, v)
		return
	}
	rep, err := s.Service.SetToken(ctx, pd.grantID, res.RefreshToken)
	if err != nil {
		log.Error("reconnect link: store the new refresh token", "err", err)
		v.Kind = "internal"
		s.message(w, http.StatusInternalServerError, v)
		return
	}
	log.Info("grant reconnected through a hosted link", "probe_ok", rep.Result.OK, "state", rep.Grant.State)
	v.Kind, v.ProbeOK, v.ProbeMsg = "success", rep.Result.OK, rep.Result.Summary
	s.message(w, http.StatusOK, v)
}

// providerError is the page of a provider's refusal or a failed exchange;
// the log gets the whole error (never a code or a token: reconnect.Error
// holds neither).
func (s *server) providerError(w http.ResponseWriter, log interface {
	Warn(string, ...any)
}, v linkView, err error) {
	log.Warn("reconnect link: the provider did not complete the sign-in", "err", err.Error())
	v.Kind = "provider"
	var re *reconnect.Error
	switch {
	case errors.As(err, &re):
		v.Detail = re.Code
		if re.Description != "" {
			v.Detail += ": " + re.Description
		}
	case errors.Is(err, reconnect.ErrNoRefreshToken):
		v.Detail = "it granted access without offline access (no refresh token)"
	}
	if len(v.Detail) > 300 {
		v.Detail = v.Detail[:300] + "…"
	}
	s.message(w, http.StatusBadGateway, v)
}

// linkError is the page of a link that cannot be used: expired, used,
// unknown (or its grant removed).
func (s *server) linkError(w http.ResponseWriter, r *http.Request, err error, l store.Link, v linkView) {
	switch {
	case errors.Is(err, store.ErrLinkExpired):
		v.Kind, v.Expires = "expired", l.ExpiresAt
		s.message(w, http.StatusGone, v)
	case errors.Is(err, store.ErrLinkUsed):
		v.Kind, v.UsedAt = "used", l.UsedAt
		s.message(w, http.StatusGone, v)
	case errors.Is(err, store.ErrNotFound):
		v.Kind = "invalid"
		s.message(w, http.StatusNotFound, v)
	default:
		s.Log.Error("reconnect link", "err", err)
		v.Kind = "internal"
		s.message(w, http.StatusInternalServerError, v)
		return
	}
	s.Log.Info("reconnect link refused", "grant", l.GrantID, "reason", v.Kind, "path", r.Pattern)
}

// message renders the page of an outcome.
func (s *server) message(w http.ResponseWriter, status int, v linkView) {
	s.render(w, status, "message", page{Title: messageTitles[v.Kind], Body: v}, "")
}

// messageTitles are the pages' titles; message.html has their words.
var messageTitles = map[string]string{
	"success":  "Reconnected",
	"expired":  "This link has expired",
	"used":     "This link was already used",
	"invalid":  "This link is not valid",
	"denied":   "Access was not allowed",
	"provider": "The sign-in did not complete",
	"mismatch": "That was a different account",
	"restart":  "Please start again",
	"busy":     "Please try again in a minute",
	"internal": "Something went wrong on our side",
}
