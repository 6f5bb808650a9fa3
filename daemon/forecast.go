package daemon

// What a probe result says of a grant beyond its state (issue 14): a streak
// of answers nobody can read, and the forecast of when its refresh token
// dies. watch is part of the pure transition; the rest reads the store's
// watch indexes for status, metrics and `grants list --expiring`, and
// checks the providers' client secrets.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lmittmann/tint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// watch adds to a transition's outcome what the result says of the grant's
// answers and lifetime: the unreadable streak (grant.unreadable at
// store.UnreadableAfter), the lifetime the answer announced, the forecast
// (Grant.ExpiresAt, ExpiresBasis) and grant.expiring when it is due. It also
// keeps the schedule ahead of the forecast: a next probe that would come
// after an idle window ends, or after the warning of a death probing cannot
// prevent is due, is brought forward. Pure, as Transition is.
func watch(out Outcome, g store.Grant, r probes.Result, env Env) Outcome {
	now, ng := env.Now, &out.Grant
	switch {
	case !r.OK && r.Unreadable() && r.Status/100 == 4:
		ng.Unreadable = g.Unreadable + 1
		// Once per streak. In an outage the provider's own event speaks
		// for its grants, as for grant.degraded.
		if ng.Unreadable == store.UnreadableAfter && !env.ProviderOutage {
			out.Notices = append(out.Notices, unreadableEvent(*ng, r, now))
		}
	case r.OK || r.Status != 0:
		ng.Unreadable = 0 // an answer read, or a success
	}
	if r.OK {
		ng.AnnouncedExpiresAt = time.Time{}
		if r.RefreshExpiresIn > 0 {
			ng.AnnouncedExpiresAt = now.Add(r.RefreshExpiresIn)
		}
	}

	f := forecast(*ng, env.Policy.Lifetimes)
	if ng.State == store.StateReconnectRequired {
		f = expiry{} // dead already: nothing to forecast
	}
	ng.ExpiresAt, ng.ExpiresBasis = f.at, f.basis
	if f.at.IsZero() || ng.NextDueAt.IsZero() {
		return out
	}
	warnAt := f.at.Add(-env.Policy.WarnBefore)
	if f.renewable && !ng.NextDueAt.Before(f.at) && f.at.After(now) {
		// The schedule keeps an idle window alive only if the next probe
		// comes before it ends (the first probe after an off-phase one
		// may be up to 1.5 intervals away).
		ng.NextDueAt = now.Add(f.at.Sub(now) * 9 / 10)
	}
	if !ng.ExpiryWarned && !f.renewable && ng.NextDueAt.After(warnAt) && warnAt.After(now) {
		// Probe when the warning is due, however long the interval.
		ng.NextDueAt = warnAt
	}
	// An idle window warns only when it is not being renewed: the probe
	// failed, or none comes before it ends.
	unkept := !f.renewable || !r.OK || !ng.NextDueAt.Before(f.at)
	if !ng.ExpiryWarned && unkept && !now.Before(warnAt) {
		ng.ExpiryWarned = true
		out.Notices = append(out.Notices, expiringEvent(*ng, f, env.Policy.Lifetimes, now))
	}
	return out
}

// expiry is a forecast: when, which rule (a store.Basis* value), and
// whether refreshing renews it (an idle window) or nothing does.
type expiry struct {
	at        time.Time
	basis     string
	renewable bool
}

// forecast is the earliest death of g's refresh token that its lifetimes
// predict: Google's Testing mode and a maximum lifetime from consent, the
// lifetime the provider announced, the idle window from the last use. The
// consent is the token chain's start (ConsentAt, else CreatedAt for records
// from before it); the last use is the last successful probe of the chain,
// else the consent (an imported token's earlier use is unknown).
func forecast(g store.Grant, l config.Lifetimes) expiry {
	consent := g.ConsentAt
	if consent.IsZero() {
		consent = g.CreatedAt
	}
	lastUse := consent
	if g.LastSuccessAt.After(lastUse) {
		lastUse = g.LastSuccessAt
	}
	var e expiry
	offer := func(at time.Time, basis string, renewable bool) {
		if !at.IsZero() && (e.at.IsZero() || at.Before(e.at)) {
			e = expiry{at: at, basis: basis, renewable: renewable}
		}
	}
	if !consent.IsZero() {
		if l.Testing {
			offer(consent.Add(config.GoogleTestingLifetime), store.BasisTesting, false)
		}
		if l.Max > 0 {
			offer(consent.Add(l.Max), basisOf(store.BasisAbsolute, l.MaxConfigured), false)
		}
	}
	offer(g.AnnouncedExpiresAt, store.BasisAnnounced, false)
	if l.Idle > 0 && !lastUse.IsZero() {
		offer(lastUse.Add(l.Idle), basisOf(store.BasisIdle, l.IdleConfigured), true)
	}
	return e
}

