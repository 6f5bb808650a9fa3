package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/doctor"
	"github.com/grantwatch/grantwatch/store"
)

// binExit is the exit status of a command run by runBin.
func binExit(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// damageRecord makes grant g-1's record unreadable in the database file: a
// page that opening the database does not read (bbolt keeps no page
// checksums), so only a whole check finds it.
func damageRecord(t *testing.T, db string) {
	t.Helper()
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	// A grant record starts with its form's version byte (3 since the
	// forecast) and its id, length-prefixed (store/codec.go). bbolt copies
	// a page on write, so older copies of the record may still stand in
	// free pages: each one is damaged, the live one among them.
	rec := []byte("\x03\x03g-1")
	if bytes.Count(b, rec) == 0 {
		t.Fatal("grant record g-1 not found")
	}
	for i := bytes.Index(b, rec); i >= 0; i = bytes.Index(b, rec) {
		b[i] = 0x7f // no known record form
	}
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedDatabaseFoundEarly: db check finds damage that opening the
// database does not (exit 1, naming the grant's row), run refuses to start
// on it with exit status 3 (which the systemd unit does not restart), and
// doctor fails on it; a sound database passes all three.
func TestDamagedDatabaseFoundEarly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	s := newBadDBSetup(t, t.TempDir())
	out, errOut, err := runBin(t, s.bin, s.config, "db", "check")
	if err != nil || !strings.Contains(out, s.db+": no damage found") {
		t.Fatalf("db check of a sound database: %v\n%s%s", err, out, errOut)
	}
	doc, _, err := runBin(t, s.bin, s.config, "doctor", "--json")
	var rep doctor.Report
	if json.Unmarshal([]byte(doc), &rep) != nil || !checkStatus(rep, "database", doctor.CheckOK) {
		t.Fatalf("doctor on a sound database: %v\n%s", err, doc)
	}

	damageRecord(t, s.db)
	out, errOut, err = runBin(t, s.bin, s.config, "db", "check")
	if binExit(err) != 1 || !strings.Contains(out, "damaged") || !strings.Contains(out, "grants: row") {
		t.Errorf("db check of a damaged database: exit %d\nstdout:\n%s\nstderr:\n%s", binExit(err), out, errOut)
	}
	out, _, err = runBin(t, s.bin, s.config, "db", "check", "--json")
	var v struct {
		OK     bool   `json:"ok"`
		Damage string `json:"damage"`
	}
	if binExit(err) != 1 || json.Unmarshal([]byte(out), &v) != nil || v.OK || !strings.Contains(v.Damage, "grants: row") {
		t.Errorf("db check --json: exit %d, %s", binExit(err), out)
	}

	start := time.Now()
	out, errOut, err = runBin(t, s.bin, s.config, "run")
	if binExit(err) != exitDamaged {
		t.Errorf("run on a damaged database: exit %d, want %d\n%s%s", binExit(err), exitDamaged, out, errOut)
	}
	for _, want := range []string{"damaged", "grants: row", "does not start on a damaged database", "Backups and restore"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("run's error lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "grantwatch started") {
		t.Errorf("run started on a damaged database:\n%s", errOut)
	}
	t.Logf("run refused in %s", time.Since(start).Round(time.Millisecond))

	doc, _, err = runBin(t, s.bin, s.config, "doctor", "--json")
	if binExit(err) != 1 || json.Unmarshal([]byte(doc), &rep) != nil || !checkStatus(rep, "database", doctor.CheckFail) {
		t.Errorf("doctor on a damaged database: exit %d\n%s", binExit(err), doc)
	}
}

func checkStatus(rep doctor.Report, name, status string) bool {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c.Status == status
		}
	}
	return false
}

