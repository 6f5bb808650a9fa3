package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/grantwatch/grantwatch/internal/atomicfile"
)

// Backup writes a consistent copy of the database to w, as it stood when
// Backup began, and returns the number of bytes written. It runs in one read
// transaction, so the daemon goes on reading and writing meanwhile (a write
// that must grow the file waits for it to end). The copy is a database
// file: it opens with the same key only, and it holds the sealed tokens, so
// keep it as secret as the database (BackupFile writes it with mode 0600).
func (db *DB) Backup(w io.Writer) (int64, error) {
	var n int64
	err := db.view(func(b *bkts) error {
		var err error
		n, err = b.tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("back up %s: %w", db.path, err)
	}
	return n, nil
}

// BackupFile writes a backup (see Backup) to the file path, atomically:
// into a temporary file of mode 0600 in path's directory, fsynced and then
// renamed over path, so that path holds either its former content or the
// whole backup, never a part. It refuses a path that is the live database
// (the same file, by any name). It returns the backup's size in bytes.
func (db *DB) BackupFile(path string) (int64, error) {
	if same, err := sameFile(path, db.path); err != nil || same {
		if err == nil {
			err = errors.New("that is the live database: name another file")
		}
		return 0, fmt.Errorf("back up %s to %s: %w", db.path, path, err)
	}
	var n int64
	err := atomicfile.Write(path, func(f *os.File) error {
		var err error
		n, err = db.Backup(f)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("back up to %s: %w", path, err)
	}
	return n, nil
}

// sameFile reports whether the paths name one file: the same inode if
// both exist, else the same absolute path.
func sameFile(a, b string) (bool, error) {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(fa, fb), nil
	}
	absA, err := filepath.Abs(a)
	if err != nil {
		return false, err
	}
	absB, err := filepath.Abs(b)
	if err != nil {
		return false, err
	}
	return absA == absB, nil
}
