package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

var thirdKey = bytes.Repeat([]byte{11}, KeySize)

// rekeyFleet is a database at path with grants of both seal versions:
// checkFleet's, downgraded to schema 1, then some tokens sealed anew.
func rekeyFleet(t *testing.T, path string) {
	t.Helper()
	db := openAt(t, path, Options{})
	checkFleet(t, db)
	db.Close()
	downgradeToV1(t, path, testKey)
	db = openAt(t, path, Options{})
	for _, id := range []string{"g0001", "g0002", "g0030"} {
		if _, err := db.SetToken(id, secret.Secret("sealed-v1-"+id), t0); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
}

// assertSealedWith: every token record and the canary carry key's tag.
func assertSealedWith(t *testing.T, db *DB, key []byte) {
	t.Helper()
	k, _ := newSealKey(key)
	db.view(func(b *bkts) error {
		b.tokens.ForEach(func(row, v []byte) error {
			if v[0] != sealV1 || !bytes.Equal(v[1:1+keyTagSize], k.tag[:]) {
				t.Errorf("token of row %d is not sealed with %s", rowOf(row), k.fingerprint())
			}
			return nil
		})
		if c := b.meta.Get(keyCanary); !bytes.Equal(c[1:1+keyTagSize], k.tag[:]) {
			t.Errorf("canary not sealed with %s", k.fingerprint())
		}
		return nil
	})
}

func TestRekey(t *testing.T) {
	defer func(n int) { rekeyChunk = n }(rekeyChunk)
	rekeyChunk = 7
	path := filepath.Join(t.TempDir(), "g.db")
	rekeyFleet(t, path)
	db := openAt(t, path, Options{})
	want := dump(t, db)
	_, oldV0 := sealedToken(t, db, "g0005")
	_, oldV1 := sealedToken(t, db, "g0001")

	var calls []string
	start := time.Now()
	if err := db.Rekey(otherKey, func(done, total int) { calls = append(calls, fmt.Sprintf("%d/%d", done, total)) }); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(calls, " "); got != "7/40 14/40 21/40 28/40 35/40 40/40" {
		t.Errorf("progress = %s", got)
	}
	if got := dump(t, db); got != want {
		t.Errorf("after Rekey, in the same process:\n got %s\nwant %s", got, want)
	}
	assertSealedWith(t, db, otherKey)
	assertIndexesMatchScan(t, db)
	ki, err := db.KeyInfo()
	if err != nil || ki.Fingerprint != KeyFingerprint(otherKey) || ki.RekeyedFrom != KeyFingerprint(testKey) ||
		ki.RekeyedAt.Before(start.Add(-time.Second)) || ki.RekeyTo != "" {
		t.Errorf("KeyInfo = %+v, %v", ki, err)
	}
	// An old ciphertext, of either version, put back does not open: the
	// old key is gone.
	for _, old := range []struct {
		id     string
		sealed []byte
	}{{"g0005", oldV0}, {"g0001", oldV1}} {
		g, cur := sealedToken(t, db, old.id)
		db.update(func(b *bkts) error { return b.tokens.Put(rowKey(g.Row), old.sealed) })
		if _, err := db.GetLease(old.id); err == nil {
			t.Errorf("%s: a token sealed with the old key opened after Rekey", old.id)
		}
		db.update(func(b *bkts) error { return b.tokens.Put(rowKey(g.Row), cur) })
	}
	db.Close()

	_, err = Open(path, Options{Key: testKey})
	if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "rekeyed from that key to "+KeyFingerprint(otherKey)) {
		t.Errorf("Open with the old key = %v, want ErrWrongKey saying it was rekeyed", err)
	}
	// The key file not replaced yet: the old key with the new one opens
	// it, sealed with the new key.
	db = openAt(t, path, Options{Key: testKey, NewKey: otherKey})
	if got := dump(t, db); got != want {
		t.Errorf("reopened with the old key and the new:\n got %s\nwant %s", got, want)
	}
	if _, err := db.SetToken("g0009", "after", t0); err != nil {
		t.Fatal(err)
	}
	assertSealedWith(t, db, otherKey)
	db.Close()
	db = openAt(t, path, Options{Key: otherKey})
	if l, err := db.GetLease("g0009"); err != nil || l.Token != "after" {
		t.Errorf("reopened with the new key: GetLease = %q, %v", l.Token, err)
	}
	// Rekey to the key in use does nothing.
	if err := db.Rekey(otherKey, nil); err != nil {
		t.Errorf("Rekey to the same key: %v", err)
	}
	if ki2, _ := db.KeyInfo(); ki2 != ki {
		t.Errorf("KeyInfo after a no-op Rekey = %+v, want %+v", ki2, ki)
	}
}

