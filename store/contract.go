package store

import (
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// Store is the store contract: everything the daemon's runtime, its control
// API and the broker ask of grantwatch's state. *DB (bbolt, one file, the
// default) implements it; store/etcd implements it on an etcd cluster. The
// types it speaks (Grant, Change, ApplyItem, OutboxEntry, …) and the sentinel
// errors (ErrNotFound, …) are this package's, whatever the backend; the
// conformance suite in store/storetest holds every backend to the semantics
// written here and on *DB's methods.
//
// Methods a backend cannot make atomic across a whole call say what is
// atomic instead (ApplyAll: each item). Operations of one backend only
// (bbolt's Backup, Check, Compact, Rekey) are not part of it: callers that
// need them assert the concrete type.
type Store interface {
	// Grants.

	// Get returns the grant with the given id; ErrNotFound when absent.
	Get(id string) (Grant, error)
	// GetLease returns a grant with its unsealed token, its due time
	// unchanged (a probe on request).
	GetLease(id string) (Lease, error)
	// History returns the grant's history, oldest first, at most the
	// backend's history limit; ErrNotFound when there is no such grant.
	History(id string) ([]HistoryEntry, error)
	// Each calls fn for every grant in id order, a page at a time, fn
	// outside any transaction (it may write); fn's error stops the walk.
	Each(fn func(Grant) error) error
	// EachInState is Each for the grants in state (of provider, unless
	// ""), O(matching grants): order provider, then creation. (etcd
	// indexes only reconnect_required, on_hold and degraded grants:
	// healthy and pending ones, most of a fleet, are found by a scan.)
	EachInState(state State, provider string, fn func(Grant) error) error
	// Counts returns provider → state → number of grants, without a scan.
	Counts() (map[string]map[State]int, error)
	// Import stores new grants and replaces the tokens of existing ones
	// as opts allow (DB.Import): TokenGen raised, state pending, due now
	// (an Observe grant: not due); a grant opts do not allow replacing
	// (ErrExists, ErrRotated) fails the whole call, naming them.
	Import(gs []NewGrant, now time.Time, opts ImportOptions) (created, replaced int, err error)
	// ImportConflicts names which of gs exist and which of those have a
	// token rotated since it was stored from outside (Grant.Rotated),
	// without writing.
	ImportConflicts(gs []NewGrant) (Conflicts, error)
	// SetToken stores a new token for id (set-token, reconnect): TokenGen
	// raised, state pending, due now.
	SetToken(id string, tok secret.Secret, now time.Time) (Grant, error)
	// Remove deletes a grant and everything stored for it.
	Remove(id string) error
	// RemoveIDs and RemoveWhere remove many grants (DB.RemoveIDs,
	// DB.RemoveWhere), in chunks, returning how many went.
	RemoveIDs(ids []string) (int, error)
	RemoveWhere(state State, provider string) (int, error)

	// The watch indexes (watch.go): per provider, the grants' forecasts in
	// time order and the grants whose answers no rule reads
	// (Unreadable ≥ UnreadableAfter), kept by every write of a grant, so
	// that status, the metrics and `grants list --expiring` read only the
	// matching grants, never the fleet.

	// ExpiringCounts returns provider → grants forecast to die at or
	// before t (Grant.ExpiresAt), O(providers + matching).
	ExpiringCounts(t time.Time) (map[string]int, error)
	// EachExpiring calls fn for every grant forecast to die at or before t
	// (of provider, unless ""), provider by provider, soonest first.
	EachExpiring(t time.Time, provider string, fn func(Grant) error) error
	// UnreadableCounts returns provider → grants in the unreadable index.
	UnreadableCounts() (map[string]int, error)
	// EachUnreadable calls fn for every grant in the unreadable index (of
	// provider, unless ""), by provider.
	EachUnreadable(provider string, fn func(Grant) error) error

	// The due index.

	// Due returns up to limit grants due at or before now, earliest due
	// time first (ties in creation order), with unsealed tokens; take
	// passes over grants the caller holds. A read: nothing moves.
	Due(now time.Time, limit int, take func(row uint64) bool) ([]Lease, error)
	// NextDue returns the earliest due time; ok false when none is due
	// ever.
	NextDue() (at time.Time, ok bool, err error)
	// Reschedule makes the grants in state (of provider and with cause,
	// when non-empty) due at at.
	Reschedule(at time.Time, state State, provider, cause string) (int, error)

	// Probe results: the atomic unit.

	// Apply stores one result: fn gets the grant as stored and returns
	// the Change, which is written all together or not at all. fn must
	// be a pure function of cur: a backend may run it again (bbolt's
	// Batch, etcd's retry after a conflicting write), and the last run's
	// Change counts.
	Apply(id string, fn func(cur Grant) (Change, error)) error
	// ApplyAll stores a group of results. Each item's Change is atomic
	// and was computed from the grant as it stood when the Change was
	// written: a write of the grant in between (set-token, import) makes
	// the backend run Fn again on the new record, so a TokenGen check in
	// Fn drops a stale result. errs[i] is item i's own problem (it is
	// unwritten, the others written); err is a failure that wrote
	// nothing. A backend that must split a group into several
	// transactions (etcd's limits) reports the failure of a later part in
	// the errs of its items only.
	ApplyAll(items []ApplyItem) (errs []error, err error)

	// The outbox and dead letters (the dispatcher's notify.Outbox).

	Enqueue(entries ...OutboxEntry) error
	PendingOutbox(receiver string, limit int) ([]OutboxEntry, error)
	UpdateOutbox(entries ...OutboxEntry) error
	AckOutbox(receiver string, seqs ...uint64) error
	DeadLetter(receiver, reason string, seqs ...uint64) error
	// DeadLetters calls fn for each dead letter, by receiver then Seq; fn
	// must not write.
	DeadLetters(fn func(OutboxEntry) error) error
	OutboxStats() (pending int, oldest time.Time, err error)
	Redeliver(receiver string, seqs []uint64, now time.Time) (int, error)

	// Daemon state that survives a restart (provider and clock states).

	GetMeta(key string) ([]byte, error)
	PutMeta(key string, val []byte) error

	// Resumable imports (DB.BeginImport and the rest).

	BeginImport(job ImportJob) (ImportJob, error)
	ImportBatch(id string, from, lines int, gs []NewGrant, now time.Time, opts ImportOptions) (ImportJob, error)
	PendingImports() ([]ImportJob, error)
	FinishImport(id string) (ImportJob, error)
	AbortImport(id string) (ImportJob, error)

	// App keys (grantwatch keys; the broker and the TCP API check them):
	// stored as the key's hash, never the key. A name is one key and a key
	// one name (ErrExists); RevokeAppKey of an unknown name is ErrNotFound;
	// AppKeys lists them by name.

	CreateAppKey(k AppKey) error
	AppKeys() ([]AppKey, error)
	RevokeAppKey(name string) error

	// Hosted reconnect links (links.go): only a link's hash is stored.

	// CreateLink stores a link for l.GrantID under hash (LinkHash of its
	// secret); ErrNotFound when the grant does not exist. Records of
	// links expired more than LinkKeep before now may be deleted.
	CreateLink(hash []byte, l Link, now time.Time) error
	// Link returns the link under hash: ErrNotFound when there is none or
	// its grant is gone (removed, even if imported again), ErrLinkUsed or
	// ErrLinkExpired, with the record, when it cannot be used at now.
	Link(hash []byte, now time.Time) (Link, error)
	// UseLink marks the link used at now, atomically: of concurrent
	// callers one succeeds, the others get ErrLinkUsed. It fails as Link
	// does and leaves the link unused then.
	UseLink(hash []byte, now time.Time) (Link, error)

	// Path names where the store lives, for logs and status: the bbolt
	// file's path, or the etcd endpoints and prefix. Never a secret.
	Path() string
	// Close releases the store; safe to call more than once.
	Close() error
}

// *DB is the bbolt backend.
var _ Store = (*DB)(nil)
