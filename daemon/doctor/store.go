package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// store checks the key file and the database with no daemon running.
// Nothing is created: a missing key or database is reported, not made.
func (d *doctor) store(ctx context.Context, cfg *config.Config) []Check {
	dbPath, keyPath := cfg.Daemon.DB, cfg.Secrets.KeyFile
	_, dbErr := os.Stat(dbPath)
	dbExists := dbErr == nil

	keyCheck := d.keyMode(keyPath, "")
	var (
		key       []byte
		keyDenied = errors.Is(keyCheck.err, fs.ErrPermission)
	)
	switch {
	case keyCheck.Status == CheckFail && keyCheck.err != nil, keyDenied:
	case errors.Is(keyCheck.err, fs.ErrNotExist):
		keyCheck.err = nil
		if dbExists {
			keyCheck.Status = CheckFail
			keyCheck.Detail = fmt.Sprintf("key file %s is missing, but the database %s exists: its tokens are sealed with that key", keyPath, dbPath)
			keyCheck.Fix = "restore the key file the database was created with (secrets.key_file) from a backup; a new key cannot open the database"
		} else {
			keyCheck.Status = CheckWarn
			keyCheck.Detail = fmt.Sprintf("key file %s does not exist yet; the first run creates it (mode 0600)", keyPath)
			keyCheck.Fix = "start grantwatch once (or create the key file), and back it up: without it the tokens cannot be read"
		}
	default:
		k, err := store.LoadKey(keyPath, false)
		switch {
		case errors.Is(err, fs.ErrPermission):
			keyDenied = true
			keyCheck.Status = CheckWarn
			keyCheck.Detail = fmt.Sprintf("key file %s: permission denied", keyPath)
			keyCheck.Fix = "run doctor as the daemon's user or with sudo to check the key and the database"
		case err != nil:
			keyCheck.Status, keyCheck.Detail = CheckFail, err.Error()
			keyCheck.Fix = "restore the key file from a backup: it must hold 32 bytes, raw or as base64 or hex text"
		default:
			key = k
			keyCheck.Detail += " (key " + store.KeyFingerprint(k) + ")"
		}
	}

	db := Check{Name: "database"}
	switch {
	case errors.Is(dbErr, fs.ErrNotExist):
		db.Status = CheckWarn
		db.Detail = fmt.Sprintf("%s does not exist yet; the first run creates it", dbPath)
		db.Fix = "start grantwatch (systemctl start grantwatch, or grantwatch run), then import grants with grantwatch grants import"
	case dbErr != nil:
		db.Status, db.Detail, db.Fix = CheckFail, fmt.Sprintf("%s: %v", dbPath, unwrapPath(dbErr)), dbFix(dbErr)
	case keyDenied:
		db.Status = CheckWarn
		db.Detail = fmt.Sprintf("%s not opened: this user cannot read its key file %s", dbPath, keyPath)
		db.Fix = "run doctor as the daemon's user or with sudo"
	case key == nil:
		db.Status = CheckFail
		db.Detail = fmt.Sprintf("%s not opened: its key file %s is not usable (see the key check)", dbPath, keyPath)
		db.Fix = "fix the key file first"
	default:
		s, err := store.OpenWithKeyFile(cfg.Daemon.DB, cfg.Secrets.KeyFile, store.Options{})
		if err != nil {
			db.Status, db.Detail, db.Fix = CheckFail, err.Error(), dbFix(err)
			break
		}
		defer s.Close()
		counts, err := s.Counts()
		if err != nil {
			db.Status, db.Detail, db.Fix = CheckFail, fmt.Sprintf("%s: read grant counts: %v", dbPath, err), dbFix(store.ErrCorrupt)
			break
		}
		n := 0
		for _, m := range counts {
			for _, v := range m {
				n += v
			}
		}
		pending, _, err := s.OutboxStats()
		if err != nil {
			db.Status, db.Detail, db.Fix = CheckFail, fmt.Sprintf("%s: read outbox: %v", dbPath, err), dbFix(store.ErrCorrupt)
			break
		}
		// The daemon checks the file when it starts and does not start on
		// damage; with it stopped, doctor does the same.
		if err := s.Check(ctx); err != nil {
			db.Status, db.Detail, db.Fix = CheckFail, err.Error(), dbFix(err)
			break
		}
		db.Status = CheckOK
		db.Detail = fmt.Sprintf("%s: schema %d, key matches, no damage found, %d grant(s), %d notification(s) pending (daemon not running)",
			dbPath, store.SchemaVersion, n, pending)
		if ki, err := s.KeyInfo(); err == nil {
			keyCheck.Detail += keyHistory(ki)
		}
	}
	keyCheck.err = nil
	return []Check{db, keyCheck.Check}
}

// keyResult is a key check with the error that decided it.
type keyResult struct {
	Check
	err error
}

