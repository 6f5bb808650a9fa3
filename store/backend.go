package store

import (
	"fmt"
	"time"
)

// What another backend (store/etcd) needs of this package to keep the same
// records with the same rules: the record codec, the sealing (AES-256-GCM
// with the same additional data: version ‖ row ‖ seal sequence ‖ grant id),
// the seal sequence a Grant carries unexported, and the pure parts of
// Import, SetToken and Apply. The daemon never calls these.

// EncodeGrant is the binary grant record (codec.go), seal sequence
// included; Row is not part of it.
func EncodeGrant(g *Grant) []byte { return encodeGrant(g) }

// DecodeGrant reads a record EncodeGrant (or an older version) wrote; the
// caller sets Row.
func DecodeGrant(v []byte, g *Grant) error { return decodeGrant(v, g) }

// EncodeHistory and DecodeHistory are the history entry's binary record.
func EncodeHistory(e *HistoryEntry) []byte { return encodeHistory(e) }

// DecodeHistory reads what EncodeHistory wrote.
func DecodeHistory(v []byte, e *HistoryEntry) error { return decodeHistory(v, e) }

// CheckName refuses an empty name or one with a NUL byte (ids, providers,
// receivers: the NUL byte separates them in keys).
func CheckName(what, s string) error { return checkName(what, s) }

// CheckImport validates grants to import before anything is written, as
// Import does.
func CheckImport(gs []NewGrant) error { return checkImport(gs) }

// Sealer seals and opens tokens and the key canary with one key, as a DB
// does.
type Sealer struct{ ring *keyring }

// NewSealer returns a Sealer for a KeySize-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	k, err := newSealKey(key)
	if err != nil {
		return nil, err
	}
	return &Sealer{ring: newKeyring(k)}, nil
}

// Fingerprint is KeyFingerprint of the key.
func (s *Sealer) Fingerprint() string { return s.ring.seal.fingerprint() }

// SealToken seals token for g, bound to g.Row, g's seal sequence and g.ID:
// call it after NewSeal, with the record written in the same transaction.
func (s *Sealer) SealToken(g *Grant, token []byte) []byte { return s.ring.sealToken(g, token) }

// OpenToken opens the token sealed for g as read (Row and seal sequence).
func (s *Sealer) OpenToken(g *Grant, rec []byte) ([]byte, error) { return s.ring.openToken(g, rec) }

// Canary is a new sealed canary; OpenCanary reports whether one opens with
// this key.
func (s *Sealer) Canary() []byte { return s.ring.sealCanary() }

// OpenCanary reports whether rec is a canary sealed with this key.
func (s *Sealer) OpenCanary(rec []byte) bool { return s.ring.openCanary(rec) }

// WrongKeyError is ErrWrongKey for the store at where, sealed with the key
// of fingerprint stored ("" when unknown), opened with s's key.
func WrongKeyError(where, stored string, s *Sealer) error {
	if stored == "" {
		stored = "unknown"
	}
	return fmt.Errorf("open %s: %w: it was sealed with key %s, the configured key is %s; configure the key file it was created with", where, ErrWrongKey, stored, s.Fingerprint())
}

// ImportedGrant is the record Import writes for ng: old is the stored
// record (nil for a new grant, then firstGen is its TokenGen: one above
// the highest TokenGen removed), row its row. The grant's seal sequence is
// raised: seal ng's token for the result.
func ImportedGrant(old *Grant, ng *NewGrant, row uint64, now time.Time, firstGen uint64) (Grant, HistoryEntry) {
	g := Grant{
		ID:             ng.ID,
		Provider:       ng.Provider,
		Subject:        ng.Subject,
		Labels:         ng.Labels,
		State:          StatePending,
		CreatedAt:      now,
		StateChangedAt: now,
		NextDueAt:      now,
		TokenGen:       firstGen,
		ConsentAt:      now, // a new token chain: no forecast until it is probed
		Row:            row,
	}
	if ng.Observe {
		g.NextDueAt = time.Time{} // its app refreshes it, never grantwatch
	}
	h := HistoryEntry{At: now, To: StatePending, Note: "token imported"}
	if old != nil {
		g.CreatedAt = old.CreatedAt
		g.LastProbeAt = old.LastProbeAt
		g.LastSuccessAt = old.LastSuccessAt
		g.TokenGen = old.TokenGen + 1
		g.sealSeq = old.sealSeq
		g.PreviousState, g.PreviousCause = replacedProblem(*old)
		if old.State == StatePending {
			g.StateChangedAt = old.StateChangedAt
		}
		h.From = old.State
	}
	g.sealSeq++
	return g, h
}

// TokenReplaced is the record SetToken writes over old, and its history
// entry. The seal sequence is raised: seal the new token for the result.
func TokenReplaced(old Grant, now time.Time) (Grant, HistoryEntry) {
	g := old
	g.State = StatePending
	g.PreviousState, g.PreviousCause = replacedProblem(old)
	g.Cause, g.Action, g.Error, g.ErrorDescription = "", "", "", ""
	g.Failures = 0
	// What the old token went through says nothing of the new one.
	g.LostAnswer, g.Rotated, g.ReuseDetected = false, false, false
	g.TokenGen++
	g.sealSeq++
	g.NextDueAt = now
	// A new token chain: what was known of the old one's lifetime and
	// answers does not hold for it; its first probe forecasts anew.
	g.Unreadable, g.ConsentAt, g.AnnouncedExpiresAt = 0, now, time.Time{}
	g.ExpiresAt, g.ExpiresBasis, g.ExpiryWarned = time.Time{}, "", false
	if old.State != StatePending {
		g.StateChangedAt = now
	}
	return g, HistoryEntry{At: now, From: old.State, To: StatePending, Note: "token replaced"}
}

// ChangedGrant is the record Apply writes for ch over cur: ch.Grant with
// cur's id, row and seal sequence (raised when ch rotates the token) and
// Rotated kept by the store, or the error that makes the Change unwritable
// (invalid state, empty provider, receiver or meta key), found before
// anything is written.
func ChangedGrant(cur Grant, ch *Change) (Grant, error) {
	g := ch.Grant
	g.ID, g.Row, g.sealSeq = cur.ID, cur.Row, cur.sealSeq
	// Whether the token rotated since it was stored from outside is the
	// store's to know, not the caller's.
	g.Rotated = cur.Rotated || !ch.NewToken.IsZero()
	if err := checkChange(&g, ch); err != nil {
		return Grant{}, err
	}
	if !ch.NewToken.IsZero() {
		g.sealSeq++
	}
	return g, nil
}

// AddConflict counts old, stored under id, among the grants an import
// would replace.
func (c *Conflicts) AddConflict(id string, old Grant) { c.add(id, old) }

// Watched is what the watch indexes hold of g: its forecast (zero: none)
// and whether it is in the unreadable index.
func Watched(g *Grant) (expiresAt time.Time, unreadable bool) {
	return g.ExpiresAt, g.Unreadable >= UnreadableAfter
}
