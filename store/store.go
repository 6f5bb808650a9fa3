// Package store keeps grantwatch's state in one bbolt file: grants, their
// sealed refresh tokens, a due-time index, per-grant history, the notification
// outbox and daemon state. It is the only package that imports bbolt.
//
// grants.go (~830 lines) keeps every write path of a grant (import, set
// token, remove, the indexes and counters they keep in step) in one file on
// purpose: a change to one path must be read against the others.
//
// Layout (one bucket each, created at Open):
//
//	meta      "schema" → decimal version, "canary" → sealed canary, "keyid" → key fingerprint,
//	          "removedgen" → highest TokenGen of a removed grant (8-byte big-endian),
//	          "rekey" → a Rekey under way, "rekeyed" → the last one finished (JSON, rekey.go)
//	ids       grant id → row (8-byte big-endian, assigned once from the grants bucket's sequence)
//	grants    row → Grant, binary (codec.go; older records JSON), never the token
//	tokens    row → sealed token (seal.go: version, key tag, nonce, AES-256-GCM ciphertext;
//	          additional data = version ‖ row ‖ seal sequence ‖ grant id)
//	due       8-byte big-endian unix-nano ‖ row → empty (range scan from the start = due grants)
//	bystate   state ‖ 0 ‖ provider ‖ 0 ‖ row → empty
//	counts    provider ‖ 0 ‖ state → 8-byte big-endian count
//	history   row ‖ 8-byte big-endian seq → HistoryEntry as JSON
//	outbox    receiver ‖ 0 ‖ 8-byte big-endian seq → OutboxEntry as JSON
//	dead      same keys as outbox, dead-lettered entries
//	daemon    GetMeta/PutMeta keys
//	imports   import job id → ImportJob as JSON (unfinished resumable imports)
//	links     SHA-256 of a reconnect link's secret → Link as JSON, never the secret (links.go)
//	linkexp   8-byte big-endian expiry ‖ SHA-256 → empty (links.go)
//	appkeys   app key name → AppKey as JSON, the key's SHA-256, never the key (appkeys.go)
//	expiry    provider ‖ 0 ‖ 8-byte big-endian unix-nano ExpiresAt ‖ row → empty (forecasts, soonest first)
//	unread    provider ‖ 0 ‖ row → empty (grants with Unreadable ≥ UnreadableAfter)
//
// Every per-grant bucket is keyed by the grant's row rather than its id, so
// that importing ids in random order appends to them; only the ids bucket
// takes random inserts. (Keyed by id, an import of 10⁶ random ids rewrote
// pages of five B+trees per chunk and took 210 s; see bench_test.go.)
//
// Providers and receivers must not contain a NUL byte: it is the key
// separator.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout version this package reads and writes. A file
// with a higher version is refused (ErrNewerSchema) and left untouched.
//
// Version 2 adds grant records with a seal sequence and version-1 sealed
// tokens (seal.go), which version 1 cannot read. A version-1 file is
// marked version 2 when it is opened; its records are read either way and
// converted as they are written (all of them by Rekey).
//
// Version 3 adds grant records with the forecast and the unreadable count
// (codec.go recordV3) and the expiry and unreadable indexes. A version-2
// file is marked version 3 when it is opened: its grants have no forecast
// yet, so the new indexes start empty and fill as grants are probed.
const SchemaVersion = 3

const (
	defaultLockTimeout   = 2 * time.Second
	defaultMaxBatchSize  = 64
	defaultMaxBatchDelay = 2 * time.Millisecond
	defaultHistoryLimit  = 50
)

