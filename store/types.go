package store

import (
	"errors"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// State is a grant's state (DESIGN.md "States"). The names are part of
// grantwatch's interface.
type State string

// The grant states.
const (
	StatePending           State = "pending"            // never probed since its token was stored
	StateHealthy           State = "healthy"            // the last probe succeeded
	StateDegraded          State = "degraded"           // transient failures past the threshold
	StateReconnectRequired State = "reconnect_required" // terminal until a new token is stored
	StateOnHold            State = "on_hold"            // provider or clock at fault; Cause says which
)

// States lists every state in display order.
func States() []State {
	return []State{StatePending, StateHealthy, StateDegraded, StateReconnectRequired, StateOnHold}
}

// Valid reports whether s is one of the states.
func (s State) Valid() bool {
	for _, v := range States() {
		if s == v {
			return true
		}
	}
	return false
}

// Errors callers branch on. Errors returned by DB wrap them with the file's
// path and what to do.
var (
	ErrNotFound    = errors.New("not found")
	ErrInUse       = errors.New("database is in use by another grantwatch")
	ErrWrongKey    = errors.New("secrets key does not open this database")
	ErrNewerSchema = errors.New("database was written by a newer grantwatch")
	ErrCorrupt     = errors.New("database file is damaged")
	// ErrRekeyPending is a Rekey that began and did not finish: some
	// tokens are sealed with the new key, the others and the canary with
	// the old one. Open with both keys (Options.Key the old, Options.NewKey
	// the new) and call Rekey with the new key again to finish.
	ErrRekeyPending = errors.New("a rekey of the secrets key did not finish")
	// ErrImportOffset is an ImportBatch that does not start at the line its
	// job has committed up to: a batch sent again after its commit landed,
	// or lines skipped. The job's Committed says where to go on.
	ErrImportOffset = errors.New("import batch does not start where its job stands")
	// ErrRotated is an import that would replace a token the provider
	// rotated since it was stored from outside, without
	// ImportOptions.Force; one that would replace an existing grant's
	// token without ImportOptions.Replace is ErrExists (appkeys.go). Both
	// come as a *ConflictError naming the grants.
	ErrRotated = errors.New("token rotated since it was imported")
)

// Grant is one stored grant without its token. The JSON names are part of
// grantwatch's interface (grants list/show --json).
type Grant struct {
	ID               string            `json:"id"`
	Provider         string            `json:"provider"`
	Subject          string            `json:"subject,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	State            State             `json:"state"`
	Cause            string            `json:"cause,omitempty"`
	Action           string            `json:"action,omitempty"`
	Error            string            `json:"error,omitempty"`
	ErrorDescription string            `json:"error_description,omitempty"`
	// Failures counts consecutive failed probes; 0 after a success.
	Failures       int       `json:"failures"`
	CreatedAt      time.Time `json:"created_at,omitzero"`
	LastProbeAt    time.Time `json:"last_probe_at,omitzero"`
	LastSuccessAt  time.Time `json:"last_success_at,omitzero"`
	StateChangedAt time.Time `json:"state_changed_at,omitzero"`
	// NextDueAt is when the grant is next probed; zero means never (a
	// reconnect_required grant waits for a new token).
	NextDueAt time.Time `json:"next_due_at,omitzero"`
	// LostAnswer reports that the last probe's answer was lost in transit
	// (timeout or reset after sending): a provider that rotates tokens may
	// have issued a new one that never arrived.
	LostAnswer bool `json:"lost_answer,omitempty"`
	// Rotated reports that the provider rotated the token since it was last
	// stored from outside (import, set-token): a copy of the token taken
	// before then, an old export among them, is rotated away, and
	// presenting it again is reuse. The store keeps it (a rotation sets it,
	// import and set-token clear it); a Change cannot set it.
	Rotated bool `json:"rotated,omitempty"`
	// ReuseDetected reports that the grant died of a reuse of its refresh
	// token that grantwatch cannot explain (no lost answer, no token just
	// stored): someone else presented it. Set with reconnect_required
	// (grant.reuse_detected) and cleared with the next verdict or token.
	ReuseDetected bool `json:"reuse_detected,omitempty"`
	// Stale is derived when the grant is read through the daemon, never
	// stored: the grant's provider is in observe mode and its app has not
	// reported a refresh for longer than the provider's interval, so its
	// state is old news.
	Stale bool `json:"stale,omitempty"`
	// PreviousState and PreviousCause are the problem a new token replaced
	// (set-token, reconnect, or import over a reconnect_required or
	// degraded grant). They are kept until the new token's first verdict,
	// so that its recovery is announced as grant.recovered.
	PreviousState State  `json:"previous_state,omitempty"`
	PreviousCause string `json:"previous_cause,omitempty"`
	// TokenGen increases each time a token is stored from outside (import,
	// set-token, reconnect), not on rotation. A probe result whose TokenGen
	// differs from the stored one is stale and must be dropped.
	TokenGen uint64 `json:"token_gen"`
	// Unreadable counts consecutive probes answered with a 4xx that no rule
	// could read (probes.Result.Unreadable): the same grant answered so
	// again and again needs a person. 0 after any other answer; a probe
	// that got no answer leaves it as it is. At UnreadableAfter the grant
	// is announced (grant.unreadable) and listed by status.
	Unreadable int `json:"unreadable,omitempty"`
	// ConsentAt is when the grant's current refresh token chain began: its
	// import or its last set-token (a reconnect), not a rotation. An
	// absolute lifetime counts from it. Zero in records written before it
	// existed: the forecast then counts from CreatedAt.
	ConsentAt time.Time `json:"consent_at,omitzero"`
	// AnnouncedExpiresAt is when the provider said, in the last successful
	// answer, that the refresh token expires (refresh_token_expires_in,
	// x_refresh_token_expires_in, refresh_expires_in); zero when it said
	// nothing.
	AnnouncedExpiresAt time.Time `json:"announced_expires_at,omitzero"`
	// ExpiresAt is the forecast of when the refresh token dies if nothing
	// changes, and ExpiresBasis the rule that set it (the Basis* values):
	// the earliest of the provider's idle window from the last successful
	// use, its absolute lifetime from ConsentAt, the lifetime announced in
	// the last answer, a configured override and Google's 7-day Testing
	// mode. The transition computes it after every probe; zero when nothing
	// is known, or the grant is already dead (reconnect_required).
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	ExpiresBasis string    `json:"expires_basis,omitempty"`
	// ExpiryWarned reports that grant.expiring was sent for the current
	// token chain; a new chain (import, set-token) clears it.
	ExpiryWarned bool `json:"expiry_warned,omitempty"`
	// Row is where the grant is stored, set on every read and never
	// written: a grant keeps its row for life (a removed grant's row is not
	// reused), so the daemon derives the grant's phase in its interval from
	// it, and ApplyItem.Row finds the grant without the id index.
	Row uint64 `json:"-"`
	// sealSeq counts the seals of the grant's token: every write of a new
	// token (import, set-token, rotation) raises it, and it is part of the
	// token's additional data, so that an older ciphertext does not open
	// in the current one's place (seal.go). The store keeps it; a Change
	// cannot set it. 0: the token was sealed before seal version 1.
	sealSeq uint64
}

// UnreadableAfter is how many consecutive unreadable 4xx answers
// (Grant.Unreadable) make a grant a problem for a person: it is announced
// once (grant.unreadable) and kept in the store's unreadable index, which
// status reads.
const UnreadableAfter = 3

// The values of Grant.ExpiresBasis: which rule set the forecast. The names
// are part of grantwatch's interface.
const (
	// BasisIdle: the preset's idle window from the last successful use.
	// Probing keeps it alive.
	BasisIdle = "idle"
	// BasisAbsolute: the preset's maximum lifetime from consent, which no
	// refresh extends.
	BasisAbsolute = "absolute"
	// BasisAnnounced: the lifetime the provider announced in its last token
	// answer.
	BasisAnnounced = "announced"
	// BasisConfigured: the provider entry's idle_lifetime or max_lifetime.
	BasisConfigured = "configured"
	// BasisTesting: a Google app in Testing publishing status
	// (google_testing): 7 days from consent.
	BasisTesting = "testing"
)

// NewGrant is a grant to import.
type NewGrant struct {
	ID           string
	Provider     string
	Subject      string
	Labels       map[string]string
	RefreshToken secret.Secret
	// Observe marks a grant of a provider in observe mode: grantwatch never
	// refreshes it (its app reports each refresh), so it is not scheduled
	// (NextDueAt zero) and may come without a refresh token.
	Observe bool
}

// ImportOptions say which stored tokens an import may replace.
type ImportOptions struct {
	// Replace lets an import replace the token of a grant that exists;
	// without it such a grant fails the import (ErrExists).
	Replace bool
	// Force lets Replace replace a token the provider rotated since it was
	// stored from outside (Grant.Rotated); without it such a grant fails the
	// import (ErrRotated): the token imported is most likely the one
	// rotated away, and presenting it would be taken for reuse.
	Force bool
}

// Lease is a due grant handed to a worker, with its decrypted token.
type Lease struct {
	Grant Grant
	Token secret.Secret
}

// HistoryEntry is one state transition (or token replacement) of a grant.
type HistoryEntry struct {
	At               time.Time `json:"at"`
	From             State     `json:"from,omitempty"`
	To               State     `json:"to"`
	Cause            string    `json:"cause,omitempty"`
	Error            string    `json:"error,omitempty"`
	ErrorDescription string    `json:"error_description,omitempty"`
	Note             string    `json:"note,omitempty"`
}

// OutboxEntry is one event waiting for delivery to one receiver.
type OutboxEntry struct {
	// Seq is assigned by the store when the entry is enqueued; it orders the
	// outbox and identifies the entry.
	Seq      uint64 `json:"seq"`
	Receiver string `json:"receiver"`
	// GroupKey groups entries into one notification (receiver's group_by).
	GroupKey  string    `json:"group_key,omitempty"`
	Payload   []byte    `json:"payload"` // the rendered event, JSON
	CreatedAt time.Time `json:"created_at"`
	// Delivery bookkeeping, updated by the dispatcher.
	Attempts       int       `json:"attempts,omitempty"`
	NextAttemptAt  time.Time `json:"next_attempt_at,omitzero"`
	LastError      string    `json:"last_error,omitempty"`
	NotificationID string    `json:"notification_id,omitempty"`
	// DeadReason and DeadAt are set when the entry is moved to the
	// dead-letter bucket (DB.DeadLetter); empty while it is pending.
	DeadReason string    `json:"dead_reason,omitempty"`
	DeadAt     time.Time `json:"dead_at,omitzero"`
}

// Change is what a transition writes for one grant, atomically.
type Change struct {
	// Skip writes nothing (the result was stale).
	Skip bool
	// Grant is the new record. Its NextDueAt moves the due-index entry; zero
	// removes the grant from the index.
	Grant Grant
	// NewToken, when non-empty, replaces the sealed refresh token (rotation).
	NewToken secret.Secret
	// History, when non-nil, is appended to the grant's bounded history.
	History *HistoryEntry
	// Outbox entries are enqueued in the same transaction.
	Outbox []OutboxEntry
	// Meta entries are written in the same transaction (daemon state).
	Meta map[string][]byte
}

// replacedProblem is the problem a grant was in when a new token replaced
// its old one: its state and cause if it was reconnect_required or degraded,
// or the problem an earlier, still unprobed replacement recorded.
func replacedProblem(old Grant) (State, string) {
	switch old.State {
	case StateReconnectRequired, StateDegraded:
		return old.State, old.Cause
	case StatePending:
		return old.PreviousState, old.PreviousCause
	}
	return "", ""
}
