package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// rekeyChunk is how many tokens Rekey walks per transaction.
var rekeyChunk = 10_000 // a var for tests

// Meta records of the sealing key's history, as JSON rekeyRecords.
var (
	keyRekey   = []byte("rekey")   // a Rekey under way or interrupted
	keyRekeyed = []byte("rekeyed") // the last Rekey that finished
)

type rekeyRecord struct {
	From      string    `json:"from"`
	To        string    `json:"to"`
	StartedAt time.Time `json:"started_at"`
	DoneAt    time.Time `json:"done_at,omitzero"`
}

func readRekey(meta *bolt.Bucket, key []byte) (*rekeyRecord, error) {
	v := meta.Get(key)
	if v == nil {
		return nil, nil
	}
	var r rekeyRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("meta %s: %w", key, err)
	}
	return &r, nil
}

func putRekey(meta *bolt.Bucket, key []byte, r *rekeyRecord) error {
	v, err := json.Marshal(r)
	if err == nil {
		err = meta.Put(key, v)
	}
	if err != nil {
		return fmt.Errorf("write meta %s: %w", key, err)
	}
	return nil
}

// KeyInfo describes the database's sealing key, for doctor. Fingerprints
// are KeyFingerprint's; none reveals a key.
type KeyInfo struct {
	// Fingerprint names the key the canary is sealed with: the key to
	// configure.
	Fingerprint string `json:"fingerprint"`
	// RekeyedFrom and RekeyedAt tell the last Rekey that finished: the key
	// before it, and when it finished. Empty if there was none.
	RekeyedFrom string    `json:"rekeyed_from,omitempty"`
	RekeyedAt   time.Time `json:"rekeyed_at,omitzero"`
	// RekeyTo and RekeySince tell a Rekey under way, or interrupted: the
	// key it seals with, and when it began. Empty if there is none.
	RekeyTo    string    `json:"rekey_to,omitempty"`
	RekeySince time.Time `json:"rekey_since,omitzero"`
}

// KeyInfo returns the state of the sealing key.
func (db *DB) KeyInfo() (KeyInfo, error) {
	var ki KeyInfo
	err := db.view(func(b *bkts) error {
		ki.Fingerprint = string(b.meta.Get(keyKeyID))
		done, err := readRekey(b.meta, keyRekeyed)
		if err != nil {
			return err
		}
		if done != nil {
			ki.RekeyedFrom, ki.RekeyedAt = done.From, done.DoneAt
		}
		pending, err := readRekey(b.meta, keyRekey)
		if pending != nil {
			ki.RekeyTo, ki.RekeySince = pending.To, pending.StartedAt
		}
		return err
	})
	if err != nil {
		return KeyInfo{}, fmt.Errorf("read key state of %s: %w", db.path, err)
	}
	return ki, nil
}

