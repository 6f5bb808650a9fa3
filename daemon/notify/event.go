// Package notify renders grantwatch's events for on-call and delivers them:
// the receivers (webhook, Slack, PagerDuty, Alertmanager, exec) and the
// dispatcher that drains the store's outbox.
package notify

import "time"

// Event types. The names are part of grantwatch's interface.
const (
	TypeReconnectRequired     = "grant.reconnect_required"
	TypeRecovered             = "grant.recovered"
	TypeDegraded              = "grant.degraded"
	TypeClockSkewed           = "clock.skewed"
	TypeClockOK               = "clock.ok"
	TypeProviderOutage        = "provider.outage"
	TypeProviderMisconfigured = "provider.misconfigured"
	TypeProviderOK            = "provider.ok"
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
