package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	err := writeAtomic(path, func(f *os.File) error {
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

// writeAtomic makes path a file of mode 0600 holding what fill writes to
// the temporary file it is given (in path's directory): fsynced, renamed
// over path, and the directory fsynced, so that a crash leaves path as it
// was or complete. On an error the temporary file is removed and path is
// left as it was. fill may also reopen the temporary file by its name.
func writeAtomic(path string, fill func(tmp *os.File) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