// TestRekeyInterrupted: a Rekey stopped after its first transaction, or
// after its last before the swap, leaves a database that opens with the old
// key and the new one together (and says so without the new one), in which
// every token opens, and that a second Rekey finishes.
func TestRekeyInterrupted(t *testing.T) {
	defer func(n int) { rekeyChunk = n }(rekeyChunk)
	rekeyChunk = 7
	for _, stopAt := range []int{7, 40} {
		t.Run(fmt.Sprintf("stopped at %d of 40", stopAt), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "g.db")
			rekeyFleet(t, path)
			db := openAt(t, path, Options{})
			want := dump(t, db)
			crash := errors.New("crash")
			func() {
				defer func() {
					if r := recover(); r != crash {
						t.Fatalf("Rekey was not interrupted: %v", r)
					}
				}()
				db.Rekey(otherKey, func(done, _ int) {
					if done == stopAt {
						panic(crash) // as a crash would, after the commit
					}
				})
			}()
			db.Close()

			_, err := Open(path, Options{Key: testKey})
			for _, s := range []string{KeyFingerprint(testKey), KeyFingerprint(otherKey), "new key as well"} {
				if !errors.Is(err, ErrRekeyPending) || !strings.Contains(err.Error(), s) {
					t.Errorf("Open with the old key only = %v, want ErrRekeyPending naming %s", err, s)
				}
			}
			if _, err := Open(path, Options{Key: testKey, NewKey: thirdKey}); !errors.Is(err, ErrRekeyPending) {
				t.Errorf("Open with another new key = %v, want ErrRekeyPending", err)
			}
			if _, err := Open(path, Options{Key: otherKey}); !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "was interrupted") {
				t.Errorf("Open with the new key only = %v, want ErrWrongKey saying the rekey was interrupted", err)
			}

			db = openAt(t, path, Options{Key: testKey, NewKey: otherKey})
			if got := dump(t, db); got != want {
				t.Errorf("after the interruption:\n got %s\nwant %s", got, want)
			}
			assertIndexesMatchScan(t, db)
			if ki, _ := db.KeyInfo(); ki.RekeyTo != KeyFingerprint(otherKey) || ki.Fingerprint != KeyFingerprint(testKey) {
				t.Errorf("KeyInfo = %+v, want a rekey pending to %s", ki, KeyFingerprint(otherKey))
			}
			if err := db.Rekey(thirdKey, nil); !errors.Is(err, ErrRekeyPending) {
				t.Errorf("Rekey to a third key while one is pending = %v, want ErrRekeyPending", err)
			}
			// Written meanwhile: sealed with the new key.
			if _, err := db.SetToken("g0007", "meanwhile", t0); err != nil {
				t.Fatal(err)
			}
			if err := db.Rekey(otherKey, nil); err != nil {
				t.Fatal(err)
			}
			assertSealedWith(t, db, otherKey)
			db.Close()
			db = openAt(t, path, Options{Key: otherKey})
			if l, err := db.GetLease("g0007"); err != nil || l.Token != "meanwhile" {
				t.Errorf("GetLease(g0007) = %q, %v", l.Token, err)
			}
			assertTokensOpen(t, db)
			assertIndexesMatchScan(t, db)
		})
	}
}

// TestRekeyWhileWriting: imports, set-tokens and rotations committed while
// Rekey walks are all sealed with the new key when it ends.
func TestRekeyWhileWriting(t *testing.T) {
	defer func(n int) { rekeyChunk = n }(rekeyChunk)
	rekeyChunk = 50
	path := filepath.Join(t.TempDir(), "g.db")
	db := openAt(t, path, Options{NoSync: true})
	importN(t, db, 2000, "google", t0)
	stop := writing(t, func(i int) error {
		id := fmt.Sprintf("g%04d", (i*7919)%2000)
		var err error
		switch i % 3 {
		case 0:
			err = db.Apply(id, func(cur Grant) (Change, error) { return Change{Grant: cur, NewToken: "rot"}, nil })
		case 1:
			_, err = db.SetToken(id, "set", t0)
		case 2:
			_, _, err = db.Import([]NewGrant{{ID: fmt.Sprintf("new%d", i), Provider: "google", RefreshToken: "imp"}}, t0, replaceAll)
		}
		return err
	})
	err := db.Rekey(otherKey, nil)
	stop()
	if err != nil {
		t.Fatal(err)
	}
	assertSealedWith(t, db, otherKey)
	db.Close()
	db = openAt(t, path, Options{Key: otherKey})
	assertTokensOpen(t, db)
	assertIndexesMatchScan(t, db)
}

// TestRekeyDamagedToken: a token that does not open stops Rekey before the
// swap, named in the error; replaced, the next Rekey finishes.
func TestRekeyDamagedToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db := openAt(t, path, Options{})
	importN(t, db, 20, "google", t0)
	g, tok := sealedToken(t, db, "g0004")
	tok[len(tok)-1] ^= 1
	db.update(func(b *bkts) error { return b.tokens.Put(rowKey(g.Row), tok) })

	err := db.Rekey(otherKey, nil)
	if err == nil || !strings.Contains(err.Error(), `token of grant "g0004"`) || !strings.Contains(err.Error(), "1 tokens do not open") {
		t.Fatalf("Rekey = %v, want an error naming g0004", err)
	}
	if ki, _ := db.KeyInfo(); ki.Fingerprint != KeyFingerprint(testKey) || ki.RekeyTo != KeyFingerprint(otherKey) {
		t.Errorf("KeyInfo = %+v, want the old key, a rekey pending", ki)
	}
	if _, err := db.SetToken("g0004", "fresh", t0); err != nil {
		t.Fatal(err)
	}
	if err := db.Rekey(otherKey, nil); err != nil {
		t.Fatal(err)
	}
	assertSealedWith(t, db, otherKey)
	assertTokensOpen(t, db)
}
