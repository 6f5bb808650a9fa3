package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/grantwatch/grantwatch/internal/secret"
)

var (
	testKey  = bytes.Repeat([]byte{7}, KeySize)
	otherKey = bytes.Repeat([]byte{9}, KeySize)
	t0       = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

// openTest opens a database in a fresh temp dir and closes it at cleanup.
func openTest(t testing.TB, opts Options) *DB {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "grantwatch.db"), opts)
}

func openAt(t testing.TB, path string, opts Options) *DB {
	t.Helper()
	if opts.Key == nil {
		opts.Key = testKey
	}
	db, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func importN(t testing.TB, db *DB, n int, provider string, now time.Time) {
	t.Helper()
	gs := make([]NewGrant, n)
	for i := range gs {
		gs[i] = NewGrant{ID: fmt.Sprintf("g%04d", i), Provider: provider, RefreshToken: secret.Secret(fmt.Sprintf("rt-%d", i))}
	}
	if _, _, err := db.Import(gs, now, replaceAll); err != nil {
		t.Fatalf("Import: %v", err)
	}
}

func TestOpenCreatesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db := openAt(t, path, Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %o, want 600", got)
	}
	if db.Path() != path {
		t.Errorf("Path() = %q, want %q", db.Path(), path)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), Options{Key: []byte("short")}); err == nil {
		t.Error("Open with a 5-byte key: got nil error")
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db, err := Open(path, Options{Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	importN(t, db, 3, "google", t0)
	err = db.Apply("g0001", func(cur Grant) (Change, error) {
		cur.State, cur.Cause = StateReconnectRequired, "revoked"
		cur.NextDueAt = time.Time{}
		return Change{
			Grant:    cur,
			NewToken: "rotated",
			History:  &HistoryEntry{At: t0, From: StatePending, To: StateReconnectRequired, Cause: "revoked"},
			Outbox:   []OutboxEntry{{Receiver: "pager", Payload: []byte(`{"x":1}`), CreatedAt: t0}},
			Meta:     map[string][]byte{"clock": []byte("ok")},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantCounts, _ := db.Counts()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openAt(t, path, Options{})
	g, err := db.Get("g0001")
	if err != nil {
		t.Fatal(err)
	}
	if g.State != StateReconnectRequired || g.Cause != "revoked" || g.TokenGen != 1 || !g.CreatedAt.Equal(t0) {
		t.Errorf("grant after reopen = %+v", g)
	}
	h, _ := db.History("g0001")
	if len(h) != 2 || h[1].To != StateReconnectRequired {
		t.Errorf("history after reopen = %+v, want import + transition", h)
	}
	out, _ := db.PendingOutbox("pager", 0)
	if len(out) != 1 || string(out[0].Payload) != `{"x":1}` {
		t.Errorf("outbox after reopen = %+v", out)
	}
	if v, _ := db.GetMeta("clock"); string(v) != "ok" {
		t.Errorf("meta clock = %q, want ok", v)
	}
	gotCounts, _ := db.Counts()
	if fmt.Sprint(gotCounts) != fmt.Sprint(wantCounts) {
		t.Errorf("counts = %v, want %v", gotCounts, wantCounts)
	}
	// g0001 is out of the due index; the other two are due with their tokens.
	ls, err := db.Due(t0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].Grant.ID != "g0000" || ls[0].Token != "rt-0" || ls[1].Token != "rt-2" {
		t.Errorf("leases after reopen = %+v", ls)
	}
	// The rotated token was sealed: read it back through a lease.
	if _, err := db.SetToken("g0002", "new", t0); err != nil {
		t.Fatal(err)
	}
	g1, sealed := sealedToken(t, db, "g0001")
	ring := db.keys.Load()
	if pt, err := ring.openToken(&g1, sealed); err != nil || string(pt) != "rotated" {
		t.Errorf("token of g0001 = %q, %v; want rotated", pt, err)
	}
	if bytes.Contains(sealed, []byte("rotated")) {
		t.Error("token stored in clear")
	}
	g0, _ := sealedToken(t, db, "g0000")
	g0.sealSeq = g1.sealSeq
	if _, err := ring.openToken(&g0, sealed); err == nil {
		t.Error("token of g0001 opens as g0000's")
	}
}

// sealedToken returns grant id as stored and its sealed token.
func sealedToken(t *testing.T, db *DB, id string) (Grant, []byte) {
	t.Helper()
	var g Grant
	var sealed []byte
	if err := db.view(func(b *bkts) error {
		var err error
		var row uint64
		row, g, _, err = b.lookup(id)
		sealed = clone(b.tokens.Get(rowKey(row)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return g, sealed
}

func TestOpenWrongKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db := openAt(t, path, Options{})
	db.Close()
	_, err := Open(path, Options{Key: otherKey})
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with another key: err = %v, want ErrWrongKey", err)
	}
	for _, want := range []string{path, KeyFingerprint(testKey), KeyFingerprint(otherKey)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// The right key still opens it: nothing was rewritten.
	openAt(t, path, Options{})
}

func TestOpenInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	openAt(t, path, Options{})
	start := time.Now()
	_, err := Open(path, Options{Key: testKey, LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: err = %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %s, want about the 100ms lock timeout", d)
	}
}

func TestOpenNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db := openAt(t, path, Options{})
	db.Close()
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	newer := strconv.Itoa(SchemaVersion + 1)
	bdb.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte(newer)) })
	bdb.Close()
	before, _ := os.ReadFile(path)
	fiBefore, _ := os.Stat(path)

	_, err = Open(path, Options{Key: testKey})
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("Open: err = %v, want ErrNewerSchema", err)
	}
	for _, want := range []string{path, "version " + newer, "up to " + strconv.Itoa(SchemaVersion)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	after, _ := os.ReadFile(path)
	fiAfter, _ := os.Stat(path)
	if !bytes.Equal(before, after) || !fiBefore.ModTime().Equal(fiAfter.ModTime()) || fiBefore.Mode() != fiAfter.Mode() {
		t.Error("the newer-schema file was modified")
	}
}

func TestOpenCorrupt(t *testing.T) {
	// A real database with some data, to damage in different ways.
	src := filepath.Join(t.TempDir(), "src.db")
	db := openAt(t, src, Options{})
	importN(t, db, 2000, "google", t0)
	db.Close()
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte("not a database "), 1000)

	tests := []struct {
		name string
		data []byte
	}{
		// Text where a database should be.
		{"garbage", garbage},
		// Cut inside the first meta page.
		{"truncated to 100 bytes", good[:100]},
		// Both meta pages kept, the data pages gone.
		{"truncated to two pages", good[:8192]},
		// Cut in the middle of the data.
		{"truncated to half", good[:len(good)/2]},
		// Meta pages zeroed: checksums fail.
		{"meta pages zeroed", append(make([]byte, 8192), good[8192:]...)},
		// A valid bbolt file that is not ours.
		{"foreign bbolt file", foreignBolt(t)},
		// Intact meta pages over scrambled data pages: bbolt panics
		// reading them, Open recovers.
		{"data pages scrambled", append(bytes.Clone(good[:8192]), scrambled(len(good)-8192)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.db")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(path, Options{Key: testKey, LockTimeout: 100 * time.Millisecond})
			if err == nil {
				db.Close()
				t.Fatal("Open: nil error")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "backup") {
				t.Errorf("error %q should name the file and what to do", err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, tt.data) {
				t.Error("the damaged file was modified")
			}
			// The failed Open released the lock: a second attempt gets the
			// same answer, not ErrInUse. (Not after a panic inside bbolt's
			// Open: its mapping keeps the lock until the process exits.)
			if tt.name == "data pages scrambled" {
				return
			}
			if _, err := Open(path, Options{Key: testKey, LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("second Open: err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func scrambled(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{3}).Read(b)
	return b
}

func foreignBolt(t *testing.T) []byte {
	path := filepath.Join(t.TempDir(), "foreign.db")
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	bdb.Close()
	data, _ := os.ReadFile(path)
	return data
}

// mountSmallFS mounts a tmpfs of size bytes on a fresh directory for the
// test, or skips it when that is not possible (not root, no tmpfs).
func mountSmallFS(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a small tmpfs to fill needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("skipped: mount -t tmpfs -o size=%s tmpfs %s: %v: %s", size, dir, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFull: on a full filesystem a commit fails with an error that is
// ENOSPC (errors.Is) and a write failure, says what to do, and changes
// nothing: the database passes Check and holds what it held. Once space is
// freed the same writes succeed.
func TestDiskFull(t *testing.T) {
	dir := mountSmallFS(t, "2m")
	db := openAt(t, filepath.Join(dir, "g.db"), Options{})
	importN(t, db, 50, "google", t0)
	job, err := db.BeginImport(ImportJob{Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	// Fill what is left with another file.
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for _, err = filler.Write(make([]byte, 64<<10)); err == nil; _, err = filler.Write(make([]byte, 4<<10)) {
	}
	filler.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the filesystem: %v", err)
	}
	want := dump(t, db)

	batch := func(n int) []NewGrant {
		gs := make([]NewGrant, n)
		for i := range gs {
			gs[i] = NewGrant{ID: fmt.Sprintf("full%05d", i), Provider: "google", Subject: strings.Repeat("s", 200),
				RefreshToken: secret.Secret(strings.Repeat("t", 500))}
		}
		return gs
	}
	_, _, errImport := db.Import(batch(500), t0, replaceAll)
	_, errBatch := db.ImportBatch(job.ID, 0, 500, batch(500), t0, replaceAll)
	for _, err := range []error{errImport, errBatch} {
		if !errors.Is(err, syscall.ENOSPC) || !IsWriteFailure(err) || !strings.Contains(err.Error(), "full") {
			t.Errorf("a write to a full filesystem: %v; want ENOSPC, a write failure, saying it is full", err)
		}
	}
	if err := db.Check(context.Background()); err != nil {
		t.Errorf("Check after the failed writes: %v", err)
	}
	if got := dump(t, db); got != want {
		t.Errorf("the failed writes changed the database:\n got %s\nwant %s", got, want)
	}
	if jobs, _ := db.PendingImports(); len(jobs) != 1 || jobs[0].Committed != 0 {
		t.Errorf("the job after its failed batch: %+v", jobs)
	}

	os.Remove(filepath.Join(dir, "filler"))
	if _, _, err := db.Import(batch(500), t0, replaceAll); err != nil {
		t.Fatalf("Import after freeing space: %v", err)
	}
	if j, err := db.ImportBatch(job.ID, 0, 1, batch(1), t0, replaceAll); err != nil || j.Committed != 1 {
		t.Errorf("ImportBatch after freeing space: %+v, %v", j, err)
	}
	assertIndexesMatchScan(t, db)
	db.Close()
	db = openAt(t, filepath.Join(dir, "g.db"), Options{})
	if n := len(strings.Fields(grantIDs(t, db))); n != 550 {
		t.Errorf("%d grants after reopening, want 550", n)
	}
}

func TestIsWriteFailure(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("import: %w", &os.PathError{Op: "write", Path: "g.db", Err: syscall.ENOSPC}), true},
		{fmt.Errorf("x: %w", syscall.EDQUOT), true},
		{fmt.Errorf("x: %w", syscall.EROFS), true},
		{fmt.Errorf("x: %w", syscall.EIO), true},
		{fmt.Errorf("x: %w", syscall.EFBIG), true},
		{fmt.Errorf("x: %w", ErrNotFound), false},
		{fmt.Errorf("x: %w", ErrCorrupt), false},
		{fmt.Errorf("x: %w", syscall.EACCES), false},
		{errors.New("no space left on device"), false}, // text is not an errno
		{nil, false},
	} {
		if got := IsWriteFailure(tt.err); got != tt.want {
			t.Errorf("IsWriteFailure(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