func basisOf(preset string, configured bool) string {
	if configured {
		return store.BasisConfigured
	}
	return preset
}

// unreadableFix tells a person what to do about answers nobody can read.
func unreadableFix(g store.Grant, status int) string {
	return fmt.Sprintf("grantwatch keeps retrying this grant but cannot tell whether it is dead: its token endpoint keeps answering with a client error that no rule reads as a verdict (a changed token_url, a proxy's error page, or a provider's new wording). "+
		"`grantwatch explain --provider %[1]s --status %[2]d` shows how such an answer is read: give it the body the provider sends (the grant's error and description are in `grantwatch grants show %[3]s`). "+
		"If the answer says the grant is dead, ask the user to reconnect; if it comes of the endpoint or a proxy, fix providers.%[1]s.token_url and reload. "+
		"Report the answer, with its tokens removed, at https://github.com/grantwatch/grantwatch/issues so that a rule reads it.", g.Provider, status, g.ID)
}

func unreadableEvent(g store.Grant, r probes.Result, now time.Time) notify.Event {
	said := r.ErrorDescription
	if said == "" {
		said = r.Error
	}
	if said == "" {
		said = "a body no rule reads"
	}
	said = capText(said, 200)
	if r.Status != 0 {
		said = fmt.Sprintf("HTTP %d: %s", r.Status, said)
	}
	ev := grantEvent(notify.TypeUnreadable, g, "", now,
		fmt.Sprintf("grant %s: %d answers in a row that grantwatch cannot read (%s)", g.ID, g.Unreadable, said),
		unreadableFix(g, max(r.Status, 400)))
	ev.Grant.HTTPStatus = r.Status
	return *ev
}

func expiringEvent(g store.Grant, f expiry, l config.Lifetimes, now time.Time) notify.Event {
	when := f.at.UTC().Format(time.RFC3339)
	left := "is past due"
	if d := f.at.Sub(now); d > 0 {
		left = "in " + roughly(d)
	}
	reconnect := "Ask the user to reconnect before then (`grantwatch reconnect " + g.ID + "`, or your app's own flow): the new token starts a new lifetime. Store it with `grantwatch grants set-token " + g.ID + "`."
	var why, fix string
	switch {
	case f.basis == store.BasisTesting:
		why = "its Google app is in Testing publishing status"
		fix = "Google ends the refresh tokens of an app in \"Testing\" publishing status 7 days after consent: this one at " + when + ". " +
			"Publish the app (Google Cloud console, OAuth consent screen: Publish app), then have the user reconnect once; until then every user must reconnect every week. " +
			"If it is published already, set google_testing = false for this provider."
	case f.basis == store.BasisAnnounced:
		why = "the provider announced its lifetime"
		fix = "The provider said, in its answer to the last successful refresh (" + g.LastSuccessAt.UTC().Format(time.RFC3339) + "), that this refresh token expires at " + when + ". Unless a later refresh extends it, " + strings.ToLower(reconnect[:1]) + reconnect[1:]
	case f.renewable:
		why = config.Days(l.Idle) + " unused"
		fix = "No probe of this grant has succeeded since " + g.LastSuccessAt.UTC().Format(time.RFC3339) + ", and its refresh token dies of disuse at " + when +
			" (an idle window of " + config.Days(l.Idle) + "). Fix what makes its probes fail (`grantwatch grants show " + g.ID + "` names the cause): one successful probe before then renews it; after it, the user must reconnect."
	default:
		why = "its maximum lifetime of " + config.Days(l.Max) + " from consent"
		fix = "Its refresh token reaches its maximum lifetime (" + config.Days(l.Max) + " from consent) at " + when + ", and no refresh extends it. " + reconnect
	}
	ev := grantEvent(notify.TypeExpiring, g, "", now,
		fmt.Sprintf("grant %s expires %s (%s; %s)", g.ID, left, when, why), fix)
	ev.Grant.ExpiresAt, ev.Grant.ExpiresBasis = f.at, f.basis
	return *ev
}

