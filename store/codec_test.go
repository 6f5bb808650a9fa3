package store

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestGrantCodecRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 27, 6, 0, 0, 123456789, time.UTC)
	tests := []Grant{
		{},
		{ID: "g1", Provider: "google", State: StatePending, CreatedAt: now, NextDueAt: now, TokenGen: 1},
		{
			ID: "u42-gmail", Provider: "google", Subject: "ann@example.com",
			Labels: map[string]string{"tenant": "acme", "team": "a", "": "empty key"},
			State:  StateReconnectRequired, Cause: "revoked", Action: "reconnect",
			Error: "invalid_grant", ErrorDescription: "Token has been expired or revoked. ünïcödé",
			Failures: 7, CreatedAt: now.Add(-time.Hour), LastProbeAt: now, LastSuccessAt: now.Add(-time.Minute),
			StateChangedAt: now, TokenGen: 1 << 40, LostAnswer: true, Rotated: true, ReuseDetected: true,
			PreviousState: StateDegraded, PreviousCause: "server_error", sealSeq: 1<<33 + 5,
			Unreadable: 4, ConsentAt: now.Add(-48 * time.Hour), AnnouncedExpiresAt: now.Add(time.Hour),
			ExpiresAt: now.Add(time.Hour), ExpiresBasis: BasisAnnounced, ExpiryWarned: true,
		},
		// A forecast beyond the nanosecond range (Intuit's five years are
		// not, but a configured max_lifetime may be).
		{ID: "far", Provider: "p", State: StateHealthy, ExpiresAt: time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC), ExpiresBasis: BasisConfigured},
	}
	for _, g := range tests {
		var got Grant
		if err := decodeGrant(encodeGrant(&g), &got); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !reflect.DeepEqual(got, g) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, g)
		}
	}
}

// TestGrantCodecReadsV1: records of version 1 (before the seal sequence)
// are read, with seal sequence 0, so that their tokens are opened the way
// they were sealed.
func TestGrantCodecReadsV1(t *testing.T) {
	g := Grant{ID: "g1", Provider: "google", State: StateHealthy, TokenGen: 3, Labels: map[string]string{"a": "b"}, NextDueAt: t0}
	var got Grant
	if err := decodeGrant(encodeGrantV1(&g), &got); err != nil || !reflect.DeepEqual(got, g) {
		t.Fatalf("v1 record decoded as %+v, %v; want %+v", got, err, g)
	}
	g.sealSeq = 4
	got = Grant{}
	if err := decodeGrant(encodeGrantV1(&g), &got); err != nil || got.sealSeq != 0 {
		t.Errorf("v1 record: sealSeq %d, %v; want 0", got.sealSeq, err)
	}
}

// encodeGrantV1 writes g as grantwatch wrote grant records before the seal
// sequence: version 1, without the trailing sequence.
func encodeGrantV1(g *Grant) []byte { return encodeGrantForm(g, recordV1) }

// TestGrantCodecReadsV2: records of version 2 (before the forecast) are
// read with their seal sequence, and without a forecast or an unreadable
// count.
func TestGrantCodecReadsV2(t *testing.T) {
	g := Grant{ID: "g1", Provider: "google", State: StateHealthy, TokenGen: 3, NextDueAt: t0, sealSeq: 9}
	var got Grant
	if err := decodeGrant(encodeGrantForm(&g, recordV2), &got); err != nil || !reflect.DeepEqual(got, g) {
		t.Fatalf("v2 record decoded as %+v, %v; want %+v", got, err, g)
	}
	g.Unreadable, g.ExpiresAt, g.ExpiresBasis = 3, t0, BasisIdle
	got = Grant{Unreadable: 7, ExpiresBasis: "stale"}
	if err := decodeGrant(encodeGrantForm(&g, recordV2), &got); err != nil || got.Unreadable != 0 || !got.ExpiresAt.IsZero() || got.ExpiresBasis != "" {
		t.Errorf("v2 record: forecast %v %q, unreadable %d, %v; want none", got.ExpiresAt, got.ExpiresBasis, got.Unreadable, err)
	}
}

// TestGrantCodecReadsJSON: records written before the binary form are read.
func TestGrantCodecReadsJSON(t *testing.T) {
	g := Grant{ID: "old", Provider: "p", State: StateHealthy, Failures: 2}
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var got Grant
	if err := decodeGrant(b, &got); err != nil || got.ID != "old" || got.Failures != 2 {
		t.Fatalf("%v %+v", err, got)
	}
}