var (
	bucketMeta    = []byte("meta")
	bucketIDs     = []byte("ids")
	bucketGrants  = []byte("grants")
	bucketTokens  = []byte("tokens")
	bucketDue     = []byte("due")
	bucketByState = []byte("bystate")
	bucketCounts  = []byte("counts")
	bucketHistory = []byte("history")
	bucketOutbox  = []byte("outbox")
	bucketDead    = []byte("dead")
	bucketDaemon  = []byte("daemon")
	bucketImports = []byte("imports")
	bucketExpiry  = []byte("expiry")
	bucketUnread  = []byte("unread")

	allBuckets = [][]byte{bucketMeta, bucketIDs, bucketGrants, bucketTokens, bucketDue, bucketByState,
		bucketCounts, bucketHistory, bucketOutbox, bucketDead, bucketDaemon, bucketImports,
		bucketLinks, bucketLinkExp, bucketAppKeys, bucketExpiry, bucketUnread}

	keySchema = []byte("schema")
	keyCanary = []byte("canary")
	keyKeyID  = []byte("keyid")
	// keyRemovedGen holds the highest TokenGen of a removed grant.
	keyRemovedGen = []byte("removedgen")
)

// Options configures Open. Zero values select the defaults noted per field.
type Options struct {
	// Key is the 32-byte AES-256 key that seals refresh tokens. Required.
	Key []byte
	// NewKey is the key a Rekey seals with, for opening a database whose
	// rekey was interrupted (ErrRekeyPending without it): tokens of both
	// keys open, new ones are sealed with NewKey, and Rekey(NewKey)
	// finishes the rekey. When the rekey had finished (the database is
	// sealed with NewKey, Key does not open it), the database opens with
	// NewKey alone. Otherwise it is ignored. A caller that replaces its
	// key file after Rekey can thus pass both keys until it has.
	NewKey []byte
	// LockTimeout bounds the wait for the file lock held by another process;
	// then Open fails with ErrInUse. Default 2s.
	LockTimeout time.Duration
	// MaxBatchSize is bbolt's DB.MaxBatchSize for Apply. Set it to the number
	// of concurrent writers (workers): a batch then commits as soon as every
	// worker has handed in its result. Default 64.
	MaxBatchSize int
	// MaxBatchDelay is how long a partial batch waits for more writers.
	// Default 2ms.
	MaxBatchDelay time.Duration
	// HistoryLimit is how many history entries are kept per grant; older
	// ones are dropped. Default 50.
	HistoryLimit int
	// NoSync skips fsync on commit. A crash can lose or corrupt data: for
	// benchmarks and throwaway databases only.
	NoSync bool
}

// DB is an open grantwatch database. It is safe for concurrent use; writes are
// serialised by bbolt, reads run in parallel with them.
type DB struct {
	bolt         *bolt.DB
	path         string
	keys         atomic.Pointer[keyring]
	historyLimit int
	rekeyMu      sync.Mutex // one Rekey at a time

	closeOnce sync.Once
	closeErr  error
}

// Path returns the database file's path as given to Open.
func (db *DB) Path() string { return db.path }

// Close releases the file lock and closes the database. It is safe to call
// more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		if err := db.bolt.Close(); err != nil {
			db.closeErr = fmt.Errorf("close %s: %w", db.path, err)
		}
	})
	return db.closeErr
}

// Open opens or creates the database at path.
//
// A new (missing or empty) file gets every bucket, the schema version and a
// canary sealed with opts.Key, and mode 0600. An existing file is checked
// before anything is written: a newer schema gives ErrNewerSchema, a canary
// that does not open with opts.Key gives ErrWrongKey, a damaged or truncated
// file gives ErrCorrupt, a Rekey that did not finish gives ErrRekeyPending
// unless opts.NewKey is its new key; in each case the file is left as it
// was. A file of schema version 1 is marked version 2 (SchemaVersion). When
// another process holds the file, Open gives ErrInUse after
// opts.LockTimeout instead of waiting forever. Every error names the path.
func Open(path string, opts Options) (*DB, error) {
	key, err := newSealKey(opts.Key)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = defaultLockTimeout
	}
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = defaultMaxBatchSize
	}
	if opts.MaxBatchDelay <= 0 {
		opts.MaxBatchDelay = defaultMaxBatchDelay
	}
	if opts.HistoryLimit <= 0 {
		opts.HistoryLimit = defaultHistoryLimit
	}

	if err := precheck(path); err != nil {
		return nil, err
	}
	bdb, err := openBolt(path, opts, false)
	if err != nil {
		return nil, err
	}
	db := &DB{bolt: bdb, path: path, historyLimit: opts.HistoryLimit}
	db.keys.Store(newKeyring(key))
	bdb.MaxBatchSize = opts.MaxBatchSize
	bdb.MaxBatchDelay = opts.MaxBatchDelay

	if err := db.checkOrInit(opts.Key, opts.NewKey); err != nil {
		bdb.Close()
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("open %s: set mode 0600: %w", path, err)
	}
	return db, nil
}

