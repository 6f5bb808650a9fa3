package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// dump renders every grant with its token and history, the outbox, the
// dead letters and the daemon meta, for comparing two databases.
func dump(t *testing.T, db *DB) string {
	t.Helper()
	var b strings.Builder
	if err := db.Each(func(g Grant) error {
		l, err := db.GetLease(g.ID)
		if err != nil {
			return err
		}
		h, err := db.History(g.ID)
		if err != nil {
			return err
		}
		l.Grant.sealSeq = 0 // the store's own: Rekey raises it from 0 to 1
		fmt.Fprintf(&b, "%+v token=%s history=%+v\n", l.Grant, l.Token.Reveal(), h)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out, err := db.PendingOutbox("hook", 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "outbox %+v\n", out)
	db.DeadLetters(func(e OutboxEntry) error { fmt.Fprintf(&b, "dead %+v\n", e); return nil })
	c, _ := db.Counts()
	m, _ := db.GetMeta("clock")
	fmt.Fprintf(&b, "counts %v meta %q\n", c, m)
	return b.String()
}

// TestBackupRestores: a backup opens with the same key (and not another)
// and holds the same grants, tokens (rotated ones too), history, outbox and
// meta; the database goes on being usable.
func TestBackupRestores(t *testing.T) {
	db := openTest(t, Options{})
	checkFleet(t, db)
	db.PutMeta("clock", []byte("ok"))
	want := dump(t, db)

	var buf bytes.Buffer
	n, err := db.Backup(&buf)
	if err != nil || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("Backup = %d, %v; wrote %d bytes", n, err, buf.Len())
	}
	path := filepath.Join(t.TempDir(), "restored.db")
	os.WriteFile(path, buf.Bytes(), 0o600)
	if _, err := Open(path, Options{Key: otherKey}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("restored backup with another key: %v, want ErrWrongKey", err)
	}
	restored := openAt(t, path, Options{})
	if got := dump(t, restored); got != want {
		t.Errorf("restored backup differs:\n got %s\nwant %s", got, want)
	}
	assertIndexesMatchScan(t, restored)
	if _, err := db.SetToken("g0001", "after", t0); err != nil {
		t.Errorf("write after Backup: %v", err)
	}
}

// writing calls write(0), write(1), … in a goroutine until the stop it
// returns is called (which waits for it to end); it returns after the
// tenth call, so that what the caller does next happens among writes. An
// error of write fails the test and ends the writes.
func writing(t *testing.T, write func(i int) error) (stop func()) {
	t.Helper()
	done, started := make(chan struct{}), make(chan struct{})
	var once sync.Once
	start := func() { once.Do(func() { close(started) }) }
	var wg sync.WaitGroup
	wg.Go(func() {
		defer start()
		for i := 0; ; i++ {
			if i == 10 {
				start()
			}
			select {
			case <-done:
				return
			default:
			}
			if err := write(i); err != nil {
				t.Error(err)
				return
			}
		}
	})
	<-started
	return func() { close(done); wg.Wait() }
}

// TestBackupWhileWriting: a backup taken while writers commit is a
// consistent snapshot: it passes Check and holds whole results.
func TestBackupWhileWriting(t *testing.T) {
	db := openTest(t, Options{NoSync: true})
	importN(t, db, 2000, "google", t0)
	stop := writing(t, func(i int) error {
		id := fmt.Sprintf("g%04d", i%2000)
		return db.Apply(id, func(cur Grant) (Change, error) {
			cur.State, cur.NextDueAt = StateHealthy, t0.Add(time.Duration(i)*time.Second)
			return Change{Grant: cur, NewToken: "rot", History: &HistoryEntry{At: t0, To: StateHealthy}}, nil
		})
	})
	var backups [][]byte
	for range 5 {
		var buf bytes.Buffer
		if _, err := db.Backup(&buf); err != nil {
			t.Fatal(err)
		}
		backups = append(backups, buf.Bytes())
	}
	stop()
	for i, b := range backups {
		path := filepath.Join(t.TempDir(), "b.db")
		os.WriteFile(path, b, 0o600)
		restored := openAt(t, path, Options{})
		if err := restored.Check(context.Background()); err != nil {
			t.Errorf("backup %d: %v", i, err)
		}
		assertTokensOpen(t, restored)
	}
}

func TestBackupFile(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, filepath.Join(dir, "grantwatch.db"), Options{})
	importN(t, db, 100, "google", t0)
	path := filepath.Join(dir, "backup.db")
	os.WriteFile(path, []byte("an older backup"), 0o644)

	n, err := db.BackupFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != n || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want %d bytes, mode 600", fi.Size(), err, n)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	want := dump(t, db)
	if got := dump(t, openAt(t, path, Options{})); got != want {
		t.Errorf("backup file differs from the database")
	}

	// The live database, by its name, another name for it, or a link to
	// it, is refused, and left as it was.
	os.Symlink(db.Path(), filepath.Join(dir, "link.db"))
	wd, _ := os.Getwd()
	rel, _ := filepath.Rel(wd, db.Path())
	for _, live := range []string{db.Path(), filepath.Join(dir, ".", "grantwatch.db"), filepath.Join(dir, "link.db"), rel} {
		if _, err := db.BackupFile(live); err == nil || !strings.Contains(err.Error(), "live database") {
			t.Errorf("BackupFile(%s) = %v, want a refusal", live, err)
		}
	}
	if got := dump(t, db); got != want {
		t.Error("the live database changed")
	}
	assertIndexesMatchScan(t, db)
}
