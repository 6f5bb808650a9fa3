package store

import (
	"errors"
	"fmt"
	"os"
)

// OpenWithKeyFile opens the database at path with the key in keyFile (the
// config's daemon.db and secrets.key_file; opts.Key is set from it). A key
// is created only with a new database: a database whose key file went
// missing fails on the missing file rather than getting a new key.
func OpenWithKeyFile(path, keyFile string, opts Options) (*DB, error) {
	_, statErr := os.Stat(path)
	key, err := LoadKey(keyFile, errors.Is(statErr, os.ErrNotExist))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("secrets.key_file: %s is missing but the database %s exists: restore the key it was created with (a new key cannot open it): %w", keyFile, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("secrets.key_file: %w", err)
	}
	opts.Key = key
	db, err := Open(path, opts)
	if errors.Is(err, ErrWrongKey) {
		// The error names the database; the key's path is the caller's.
		return nil, fmt.Errorf("%w (secrets.key_file is %s)", err, keyFile)
	}
	return db, err
}
