package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// alertmanager posts alerts to Alertmanager's API v2 (POST {url}/api/v2/alerts,
// a JSON array of postableAlert). A problem is sent firing, with endsAt
// 3×resend_interval ahead; its recovery is sent with the same labels and
// endsAt now, which resolves it. Because Alertmanager resolves an alert that
// is not re-sent before its endsAt, and forgets alerts when it restarts, the
// dispatcher re-sends every alert whose condition still holds each
// resend_interval (see Resend).
type alertmanager struct {
	name   string
	url    secret.Secret // base URL, for example http://alertmanager:9093
	resend time.Duration
	client *http.Client
	red    redactor
	now    func() time.Time
}

// amAlert is a postableAlert of Alertmanager's OpenAPI v2 spec.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Alert names, one per problem.
const (
	AlertGrantReconnectRequired  = "GrantReconnectRequired"
	AlertGrantReuseDetected      = "GrantReuseDetected"
	AlertGrantDegraded           = "GrantDegraded"
	AlertClockSkewed             = "GrantwatchClockSkewed"
	AlertProviderOutage          = "GrantwatchProviderOutage"
	AlertProviderMisconfigured   = "GrantwatchProviderMisconfigured"
	AlertGrantUnreadable         = "GrantUnreadable"
	AlertGrantExpiring           = "GrantExpiring"
	AlertClientSecretExpiring    = "GrantwatchClientSecretExpiring"
	AlertTest                    = "GrantwatchTest"
	alertmanagerPath             = "/api/v2/alerts"
	alertmanagerEndsAtMultiplier = 3
)

var alertNames = map[string]string{
	TypeReconnectRequired:     AlertGrantReconnectRequired,
	TypeReuseDetected:         AlertGrantReuseDetected,
	TypeDegraded:              AlertGrantDegraded,
	TypeClockSkewed:           AlertClockSkewed,
	TypeProviderOutage:        AlertProviderOutage,
	TypeProviderMisconfigured: AlertProviderMisconfigured,
	TypeUnreadable:            AlertGrantUnreadable,
	TypeExpiring:              AlertGrantExpiring,
	TypeSecretExpiring:        AlertClientSecretExpiring,
}

// Send implements Sender: the events of n as one array.
func (a *alertmanager) Send(ctx context.Context, n Notification) (Delivery, error) {
	now := a.now()
	var alerts []amAlert
	for _, ev := range n.Events {
		alerts = append(alerts, amRender(ev, now, a.resend)...)
	}
	return a.post(ctx, alerts)
}

// Resend re-posts evs, the conditions that still hold, as firing alerts.
func (a *alertmanager) Resend(ctx context.Context, evs []Event) (Delivery, error) {
	now := a.now()
	var alerts []amAlert
	for _, ev := range evs {
		if problemsResolvedBy(ev) != nil {
			continue
		}
		alerts = append(alerts, amRender(ev, now, a.resend)...)
	}
	if len(alerts) == 0 {
		return Delivery{}, nil
	}
	return a.post(ctx, alerts)
}

func (a *alertmanager) post(ctx context.Context, alerts []amAlert) (Delivery, error) {
	body, err := json.Marshal(alerts)
	if err != nil {
		return Delivery{}, fmt.Errorf("encode alerts: %w", err)
	}
	u := strings.TrimRight(a.url.Reveal(), "/") + alertmanagerPath
	return post(ctx, a.client, a.name, u, nil, body, a.red, a.now)
}

// amRender turns one event into alerts: one firing alert for a problem; for a
// resolving event, one resolved alert (endsAt = now) per problem it may close.
func amRender(ev Event, now time.Time, resend time.Duration) []amAlert {
	if closes := problemsResolvedBy(ev); closes != nil && !ev.Test {
		var out []amAlert
		for _, typ := range closes {
			al := amAlertFor(ev, typ)
			al.StartsAt = ev.OccurredAt.UTC()
			al.EndsAt = now.UTC()
			if al.StartsAt.After(al.EndsAt) {
				al.StartsAt = al.EndsAt
			}
			out = append(out, al)
		}
		return out
	}
	typ := ev.Type
	if ev.Test {
		typ = "test"
	}
	al := amAlertFor(ev, typ)
	al.StartsAt = ev.OccurredAt.UTC()
	al.EndsAt = now.Add(alertmanagerEndsAtMultiplier * resend).UTC()
	return []amAlert{al}
}

// amAlertFor builds the labels and annotations of the alert for problem typ.
// A resolve must carry exactly the firing alert's labels, so labels hold only
// what does not change between the two: identity, and the problem's cause
// (eventCause returns PreviousCause for a resolving event).
func amAlertFor(ev Event, typ string) amAlert {
	name := alertNames[typ]
	if typ == "test" {
		name = AlertTest
	}
	labels := map[string]string{"alertname": name}
	if ev.Grant != nil {
		for k, v := range ev.Grant.Labels {
			labels[amLabelName(k)] = v
		}
		labels["grant"] = ev.Grant.ID
		labels["provider"] = ev.Grant.Provider
	}
	if ev.Provider != nil {
		labels["provider"] = ev.Provider.Name
	}
	if c := eventCause(ev); c != "" {
		labels["cause"] = c
	}
	ann := map[string]string{"summary": summary(ev)}
	if ev.Fix != "" {
		ann["description"] = ev.Fix
	}
	if ev.Grant != nil && ev.Grant.Subject != "" {
		ann["subject"] = ev.Grant.Subject
	}
	if ev.Grant != nil && ev.Grant.ReconnectURL != "" && typ == TypeReconnectRequired {
		ann["reconnect_url"] = ev.Grant.ReconnectURL
	}
	return amAlert{Labels: labels, Annotations: ann}
}

// reservedLabels are set by grantwatch; a grant label of the same name is
// renamed label_<name>.
var reservedLabels = map[string]bool{"alertname": true, "grant": true, "provider": true, "cause": true}

// amLabelName makes a grant label key a valid Prometheus label name
// ([a-zA-Z_][a-zA-Z0-9_]*; names starting with "__" are reserved).
func amLabelName(k string) string {
	b := []byte(k)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	s := string(b)
	switch {
	case s == "" || strings.HasPrefix(s, "__") || reservedLabels[s]:
		return "label_" + s
	case s[0] >= '0' && s[0] <= '9':
		return "_" + s
	}
	return s
}
