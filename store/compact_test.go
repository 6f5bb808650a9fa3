package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCompact: removing most grants leaves the file as large; compacting
// it gives a much smaller file, mode 0600, that opens with the same key and
// holds every remaining grant, token (rotated ones too), history entry,
// outbox entry and counter, and goes on from the same row and outbox
// sequences. The source is not modified.
func TestCompact(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "grantwatch.db"), filepath.Join(dir, "compact.db")
	db := openAt(t, src, Options{NoSync: true})
	fillBench(t, db, 0, 20_000, "google", t0)
	checkFleet(t, db) // g0000…g0039: rotated tokens, history, outbox, a dead letter
	if _, err := db.RemoveWhere(StatePending, "google"); err != nil {
		t.Fatal(err)
	}
	want := dump(t, db)
	if !strings.Contains(want, "token=rotated") || !strings.Contains(want, "outbox [{") {
		t.Fatalf("the fleet kept no rotated token or outbox entry:\n%s", want)
	}
	nextRow, _ := db.readU64(func(b *bkts) uint64 { return b.grants.Sequence() })
	nextSeq, _ := db.readU64(func(b *bkts) uint64 { return b.outbox.Sequence() })
	db.Close()
	before, _ := os.ReadFile(src)

	if err := Compact(src, dst); err != nil {
		t.Fatal(err)
	}
	fs, _ := os.Stat(src)
	fd, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fd.Mode().Perm() != 0o600 {
		t.Errorf("compacted file mode %o, want 600", fd.Mode().Perm())
	}
	t.Logf("compacted %d bytes into %d", fs.Size(), fd.Size())
	if fd.Size()*5 > fs.Size() {
		t.Errorf("compacted %d bytes into %d; want at most a fifth", fs.Size(), fd.Size())
	}
	if after, _ := os.ReadFile(src); !bytes.Equal(before, after) {
		t.Error("Compact modified its source")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	cdb := openAt(t, dst, Options{})
	if got := dump(t, cdb); got != want {
		t.Errorf("compacted database differs:\n got %s\nwant %s", got, want)
	}
	assertIndexesMatchScan(t, cdb)
	if _, _, err := cdb.Import([]NewGrant{{ID: "new", Provider: "google", RefreshToken: "t"}}, t0, replaceAll); err != nil {
		t.Fatal(err)
	}
	if g, _ := cdb.Get("new"); g.Row != nextRow+1 {
		t.Errorf("a grant imported after compaction got row %d, want %d (the sequence kept)", g.Row, nextRow+1)
	}
	cdb.Enqueue(OutboxEntry{Receiver: "hook", Payload: []byte("{}"), CreatedAt: t0})
	if out, _ := cdb.PendingOutbox("hook", 0); out[len(out)-1].Seq != nextSeq+1 {
		t.Errorf("an outbox entry after compaction got seq %d, want %d", out[len(out)-1].Seq, nextSeq+1)
	}
}

// readU64 returns what fn reads in a read transaction.
func (db *DB) readU64(fn func(b *bkts) uint64) (uint64, error) {
	var v uint64
	err := db.view(func(b *bkts) error { v = fn(b); return nil })
	return v, err
}

func TestCompactRefuses(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "grantwatch.db")
	db := openAt(t, src, Options{})
	importN(t, db, 10, "google", t0)

	// The daemon holds the file.
	dst := filepath.Join(dir, "compact.db")
	start := time.Now()
	if err := Compact(src, dst); !errors.Is(err, ErrInUse) {
		t.Errorf("Compact of a database in use = %v, want ErrInUse", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Compact waited %s for the lock", d)
	}
	db.Close()

	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 1000), 0o600)
	foreign := filepath.Join(dir, "foreign.db")
	os.WriteFile(foreign, foreignBolt(t), 0o600)
	for _, tt := range []struct {
		name, src, dst string
		want           error
		wantText       string
	}{
		{"into itself", src, src, nil, "the destination is the source"},
		{"into itself by another name", src, filepath.Join(dir, ".", "grantwatch.db"), nil, "the destination is the source"},
		{"garbage", garbage, dst, ErrCorrupt, garbage},
		{"foreign bbolt file", foreign, dst, ErrCorrupt, "not a grantwatch database"},
		{"missing", filepath.Join(dir, "missing.db"), dst, os.ErrNotExist, "missing.db"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadFile(tt.src)
			err := Compact(tt.src, tt.dst)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Compact = %v, want %v saying %q", err, tt.want, tt.wantText)
			}
			if after, _ := os.ReadFile(tt.src); !bytes.Equal(before, after) {
				t.Error("the source was modified")
			}
			if tt.dst != tt.src {
				if _, err := os.Stat(tt.dst); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a failed Compact left %s", tt.dst)
				}
			}
		})
	}
	db = openAt(t, src, Options{})
	if got := len(strings.Fields(grantIDs(t, db))); got != 10 {
		t.Errorf("%d grants after the refusals, want 10", got)
	}
}
