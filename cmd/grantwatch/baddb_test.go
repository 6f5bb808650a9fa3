package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// badDBSetup is a config whose database holds a few grants, written by the
// binary itself.
type badDBSetup struct {
	bin, dir, config, db, key, jsonl string
}

func newBadDBSetup(t *testing.T, dir string) *badDBSetup {
	t.Helper()
	s := &badDBSetup{
		bin:    grantwatchBinary(t),
		dir:    dir,
		config: filepath.Join(dir, "grantwatch.toml"),
		db:     filepath.Join(dir, "gw.db"),
		key:    filepath.Join(dir, "gw.key"),
		jsonl:  filepath.Join(dir, "grants.jsonl"),
	}
	toml := fmt.Sprintf(`
[daemon]
db = %q
socket = %q
listen = ""
probe_timeout = "1s"
shutdown_timeout = "2s"

[secrets]
key_file = %q

[clock]
servers = []

[[providers]]
name = "p"
token_url = "http://127.0.0.1:9/token"
client_id = "c"
client_secret = "baddb-client-secret"
interval = "1h"
`, s.db, filepath.Join(dir, "gw.sock"), s.key)
	if err := os.WriteFile(s.config, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	s.writeGrants(t, "g", 3)
	if _, errOut, err := runBin(t, s.bin, s.config, "grants", "import", s.jsonl); err != nil {
		t.Fatalf("grants import: %v\n%s", err, errOut)
	}
	return s
}

// writeGrants writes n grants with ids prefix-0… to s.jsonl.
func (s *badDBSetup) writeGrants(t *testing.T, prefix string, n int) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"id":"%s-%d","provider":"p","refresh_token":"rt-baddb-%s-%d-%s"}`+"\n", prefix, i, prefix, i, strings.Repeat("x", 200))
	}
	if err := os.WriteFile(s.jsonl, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapshot is what a directory holds: each file's bytes, mode and mtime.
type snapshot map[string]string

func snap(t *testing.T, dir string) snapshot {
	t.Helper()
	m := snapshot{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m[p] = fmt.Sprintf("%s %s %x", fi.Mode(), fi.ModTime().Format(time.RFC3339Nano), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (a snapshot) diff(b snapshot) []string {
	var d []string
	for p, v := range a {
		if w, ok := b[p]; !ok {
			d = append(d, p+" removed")
		} else if v != w {
			d = append(d, p+" changed")
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			d = append(d, p+" created")
		}
	}
	return d
}

// cliFails runs every command that opens the database and checks that each
// exits non-zero with one error line that names the file and contains all
// of want (what is wrong, what to do), and that nothing on disk changed.
func (s *badDBSetup) cliFails(t *testing.T, want ...string) {
	t.Helper()
	s.writeGrants(t, "new", 2)
	s.commandsFail(t, [][]string{
		{"grants", "list"},
		{"grants", "list", "--json"},
		{"grants", "show", "g-0"},
		{"grants", "import", s.jsonl},
		{"status"},
		{"status", "--json"},
		{"run"},
	}, want...)
}

// commandsFail is cliFails for the given commands.
func (s *badDBSetup) commandsFail(t *testing.T, commands [][]string, want ...string) {
	t.Helper()
	for _, args := range commands {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			before := snap(t, s.dir)
			stdout, stderr, err := runBin(t, s.bin, s.config, args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("exit: %v, want a non-zero exit status\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 {
				t.Errorf("stderr has %d lines, want one error:\n%s", len(lines), stderr)
			}
			if !strings.Contains(stderr, s.db) {
				t.Errorf("the error does not name the database %s:\n%s", s.db, stderr)
			}
			for _, w := range want {
				if !strings.Contains(stderr, w) {
					t.Errorf("the error does not say %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stdout+stderr, "baddb-client-secret") || strings.Contains(stdout+stderr, "rt-baddb-") {
				t.Errorf("output shows a secret:\n%s%s", stdout, stderr)
			}
			t.Logf("stderr: %s", stderr)
			if d := snap(t, s.dir).diff(before); len(d) > 0 {
				t.Errorf("the command changed the disk: %s", strings.Join(d, ", "))
			}
		})
	}
}

func TestBrokenDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Run("truncated", func(t *testing.T) {
		s := newBadDBSetup(t, t.TempDir())
		fi, err := os.Stat(s.db)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(s.db, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		s.cliFails(t, "damaged", "truncated", "restore it from a backup")
	})
	t.Run("corrupt", func(t *testing.T) {
		s := newBadDBSetup(t, t.TempDir())
		// Garbage over both meta pages: no valid root anywhere.
		f, err := os.OpenFile(s.db, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		junk := bytes.Repeat([]byte("not a bbolt page "), 1024)
		if _, err := f.WriteAt(junk[:8192], 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
		s.cliFails(t, "damaged", "restore it from a backup")
	})
	t.Run("corrupt pages", func(t *testing.T) {
		s := newBadDBSetup(t, t.TempDir())
		// The meta pages are intact; every page after them is garbage.
		b, err := os.ReadFile(s.db)
		if err != nil {
			t.Fatal(err)
		}
		const pageSize = 4096
		junk := bytes.Repeat([]byte{0xA5}, len(b)-2*pageSize)
		if err := os.WriteFile(s.db, append(b[:2*pageSize], junk...), 0o600); err != nil {
			t.Fatal(err)
		}
		s.cliFails(t, "damaged", "restore it from a backup")
	})
	t.Run("damaged record", func(t *testing.T) {
		// A page that Open cannot check (bbolt keeps no page checksums):
		// the commands that read it must fail as cleanly as Open would.
		s := newBadDBSetup(t, t.TempDir())
		damageRecord(t, s.db)
		s.commandsFail(t, [][]string{
			{"grants", "list"},
			{"grants", "list", "--json"},
			{"grants", "list", "--state", "pending"},
			{"grants", "show", "g-1"},
		}, "damaged", "grant in row", "restore it from a backup")
	})
	t.Run("not a database", func(t *testing.T) {
		s := newBadDBSetup(t, t.TempDir())
		if err := os.WriteFile(s.db, []byte("grants:\n  - id: g-0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.cliFails(t, "damaged", "restore it from a backup")
	})
	t.Run("newer schema", func(t *testing.T) {
		s := newBadDBSetup(t, t.TempDir())
		bdb, err := bolt.Open(s.db, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = bdb.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("99"))
		})
		if cerr := bdb.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		s.cliFails(t, "newer", "schema version 99", "run a newer grantwatch")
	})
	t.Run("wrong key", func(t *testing.T) {
		s := newBadDBSetup(t, t.TempDir())
		other := make([]byte, 32)
		rand.Read(other)
		if err := os.WriteFile(s.key, []byte(base64.StdEncoding.EncodeToString(other)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.cliFails(t, "key", s.key, "configure the key file it was created with")
	})
}

// TestDiskFull fills a small tmpfs and imports: the import must fail with
// one error naming the file and what to do, and the database must still
// hold exactly what it held. It needs root to mount the tmpfs.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	s := newBadDBSetup(t, dir)
	listBefore, _, err := runBin(t, s.bin, s.config, "grants", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	// The import file lives outside the full filesystem.
	s.jsonl = filepath.Join(t.TempDir(), "grants.jsonl")
	s.writeGrants(t, "bulk", 5000)

	// Fill the filesystem to the last byte.
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for {
		if _, err := filler.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for {
		if _, err := filler.Write(block[:1]); err != nil {
			break
		}
	}
	filler.Close()

	stdout, stderr, err := runBin(t, s.bin, s.config, "grants", "import", s.jsonl)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("import on a full disk: %v, want a non-zero exit\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 {
		t.Errorf("stderr has %d lines, want one error:\n%s", len(lines), stderr)
	}
	for _, w := range []string{s.db, "no space left", "free space"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("the error does not say %q:\n%s", w, stderr)
		}
	}

	// Nothing was imported, nothing was lost: with space again, the
	// database opens and lists exactly the grants it had.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	listAfter, errOut, err := runBin(t, s.bin, s.config, "grants", "list", "--json")
	if err != nil {
		t.Fatalf("grants list after the failed import: %v\n%s", err, errOut)
	}
	if listAfter != listBefore {
		t.Errorf("the grants changed:\nbefore:\n%s\nafter:\n%s", listBefore, listAfter)
	}
}