// roughly renders a time left as days and hours, or hours and minutes.
func roughly(d time.Duration) string {
	if d >= 24*time.Hour {
		return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
	}
	return d.Round(time.Minute).String()
}

// capText cuts s to at most n bytes on a rune boundary, marking the cut.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// logNotice writes the one line a notice deserves: it is sent once.
func logNotice(log *slog.Logger, ev notify.Event) {
	switch ev.Type {
	case notify.TypeUnreadable:
		log.Warn("grant answers unreadable", "status", ev.Grant.HTTPStatus,
			"error", ev.Grant.Error, "error_description", ev.Grant.ErrorDescription, "fix", "grantwatch explain")
	case notify.TypeExpiring:
		log.Warn("grant expiring", "expires_at", ev.Grant.ExpiresAt.Format(time.RFC3339), "expires_basis", ev.Grant.ExpiresBasis)
	}
}

// noticeEntries renders an outcome's notices into outbox entries.
func (d *Daemon) noticeEntries(out Outcome) []store.OutboxEntry {
	var entries []store.OutboxEntry
	for _, ev := range out.Notices {
		entries = append(entries, d.router.Entries(ev)...)
	}
	return entries
}

// ExpiringGrants calls fn for every grant forecast to die within `within`
// from now, of provider unless it is "": provider by provider, soonest
// first, through the store's expiry index.
func (d *Daemon) ExpiringGrants(within time.Duration, provider string, fn func(store.Grant) error) error {
	return d.db.EachExpiring(d.now().Add(within), provider, fn)
}

// forecastStatus adds the watch indexes' counts to a status: the grants
// whose answers nobody reads (and the first of them), the grants forecast
// to die within forecast.warn_before, the client secrets expiring within it.
func (d *Daemon) forecastStatus(st *api.Status) error {
	cfg := d.Config()
	now := d.now()
	unread, err := d.db.UnreadableCounts()
	if err != nil {
		return err
	}
	for _, n := range unread {
		st.Unreadable += n
	}
	st.UnreadableGrants = []store.Grant{}
	err = d.db.EachUnreadable("", func(g store.Grant) error {
		if len(st.UnreadableGrants) >= statusListMax {
			return errEnough
		}
		st.UnreadableGrants = append(st.UnreadableGrants, g)
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	st.WarnBeforeSeconds = cfg.Forecast.WarnBefore.Seconds()
	expiring, err := d.db.ExpiringCounts(now.Add(cfg.Forecast.WarnBefore))
	if err != nil {
		return err
	}
	for _, n := range expiring {
		st.Expiring += n
	}
	st.SecretsExpiring = []api.SecretExpiry{}
	for _, p := range cfg.Providers {
		if at, ok := p.SecretExpiresAt(); ok && !now.Before(at.Add(-cfg.Forecast.WarnBefore)) {
			st.SecretsExpiring = append(st.SecretsExpiring, api.SecretExpiry{Provider: p.Name, ExpiresAt: at, Expired: !now.Before(at)})
		}
	}
	return nil
}

// metaSecret remembers the client secret expiry provider.secret_expiring was
// sent for.
func metaSecret(name string) string { return "provider.secret_expiring." + name }

// checkSecrets sends provider.secret_expiring once for each provider whose
// client secret (client_secret_expires_at) expires within
// forecast.warn_before: once per configured expiry, so that a secret
// replaced and given a new date is announced again when that one nears.
func (d *Daemon) checkSecrets() {
	cfg := d.Config()
	now := d.now()
	for _, p := range cfg.Providers {
		at, ok := p.SecretExpiresAt()
		if !ok || now.Before(at.Add(-cfg.Forecast.WarnBefore)) {
			continue
		}
		mark := at.UTC().Format(time.RFC3339)
		if b, err := d.db.GetMeta(metaSecret(p.Name)); err == nil && string(b) == mark {
			continue
		}
		log := d.log.With("provider", p.Name)
		ev := secretEvent(p.Name, at, now, d.providerState(p.Name))
		if err := d.db.Enqueue(d.router.Entries(ev)...); err != nil {
			log.Error("queue provider notification", tint.Err(err))
			continue
		}
		if err := d.db.PutMeta(metaSecret(p.Name), []byte(mark)); err != nil {
			log.Error("store provider state", tint.Err(err))
		}
		log.Warn("client secret expiring", "expires_at", mark, "fix", "create a new secret, set client_secret_file and client_secret_expires_at, reload")
		d.disp.Kick()
	}
}

// providerState is the named provider's health state.
func (d *Daemon) providerState(name string) string {
	for _, p := range d.providerStates() {
		if p.Name == name {
			return p.State
		}
	}
	return ProviderOK
}

func secretEvent(name string, at, now time.Time, state string) notify.Event {
	when := at.UTC().Format(time.RFC3339)
	summary := fmt.Sprintf("the client secret of provider %s expires in %s (%s)", name, roughly(at.Sub(now)), when)
	if !now.Before(at) {
		summary = fmt.Sprintf("the client secret of provider %s expired at %s", name, when)
	}
	return notify.Event{
		ID:         eventID("secret", name, when),
		Type:       notify.TypeSecretExpiring,
		OccurredAt: now,
		Provider:   &notify.Provider{Name: name, State: state, SecretExpiresAt: at},
		Summary:    summary,
		Fix: "Create a new client secret for the app (Microsoft Entra: App registrations, Certificates & secrets, New client secret), put it in providers." + name +
			".client_secret_file, set providers." + name + ".client_secret_expires_at to its expiry, and reload (`systemctl reload grantwatch`). " +
			"Once the old secret expires the provider rejects grantwatch's client (invalid_client) and every grant of it is held; users need not reconnect.",
	}
}

// activeWatchEvents lists the notices whose condition still holds, for
// receivers that re-send firing alerts: grants whose answers nobody reads,
// grants warned of their expiry that are still within warn_before.
func (d *Daemon) activeWatchEvents(ctx context.Context, fn func(notify.Event) error) error {
	err := d.db.EachUnreadable("", func(g store.Grant) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(unreadableEvent(g, probes.Result{Error: g.Error, ErrorDescription: g.ErrorDescription}, g.LastProbeAt))
	})
	if err != nil {
		return err
	}
	cfg := d.Config()
	return d.db.EachExpiring(d.now().Add(cfg.Forecast.WarnBefore), "", func(g store.Grant) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !g.ExpiryWarned {
			return nil
		}
		var l config.Lifetimes
		if p, ok := cfg.Provider(g.Provider); ok {
			l = p.Lifetimes()
		}
		f := forecast(g, l) // as the transition that sent it saw it
		if !f.at.Equal(g.ExpiresAt) {
			f = expiry{at: g.ExpiresAt, basis: g.ExpiresBasis} // the config changed since
		}
		return fn(expiringEvent(g, f, l, g.LastProbeAt))
	})
}

