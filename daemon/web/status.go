package web

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// The status page (GET /) shows what grantwatch status shows, with filters
// by state and provider and a page per grant (GET /grants/{id}). It is
// read-only, refreshes itself, and is behind HTTP Basic with an app key of
// scope read, over TLS, as Prometheus exporter-toolkit's web config does.

// refreshSeconds is how often the status page reloads itself.
const refreshSeconds = 30

// listMax bounds a filtered list of grants on the page.
const listMax = 200

// expiringListed is how many expiring grants the page lists.
const expiringListed = 20

// errEnough stops a walk that has listed enough.
var errEnough = errors.New("enough")

// requireRead lets through a request that presents an app key of scope
// read, as HTTP Basic (user name: the key's name; password: the key), over
// TLS or on a loopback address. Never open without a key.
func (s *server) requireRead(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !secure(r) {
			s.Log.Warn("status page refused", "reason", "plain HTTP on a network address", "remote", r.RemoteAddr)
			s.render(w, http.StatusForbidden, "denied", page{Title: "TLS required", Body: "tls"}, "")
			return
		}
		name, presented, ok := r.BasicAuth()
		var k api.Key
		found := false
		if ok && s.Keys != nil && presented != "" {
			k, found = s.Keys.LookupKey(presented)
		}
		if !found || subtle.ConstantTimeCompare([]byte(name), []byte(k.Name)) != 1 {
			if ok {
				s.Log.Warn("status page refused", "reason", "unknown app key or wrong name", "user", name, "remote", r.RemoteAddr)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="grantwatch", charset="UTF-8"`)
			s.render(w, http.StatusUnauthorized, "denied", page{Title: "Sign in", Body: "key"}, "")
			return
		}
		if !k.Has(api.ScopeRead) || len(k.Labels) > 0 {
			s.Log.Warn("status page refused", "reason", "app key lacks scope read or is limited to labels", "key", k.Name, "remote", r.RemoteAddr)
			s.render(w, http.StatusForbidden, "denied", page{Title: "Not allowed", Body: "scope"}, "")
			return
		}
		next(w, r)
	}
}

// secure reports whether r came over TLS or to a loopback address (where
// no network sees the key).
func secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	host, _, err := net.SplitHostPort(a.String())
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// statusView is the status page's data.
type statusView struct {
	Now       time.Time
	St        api.Status
	Dead      int
	States    []store.State
	Providers []providerRow
	Needy     []needy
	// Filter, and the grants it selects (at most listMax; More when there
	// are more).
	State, Provider string
	Filtered        bool
	Listed          []store.Grant
	More            bool
	Refresh         int
	// Expiring lists the first grants forecast to die within
	// forecast.warn_before (St.Expiring counts them all).
	Expiring   []store.Grant
	WarnBefore string // as grants list --expiring takes it
}

type providerRow struct {
	Name, State, Cause string
	Counts             []int // by States
	Total              int
}

type needy struct {
	G   store.Grant
	Fix string
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.Service.Status()
	if err != nil {
		s.internal(w, "read status", err)
		return
	}
	dead, err := s.Service.DeadLetters()
	if err != nil {
		s.internal(w, "read dead letters", err)
		return
	}
	v := statusView{Now: s.Now(), St: st, Dead: len(dead), States: store.States(), Refresh: refreshSeconds}
	health := map[string]api.ProviderStatus{}
	for _, p := range st.Providers {
		health[p.Name] = p
	}
	names := make([]string, 0, len(st.ByProvider))
	for n := range st.ByProvider {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		row := providerRow{Name: n, State: health[n].State, Cause: health[n].Cause}
		for _, state := range v.States {
			c := st.ByProvider[n][string(state)]
			row.Counts = append(row.Counts, c)
			row.Total += c
		}
		v.Providers = append(v.Providers, row)
	}
	for _, g := range append(slices.Clone(st.NeedsReconnect), st.OnHold...) {
		v.Needy = append(v.Needy, needy{G: g, Fix: probes.Cause(g.Cause).Fix()})
	}

	if st.Expiring > 0 {
		within := time.Duration(st.WarnBeforeSeconds * float64(time.Second))
		v.WarnBefore = fmt.Sprintf("%gd", within.Hours()/24)
		err := s.Service.ExpiringGrants(within, "", func(g store.Grant) error {
			if len(v.Expiring) == expiringListed {
				return errEnough
			}
			v.Expiring = append(v.Expiring, g)
			return nil
		})
		if err != nil && !errors.Is(err, errEnough) {
			s.internal(w, "list expiring grants", err)
			return
		}
	}

	q := r.URL.Query()
	v.State, v.Provider = q.Get("state"), q.Get("provider")
	if v.State != "" && !store.State(v.State).Valid() {
		v.State = ""
	}
	if v.State != "" || v.Provider != "" {
		v.Filtered = true
		err := s.Service.Grants(store.State(v.State), v.Provider, func(g store.Grant) error {
			if len(v.Listed) == listMax {
				v.More = true
				return errEnough
			}
			v.Listed = append(v.Listed, g)
			return nil
		})
		if err != nil && !errors.Is(err, errEnough) {
			s.internal(w, "list grants", err)
			return
		}
	}
	s.render(w, http.StatusOK, "status", page{Title: "Status", Refresh: refreshSeconds, Body: v}, "")
}

// grantView is a grant's page.
type grantView struct {
	D   api.GrantDetail
	Now time.Time
}

func (s *server) grant(w http.ResponseWriter, r *http.Request) {
	d, err := s.Service.Grant(r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		s.render(w, http.StatusNotFound, "denied", page{Title: "No such grant", Body: "nogrant"}, "")
		return
	}
	if err != nil {
		s.internal(w, "read grant", err)
		return
	}
	slices.Reverse(d.History) // newest first
	s.render(w, http.StatusOK, "grant", page{Title: "Grant " + d.ID, Refresh: refreshSeconds, Body: grantView{D: d, Now: s.Now()}}, "")
}

func (s *server) internal(w http.ResponseWriter, what string, err error) {
	s.Log.Error("status page: "+what, "err", err)
	s.render(w, http.StatusInternalServerError, "denied", page{Title: "Error", Body: "internal"}, "")
}

// queryString is the status page's filter as a query string.
func queryString(state, provider string) string {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if provider != "" {
		q.Set("provider", provider)
	}
	if len(q) == 0 {
		return "/"
	}
	return "/?" + q.Encode()
}

// page is what every template gets: the title, the refresh, the body.
type page struct {
	Title   string
	Refresh int
	Body    any
}
