package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/grantwatch/grantwatch/internal/atomicfile"
)

// KeySize is the length of the sealing key in bytes (AES-256).
const KeySize = 32

// Sealed records (tokens and the key canary). A record sealed by this
// version is
//
//	sealV1 ‖ key tag (4 bytes) ‖ nonce (12 bytes) ‖ AES-256-GCM ciphertext
//
// with additional data sealV1 ‖ row ‖ seal sequence (8 bytes big-endian
// each) ‖ grant id. The key tag is the first 4 bytes of the key's SHA-256
// (what KeyFingerprint prints): it says which key sealed the record, so
// that while a Rekey runs, records of the old and the new key are both read.
// The row and the grant's seal sequence (Grant.sealSeq, raised by every
// seal of its token) bind a ciphertext to the grant's current token: an
// older ciphertext of the same grant (from before a rotation, set-token or
// re-import, or out of a backup) does not open in its place, nor one of a
// removed grant of the same id (a new grant gets a new row). The canary is
// sealed as the token of row 0 (no grant's), id canaryAD, sequence 0.
//
// Records sealed before version 1 (nonce ‖ ciphertext, additional data the
// grant id alone, or canaryAD for the canary) are read for grants whose
// seal sequence is 0: those no version-1 seal has touched. Once a grant's
// token is sealed anew its sequence is above 0, and an old-style
// ciphertext put back is refused. Rekey converts every record.
const (
	sealV1     = 0x01
	keyTagSize = 4
	nonceSize  = 12
)

// canaryAD is the id (and plaintext) of the canary sealed at creation. No
// grant may have it (reservedIDs): before version 1 it was the canary's
// whole additional data, as a grant's id is its token's.
const canaryAD = "grantwatch-canary"

var (
	errKeySize = fmt.Errorf("key must be %d bytes", KeySize)
	// errNoOpen is a sealed record that does not open with its key.
	errNoOpen = errors.New("sealed value does not open: damaged, or an older one put back in its place")
)

// sealKey is one key, ready to seal and open.
type sealKey struct {
	aead cipher.AEAD
	tag  [keyTagSize]byte
}

func newSealKey(key []byte) (*sealKey, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secrets key: %w, got %d", errKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	k := &sealKey{aead: aead}
	sum := sha256.Sum256(key)
	copy(k.tag[:], sum[:])
	return k, nil
}

// fingerprint is KeyFingerprint of the key.
func (k *sealKey) fingerprint() string { return tagFingerprint(k.tag[:]) }

func tagFingerprint(tag []byte) string { return "sha256:" + hex.EncodeToString(tag) }

// keyring is the keys a DB seals and opens with. A keyring is never
// modified, only replaced (Rekey): a reader loads it before its read
// transaction, so that it holds every key its snapshot's records need.
type keyring struct {
	seal   *sealKey   // seals every new record
	open   []*sealKey // open version-1 records, found by tag
	legacy *sealKey   // opens records sealed before version 1; nil when none can remain
}

func newKeyring(k *sealKey) *keyring {
	return &keyring{seal: k, open: []*sealKey{k}, legacy: k}
}

func (r *keyring) byTag(tag []byte) *sealKey {
	for _, k := range r.open {
		if bytes.Equal(k.tag[:], tag) {
			return k
		}
	}
	return nil
}

// tokenAD is the additional data of a version-1 record.
func tokenAD(row, seq uint64, id string) []byte {
	ad := make([]byte, 0, 17+len(id))
	ad = append(ad, sealV1)
	ad = binary.BigEndian.AppendUint64(ad, row)
	ad = binary.BigEndian.AppendUint64(ad, seq)
	return append(ad, id...)
}

// sealRecord seals plaintext with a fresh random nonce as a version-1 record.
func (r *keyring) sealRecord(plaintext, ad []byte) []byte {
	k := r.seal
	out := make([]byte, 1+keyTagSize+nonceSize, 1+keyTagSize+nonceSize+len(plaintext)+k.aead.Overhead())
	out[0] = sealV1
	copy(out[1:], k.tag[:])
	nonce := out[1+keyTagSize:]
	rand.Read(nonce) // never fails (crypto/rand, Go 1.24+)
	return k.aead.Seal(out, nonce, plaintext, ad)
}

