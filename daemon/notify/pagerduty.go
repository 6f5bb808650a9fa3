package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// pagerduty sends Events API v2 alert events: trigger for a problem, resolve
// for its recovery, with a dedup_key stable per grant (or provider, or the
// clock) and condition, so a retry or a re-trigger is idempotent. PagerDuty
// has no batch endpoint: each event of a notification is its own request,
// sent in order; the notification is accepted only when all were.
type pagerduty struct {
	name       string
	url        secret.Secret
	routingKey secret.Secret
	client     *http.Client
	red        redactor
	now        func() time.Time

	// accepted remembers, per notification id, the requests PagerDuty
	// accepted in an attempt that failed later on, so that a retry goes on
	// from there instead of stopping at the same place every time (a large
	// group, a timeout, a 429 midway). Forgotten once the notification is
	// accepted; lost on restart, which only re-sends (dedup_key makes that
	// idempotent).
	mu       sync.Mutex
	accepted map[string]map[string]bool
}

// pdEvent is an Events API v2 event (POST /v2/enqueue).
type pdEvent struct {
	RoutingKey  string     `json:"routing_key"`
	EventAction string     `json:"event_action"` // trigger or resolve
	DedupKey    string     `json:"dedup_key"`
	Payload     *pdPayload `json:"payload,omitempty"` // required for trigger only
	Client      string     `json:"client,omitempty"`
	Links       []pdLink   `json:"links,omitempty"`
}

// pdLink is a link shown with the incident.
type pdLink struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

type pdPayload struct {
	Summary       string `json:"summary"` // ≤ 1024 chars
	Source        string `json:"source"`
	Severity      string `json:"severity"` // critical, error, warning or info
	Timestamp     string `json:"timestamp,omitempty"`
	Component     string `json:"component,omitempty"`
	Group         string `json:"group,omitempty"`
	Class         string `json:"class,omitempty"`
	CustomDetails any    `json:"custom_details,omitempty"`
}

// Send implements Sender.
func (p *pagerduty) Send(ctx context.Context, n Notification) (Delivery, error) {
	p.mu.Lock()
	done := p.accepted[n.ID]
	delete(p.accepted, n.ID)
	p.mu.Unlock()
	if done == nil {
		done = map[string]bool{}
	}
	var d Delivery
	for _, ev := range n.Events {
		for _, pe := range pdRender(ev, p.routingKey.Reveal()) {
			key := ev.ID + "\x00" + pe.EventAction + "\x00" + pe.DedupKey
			if done[key] {
				continue
			}
			body, err := json.Marshal(pe)
			if err != nil {
				return Delivery{}, fmt.Errorf("encode pagerduty event: %w", err)
			}
			d, err = post(ctx, p.client, p.name, p.url.Reveal(), nil, body, p.red, p.now)
			if err != nil {
				if len(done) > 0 {
					p.mu.Lock()
					if p.accepted == nil {
						p.accepted = map[string]map[string]bool{}
					}
					p.accepted[n.ID] = done
					p.mu.Unlock()
				}
				return d, err
			}
			done[key] = true
		}
	}
	return d, nil
}

// pdDedupKey names a condition: grantwatch/grant/<id>/<condition>,
// grantwatch/provider/<name>/<condition>, grantwatch/clock/skewed,
// grantwatch/test/<event id>. PagerDuty caps it at 255 characters.
func pdDedupKey(ev Event, condition string) string {
	var k string
	switch {
	case ev.Test:
		k = "grantwatch/test/" + ev.ID
	case ev.Grant != nil:
		k = "grantwatch/grant/" + ev.Grant.ID + "/" + condition
	case ev.Provider != nil:
		k = "grantwatch/provider/" + ev.Provider.Name + "/" + condition
	default:
		k = "grantwatch/clock/" + condition
	}
	return truncate(k, 255)
}

// pdRender turns one event into the PagerDuty events it stands for: one
// trigger, or one resolve per condition it may close (a recovery whose
// previous state is unknown resolves both of the grant's conditions;
// resolving an unknown dedup_key is harmless).
func pdRender(ev Event, routingKey string) []pdEvent {
	if closes := problemsResolvedBy(ev); closes != nil && !ev.Test {
		var out []pdEvent
		for _, typ := range closes {
			out = append(out, pdEvent{RoutingKey: routingKey, EventAction: "resolve",
				DedupKey: pdDedupKey(ev, pdCondition(typ)), Client: "grantwatch"})
		}
		return out
	}
	severity := "error"
	switch {
	case ev.Test:
		severity = "info"
	case ev.Type == TypeDegraded, ev.Type == TypeExpiring, ev.Type == TypeSecretExpiring:
		severity = "warning"
	}
	details := map[string]any{"event_id": ev.ID, "type": ev.Type}
	if ev.Fix != "" {
		details["fix"] = ev.Fix
	}
	if ev.Grant != nil {
		details["grant"] = ev.Grant
	}
	if ev.Provider != nil {
		details["provider"] = ev.Provider
	}
	if ev.Clock != nil {
		details["clock"] = ev.Clock
	}
	if ev.Test {
		details["test"] = true
	}
	pl := &pdPayload{
		Summary:       truncate(summary(ev), 1024),
		Source:        "grantwatch",
		Severity:      severity,
		Timestamp:     ev.OccurredAt.UTC().Format(time.RFC3339Nano),
		Component:     eventProvider(ev), // the provider, or the grant below
		Group:         eventProvider(ev), // grants group by their provider
		Class:         eventCause(ev),
		CustomDetails: details,
	}
	if ev.Grant != nil {
		pl.Component = "grant/" + ev.Grant.ID
	}
	if ev.Clock != nil {
		pl.Component, pl.Group = "clock", "clock"
	}
	pe := pdEvent{RoutingKey: routingKey, EventAction: "trigger",
		DedupKey: pdDedupKey(ev, pdCondition(ev.Type)), Payload: pl, Client: "grantwatch"}
	if ev.Grant != nil && ev.Grant.ReconnectURL != "" {
		pe.Links = []pdLink{{Href: ev.Grant.ReconnectURL, Text: "Reconnect link for the user of grant " + ev.Grant.ID}}
	}
	return []pdEvent{pe}
}

// pdCondition is the condition part of a dedup_key for a problem type.
func pdCondition(typ string) string {
	switch typ {
	case TypeReconnectRequired:
		return "reconnect_required"
	case TypeReuseDetected:
		return "reuse_detected"
	case TypeDegraded:
		return "degraded"
	case TypeClockSkewed:
		return "skewed"
	case TypeProviderOutage:
		return "outage"
	case TypeProviderMisconfigured:
		return "misconfigured"
	case TypeUnreadable:
		return "unreadable"
	case TypeExpiring:
		return "expiring"
	case TypeSecretExpiring:
		return "secret_expiring"
	}
	return typ
}
