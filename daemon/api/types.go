package api

import (
	"time"

	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// The API's request and answer types, shared by the server and the Client.
// Their JSON names are part of grantwatch's interface (--json output).

// GrantDetail is a grant with its history (grants show).
type GrantDetail struct {
	store.Grant
	// Fix tells who must do what about the grant's cause; empty without one.
	Fix     string               `json:"fix,omitempty"`
	History []store.HistoryEntry `json:"history"`
}

// ProbeReport is the outcome of probing one grant now (grants probe,
// set-token, reconnect).
type ProbeReport struct {
	Grant  store.Grant `json:"grant"`
	Result ResultView  `json:"result"`
	// Stale reports that the grant's token was replaced while the probe ran;
	// the result was dropped.
	Stale bool `json:"stale,omitempty"`
	// Deferred reports a token stored by a standby (etcd): the leader
	// probes it on its next tick; Result is empty.
	Deferred bool `json:"deferred,omitempty"`
}

// ResultView is a probe result as the API shows it; it never holds a token.
type ResultView struct {
	OK               bool    `json:"ok"`
	Cause            string  `json:"cause,omitempty"`
	Action           string  `json:"action,omitempty"`
	Rule             string  `json:"rule,omitempty"`
	Status           int     `json:"status,omitempty"`
	Error            string  `json:"error,omitempty"`
	ErrorDescription string  `json:"error_description,omitempty"`
	LatencyMS        float64 `json:"latency_ms"`
	Rotated          bool    `json:"rotated,omitempty"`
	Summary          string  `json:"summary,omitempty"`
	Fix              string  `json:"fix,omitempty"`
}

// ViewResult is r as the API shows it: no token, the rotation only as a flag.
func ViewResult(r probes.Result) ResultView {
	return ResultView{
		OK: r.OK, Cause: string(r.Cause), Action: string(r.Action), Rule: r.Rule,
		Status: r.Status, Error: r.Error, ErrorDescription: r.ErrorDescription,
		LatencyMS: float64(r.Latency.Microseconds()) / 1000,
		Rotated:   !r.NewRefreshToken.IsZero(),
		Summary:   r.Cause.Summary(), Fix: r.Cause.Fix(),
	}
}

// ImportProgress is one line of the import answer's progress stream.
type ImportProgress struct {
	// Phase is "validating" (reading the input; nothing is written until
	// all of it is valid) or "writing".
	Phase string `json:"phase,omitempty"`
	// Read counts the input lines read so far.
	Read     int `json:"read,omitempty"`
	Done     int `json:"done"`
	Total    int `json:"total"`
	Created  int `json:"created"`
	Replaced int `json:"replaced"`
	// Final marks the last line.
	Final bool   `json:"final,omitempty"`
	Error string `json:"error,omitempty"`
}

// Status is the fleet's answer to "is everything connected?".
type Status struct {
	// Daemon reports that a running daemon answered (else the database was
	// read directly and runtime fields are empty).
	Daemon     bool                      `json:"daemon"`
	Grants     int                       `json:"grants"`
	ByState    map[string]int            `json:"by_state"`
	ByProvider map[string]map[string]int `json:"by_provider"`
	// NeedsReconnect lists grants in reconnect_required (at most 100; see
	// by_state for the total).
	NeedsReconnect []store.Grant    `json:"needs_reconnect"`
	OnHold         []store.Grant    `json:"on_hold"`
	Providers      []ProviderStatus `json:"providers"`
	Clock          ClockView        `json:"clock"`
	Outbox         OutboxStatus     `json:"outbox"`
	LastTickAt     time.Time        `json:"last_tick_at,omitzero"`
	// NeedsAction is true when a grant needs reconnecting, a grant or
	// provider is held, or the clock is skewed: status exits 1.
	NeedsAction bool `json:"needs_action"`
	// DB is the database the answer was read from. The CLI compares it with
	// its config's daemon.db: a daemon of another config answering on the
	// same socket cannot tell this config's fleet.
	DB string `json:"db"`
	// Receivers is each receiver's deliveries since the daemon started:
	// the last success, the last error and when (doctor shows a receiver
	// that answers 500). Only a running daemon knows them.
	Receivers []notify.ReceiverStatus `json:"receivers,omitempty"`
	// Cluster is the fleet's leadership with an etcd store; nil with bbolt.
	Cluster *ClusterStatus `json:"cluster,omitempty"`
}

// ProviderStatus is one provider's health.
type ProviderStatus struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Cause string `json:"cause,omitempty"`
}

// ClockView is the clock as status shows it.
type ClockView struct {
	State         string  `json:"state"`
	OffsetSeconds float64 `json:"offset_seconds"`
	Source        string  `json:"source,omitempty"`
	NTPOK         bool    `json:"ntp_ok"`
	NTPOffset     float64 `json:"ntp_offset_seconds"`
	DateOffset    float64 `json:"date_offset_seconds"`
	DateSamples   int     `json:"date_samples"`
}

// OutboxStatus is the notification backlog.
type OutboxStatus struct {
	Pending          int     `json:"pending"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// DeadLetter is a notification its receiver did not accept within max_age
// (`grantwatch notify dead`). The JSON names are part of grantwatch's
// interface.
type DeadLetter struct {
	Receiver       string    `json:"receiver"`
	Seq            uint64    `json:"seq"`
	NotificationID string    `json:"notification_id,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	DeadAt         time.Time `json:"dead_at"`
	Attempts       int       `json:"attempts"`
	// Reason says why: max_age and the last delivery error (redacted as
	// the log is).
	Reason string       `json:"reason"`
	Event  notify.Event `json:"event"`
}

// RedeliverResult is what `grantwatch notify redeliver` did.
type RedeliverResult struct {
	Requeued int `json:"requeued"`
	// Stale counts dead letters left alone because what they report has
	// changed since (the grant reconnected, the provider recovered):
	// sending them would reopen at the receiver what is resolved.
	Stale int `json:"stale"`
}

// NotifyTestResult is one receiver's answer to a test notification.
type NotifyTestResult struct {
	Receiver string `json:"receiver"`
	Status   int    `json:"status,omitempty"`
	Answer   string `json:"answer,omitempty"`
	Error    string `json:"error,omitempty"`
}

// ErrorBody is the body of every non-2xx answer.
type ErrorBody struct {
	Error string `json:"error"`
}
