package store_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/grantwatch/grantwatch/store"
	"github.com/grantwatch/grantwatch/store/storetest"
)

var conformanceKey = bytes.Repeat([]byte{7}, store.KeySize)

func openBolt(t *testing.T, path string) store.Store {
	t.Helper()
	db, err := store.Open(path, store.Options{Key: conformanceKey})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestConformance holds the bbolt backend to the store contract.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openBolt(t, filepath.Join(t.TempDir(), "grantwatch.db"))
	})
}

// TestConformanceCrash: a process writing result groups into a bbolt file
// is SIGKILLed mid-write; the file holds every group it committed, none in
// part.
func TestConformanceCrash(t *testing.T) {
	storetest.RunCrash(t, filepath.Join(t.TempDir(), "grantwatch.db"), openBolt)
}
