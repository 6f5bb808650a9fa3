package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestAppKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grantwatch.db")
	db := openAt(t, path, Options{})
	const plain = "gwk_PLAINKEY-never-stored-4f1c"
	acme := AppKey{Name: "acme-sync", Hash: HashAppKey(plain), Labels: map[string]string{"tenant": "acme"},
		Scopes: []string{"token"}, CreatedAt: t0}
	ops := AppKey{Name: "ops", Hash: HashAppKey("another"), Scopes: []string{"read", "set-token"}, CreatedAt: t0}
	for _, k := range []AppKey{ops, acme} {
		if err := db.CreateAppKey(k); err != nil {
			t.Fatal(err)
		}
	}
	// A name is one key; a key is one name.
	if err := db.CreateAppKey(AppKey{Name: "ops", Hash: HashAppKey("third")}); !errors.Is(err, ErrExists) {
		t.Errorf("same name: %v, want ErrExists", err)
	}
	if err := db.CreateAppKey(AppKey{Name: "copy", Hash: HashAppKey(plain)}); !errors.Is(err, ErrExists) {
		t.Errorf("same key: %v, want ErrExists", err)
	}
	for _, bad := range []AppKey{{Name: "", Hash: HashAppKey("x")}, {Name: "a\x00b", Hash: HashAppKey("x")}, {Name: "short", Hash: []byte{1}}} {
		if err := db.CreateAppKey(bad); err == nil {
			t.Errorf("CreateAppKey(%q, %d-byte hash) stored", bad.Name, len(bad.Hash))
		}
	}
	got, err := db.AppKeys()
	if err != nil {
		t.Fatal(err)
	}
	if want := []AppKey{acme, ops}; !reflect.DeepEqual(got, want) {
		t.Fatalf("AppKeys = %+v, want %+v (by name)", got, want)
	}
	if err := db.RevokeAppKey("ops"); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeAppKey("ops"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke twice: %v, want ErrNotFound", err)
	}
	db.Close()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(plain)) {
		t.Error("the database file holds the key itself")
	}

	// A database from before app keys (no appkeys bucket) gets the bucket at
	// Open, with nothing in it.
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketAppKeys) }); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	db = openAt(t, path, Options{})
	if got, err := db.AppKeys(); err != nil || len(got) != 0 {
		t.Errorf("after Open of an older file: %v, %v", got, err)
	}
	if err := db.CreateAppKey(acme); err != nil {
		t.Errorf("create in an older file: %v", err)
	}
}