// Forecast metrics: read from the store's watch indexes at scrape time,
// O(providers + matching grants), and from the config; no grant is a label.
var (
	descExpiring = prometheus.NewDesc("grantwatch_grants_expiring",
		"Grants whose refresh token is forecast to die within forecast.warn_before, by provider.", []string{"provider"}, nil)
	descUnreadable = prometheus.NewDesc("grantwatch_grants_unreadable",
		"Grants whose token endpoint answered a client error no rule reads, several probes in a row, by provider.", []string{"provider"}, nil)
	descSecretExpiry = prometheus.NewDesc("grantwatch_client_secret_expiry_timestamp_seconds",
		"When the provider's client secret expires (client_secret_expires_at), as a Unix time.", []string{"provider"}, nil)
)

type forecastCollector struct{ d *Daemon }

func (c forecastCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descExpiring
	ch <- descUnreadable
	ch <- descSecretExpiry
}

func (c forecastCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	cfg := d.Config()
	expiring, err := d.db.ExpiringCounts(d.now().Add(cfg.Forecast.WarnBefore))
	unread, err2 := d.db.UnreadableCounts()
	for _, p := range cfg.Providers {
		// Every configured provider has a series, 0 included, so that an
		// alert rule sees it go up.
		if err == nil {
			ch <- prometheus.MustNewConstMetric(descExpiring, prometheus.GaugeValue, float64(expiring[p.Name]), p.Name)
		}
		if err2 == nil {
			ch <- prometheus.MustNewConstMetric(descUnreadable, prometheus.GaugeValue, float64(unread[p.Name]), p.Name)
		}
		if at, ok := p.SecretExpiresAt(); ok {
			ch <- prometheus.MustNewConstMetric(descSecretExpiry, prometheus.GaugeValue, float64(at.Unix()), p.Name)
		}
	}
}
