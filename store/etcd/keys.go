package etcd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/grantwatch/grantwatch/store"
)

// Key encodings. Numbers are 16 hex digits, so that key order is numeric
// order; names are ended by a NUL byte, which they may not contain.

func hex16(v uint64) string { return fmt.Sprintf("%016x", v) }

func parseHex16(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}

// nanos is store's timeNanos: before 1970 is 0, after 2262 the largest.
func nanos(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

func (s *Store) grantKey(id string) string  { return s.prefix + "g/" + id }
func (s *Store) grantPrefix() string        { return s.prefix + "g/" }
func (s *Store) duePrefix() string          { return s.prefix + "due/" }
func (s *Store) metaKey(k string) string    { return s.prefix + "m/" + k }
func (s *Store) importKey(id string) string { return s.prefix + "imp/" + id }
func (s *Store) countPrefix() string        { return s.prefix + "cnt/" }

func (s *Store) seqKey(name string) string { return s.prefix + "seq/" + name }
func (s *Store) removedGenKey() string     { return s.prefix + "removedgen" }

// dueKey is due/<ns><row>; zero t: no entry.
func (s *Store) dueKey(t time.Time, row uint64) string {
	if t.IsZero() {
		return ""
	}
	return s.duePrefix() + hex16(nanos(t)) + hex16(row)
}

// parseDue splits a due key's suffix into its time and row.
func parseDue(suffix string) (uint64, uint64, bool) {
	if len(suffix) != 32 {
		return 0, 0, false
	}
	ns, ok1 := parseHex16(suffix[:16])
	row, ok2 := parseHex16(suffix[16:])
	return ns, row, ok1 && ok2
}

func (s *Store) statePrefix(state store.State, provider string) string {
	k := s.prefix + "st/" + string(state) + "\x00"
	if provider != "" {
		k += provider + "\x00"
	}
	return k
}

func (s *Store) stateKey(g *store.Grant) string {
	return s.statePrefix(g.State, g.Provider) + hex16(g.Row)
}

func (s *Store) countKey(provider string, state store.State) string {
	return s.countPrefix() + provider + "\x00" + string(state)
}

func (s *Store) outboxPrefix(dead bool, receiver string) string {
	b := "ob/"
	if dead {
		b = "dead/"
	}
	return s.prefix + b + receiver + "\x00"
}

func (s *Store) outboxKey(dead bool, receiver string, seq uint64) string {
	return s.outboxPrefix(dead, receiver) + hex16(seq)
}

// record is a grant as kept under g/<id>: the grant (Row set), its
// history (oldest first, at most the history limit: a grant's history is
// written with it, so a transition costs no key of its own) and its sealed
// token.
type record struct {
	g      store.Grant
	hist   [][]byte // store.EncodeHistory records
	sealed []byte
}

const recordVersion = 1

var errBadRecord = errors.New("not a grant record")

// encode is version ‖ uvarint row ‖ uvarint len ‖ the grant record ‖
// uvarint count ‖ (uvarint len ‖ history record)… ‖ the sealed token.
func (r *record) encode() string {
	rec := store.EncodeGrant(&r.g)
	n := 1 + 4*binary.MaxVarintLen64 + len(rec) + len(r.sealed)
	for _, h := range r.hist {
		n += binary.MaxVarintLen64 + len(h)
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, r.g.Row)
	b = binary.AppendUvarint(b, uint64(len(rec)))
	b = append(b, rec...)
	b = binary.AppendUvarint(b, uint64(len(r.hist)))
	for _, h := range r.hist {
		b = binary.AppendUvarint(b, uint64(len(h)))
		b = append(b, h...)
	}
	return string(append(b, r.sealed...))
}

func decodeRecord(v []byte) (record, error) {
	var r record
	if len(v) == 0 || v[0] != recordVersion {
		return r, errBadRecord
	}
	v = v[1:]
	next := func() (uint64, bool) {
		x, n := binary.Uvarint(v)
		if n <= 0 {
			return 0, false
		}
		v = v[n:]
		return x, true
	}
	bytesOf := func() ([]byte, bool) {
		n, ok := next()
		if !ok || n > uint64(len(v)) {
			return nil, false
		}
		b := v[:n]
		v = v[n:]
		return b, true
	}
	row, ok := next()
	if !ok {
		return r, errBadRecord
	}
	rec, ok := bytesOf()
	if !ok {
		return r, errBadRecord
	}
	if err := store.DecodeGrant(rec, &r.g); err != nil {
		return r, err
	}
	r.g.Row = row
	n, ok := next()
	if !ok || n > uint64(len(v)) {
		return r, errBadRecord
	}
	for range n {
		h, ok := bytesOf()
		if !ok {
			return r, errBadRecord
		}
		r.hist = append(r.hist, append([]byte(nil), h...))
	}
	r.sealed = append([]byte(nil), v...)
	return r, nil
}

func parseUint(v []byte) uint64 {
	n, _ := strconv.ParseUint(string(v), 10, 64)
	return n
}