// TestDBBackup backs up while the daemon runs and with none: a consistent
// snapshot, mode 0600, that opens with the key and holds what the database
// held when it began; the live database and a directory are refused.
func TestDBBackup(t *testing.T) {
	s := newCLISetup(t, "")
	cfg, err := config.Load(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "gw-backup.db")
	os.WriteFile(backup, []byte("an older backup"), 0o644)

	_, stop := s.startDaemon(t)
	out, _, err := cli(t, s.cfgPath, "", "db", "backup", backup)
	if err != nil || !strings.Contains(out, "backed up "+cfg.Daemon.DB+" to "+backup) || !strings.Contains(out, "it opens with key sha256:") {
		t.Fatalf("db backup while the daemon runs: %v %q", err, out)
	}
	// Written after the backup: not in it.
	if _, _, err := cli(t, s.cfgPath, `{"id":"later","provider":"acme","refresh_token":"rt-later"}`, "grants", "import", "-"); err != nil {
		t.Fatal(err)
	}
	_, _, err = cli(t, s.cfgPath, "", "db", "backup", cfg.Daemon.DB)
	if err == nil || !strings.Contains(err.Error(), "is the database itself") {
		t.Errorf("db backup over the live database: %v", err)
	}
	stop()

	fi, err := os.Stat(backup)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	ids := func(path string) []string {
		db, err := store.OpenWithKeyFile(path, cfg.Secrets.KeyFile, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Check(t.Context()); err != nil {
			t.Errorf("the backup does not check out: %v", err)
		}
		var out []string
		db.Each(func(g store.Grant) error { out = append(out, g.ID); return nil })
		return out
	}
	if got := fmt.Sprint(ids(backup)); got != "[g0 g1 g2]" {
		t.Errorf("backup taken while the daemon ran holds %s, want [g0 g1 g2]", got)
	}

	// With no daemon, the same command.
	dir := t.TempDir()
	out, _, err = cli(t, s.cfgPath, "", "db", "backup", filepath.Join(dir, "b.db"))
	if err != nil || !strings.Contains(out, "backed up") {
		t.Fatalf("db backup with no daemon: %v %q", err, out)
	}
	if got := fmt.Sprint(ids(filepath.Join(dir, "b.db"))); got != "[g0 g1 g2 later]" {
		t.Errorf("backup with no daemon holds %s", got)
	}
	_, _, err = cli(t, s.cfgPath, "", "db", "backup", dir)
	if err == nil || !strings.Contains(err.Error(), dir+" is a directory: name the backup file") {
		t.Errorf("db backup to a directory: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the backup directory holds %d files, want the one backup (no temporary file left)", len(ents))
	}
}

// TestDBCompact removes most grants and compacts: the file shrinks, the
// grants that are left are all there and check out, the original is kept
// as .bak; compact refuses while the daemon runs and while a .bak is there.
func TestDBCompact(t *testing.T) {
	dir := t.TempDir()
	cfg := importConfig(t, dir, "")
	if _, _, err := cli(t, cfg, grantLines("c", 3000), "grants", "import", "-"); err != nil {
		t.Fatal(err)
	}
	var keep strings.Builder
	for i := range 2990 {
		fmt.Fprintf(&keep, "c-%d\n", i)
	}
	if out, _, err := cli(t, cfg, keep.String(), "grants", "rm", "-", "--yes"); err != nil || !strings.Contains(out, "removed 2990 grant(s)") {
		t.Fatalf("rm: %v %q", err, out)
	}
	db := filepath.Join(dir, "gw.db")
	before, _ := os.Stat(db)

	out, _, err := cli(t, cfg, "", "db", "compact")
	if err != nil || !strings.Contains(out, "compacted "+db) || !strings.Contains(out, "the original is kept as "+db+".bak") {
		t.Fatalf("db compact: %v %q", err, out)
	}
	after, _ := os.Stat(db)
	t.Logf("%d → %d bytes", before.Size(), after.Size())
	if after.Size() > before.Size()/2 {
		t.Errorf("compacted file is %d bytes, was %d: want less than half", after.Size(), before.Size())
	}
	if fi, err := os.Stat(db + ".bak"); err != nil || fi.Size() != before.Size() {
		t.Errorf("the original kept as .bak: %v", err)
	}
	if after.Mode().Perm() != 0o600 {
		t.Errorf("compacted file mode %v, want 0600", after.Mode().Perm())
	}
	out, _, err = cli(t, cfg, "", "db", "check")
	if err != nil || !strings.Contains(out, "no damage found") {
		t.Errorf("db check after compact: %v %q", err, out)
	}
	if st := statusJSON(t, cfg); st.Grants != 10 {
		t.Errorf("%d grants after compact, want 10", st.Grants)
	}

	_, _, err = cli(t, cfg, "", "db", "compact")
	if err == nil || !strings.Contains(err.Error(), db+".bak is there from an earlier compaction") {
		t.Errorf("db compact with a .bak: %v", err)
	}
	os.Remove(db + ".bak")

	s := &cliSetup{cfgPath: cfg, dir: dir}
	_, stop := s.startDaemon(t)
	defer stop()
	_, _, err = cli(t, cfg, "", "db", "compact")
	if err == nil || !strings.Contains(err.Error(), "the daemon is running") || !strings.Contains(err.Error(), "works with it stopped") {
		t.Errorf("db compact while the daemon runs: %v", err)
	}
}

// TestDBRekey rekeys: every token is sealed with the new key (the database
// checks out and its grants probe), the configured key file holds it (mode
// 0600), the old key is kept and still opens a backup made before, and
// doctor shows the fingerprint and the rekey. It refuses while the daemon
// runs and a new key file others may read.
func TestDBRekey(t *testing.T) {
	s := newCLISetup(t, "")
	cfg, err := config.Load(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := cfg.Secrets.KeyFile
	oldKey, _ := os.ReadFile(keyFile)
	oldFP := fingerprintOf(t, keyFile)
	backup := filepath.Join(t.TempDir(), "before.db")
	if _, _, err := cli(t, s.cfgPath, "", "db", "backup", backup); err != nil {
		t.Fatal(err)
	}

	_, stop := s.startDaemon(t)
	_, _, err = cli(t, s.cfgPath, "", "db", "rekey")
	if err == nil || !strings.Contains(err.Error(), "the daemon is running") {
		t.Errorf("db rekey while the daemon runs: %v", err)
	}
	stop()

	loose := filepath.Join(t.TempDir(), "loose.key")
	os.WriteFile(loose, bytes.Repeat([]byte{7}, 32), 0o644)
	_, _, err = cli(t, s.cfgPath, "", "db", "rekey", "--new-key", loose)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+loose) {
		t.Errorf("db rekey with a new key others may read: %v", err)
	}

	out, errOut, err := cli(t, s.cfgPath, "", "db", "rekey")
	if err != nil {
		t.Fatalf("db rekey: %v\n%s%s", err, out, errOut)
	}
	newFP := fingerprintOf(t, keyFile)
	kept := keyFile + ".old-" + strings.TrimPrefix(oldFP, "sha256:")
	for _, want := range []string{"sealed with " + newFP + ", was " + oldFP, "the old one is kept as " + kept} {
		if !strings.Contains(out, want) {
			t.Errorf("db rekey output lacks %q:\n%s", want, out)
		}
	}
	if newFP == oldFP {
		t.Fatal("the key file still holds the old key")
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new key file: %v, mode %v", err, fi.Mode().Perm())
	}
	if b, err := os.ReadFile(kept); err != nil || !bytes.Equal(b, oldKey) {
		t.Errorf("the old key kept as %s: %v", kept, err)
	}
	if _, err := os.Stat(keyFile + ".new"); err == nil {
		t.Error("the default new key file is left behind")
	}
	if out, _, err := cli(t, s.cfgPath, "", "db", "check"); err != nil || !strings.Contains(out, "no damage found") {
		t.Errorf("db check after the rekey (opens every token): %v %q", err, out)
	}
	// The backup from before opens with the kept key.
	bdb, err := store.OpenWithKeyFile(backup, kept, store.Options{})
	if err != nil {
		t.Errorf("the backup from before the rekey with the kept key: %v", err)
	} else {
		bdb.Close()
	}

	doc, _ := runDoctorCmd(t, "doctor", "--config", s.cfgPath, "--json")
	var rep doctor.Report
	if err := json.Unmarshal([]byte(doc), &rep); err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		if c.Name == "key" && !strings.Contains(c.Detail, "the database is sealed with "+newFP+", rekeyed from "+oldFP+" at ") {
			t.Errorf("doctor's key check: %s", c.Detail)
		}
	}
	_, stop = s.startDaemon(t)
	defer stop()
	// The daemon's own first probe of g0 may hold it for a moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, _, err = cli(t, s.cfgPath, "", "grants", "probe", "g0")
		if err == nil || !strings.Contains(err.Error(), "being probed right now") || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || !strings.Contains(out, "probe ok") {
		t.Errorf("probe after the rekey: %v %q", err, out)
	}
	doc, _ = runDoctorCmd(t, "doctor", "--config", s.cfgPath, "--json")
	if !strings.Contains(doc, "rekeyed from "+oldFP) {
		t.Errorf("doctor with the daemon running does not show the rekey:\n%s", doc)
	}
}

// fingerprintOf is the fingerprint of the key in path.
func fingerprintOf(t *testing.T, path string) string {
	t.Helper()
	k, err := store.LoadKey(path, false)
	if err != nil {
		t.Fatal(err)
	}
	return store.KeyFingerprint(k)
}