// Rekey re-seals every sealed token, and then the canary, under newKey, and
// records the old key's fingerprint and the time (KeyInfo). It may run
// while the database is in use: tokens are walked in transactions of
// 10,000, and from its start every new seal (import, set-token, rotation)
// uses newKey. progress, if not nil, is called after each transaction
// with the tokens walked so far and the number of grants.
//
// Interrupted (a crash, an error), Rekey leaves a database that opens with
// the old key and newKey together (ErrRekeyPending until both are given,
// Options.NewKey) and is finished by calling Rekey again with newKey. It
// ends atomically: the last transaction checks that every token is sealed
// with newKey (sealing any that is not) and swaps the canary, so the
// database is sealed with newKey exactly when the canary says so. newKey
// must therefore be durable (its key file written and synced) before Rekey
// is called; the caller replaces the configured key file after Rekey
// returns nil. Until it has, the database opens with newKey as Key, or
// with the old key as Key and newKey as Options.NewKey.
//
// A token that does not open (damaged) stops Rekey before the swap, named
// in the error: replace it (SetToken) or remove its grant and call Rekey
// again. Rekey to the key the database is sealed with, with no rekey
// pending, does nothing. Records sealed the pre-version-1 way are
// converted.
func (db *DB) Rekey(newKey []byte, progress func(done, total int)) error {
	nk, err := newSealKey(newKey)
	if err != nil {
		return fmt.Errorf("rekey %s: %w", db.path, err)
	}
	if !db.rekeyMu.TryLock() {
		return fmt.Errorf("rekey %s: another rekey is running", db.path)
	}
	defer db.rekeyMu.Unlock()

	var rec rekeyRecord
	total := 0
	err = db.update(func(b *bkts) error {
		pending, err := readRekey(b.meta, keyRekey)
		if err != nil {
			return err
		}
		switch {
		case pending == nil && string(b.meta.Get(keyKeyID)) == nk.fingerprint():
			return errNothing
		case pending == nil:
			rec = rekeyRecord{From: string(b.meta.Get(keyKeyID)), To: nk.fingerprint(), StartedAt: time.Now().UTC()}
			if err := putRekey(b.meta, keyRekey, &rec); err != nil {
				return err
			}
		case pending.To != nk.fingerprint():
			return fmt.Errorf("%w: the rekey to %s that began at %s must finish first: run it again with that key",
				ErrRekeyPending, pending.To, pending.StartedAt.Format(time.RFC3339))
		default:
			rec = *pending
		}
		total = countGrants(b)
		return nil
	})
	if errors.Is(err, errNothing) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rekey %s: %w", db.path, err)
	}

	// From here on every seal uses the new key, and tokens of both open.
	// Writes are serialised: a transaction that sealed with the old ring
	// committed before the walk's first one begins, so the walk sees it.
	old := db.keys.Load()
	ring := &keyring{seal: nk, open: []*sealKey{nk}, legacy: old.legacy}
	for _, k := range old.open {
		if k.tag != nk.tag {
			ring.open = append(ring.open, k)
		}
	}
	db.keys.Store(ring)

	done := 0
	var after uint64
	var failed []error
	for more := true; more; {
		err := db.update(func(b *bkts) error {
			var n int
			var err error
			after, n, failed, err = reseal(b, ring, nk, after, rekeyChunk, true, failed)
			done += n
			more = n == rekeyChunk
			return err
		})
		if err != nil {
			return fmt.Errorf("rekey %s: %w", db.path, err)
		}
		if progress != nil {
			progress(done, max(total, done))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("rekey %s: %d tokens do not open, the rest are sealed with %s (the rekey is not finished; "+
			"replace these tokens or remove their grants, then run it again): %w", db.path, len(failed), nk.fingerprint(), errors.Join(failed...))
	}

	err = db.update(func(b *bkts) error {
		// Everything walked is sealed with the new key; this pass finds
		// what a write sealed otherwise meanwhile (nothing, if writes
		// went as above), so that the swap below tells the truth.
		_, _, failed, err := reseal(b, ring, nk, 0, 0, false, nil)
		if err != nil {
			return err
		}
		if len(failed) > 0 {
			return errors.Join(failed...)
		}
		if err := b.meta.Put(keyCanary, ring.sealCanary()); err != nil {
			return err
		}
		if err := b.meta.Put(keyKeyID, []byte(nk.fingerprint())); err != nil {
			return err
		}
		rec.DoneAt = time.Now().UTC()
		if err := putRekey(b.meta, keyRekeyed, &rec); err != nil {
			return err
		}
		return b.meta.Delete(keyRekey)
	})
	if err != nil {
		return fmt.Errorf("rekey %s: %w", db.path, err)
	}
	// Every record is sealed with the new key. A reader loads its ring
	// before its snapshot: one that begins after this sees only such
	// records; one that began before holds the wide ring.
	db.keys.Store(&keyring{seal: nk, open: []*sealKey{nk}})
	return nil
}

