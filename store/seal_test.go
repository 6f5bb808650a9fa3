package store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "grantwatch.key")
	if _, err := LoadKey(path, false); err == nil {
		t.Error("LoadKey(missing, create=false): nil error")
	}
	k1, err := LoadKey(path, true)
	if err != nil || len(k1) != KeySize {
		t.Fatalf("LoadKey(create) = %d bytes, %v", len(k1), err)
	}
	if mode, err := KeyFileMode(path); err != nil || mode != 0o600 {
		t.Errorf("KeyFileMode = %o, %v; want 600", mode, err)
	}
	k2, err := LoadKey(path, true)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("second LoadKey returned another key (%v)", err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".grantwatch-key-*")); len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}

	raw := bytes.Repeat([]byte{0xab}, KeySize)
	tests := []struct {
		name    string
		content string
		wantErr bool
	}{
		{"raw 32 bytes", string(raw), false},
		{"hex with newline", "abababababababababababababababababababababababababababababababab\n", false},
		{"base64", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=", false},
		{"base64 unpadded, spaces", "  q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s \n", false},
		{"16 bytes of base64", "q6urq6urq6urq6urq6urqw==", true},
		{"31 raw bytes", string(raw[:31]), true},
		{"empty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "k")
			os.WriteFile(p, []byte(tt.content), 0o600)
			k, err := LoadKey(p, true)
			if tt.wantErr {
				if !errors.Is(err, errKeySize) {
					t.Errorf("LoadKey = %v, want a key size error", err)
				}
				if got, _ := os.ReadFile(p); string(got) != tt.content {
					t.Error("a bad key file was overwritten")
				}
				return
			}
			if err != nil || !bytes.Equal(k, raw) {
				t.Errorf("LoadKey = %x, %v; want %x", k, err, raw)
			}
		})
	}
}

