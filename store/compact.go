package store

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/grantwatch/grantwatch/internal/atomicfile"
	bolt "go.etcd.io/bbolt"
)

// compactTxSize bounds the bytes copied per transaction of Compact, so that
// a large database is not copied in one transaction held in memory.
const compactTxSize = 64 << 20

// Compact writes a compacted copy of the database file src to dst: every
// bucket, key, value and bucket sequence (grant rows, outbox sequence)
// copied in order into full pages, so that the space of removed grants and
// trimmed history, which bbolt keeps for reuse but never returns, is given
// back. The copy is the same database: it opens with the same key (the
// sealed tokens are copied as they are; Compact needs no key).
//
// src is only read, under a shared lock: while a daemon holds it, Compact
// gives ErrInUse after the default lock timeout. It is checked as Open
// checks a file (ErrCorrupt for a damaged or foreign one, ErrNewerSchema).
// dst is written atomically with mode 0600 (a temporary file in its
// directory, fsynced, renamed): after a crash it is absent, as it was, or
// whole. dst must not be src. Swapping dst in for src (a rename while no
// daemon runs) is the caller's part.
func Compact(src, dst string) error {
	if same, err := sameFile(src, dst); err != nil || same {
		if err == nil {
			err = errors.New("the destination is the source: name another file, then rename it over the source")
		}
		return fmt.Errorf("compact %s into %s: %w", src, dst, err)
	}
	if err := precheck(src); err != nil {
		return err
	}
	sdb, err := openBolt(src, Options{LockTimeout: defaultLockTimeout}, true)
	if err != nil {
		return err
	}
	defer sdb.Close()
	if err := checkSchema(sdb, src); err != nil {
		return err
	}
	err = atomicfile.Write(dst, func(f *os.File) error {
		ddb, err := bolt.Open(f.Name(), 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
		if err != nil {
			return err
		}
		err = compactBolt(ddb, sdb, src)
		if cerr := ddb.Close(); err == nil {
			err = cerr
		}
		return err // atomicfile.Write fsyncs the file once, at the end
	})
	if err != nil {
		return fmt.Errorf("compact %s into %s: %w", src, dst, err)
	}
	return nil
}

// compactBolt is bolt.Compact, with a damaged page of src (a panic while
// reading it) reported as ErrCorrupt.
func compactBolt(dst, src *bolt.DB, path string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corruptError(path, fmt.Errorf("reading a page: %v", r))
		}
	}()
	return bolt.Compact(dst, src, compactTxSize)
}

// checkSchema refuses a bbolt file that is not a grantwatch database, or is
// one of a newer schema.
func checkSchema(bdb *bolt.DB, path string) error {
	return bdb.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return corruptError(path, errors.New("not a grantwatch database: no meta bucket"))
		}
		_, err := readSchema(meta, path)
		return err
	})
}