// keyMode checks the key file's permission bits: one others may read or
// write fails, as the daemon refuses to start with it. note, when set, is
// added to an ok detail.
func (d *doctor) keyMode(path, note string) keyResult {
	c := keyResult{Check: Check{Name: "key"}}
	mode, err := store.KeyFileMode(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.err = err
		c.Status = CheckWarn
		c.Detail = fmt.Sprintf("key file %s does not exist", path)
		c.Fix = "point secrets.key_file at the key the daemon uses"
		if note != "" {
			// The daemon runs with a key: under systemd it is its credential.
			c.Detail += " here (the daemon may read it from its systemd credential)"
		}
		return c
	case errors.Is(err, fs.ErrPermission):
		c.err = err
		c.Status = CheckWarn
		c.Detail = fmt.Sprintf("key file %s: permission denied", path)
		c.Fix = "run doctor as the daemon's user or with sudo to check the key"
		return c
	case err != nil:
		c.err = err
		c.Status, c.Detail, c.Fix = CheckFail, err.Error(), "make the key file readable by the daemon's user"
		return c
	}
	var me *secret.ModeError
	if err := secret.CheckMode(path); errors.As(err, &me) {
		c.Status = CheckFail
		c.Detail = fmt.Sprintf("key file %s: %v; the daemon refuses to start with it (it seals every token)", path, err)
		c.Fix = fmt.Sprintf("chmod 600 %s (owned by the daemon's user), or remove the ACL entries getfacl shows", path)
		return c
	}
	c.Status = CheckOK
	c.Detail = fmt.Sprintf("%s, mode %04o", path, mode)
	if note != "" {
		c.Detail += ", " + note
	}
	return c
}

// keyHistory says which key seals the database and when it was last
// rekeyed, for the key check.
func keyHistory(ki store.KeyInfo) string {
	s := "; the database is sealed with " + ki.Fingerprint
	if !ki.RekeyedAt.IsZero() {
		s += fmt.Sprintf(", rekeyed from %s at %s", ki.RekeyedFrom, ki.RekeyedAt.Format(time.RFC3339))
	} else {
		s += ", never rekeyed"
	}
	return s
}

// secretFiles checks the modes of the secret files besides the key (which
// keyMode checks): the daemon starts with a loose one but warns, and so
// does this check. A missing file is left to the check of what reads it.
func secretFiles(cfg *config.Config) Check {
	c := Check{Name: "secret-files", Status: CheckOK}
	var loose []string
	n := 0
	for _, f := range cfg.SecretFiles() {
		if f.Path == cfg.Secrets.KeyFile {
			continue
		}
		var me *secret.ModeError
		switch err := secret.CheckMode(f.Path); {
		case errors.As(err, &me):
			loose = append(loose, f.Key+": "+err.Error())
		case err == nil:
			n++
		}
	}
	switch {
	case len(loose) > 0:
		c.Status = CheckWarn
		c.Detail = strings.Join(loose, "; ")
		c.Fix = "run the chmod (or setfacl) named for each file, so that only the daemon's user can read it"
	case n == 0:
		c.Detail = "no secret files besides the key"
	default:
		c.Detail = fmt.Sprintf("%d secret file(s) besides the key, each open to its owner only", n)
	}
	return c
}

// diskLow is the free space below which the disk check warns.
const diskLow = 32 << 20

// disk checks the filesystem of the database: the daemon pauses probing
// while a commit fails on it (full, read-only), so doctor says so before.
func disk(cfg *config.Config) Check {
	c := Check{Name: "disk", Status: CheckOK}
	// A database not created yet is created in the nearest directory there is.
	dir := filepath.Dir(cfg.Daemon.DB)
	for _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) && dir != filepath.Dir(dir); _, err = os.Stat(dir) {
		dir = filepath.Dir(dir)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		c.Status, c.Detail = CheckWarn, fmt.Sprintf("free space of %s unknown: %v", dir, err)
		c.Fix = "check that daemon.db's directory exists and is readable by the daemon's user"
		return c
	}
	free := st.Bavail * uint64(st.Bsize)
	switch {
	case errors.Is(syscall.Access(dir, 2), syscall.EROFS):
		c.Status, c.Detail = CheckFail, fmt.Sprintf("the filesystem of %s is read-only: the daemon cannot store probe results and pauses probing", dir)
		c.Fix = fmt.Sprintf("find out why it went read-only (dmesg), then remount %s read-write", dir)
	case free < diskLow:
		c.Status, c.Detail = CheckWarn, fmt.Sprintf("%d KiB free on the filesystem of %s: when a commit finds it full, the daemon pauses probing until space is freed", free>>10, dir)
		c.Fix = fmt.Sprintf("free space there (df -h %s), or move daemon.db to a larger filesystem", dir)
	default:
		c.Detail = fmt.Sprintf("%d MiB free on the filesystem of %s", free>>20, dir)
	}
	return c
}

func dbFix(err error) string {
	switch {
	case errors.Is(err, store.ErrRekeyPending):
		return "finish the rekey: grantwatch db rekey (with --new-key FILE if the new key is not secrets.key_file + .new), with the daemon stopped"
	case errors.Is(err, store.ErrInUse):
		return "another process holds the database but no daemon answers on daemon.socket: make daemon.socket the same in both configs, or stop the other grantwatch"
	case errors.Is(err, store.ErrWrongKey):
		return "set secrets.key_file to the key file the database was created with (restore it from a backup)"
	case errors.Is(err, store.ErrNewerSchema):
		return "run the newer grantwatch that wrote the database (the file was not modified)"
	case errors.Is(err, store.ErrCorrupt):
		return "restore the database from a backup (README: Backups and restore), or move it aside and re-import the grants"
	case errors.Is(err, fs.ErrPermission):
		return "run doctor as the daemon's user or with sudo"
	}
	return "check daemon.db and the permissions of its directory"
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
