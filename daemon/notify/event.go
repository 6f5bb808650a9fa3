// Package notify renders grantwatch's events for on-call and delivers them:
// the receivers (webhook, Slack, PagerDuty, Alertmanager, exec) and the
// dispatcher that drains the store's outbox.
//
// dispatcher.go is longer than the others (~800 lines) on purpose: the
// outbox's delivery state machine (claim, send, back off, honour
// Retry-After, dead-letter, report status) reads as one piece, and its
// parts share the per-receiver state they guard.
package notify

import "time"

// Event types. The names are part of grantwatch's interface.
const (
	TypeReconnectRequired = "grant.reconnect_required"
	// TypeReuseDetected is a grant that died of a refresh-token reuse
	// grantwatch cannot explain (no lost answer, no token just stored):
	// someone else presented the token, a leak or a second refresher. The
	// grant is reconnect_required; receivers that take
	// grant.reconnect_required get this event too (Router).
	TypeReuseDetected         = "grant.reuse_detected"
	TypeRecovered             = "grant.recovered"
	TypeDegraded              = "grant.degraded"
	TypeClockSkewed           = "clock.skewed"
	TypeClockOK               = "clock.ok"
	TypeProviderOutage        = "provider.outage"
	TypeProviderMisconfigured = "provider.misconfigured"
	TypeProviderOK            = "provider.ok"
	// TypeUnreadable: the same grant's token endpoint answered a 4xx that
	// no rule can read, store.UnreadableAfter probes in a row. Sent once
	// per streak; Grant.HTTPStatus and ErrorDescription say what came.
	TypeUnreadable = "grant.unreadable"
	// TypeExpiring: the grant's refresh token is forecast to die within
	// forecast.warn_before of something probing cannot prevent (or an idle
	// window its failing probes cannot renew). Sent once per token chain;
	// Grant.ExpiresAt and ExpiresBasis say when and why.
	TypeExpiring = "grant.expiring"
	// TypeSecretExpiring: a provider's client secret expires within
	// forecast.warn_before (client_secret_expires_at). Sent once per
	// configured expiry; Provider.SecretExpiresAt says when.
	TypeSecretExpiring = "provider.secret_expiring"
)

// Event is one thing on-call hears about. Every receiver renders from it; its
// JSON is the webhook body's "events" element (DESIGN.md "Interfaces").
type Event struct {
	// ID identifies the event; a receiver sees the same ID on every retry.
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	OccurredAt time.Time `json:"occurred_at"`
	// Grant is set for grant.* events.
	Grant *Grant `json:"grant,omitempty"`
	// Provider is set for provider.* events.
	Provider *Provider `json:"provider,omitempty"`
	// Clock is set for clock.* events.
	Clock *Clock `json:"clock,omitempty"`
	// PreviousState is the state before the transition: the grant's
	// (grant.*) or the provider's (provider.*).
	PreviousState string `json:"previous_state,omitempty"`
	// PreviousCause is the cause of the state being left, for the resolving
	// events (grant.recovered, clock.ok, provider.ok). Alertmanager resolves an
	// alert only when its labels, cause included, equal the firing ones.
	PreviousCause string `json:"previous_cause,omitempty"`
	Summary       string `json:"summary"`
	Fix           string `json:"fix,omitempty"`
	// Test marks an event sent by `grantwatch notify test`.
	Test bool `json:"test,omitempty"`
}

// Grant is the grant part of an event. It never carries a token.
type Grant struct {
	ID               string            `json:"id"`
	Provider         string            `json:"provider"`
	Subject          string            `json:"subject,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	State            string            `json:"state"`
	Cause            string            `json:"cause,omitempty"`
	Action           string            `json:"action,omitempty"`
	Error            string            `json:"error,omitempty"`
	ErrorDescription string            `json:"error_description,omitempty"`
	// HTTPStatus is the status of the answer the event is about
	// (grant.unreadable); 0 otherwise.
	HTTPStatus int `json:"http_status,omitempty"`
	// ExpiresAt and ExpiresBasis are the grant's forecast (grant.expiring).
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	ExpiresBasis string    `json:"expires_basis,omitempty"`
	// ReconnectURL is a hosted reconnect link for the grant's user, on
	// grant.reconnect_required when reconnect.public_url is set (WithLinks).
	// Anyone holding it can reconnect the grant, as its own account only,
	// once, until it expires.
	ReconnectURL string `json:"reconnect_url,omitempty"`
}

// Provider is the provider part of a provider.* event.
type Provider struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Cause  string `json:"cause,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Grants is how many grants of the provider are affected.
	Grants int `json:"grants,omitempty"`
	// SecretExpiresAt is when the client secret expires
	// (provider.secret_expiring).
	SecretExpiresAt time.Time `json:"secret_expires_at,omitzero"`
}

// Clock is the clock part of a clock.* event.
type Clock struct {
	State string `json:"state"`
	// OffsetSeconds is this host's clock minus true time.
	OffsetSeconds float64 `json:"offset_seconds"`
	// Source is "ntp" or "date_header".
	Source string `json:"source,omitempty"`
}

// Notification is what one receiver is sent: one or more events grouped by
// the receiver's group_by. Its JSON is the webhook body.
type Notification struct {
	// ID is stable across retries of the same delivery.
	ID       string  `json:"id"`
	Receiver string  `json:"receiver"`
	Events   []Event `json:"events"`
}