// openBolt opens the bbolt file, turning bbolt's errors and panics on damaged
// files into ErrInUse / ErrCorrupt. Read-only, it takes a shared lock
// (which a running daemon's exclusive one excludes) and writes nothing.
func openBolt(path string, opts Options, readOnly bool) (bdb *bolt.DB, err error) {
	// bbolt reads the meta and freelist pages through mmap while opening; on a
	// truncated file that access faults. SetPanicOnFault turns the fault into
	// a panic we can recover from, and the captured file is closed so that
	// its flock does not outlive the failed Open.
	var file *os.File
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				file.Close()
			}
			bdb = nil
			err = corruptError(path, fmt.Errorf("%v", r))
		}
	}()
	bdb, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      opts.LockTimeout,
		ReadOnly:     readOnly,
		NoSync:       opts.NoSync,
		FreelistType: bolt.FreelistMapType,
		// NoFreelistSync stays false although the freelist is rewritten on
		// every commit (O(free pages)): unsynced, bbolt rebuilds it at Open
		// in a goroutine of its own, where a damaged page panics beyond
		// recovery, and ErrCorrupt could not be reported.
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, mode)
			file = f
			return f, err
		},
	})
	switch {
	case err == nil:
		return bdb, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open %s: %w (no lock within %s); stop the running daemon, or use its control socket", path, ErrInUse, opts.LockTimeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF):
		return nil, corruptError(path, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open %s: %w", path, err)
	default:
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
}

// corruptError wraps ErrCorrupt with the path, the detail and what to do. The
// detail comes from bbolt or the checks below and never holds a token.
func corruptError(path string, detail error) error {
	return fmt.Errorf("open %s: %w (%v); restore it from a backup, or move it aside and re-import the grants", path, ErrCorrupt, detail) //nolint:errorlint // detail is informational; the sentinel is ErrCorrupt
}

// checkOrInit validates an existing file (schema, size, canary) in a read
// transaction, or initialises a new one. It writes nothing to a file it
// refuses.
func (db *DB) checkOrInit(key, newKey []byte) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corruptError(db.path, fmt.Errorf("%v", r))
		}
	}()

	var (
		fresh   bool
		missing bool
		upgrade bool
	)
	err = db.bolt.View(func(tx *bolt.Tx) error {
		if fi, err := os.Stat(db.path); err == nil && fi.Size() < tx.Size() {
			return corruptError(db.path, fmt.Errorf("file is %d bytes, its pages need %d: truncated", fi.Size(), tx.Size()))
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return corruptError(db.path, errors.New("not a grantwatch database: no meta bucket"))
			}
			fresh = true
			return nil
		}
		v, err := readSchema(meta, db.path)
		if err != nil {
			return err
		}
		upgrade = v < SchemaVersion
		canary := meta.Get(keyCanary)
		if canary == nil {
			return corruptError(db.path, errors.New("key canary missing"))
		}
		ring := db.keys.Load()
		if !ring.openCanary(canary) {
			// A rekey to newKey that finished before the key file was
			// replaced: the database is sealed with newKey alone.
			nk, err := newSealKey(newKey)
			if newKey == nil || err != nil || !newKeyring(nk).openCanary(canary) {
				return wrongKeyError(meta, db.path, ring.seal)
			}
			ring = &keyring{seal: nk, open: []*sealKey{nk}}
		}
		if ring, err = openRing(meta, db.path, ring, newKey); err != nil {
			return err
		}
		db.keys.Store(ring)
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				missing = true
			}
		}
		return nil
	})
	if err != nil || !(fresh || missing || upgrade) {
		return err
	}
	return db.bolt.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion))); err != nil {
			return err
		}
		if !fresh {
			return nil
		}
		if err := meta.Put(keyKeyID, []byte(KeyFingerprint(key))); err != nil {
			return err
		}
		return meta.Put(keyCanary, db.keys.Load().sealCanary())
	})
}