// TestRolledBackTokenIsRefused: a grant's older sealed token put back in
// place of the current one does not open, whichever write replaced it.
func TestRolledBackTokenIsRefused(t *testing.T) {
	tests := []struct {
		name    string
		replace func(t *testing.T, db *DB)
	}{
		{"set-token", func(t *testing.T, db *DB) {
			if _, err := db.SetToken("g0001", "newer", t0); err != nil {
				t.Fatal(err)
			}
		}},
		// Rotation does not change TokenGen: the seal sequence tells.
		{"rotation", func(t *testing.T, db *DB) {
			if err := db.Apply("g0001", func(cur Grant) (Change, error) {
				cur.State = StateHealthy
				return Change{Grant: cur, NewToken: "newer"}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}},
		{"re-import", func(t *testing.T, db *DB) {
			if _, _, err := db.Import([]NewGrant{{ID: "g0001", Provider: "google", RefreshToken: "newer"}}, t0, replaceAll); err != nil {
				t.Fatal(err)
			}
		}},
		// A new grant of the same id: a new row, and its sequence starts
		// again at 1.
		{"remove and import", func(t *testing.T, db *DB) {
			if err := db.Remove("g0001"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := db.Import([]NewGrant{{ID: "g0001", Provider: "google", RefreshToken: "newer"}}, t0, replaceAll); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openTest(t, Options{})
			importN(t, db, 3, "google", t0)
			_, old := sealedToken(t, db, "g0001")
			tt.replace(t, db)
			if l, err := db.GetLease("g0001"); err != nil || l.Token != "newer" {
				t.Fatalf("before the rollback: %q, %v", l.Token, err)
			}
			g, _ := sealedToken(t, db, "g0001")
			db.update(func(b *bkts) error { return b.tokens.Put(rowKey(g.Row), old) })
			if l, err := db.GetLease("g0001"); err == nil {
				t.Errorf("the rolled-back token opened: %q", l.Token)
			}
			ls, err := db.Due(t0.Add(time.Hour), 0, nil)
			if err == nil || !strings.Contains(err.Error(), `"g0001"`) || leaseIDs(ls) != "g0000 g0002" {
				t.Errorf("Due = %s, %v; want the others and an error naming g0001", leaseIDs(ls), err)
			}
		})
	}
}

// downgradeToV1 rewrites the database at path as grantwatch wrote schema
// version 1: grant records without seal sequence, tokens and canary sealed
// the version-0 way (nonce ‖ ciphertext, additional data the grant id).
func downgradeToV1(t *testing.T, path string, key []byte) {
	t.Helper()
	aead, err := newSealKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sealV0 := func(pt, ad string) []byte {
		out := make([]byte, nonceSize)
		rand.Read(out)
		return aead.aead.Seal(out, out, []byte(pt), []byte(ad))
	}
	ring := newKeyring(aead)
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := bdb.Update(func(tx *bolt.Tx) error {
		b := buckets(tx)
		var rows [][]byte
		b.grants.ForEach(func(k, _ []byte) error { rows = append(rows, clone(k)); return nil })
		for _, k := range rows {
			g, _, err := b.getRow(rowOf(k))
			if err != nil {
				return err
			}
			pt, err := ring.openToken(&g, b.tokens.Get(k))
			if err != nil {
				return err
			}
			b.grants.Put(k, encodeGrantV1(&g))
			b.tokens.Put(k, sealV0(string(pt), g.ID))
		}
		// Schema 1 had no watch indexes (version-1 records no forecast).
		for _, name := range [][]byte{bucketExpiry, bucketUnread} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		b.meta.Put(keyCanary, sealV0(canaryAD, canaryAD))
		return b.meta.Put(keySchema, []byte("1"))
	}); err != nil {
		t.Fatal(err)
	}
}

// TestSealedBeforeV1AreRead: a schema-1 file opens with its key, is marked
// schema 2, and its tokens read; a token sealed anew is sealed the
// version-1 way, and then its old ciphertext put back is refused.
func TestSealedBeforeV1AreRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db := openAt(t, path, Options{})
	importN(t, db, 3, "google", t0)
	db.Close()
	downgradeToV1(t, path, testKey)

	db = openAt(t, path, Options{})
	var schema string
	db.view(func(b *bkts) error { schema = string(b.meta.Get(keySchema)); return nil })
	if schema != strconv.Itoa(SchemaVersion) {
		t.Errorf("schema after Open = %q, want %d", schema, SchemaVersion)
	}
	ls, err := db.Due(t0, 0, nil)
	if err != nil || len(ls) != 3 || ls[0].Token != "rt-0" || ls[2].Token != "rt-2" {
		t.Fatalf("Due = %+v, %v; want the three version-0 tokens", ls, err)
	}
	_, old := sealedToken(t, db, "g0001")
	if _, err := db.SetToken("g0001", "newer", t0); err != nil {
		t.Fatal(err)
	}
	g, sealed := sealedToken(t, db, "g0001")
	if g.sealSeq != 1 || sealed[0] != sealV1 {
		t.Errorf("after SetToken: sealSeq %d, record version %d; want 1, 1", g.sealSeq, sealed[0])
	}
	if l, err := db.GetLease("g0001"); err != nil || l.Token != "newer" {
		t.Errorf("GetLease = %q, %v", l.Token, err)
	}
	db.update(func(b *bkts) error { return b.tokens.Put(rowKey(g.Row), old) })
	if _, err := db.GetLease("g0001"); err == nil {
		t.Error("the version-0 ciphertext put back opened")
	}
	// The others still read after a reopen, and a wrong key is still told.
	db.Close()
	if _, err := Open(path, Options{Key: otherKey}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("Open with another key: %v, want ErrWrongKey", err)
	}
	db = openAt(t, path, Options{})
	if l, err := db.GetLease("g0002"); err != nil || l.Token != "rt-2" {
		t.Errorf("GetLease(g0002) after reopen = %q, %v", l.Token, err)
	}
}
