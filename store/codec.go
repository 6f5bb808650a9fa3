package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"time"
)

// Grant records are written in a compact binary form: each probe decodes
// and encodes its grant twice (lease, result), and encoding/json was a fifth
// of the daemon's CPU at fleet scale. Records written as JSON (the first
// byte is '{') are still read.
//
// The form: recordV1, then the strings ID, Provider, Subject, State, Cause,
// Action, Error, ErrorDescription, PreviousState, PreviousCause (each a
// uvarint length and the bytes), the labels (a uvarint count, then key and
// value strings in key order), Failures (varint), TokenGen (uvarint), a flag
// byte (bit 0: LostAnswer, bit 1: wide times, bit 2: Rotated, bit 3:
// ReuseDetected), then CreatedAt, LastProbeAt,
// LastSuccessAt, StateChangedAt and NextDueAt as varint Unix nanoseconds (0
// for the zero time) or, with wide times, each as varint Unix seconds and
// uvarint nanoseconds (the zero time's own, so that 0 is the epoch). Wide
// times are written only when a time does not fit the narrow form: outside
// 1678..2262, or a non-zero time at exactly the Unix epoch.
//
// recordV2 is recordV1 followed by the seal sequence (uvarint). Records of
// version 1 are still read, with seal sequence 0.
//
// recordV3 is recordV2 followed by the forecast and the unreadable count:
// Unreadable (uvarint), ExpiresBasis (string), a second flag byte (bit 0:
// ExpiryWarned, bit 1: wide times) and ConsentAt, AnnouncedExpiresAt and
// ExpiresAt as above. Records of versions 1 and 2 are still read, with
// those fields zero.
const (
	recordV1 = 0x01
	recordV2 = 0x02
	recordV3 = 0x03
)

var errBadRecord = errors.New("not a grant record")

func encodeGrant(g *Grant) []byte { return encodeGrantForm(g, recordV3) }

// encodeGrantForm writes g in the given record version (older ones for
// tests of reading what older grantwatch versions wrote).
func encodeGrantForm(g *Grant, form byte) []byte {
	n := 80 + len(g.ExpiresBasis) + len(g.ID) + len(g.Provider) + len(g.Subject) + len(g.Cause) + len(g.Error) + len(g.ErrorDescription)
	for k, v := range g.Labels {
		n += len(k) + len(v) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, form)
	for _, s := range []string{g.ID, g.Provider, g.Subject, string(g.State), g.Cause, g.Action,
		g.Error, g.ErrorDescription, string(g.PreviousState), g.PreviousCause} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(g.Labels)))
	keys := make([]string, 0, len(g.Labels))
	for k := range g.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, g.Labels[k])
	}
	b = binary.AppendVarint(b, int64(g.Failures))
	b = binary.AppendUvarint(b, g.TokenGen)
	var flags byte
	if g.LostAnswer {
		flags |= flagLostAnswer
	}
	if g.Rotated {
		flags |= flagRotated
	}
	if g.ReuseDetected {
		flags |= flagReuseDetected
	}
	b = appendTimes(b, flags, g.CreatedAt, g.LastProbeAt, g.LastSuccessAt, g.StateChangedAt, g.NextDueAt)
	if form == recordV1 {
		return b
	}
	b = binary.AppendUvarint(b, g.sealSeq)
	if form == recordV2 {
		return b
	}
	b = binary.AppendUvarint(b, uint64(max(g.Unreadable, 0)))
	b = appendString(b, g.ExpiresBasis)
	var flags3 byte
	if g.ExpiryWarned {
		flags3 |= flagExpiryWarned
	}
	return appendTimes(b, flags3, g.ConsentAt, g.AnnouncedExpiresAt, g.ExpiresAt)
}

// appendTimes appends the flag byte (flagWideTimes added when needed) and
// the times in the narrow or the wide form.
func appendTimes(b []byte, flags byte, times ...time.Time) []byte {
	wide := false
	for _, t := range times {
		if !t.IsZero() && (t.UnixNano() == 0 || !time.Unix(0, t.UnixNano()).Equal(t)) {
			wide = true
		}
	}
	if wide {
		flags |= flagWideTimes
	}
	b = append(b, flags)
	for _, t := range times {
		switch {
		case wide: // the zero time too: its own seconds, unlike the epoch
			b = binary.AppendVarint(b, t.Unix())
			b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
		case t.IsZero():
			b = binary.AppendVarint(b, 0)
		default:
			b = binary.AppendVarint(b, t.UnixNano())
		}
	}
	return b
}