// readSchema returns the file's schema version, or the error for one that
// is unreadable (ErrCorrupt) or newer than this package's (ErrNewerSchema).
func readSchema(meta *bolt.Bucket, path string) (int, error) {
	raw := meta.Get(keySchema)
	v, err := strconv.Atoi(string(raw))
	if err != nil || v < 1 {
		return 0, corruptError(path, fmt.Errorf("schema version %q unreadable", raw))
	}
	if v > SchemaVersion {
		return 0, fmt.Errorf("open %s: %w: schema version %d, this grantwatch reads up to %d; run a newer grantwatch (the file was not modified)", path, ErrNewerSchema, v, SchemaVersion)
	}
	return v, nil
}

// bkts are the buckets of one transaction.
type bkts struct {
	tx                                        *bolt.Tx
	ids, grants, tokens, due, byState, counts *bolt.Bucket
	history, outbox, dead, daemon, meta       *bolt.Bucket
	imports                                   *bolt.Bucket
	expiry, unread                            *bolt.Bucket
}

func buckets(tx *bolt.Tx) *bkts {
	return &bkts{
		tx:      tx,
		ids:     tx.Bucket(bucketIDs),
		grants:  tx.Bucket(bucketGrants),
		tokens:  tx.Bucket(bucketTokens),
		due:     tx.Bucket(bucketDue),
		byState: tx.Bucket(bucketByState),
		counts:  tx.Bucket(bucketCounts),
		history: tx.Bucket(bucketHistory),
		outbox:  tx.Bucket(bucketOutbox),
		dead:    tx.Bucket(bucketDead),
		daemon:  tx.Bucket(bucketDaemon),
		meta:    tx.Bucket(bucketMeta),
		imports: tx.Bucket(bucketImports),
		expiry:  tx.Bucket(bucketExpiry),
		unread:  tx.Bucket(bucketUnread),
	}
}

func (db *DB) view(fn func(b *bkts) error) (err error) {
	defer db.recoverCorrupt(&err)
	return db.bolt.View(func(tx *bolt.Tx) error { return fn(buckets(tx)) })
}

func (db *DB) update(fn func(b *bkts) error) (err error) {
	defer db.recoverCorrupt(&err)
	return db.writeErr(db.bolt.Update(func(tx *bolt.Tx) error { return fn(buckets(tx)) }))
}

// recoverCorrupt turns a panic while reading pages into ErrCorrupt. bbolt
// keeps no page checksums: a damaged page that Open's checks did not reach
// makes its cursors index out of range when read. bbolt rolls the
// transaction back on the way out, so the error is all that remains.
func (db *DB) recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = corruptError(db.path, fmt.Errorf("reading a page: %v", r))
	}
}

// writeErr says what to do about a write that failed for want of space.
// bbolt rolled the transaction back, so the database is as it was.
func (db *DB) writeErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w (the filesystem of %s is full: free space there and retry; the database was not changed)", err, db.path)
	}
	return err
}

// writeFailures are the errnos of a write the storage refused.
var writeFailures = []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EIO, syscall.EFBIG}

// IsWriteFailure reports whether err is a write that the storage refused
// rather than a problem of what was written: the filesystem full (ENOSPC)
// or over quota (EDQUOT), read-only (EROFS), the device failing (EIO), the
// file at its size limit (EFBIG). bbolt rolled the transaction back, so the
// database is as it was before the write, and the same write can succeed
// once the storage is fixed: the daemon should keep what it could not write
// (a rotated token above all), retry, and report the storage, not the data.
// ErrNotFound, ErrCorrupt, invalid input and the like are not write
// failures. (bbolt reports a failure to grow the file, rare since growing is
// a truncate, without its errno: such an error is not recognised.)
func IsWriteFailure(err error) bool {
	for _, e := range writeFailures {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// clone copies a value out of a transaction: bbolt's slices are only valid
// until it ends.
func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}
