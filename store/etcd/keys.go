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

func (s *Store) grantKey(id string) string   { return s.prefix + "g/" + id }
func (s *Store) grantPrefix() string         { return s.prefix + "g/" }
func (s *Store) duePrefix() string           { return s.prefix + "due/" }
func (s *Store) histPrefix(id string) string { return s.prefix + "h/" + id + "\x00" }
func (s *Store) metaKey(k string) string     { return s.prefix + "m/" + k }
func (s *Store) importKey(id string) string  { return s.prefix + "imp/" + id }
func (s *Store) countPrefix() string         { return s.prefix + "cnt/" }

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

func (s *Store) histKey(id string, seq uint64) string { return s.histPrefix(id) + hex16(seq) }

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

// record is a grant as kept under g/<id>: the grant (Row set), the number
// of its next history entry and its sealed token.
type record struct {
	g        store.Grant
	histNext uint64
	sealed   []byte
}

const recordVersion = 1

var errBadRecord = errors.New("not a grant record")

// encode is version ‖ uvarint row ‖ uvarint histNext ‖ uvarint len ‖ the
// grant record ‖ the sealed token.
func (r *record) encode() string {
	rec := store.EncodeGrant(&r.g)
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(rec)+len(r.sealed))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, r.g.Row)
	b = binary.AppendUvarint(b, r.histNext)
	b = binary.AppendUvarint(b, uint64(len(rec)))
	b = append(b, rec...)
	return string(append(b, r.sealed...))
}

func decodeRecord(v []byte) (record, error) {
	var r record
	if len(v) == 0 || v[0] != recordVersion {
		return r, errBadRecord
	}
	v = v[1:]
	var vals [3]uint64
	for i := range vals {
		x, n := binary.Uvarint(v)
		if n <= 0 {
			return r, errBadRecord
		}
		vals[i], v = x, v[n:]
	}
	if vals[2] > uint64(len(v)) {
		return r, errBadRecord
	}
	if err := store.DecodeGrant(v[:vals[2]], &r.g); err != nil {
		return r, err
	}
	r.g.Row, r.histNext = vals[0], vals[1]
	r.sealed = append([]byte(nil), v[vals[2]:]...)
	return r, nil
}

func parseUint(v []byte) uint64 {
	n, _ := strconv.ParseUint(string(v), 10, 64)
	return n
}
