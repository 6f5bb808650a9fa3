package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Key encodings. Times are big-endian unix nanoseconds so that byte order is
// time order; names are joined with a 0 byte, which names may not contain.

var errNUL = errors.New("must not contain a NUL byte")

func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q: %w", what, s, errNUL)
	}
	return nil
}

// timeNanos clamps t to the range of unix nanoseconds an int64 holds:
// before 1970 is 0, after 2262 is the largest (UnixNano would wrap around
// and make a far-future due time due at once).
func timeNanos(t time.Time) uint64 {
	switch {
	case t.Before(unixEpoch):
		return 0
	case t.After(maxNanosTime):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

var (
	unixEpoch    = time.Unix(0, 0)
	maxNanosTime = time.Unix(0, math.MaxInt64)
)

// Grants are stored under a row number assigned at creation (the grants
// bucket's sequence), not under their id: an import of ids in random order
// then appends to every bucket instead of rewriting pages all over the
// B+trees, and only the small id index takes random inserts.

func rowKey(row uint64) []byte { return u64(row) }

func rowOf(k []byte) uint64 { return binary.BigEndian.Uint64(k) }

func dueKey(t time.Time, row uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, timeNanos(t))
	binary.BigEndian.PutUint64(k[8:], row)
	return k
}

func dueKeyTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
}

func stateKey(state State, provider string, row uint64) []byte {
	k := make([]byte, 0, len(state)+len(provider)+2+8)
	k = append(k, state...)
	k = append(k, 0)
	k = append(k, provider...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, row)
}

// statePrefix selects a state's index entries, or one provider's within it.
func statePrefix(state State, provider string) []byte {
	k := append([]byte(state), 0)
	if provider != "" {
		k = append(k, provider...)
		k = append(k, 0)
	}
	return k
}

// stateKeyRow returns the row part of a state index key.
func stateKeyRow(k []byte) uint64 {
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

// histKey is row ‖ seq.
func histKey(row, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(u64(row), seq)
}

func countKey(provider string, state State) []byte {
	k := make([]byte, 0, len(provider)+1+len(state))
	k = append(k, provider...)
	k = append(k, 0)
	return append(k, state...)
}

// seqKey is name ‖ 0 ‖ big-endian seq: outbox keys (name = receiver).
func seqKey(name string, seq uint64) []byte {
	k := make([]byte, len(name)+9)
	copy(k, name)
	binary.BigEndian.PutUint64(k[len(name)+1:], seq)
	return k
}

func seqPrefix(name string) []byte {
	return append([]byte(name), 0)
}

func seqOf(k []byte) uint64 {
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

func u64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

// expiryKey is provider ‖ 0 ‖ big-endian unix-nano t ‖ row: one provider's
// forecasts in time order.
func expiryKey(provider string, t time.Time, row uint64) []byte {
	k := make([]byte, 0, len(provider)+1+16)
	k = append(k, provider...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, timeNanos(t))
	return binary.BigEndian.AppendUint64(k, row)
}

// unreadKey is provider ‖ 0 ‖ row.
func unreadKey(provider string, row uint64) []byte {
	k := make([]byte, 0, len(provider)+1+8)
	k = append(k, provider...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, row)
}

// providerPrefix selects one provider's entries of the expiry and
// unreadable indexes.
func providerPrefix(provider string) []byte { return append([]byte(provider), 0) }
