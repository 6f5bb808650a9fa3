// Package web is grantwatch's pages for people, served on daemon.listen
// beside the API: the hosted reconnect links, where a grant's user consents
// again from their own browser (GET and POST /reconnect/{secret}, GET
// /reconnect/callback), and the read-only status page for on-call (GET /,
// GET /grants/{id}), behind HTTP Basic with an app key of scope read.
//
// Pages are html/template files embedded in the binary, server-rendered,
// readable without JavaScript and on a phone. Every answer carries
// Cache-Control: no-store, Referrer-Policy: no-referrer and a strict
// Content-Security-Policy (no script at all). No token, code or link secret
// is logged or written into a page.
//
// The package calls only the interfaces it declares (Service, Links) and
// api.Keys; *daemon.Daemon and store.Store implement them. The runtime does not import
// it: the CLI wraps daemon.listen's handler with Handler
// (daemon.Options.TCPHandler).
package web

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// Service is what the pages read and do; *daemon.Daemon implements it.
type Service interface {
	Config() *config.Config
	Status() (api.Status, error)
	Grants(state store.State, provider string, fn func(store.Grant) error) error
	Grant(id string) (api.GrantDetail, error)
	DeadLetters() ([]api.DeadLetter, error)
	// ExpiringGrants calls fn for the grants forecast to die within
	// within, soonest first.
	ExpiringGrants(within time.Duration, provider string, fn func(store.Grant) error) error
	// SetToken stores a new refresh token and probes it once: the one
	// path every new token takes.
	SetToken(ctx context.Context, id string, tok secret.Secret) (api.ProbeReport, error)
}

// Links reads and spends reconnect links; *store.DB implements it.
type Links interface {
	Link(hash []byte, now time.Time) (store.Link, error)
	UseLink(hash []byte, now time.Time) (store.Link, error)
}

// Options are what Handler needs.
type Options struct {
	Service Service
	Links   Links
	// Keys checks the app keys of the status page (the daemon's: the
	// broker's keys); nil refuses every request to it.
	Keys api.Keys
	// HTTPClient exchanges authorization codes; nil builds one like the
	// probes'.
	HTTPClient *http.Client
	Log        *slog.Logger
	// Now replaces the wall clock (tests).
	Now func() time.Time
}

//go:embed templates/*.html assets/style.css
var files embed.FS

// pages holds one template set per page, each with the layout.
var pages = func() map[string]*template.Template {
	funcs := template.FuncMap{
		"when":  when,
		"ago":   ago,
		"title": stateTitle,
		"since": func(t time.Time, now time.Time) string { return ago(now.Sub(t)) },
		"qs":    queryString,
	}
	m := map[string]*template.Template{}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		m[base] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", n))
	}
	return m
}()

// server serves the pages.
type server struct {
	Options
	flows *flows
}

// Handler serves the pages and hands every other request to next (the
// API, metrics and health routes of daemon.listen).
func Handler(o Options, next http.Handler) http.Handler {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = probes.NewHTTPClient(4, 30*time.Second)
	}
	s := &server{Options: o, flows: newFlows()}
	mux := http.NewServeMux()
	for pattern, h := range map[string]http.HandlerFunc{
		"GET /{$}":                   s.requireRead(s.status),
		"GET /grants/{id}":           s.requireRead(s.grant),
		"GET " + config.CallbackPath: s.callback,
		"GET /reconnect/{secret}":    s.landing,
		"POST /reconnect/{secret}":   s.start,
		"GET /assets/style.css":      serveStyle,
	} {
		mux.Handle(pattern, hygiene(h))
	}
	mux.Handle("/", next)
	return mux
}

// style is the pages' one stylesheet.
var style, _ = files.ReadFile("assets/style.css")

func serveStyle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Write(style)
}

// csp is the Content-Security-Policy of every page: nothing but this
// origin's stylesheet and forms. The reconnect page adds the provider's
// authorization endpoint to form-action, since its form is answered with a
// redirect there.
const csp = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// render writes page name with data.
func (s *server) render(w http.ResponseWriter, status int, name string, data any, formAction string) {
	var buf bytes.Buffer
	if err := pages[name].Execute(&buf, data); err != nil {
		s.Log.Error("render page", "page", name, "err", err)
		http.Error(w, "grantwatch could not render this page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	policy := csp
	if formAction != "" {
		policy += " " + formAction
	}
	h.Set("Content-Security-Policy", policy)
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// hygiene sets the headers every answer of the pages carries, errors and
// assets included.
func hygiene(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", csp)
		next.ServeHTTP(w, r)
	})
}

// when formats a time for people, in UTC.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// ago says how long a duration is, roughly.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// stateTitle is a state in words.
func stateTitle(s store.State) string {
	return strings.ReplaceAll(string(s), "_", " ")
}
