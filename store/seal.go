package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeySize is the length of the sealing key in bytes (AES-256).
const KeySize = 32

// canaryAD is the additional data (and plaintext) of the canary sealed at
// creation; it cannot collide with a grant id's token because ids are the AD
// there and this string is reserved.
const canaryAD = "grantwatch-canary"

const nonceSize = 12

var errKeySize = fmt.Errorf("key must be %d bytes", KeySize)

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secrets key: %w, got %d", errKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	return cipher.NewGCM(block)
}

// seal encrypts plaintext with a fresh random nonce; ad binds the ciphertext
// to its grant id so a token copied to another grant does not open.
func (db *DB) seal(plaintext []byte, ad string) []byte {
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+db.aead.Overhead())
	rand.Read(out) // never fails (crypto/rand, Go 1.24+)
	return db.aead.Seal(out, out[:nonceSize], plaintext, []byte(ad))
}

// open decrypts a sealed value. sealed may point into a transaction: the
// result is a fresh slice.
func (db *DB) open(sealed []byte, ad string) ([]byte, error) {
	if len(sealed) < nonceSize+db.aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	return db.aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], []byte(ad))
}

// KeyFingerprint names a key without revealing it: the first 8 hex digits of
// its SHA-256. Error messages and logs use it to tell keys apart.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return "sha256:" + hex.EncodeToString(sum[:4])
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
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
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