// reseal seals with nk the tokens of rows after after not sealed with it
// yet, up to limit rows walked (0: all), and converts pre-version-1 records
// (the grant's seal sequence becomes 1). Tokens that do not open are added
// to failed and left. It returns the last row walked and how many it walked.
//
// A record is judged by its key tag; exact, also by its grant's seal
// sequence, for a pre-version-1 record (random bytes where the tag would
// be) that happens to begin like one of nk: a chance of 2⁻⁴⁰ a record, paid
// for by decoding every grant. Records written while a rekey runs are all
// of version 1, so the tag tells them.
func reseal(b *bkts, ring *keyring, nk *sealKey, after uint64, limit int, exact bool, failed []error) (last uint64, walked int, _ []error, _ error) {
	var rows []uint64
	grants := b.grants.Cursor()
	c := b.tokens.Cursor()
	for k, v := c.Seek(rowKey(after + 1)); k != nil && (limit == 0 || walked < limit); k, v = c.Next() {
		walked++
		last = rowOf(k)
		if len(v) >= 1+keyTagSize && v[0] == sealV1 && [keyTagSize]byte(v[1:1+keyTagSize]) == nk.tag {
			if !exact {
				continue
			}
			var g Grant
			if gk, gv := grants.Seek(k); bytes.Equal(gk, k) && decodeGrant(gv, &g) == nil && g.sealSeq > 0 {
				continue
			}
		}
		rows = append(rows, last)
	}
	// Written after the walk: a cursor does not survive writes to its bucket.
	d := counterDelta{}
	for _, row := range rows {
		g, ok, err := b.getRow(row)
		if err != nil {
			return last, walked, failed, err
		}
		if !ok {
			continue // a token without a grant: nothing opens it (Check names it)
		}
		pt, err := ring.openToken(&g, b.tokens.Get(rowKey(row)))
		if err != nil {
			failed = append(failed, fmt.Errorf("token of grant %q: %w", g.ID, err))
			continue
		}
		if g.sealSeq == 0 {
			old := g
			g.sealSeq = 1
			if err := b.putGrant(row, &old, &g, d); err != nil {
				return last, walked, failed, err
			}
		}
		if err := b.putToken(row, g.ID, ring.sealToken(&g, pt)); err != nil {
			return last, walked, failed, err
		}
	}
	return last, walked, failed, b.flushCounts(d)
}

// countGrants is the number of grants, from the counters.
func countGrants(b *bkts) int {
	n := 0
	b.counts.ForEach(func(_, v []byte) error {
		if len(v) == 8 {
			n += int(int64(binary.BigEndian.Uint64(v)))
		}
		return nil
	})
	return n
}

// openRing returns the keyring to open a database with, given its meta
// bucket: the configured key's, or while a Rekey is pending, one holding
// the new key too (which then seals), or ErrRekeyPending without it.
func openRing(meta *bolt.Bucket, path string, r *keyring, newKey []byte) (*keyring, error) {
	pending, err := readRekey(meta, keyRekey)
	if err != nil {
		return nil, corruptError(path, err)
	}
	if pending == nil {
		return r, nil
	}
	since := pending.StartedAt.Format(time.RFC3339)
	if newKey == nil {
		return nil, fmt.Errorf("open %s: %w: the rekey from %s to %s that began at %s was interrupted; open with the new key as well and run the rekey again to finish it",
			path, ErrRekeyPending, pending.From, pending.To, since)
	}
	nk, err := newSealKey(newKey)
	if err != nil {
		return nil, fmt.Errorf("open %s: new %w", path, err)
	}
	if nk.fingerprint() != pending.To {
		return nil, fmt.Errorf("open %s: %w: the rekey that began at %s was to key %s, the new key given is %s",
			path, ErrRekeyPending, since, pending.To, nk.fingerprint())
	}
	return &keyring{seal: nk, open: []*sealKey{nk, r.seal}, legacy: r.legacy}, nil
}

// wrongKeyError is ErrWrongKey for a canary that key does not open, with
// what the key records say about it.
func wrongKeyError(meta *bolt.Bucket, path string, key *sealKey) error {
	stored := string(meta.Get(keyKeyID))
	if stored == "" {
		stored = "unknown"
	}
	hint := "configure the key file it was created with"
	if done, _ := readRekey(meta, keyRekeyed); done != nil && done.From == key.fingerprint() {
		hint = fmt.Sprintf("it was rekeyed from that key to %s at %s: configure the new key file", done.To, done.DoneAt.Format(time.RFC3339))
	}
	if pending, _ := readRekey(meta, keyRekey); pending != nil && pending.To == key.fingerprint() {
		hint = fmt.Sprintf("a rekey from %s to this key was interrupted: open with %s as the key and this one as the new key, and run the rekey again", pending.From, pending.From)
	}
	return fmt.Errorf("open %s: %w: it was sealed with key %s, the configured key is %s; %s", path, ErrWrongKey, stored, key.fingerprint(), hint)
}
