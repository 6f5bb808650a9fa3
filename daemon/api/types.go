package api

import (
	"fmt"
	"strconv"
	"strings"
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

// Observation is an app's report of one refresh it made itself, for a grant
// of a provider in observe mode (POST /v1/grants/{id}/observations):
// {"status": 400, "body": "<the answer as received>", "headers": {"Date":
// "…"}}, or {"status": 200} for a success. It is judged as grantwatch
// judges a probe's answer.
type Observation struct {
	// Status is the HTTP status of the token endpoint's answer.
	Status int `json:"status"`
	// Body is the answer's body as received, "" for an empty one. A
	// success may leave it out (its body holds the app's tokens, which
	// grantwatch neither needs nor keeps): a 2xx without body is a
	// success. Any other answer needs it: the body is what tells the
	// causes apart (GitHub's errors come with 200).
	Body *string `json:"body,omitempty"`
	// Headers are the answer's headers by name: Date feeds the clock's
	// Date-header estimate, Retry-After the backoff of a 429 or 503.
	Headers map[string]string `json:"headers,omitempty"`
}

// ImportOptions qualify an import (POST /v1/grants query parameters).
type ImportOptions struct {
	// Source names the input for status and the log (a file name, "stdin").
	Source string
	// Replace lets the import replace an existing grant's token; Force,
	// with Replace, one that rotated since it was stored from outside.
	Replace, Force bool
}

// ImportProgress is one line of the import answer's progress stream.
type ImportProgress struct {
	// Phase is "validating" (reading the input into the spool; nothing is
	// written until all of it is valid) or "writing".
	Phase string `json:"phase,omitempty"`
	// Job is the import job's id once the input is valid ("import-7"):
	// status shows it until it is finished.
	Job string `json:"job,omitempty"`
	// Read counts the input lines read so far.
	Read int `json:"read,omitempty"`
	// Done counts the grants written so far, of Total.
	Done     int `json:"done"`
	Total    int `json:"total"`
	Created  int `json:"created"`
	Replaced int `json:"replaced"`
	// Rotated counts the grants whose token the provider had rotated since
	// it was imported, replaced all the same (force); RotatedIDs names the
	// first 20, for the warning.
	Rotated    int      `json:"rotated,omitempty"`
	RotatedIDs []string `json:"rotated_ids,omitempty"`
	// Final marks the last line.
	Final bool   `json:"final,omitempty"`
	Error string `json:"error,omitempty"`
}

// Import job states (ImportJob.State).
const (
	// ImportWriting: this daemon is writing the import now.
	ImportWriting = "writing"
	// ImportInterrupted: the process that wrote it stopped (a crash, a
	// kill) before it ended; the daemon finishes it when it starts.
	ImportInterrupted = "interrupted"
	// ImportFinished: an interrupted import, finished from its spool when
	// the daemon (or a CLI command with no daemon) next started.
	ImportFinished = "finished"
	// ImportStopped: an interrupted import that could not be finished
	// (Detail says why): the input lines up to Committed are imported, the
	// rest are not.
	ImportStopped = "stopped"
)

// ImportJob is an import as status shows it: one being written, one a crash
// interrupted, or what became of the last interrupted one. Lines count input
// lines (blank and comment lines included), as the import's line numbers do.
type ImportJob struct {
	ID     string `json:"id"`
	Source string `json:"source,omitempty"`
	State  string `json:"state"`
	// Lines is the input's length; Committed how many of its lines, from
	// the first, are stored.
	Lines     int       `json:"lines"`
	Committed int       `json:"committed"`
	Created   int       `json:"created"`
	Replaced  int       `json:"replaced"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	Detail    string    `json:"detail,omitempty"`
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
	NeedsReconnect []store.Grant `json:"needs_reconnect"`
	OnHold         []store.Grant `json:"on_hold"`
	// Stale counts the grants of providers in observe mode whose app has
	// not reported a refresh for longer than the provider's interval;
	// StaleGrants lists the first 100.
	Stale       int              `json:"stale"`
	StaleGrants []store.Grant    `json:"stale_grants"`
	Providers   []ProviderStatus `json:"providers"`
	Clock       ClockView        `json:"clock"`
	Outbox      OutboxStatus     `json:"outbox"`
	// LastTickAt is when the scheduler loop last showed it is alive: a due
	// scan, or a beat while it waits for busy workers.
	LastTickAt time.Time `json:"last_tick_at,omitzero"`
	// NotReady is why the running daemon is not ready (what /readyz
	// answers: the store cannot write, the scheduler is stuck), "" when it
	// is; NotReadyFix says what to do.
	NotReady    string `json:"not_ready,omitempty"`
	NotReadyFix string `json:"not_ready_fix,omitempty"`
	// Config tells whether the daemon runs the config in its file (absent
	// without a daemon).
	Config *ConfigStatus `json:"config,omitempty"`
	// Unreadable counts the grants whose token endpoint answered a client
	// error no rule reads store.UnreadableAfter or more probes in a row;
	// UnreadableGrants lists them (at most 100).
	Unreadable       int           `json:"unreadable"`
	UnreadableGrants []store.Grant `json:"unreadable_grants"`
	// Expiring counts the grants whose refresh token is forecast to die
	// within forecast.warn_before (WarnBeforeSeconds); `grants list
	// --expiring` lists them.
	Expiring          int     `json:"expiring"`
	WarnBeforeSeconds float64 `json:"warn_before_seconds"`
	// SecretsExpiring lists the providers whose client secret
	// (client_secret_expires_at) expires within forecast.warn_before, or has.
	SecretsExpiring []SecretExpiry `json:"secrets_expiring"`
	// Imports lists the imports being written or interrupted, and what
	// became of the last one a crash interrupted (until an import ends
	// normally).
	Imports []ImportJob `json:"imports,omitempty"`
	// Key is the database's sealing key: its fingerprint and last rekey.
	Key *store.KeyInfo `json:"key,omitempty"`
	// NeedsAction is true when a grant needs reconnecting, a grant or
	// provider is held, a grant is stale or its answers are unreadable, the
	// clock is skewed, or an interrupted import is not finished: status
	// exits 1.
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

// ConfigStatus is the running config against its file: whether the last
// reload took, and whether the file (or a client_secret_file) changed since
// the running config was loaded from it.
type ConfigStatus struct {
	Path string `json:"path"`
	// LoadedAt is when the running config was loaded: at start, or by the
	// last successful reload.
	LoadedAt time.Time `json:"loaded_at"`
	// LastReloadAt is when a reload was last tried; absent when none was.
	LastReloadAt time.Time `json:"last_reload_at,omitzero"`
	// LastReloadOK is false when the last reload failed: the config loaded
	// at LoadedAt stays in force, and LastReloadError says why.
	LastReloadOK    bool   `json:"last_reload_ok"`
	LastReloadError string `json:"last_reload_error,omitempty"`
	// FileChanged: the files differ from the running config; a reload
	// (systemctl reload grantwatch) would apply them, or say what is wrong.
	FileChanged bool `json:"file_changed"`
}

// SecretExpiry is a provider's client secret about to expire.
type SecretExpiry struct {
	Provider  string    `json:"provider"`
	ExpiresAt time.Time `json:"expires_at"`
	// Expired: the secret is past its expiry.
	Expired bool `json:"expired,omitempty"`
}

// ParseWithin reads a time span as `grants list --expiring` and the
// expiring query parameter take it: a Go duration ("36h") or a number of
// days ("7d").
func ParseWithin(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil || days < 0 || days > 100*365 {
			return 0, fmt.Errorf("%q: want a number of days such as 7d, or a duration such as 36h", s)
		}
		return time.Duration(days * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a number of days such as 7d, or a duration such as 36h", s)
	}
	return d, nil
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

// ReconnectLink is a hosted reconnect link (grants link, POST
// /v1/grants/{id}/reconnect_link): the URL to give the grant's user. The
// URL is the only copy of the link's secret. The JSON names are part of
// grantwatch's interface.
type ReconnectLink struct {
	URL       string    `json:"url"`
	GrantID   string    `json:"grant_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RemoveResult is what a bulk `grants rm` removed.
type RemoveResult struct {
	Removed int `json:"removed"`
	// Missing counts the ids named that held no grant.
	Missing int `json:"missing,omitempty"`
}

// CheckProgress is one line of the database check's answer: the check is
// still running, or (Final) its outcome.
type CheckProgress struct {
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	Final          bool    `json:"final,omitempty"`
	OK             bool    `json:"ok,omitempty"`
	// Damaged reports that the check found damage (Error lists it), as
	// opposed to a check that could not run.
	Damaged bool   `json:"damaged,omitempty"`
	Error   string `json:"error,omitempty"`
}

// ErrorBody is the body of every non-2xx answer.
type ErrorBody struct {
	Error string `json:"error"`
}