// TestGrantCodecRejectsDamage: every truncation of a record, and junk, is
// an error, never a panic or a half-read grant.
func TestGrantCodecRejectsDamage(t *testing.T) {
	g := Grant{ID: "g", Provider: "p", Labels: map[string]string{"a": "b"}, State: StateHealthy, CreatedAt: time.Now()}
	b := encodeGrant(&g)
	for n := range len(b) {
		var got Grant
		if err := decodeGrant(b[:n], &got); err == nil {
			t.Errorf("a record cut to %d of %d bytes decoded", n, len(b))
		}
	}
	var got Grant
	if err := decodeGrant(append(b, 0), &got); err == nil {
		t.Error("trailing junk accepted")
	}
	if err := decodeGrant([]byte{recordV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, &got); err == nil {
		t.Error("huge length accepted")
	}
}

func FuzzDecodeGrant(f *testing.F) {
	g := Grant{ID: "g", Provider: "p", Labels: map[string]string{"a": "b"}, State: StateHealthy, CreatedAt: time.Now()}
	f.Add(encodeGrant(&g))
	f.Add([]byte(`{"id":"x"}`))
	f.Add([]byte{recordV1})
	f.Add(encodeGrantV1(&g))
	f.Add(encodeHistory(&HistoryEntry{At: time.Now(), From: StatePending, To: StateHealthy, Note: "n"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		// History entries share the primitives: never a panic, and what
		// decodes re-encodes to the same entry.
		var h HistoryEntry
		if decodeHistory(b, &h) == nil && len(b) > 0 && b[0] == recordV1 {
			var back HistoryEntry
			if err := decodeHistory(encodeHistory(&h), &back); err != nil || !reflect.DeepEqual(back, h) {
				t.Fatalf("re-encoding a decoded history entry changed it: %v", err)
			}
		}
		var got Grant
		if decodeGrant(b, &got) == nil && len(b) > 0 && b[0] >= recordV1 && b[0] <= recordV3 {
			again := encodeGrant(&got)
			var back Grant
			if err := decodeGrant(again, &back); err != nil || !reflect.DeepEqual(back, got) {
				t.Fatalf("re-encoding a decoded record changed it: %v", err)
			}
		}
	})
}

func TestHistoryCodec(t *testing.T) {
	now := time.Date(2026, 11, 27, 6, 0, 0, 123456789, time.UTC)
	for _, e := range []HistoryEntry{
		{},
		{At: now, To: StatePending, Note: "token imported"},
		{At: now, From: StateHealthy, To: StateReconnectRequired, Cause: "revoked",
			Error: "invalid_grant", ErrorDescription: "Token has been expired or revoked. ünïcödé"},
		{At: time.Date(1500, 1, 1, 0, 0, 0, 1, time.UTC), From: StatePending, To: StateHealthy}, // wide time
	} {
		var got HistoryEntry
		if err := decodeHistory(encodeHistory(&e), &got); err != nil || !reflect.DeepEqual(got, e) {
			t.Errorf("round trip: %v\n got %+v\nwant %+v", err, got, e)
		}
		// Entries written as JSON, before the binary form, are read.
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var old HistoryEntry
		if err := decodeHistory(j, &old); err != nil || !old.At.Equal(e.At) || old.To != e.To || old.Cause != e.Cause {
			t.Errorf("JSON entry: %v %+v", err, old)
		}
	}
	b := encodeHistory(&HistoryEntry{At: now, To: StateHealthy, Note: "n"})
	for n := range len(b) {
		var got HistoryEntry
		if err := decodeHistory(b[:n], &got); err == nil {
			t.Errorf("an entry cut to %d of %d bytes decoded", n, len(b))
		}
	}
}

// TestGrantCodecTimesBeyondNanosRange: times the int64 nanosecond range
// cannot hold, and a non-zero time at the Unix epoch, round-trip exactly.
func TestGrantCodecTimesBeyondNanosRange(t *testing.T) {
	far := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, ts := range []time.Time{far, time.Unix(0, 0).UTC(), time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(9999, 12, 31, 0, 0, 0, 5, time.UTC)} {
		g := Grant{ID: "x", Provider: "p", State: StateHealthy, CreatedAt: ts, NextDueAt: ts}
		var got Grant
		if err := decodeGrant(encodeGrant(&g), &got); err != nil || !got.NextDueAt.Equal(ts) || !got.CreatedAt.Equal(ts) {
			t.Errorf("codec: %v round-trips as %v, %v", ts, got.NextDueAt, err)
		}
	}
}