// openRecord opens a version-1 record. rec may point into a transaction:
// the result is a fresh slice.
func (r *keyring) openRecord(rec, ad []byte) ([]byte, error) {
	if len(rec) < 1+keyTagSize+nonceSize+16 || rec[0] != sealV1 {
		return nil, errNoOpen
	}
	tag := rec[1 : 1+keyTagSize]
	k := r.byTag(tag)
	if k == nil {
		return nil, fmt.Errorf("sealed with key %s, which this process does not hold (a Rekey to it may have been interrupted: open with it as Options.NewKey)", tagFingerprint(tag))
	}
	rest := rec[1+keyTagSize:]
	pt, err := k.aead.Open(nil, rest[:nonceSize], rest[nonceSize:], ad)
	if err != nil {
		return nil, errNoOpen
	}
	return pt, nil
}

// openV0 opens a record sealed before version 1.
func (r *keyring) openV0(rec []byte, ad string) ([]byte, error) {
	k := r.legacy
	if k == nil {
		return nil, fmt.Errorf("sealed the pre-version-1 way, which no record may be after a rekey: %w", errNoOpen)
	}
	if len(rec) < nonceSize+k.aead.Overhead() {
		return nil, errNoOpen
	}
	pt, err := k.aead.Open(nil, rec[:nonceSize], rec[nonceSize:], []byte(ad))
	if err != nil {
		return nil, errNoOpen
	}
	return pt, nil
}

// sealToken seals g's token. g.Row and g.sealSeq must be those written with
// it, in the same transaction.
func (r *keyring) sealToken(g *Grant, token []byte) []byte {
	return r.sealRecord(token, tokenAD(g.Row, g.sealSeq, g.ID))
}

// openToken opens the token record of g as read (Row and sealSeq set).
func (r *keyring) openToken(g *Grant, rec []byte) ([]byte, error) {
	if g.sealSeq == 0 {
		return r.openV0(rec, g.ID)
	}
	return r.openRecord(rec, tokenAD(g.Row, g.sealSeq, g.ID))
}

func (r *keyring) sealCanary() []byte {
	return r.sealRecord([]byte(canaryAD), tokenAD(0, 0, canaryAD))
}

// openCanary reports whether the canary opens with a key of r. A canary of
// either version is read; one of version 0 only with r.legacy.
func (r *keyring) openCanary(rec []byte) bool {
	if pt, err := r.openRecord(rec, tokenAD(0, 0, canaryAD)); err == nil && string(pt) == canaryAD {
		return true
	}
	pt, err := r.openV0(rec, canaryAD)
	return err == nil && string(pt) == canaryAD
}

// KeyFingerprint names a key without revealing it: the first 8 hex digits of
// its SHA-256. Error messages and logs use it to tell keys apart.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return tagFingerprint(sum[:keyTagSize])
}

// LoadKey reads the sealing key from path: 32 raw bytes, or 32 bytes as
// base64 (standard or URL alphabet, padded or not) or hex, surrounding
// whitespace ignored. When the file does not exist and create is true, a new
// random key is written there as base64 text with mode 0600, atomically: it
// appears complete or not at all, and a key written concurrently by another
// process wins (its key is returned). The directory must exist.
//
// LoadKey does not judge the file's mode; see KeyFileMode. Errors name the
// path, never the key.
func LoadKey(path string, create bool) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	key, err := parseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

func parseKey(raw []byte) ([]byte, error) {
	if len(raw) == KeySize {
		return bytes.Clone(raw), nil
	}
	text := string(bytes.TrimSpace(raw))
	if len(text) == 2*KeySize {
		if k, err := hex.DecodeString(text); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(text); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: want %d raw bytes, or %d bytes as base64 or hex text; the file holds %d bytes that are neither", errKeySize, KeySize, KeySize, len(raw))
}

func createKey(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	rand.Read(key)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".grantwatch-key-*")
	if err != nil {
		return nil, fmt.Errorf("create key file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	text := base64.StdEncoding.EncodeToString(key) + "\n"
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(text)
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("create key file %s: %w", path, err)
		}
	} else {
		tmp.Close()
		return nil, fmt.Errorf("create key file %s: %w", path, err)
	}
	// Link, unlike Rename, fails when path exists: two first runs racing
	// agree on one key instead of the later silently replacing the earlier.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadKey(path, false)
		}
		return nil, fmt.Errorf("create key file %s: %w", path, err)
	}
	_ = atomicfile.SyncDir(filepath.Dir(path))
	return key, nil
}

// KeyFileMode returns the permission bits of the key file, so that the caller
// can warn when group or others may read it (mode&0o077 != 0).
func KeyFileMode(path string) (os.FileMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("key file: %w", err)
	}
	return fi.Mode().Perm(), nil
}
