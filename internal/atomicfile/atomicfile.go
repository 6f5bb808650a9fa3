// Package atomicfile writes files that appear whole or not at all: a backup,
// a key file, the directory entry of a new file. It does no I/O beyond the
// file and its directory.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write makes path a file of mode 0600 holding what fill writes to the
// temporary file it is given (in path's directory, so that the rename
// stays on one filesystem): synced, renamed over path, and the directory
// synced, so that a crash leaves path as it was or whole, never a part. On
// an error the temporary file is removed and path is left as it was.
func Write(path string, fill func(tmp *os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes a rename in dir, or a file created there, durable.
func SyncDir(dir string) error {
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