const (
	flagLostAnswer    = 1 << 0
	flagWideTimes     = 1 << 1
	flagRotated       = 1 << 2
	flagReuseDetected = 1 << 3
	// flagExpiryWarned is bit 0 of recordV3's second flag byte, whose bit 1
	// is flagWideTimes for its own times.
	flagExpiryWarned = 1 << 0
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeGrant reads a record of either form.
func decodeGrant(v []byte, g *Grant) error {
	if len(v) > 0 && v[0] == '{' {
		return json.Unmarshal(v, g)
	}
	if len(v) == 0 || v[0] < recordV1 || v[0] > recordV3 {
		return errBadRecord
	}
	d := decoder{b: v[1:]}
	var state, prevState string
	for _, p := range []*string{&g.ID, &g.Provider, &g.Subject, &state, &g.Cause, &g.Action,
		&g.Error, &g.ErrorDescription, &prevState, &g.PreviousCause} {
		*p = d.string()
	}
	g.State, g.PreviousState = State(state), State(prevState)
	if n := d.uvarint(); n > 0 {
		if n > uint64(len(d.b)) {
			return errBadRecord
		}
		g.Labels = make(map[string]string, n)
		for range n {
			k := d.string()
			g.Labels[k] = d.string()
		}
	}
	g.Failures = int(d.varint())
	g.TokenGen = d.uvarint()
	flags := d.times(&g.CreatedAt, &g.LastProbeAt, &g.LastSuccessAt, &g.StateChangedAt, &g.NextDueAt)
	g.LostAnswer = flags&flagLostAnswer != 0
	g.Rotated = flags&flagRotated != 0
	g.ReuseDetected = flags&flagReuseDetected != 0
	g.sealSeq = 0
	if v[0] >= recordV2 {
		g.sealSeq = d.uvarint()
	}
	g.Unreadable, g.ExpiresBasis, g.ExpiryWarned = 0, "", false
	g.ConsentAt, g.AnnouncedExpiresAt, g.ExpiresAt = time.Time{}, time.Time{}, time.Time{}
	if v[0] >= recordV3 {
		g.Unreadable = int(min(d.uvarint(), math.MaxInt32))
		g.ExpiresBasis = d.string()
		g.ExpiryWarned = d.times(&g.ConsentAt, &g.AnnouncedExpiresAt, &g.ExpiresAt)&flagExpiryWarned != 0
	}
	if d.bad || len(d.b) != 0 {
		return errBadRecord
	}
	return nil
}

// History entries are written in the same manner: recordV1, the strings
// From, To, Cause, Error, ErrorDescription and Note, a flag byte and At.
// Entries written as JSON are still read.

func encodeHistory(e *HistoryEntry) []byte {
	b := make([]byte, 0, 24+len(e.From)+len(e.To)+len(e.Cause)+len(e.Error)+len(e.ErrorDescription)+len(e.Note))
	b = append(b, recordV1)
	for _, s := range []string{string(e.From), string(e.To), e.Cause, e.Error, e.ErrorDescription, e.Note} {
		b = appendString(b, s)
	}
	return appendTimes(b, 0, e.At)
}

func decodeHistory(v []byte, e *HistoryEntry) error {
	if len(v) > 0 && v[0] == '{' {
		return json.Unmarshal(v, e)
	}
	if len(v) == 0 || v[0] != recordV1 {
		return errBadRecord
	}
	d := decoder{b: v[1:]}
	var from, to string
	for _, p := range []*string{&from, &to, &e.Cause, &e.Error, &e.ErrorDescription, &e.Note} {
		*p = d.string()
	}
	e.From, e.To = State(from), State(to)
	d.times(&e.At)
	if d.bad || len(d.b) != 0 {
		return errBadRecord
	}
	return nil
}

// times reads what appendTimes wrote and returns the flag byte.
func (d *decoder) times(ts ...*time.Time) byte {
	flags := d.byte()
	wide := flags&flagWideTimes != 0
	for _, t := range ts {
		*t = time.Time{}
		if wide {
			sec, ns := d.varint(), d.uvarint()
			if ns >= 1e9 {
				d.bad = true
			} else if u := time.Unix(sec, int64(ns)).UTC(); !u.IsZero() {
				*t = u
			}
		} else if ns := d.varint(); ns != 0 {
			*t = time.Unix(0, ns).UTC()
		}
	}
	return flags
}

// decoder reads the binary form; a short or malformed record sets bad.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
