package store

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestOutbox(t *testing.T) {
	db := openTest(t, Options{})
	if n, oldest, err := db.OutboxStats(); n != 0 || !oldest.IsZero() || err != nil {
		t.Errorf("empty OutboxStats = %d, %v, %v", n, oldest, err)
	}
	err := db.Enqueue(
		OutboxEntry{Receiver: "slack", Payload: []byte("1"), CreatedAt: t0.Add(2 * time.Minute)},
		OutboxEntry{Receiver: "pager", Payload: []byte("2"), CreatedAt: t0.Add(time.Minute)},
		OutboxEntry{Receiver: "slack", Payload: []byte("3"), CreatedAt: t0.Add(3 * time.Minute)},
		OutboxEntry{Receiver: "slack", Payload: []byte("4")},
		// A receiver whose name is a prefix of another's.
		OutboxEntry{Receiver: "slac", Payload: []byte("5"), CreatedAt: t0},
	)
	if err != nil {
		t.Fatal(err)
	}
	slack, _ := db.PendingOutbox("slack", 0)
	if got := payloads(slack); got != "1,3,4" {
		t.Fatalf("PendingOutbox(slack) = %s, want 1,3,4", got)
	}
	if slack[0].Seq >= slack[1].Seq || slack[2].CreatedAt.IsZero() {
		t.Errorf("seqs %d, %d not increasing or CreatedAt unset", slack[0].Seq, slack[1].Seq)
	}
	if got, _ := db.PendingOutbox("slack", 2); payloads(got) != "1,3" {
		t.Errorf("PendingOutbox(slack, 2) = %s", payloads(got))
	}
	if n, oldest, _ := db.OutboxStats(); n != 5 || !oldest.Equal(t0) {
		t.Errorf("OutboxStats = %d, %v; want 5, %v", n, oldest, t0)
	}

	// Bookkeeping is rewritten; the payload is kept; unknown entries ignored.
	u := slack[0]
	u.Attempts, u.NextAttemptAt, u.LastError, u.NotificationID, u.Payload = 2, t0.Add(time.Hour), "503", "n-1", []byte("changed")
	if err := db.UpdateOutbox(u, OutboxEntry{Receiver: "slack", Seq: 999}); err != nil {
		t.Fatal(err)
	}
	got, _ := db.PendingOutbox("slack", 1)
	if g := got[0]; g.Attempts != 2 || !g.NextAttemptAt.Equal(t0.Add(time.Hour)) || g.LastError != "503" || g.NotificationID != "n-1" || string(g.Payload) != "1" {
		t.Errorf("updated entry = %+v", g)
	}

	if err := db.AckOutbox("slack", slack[0].Seq, 12345); err != nil {
		t.Fatal(err)
	}
	if err := db.DeadLetter("slack", "max_age exceeded", slack[1].Seq); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.PendingOutbox("slack", 0); payloads(got) != "4" {
		t.Errorf("after ack and dead-letter: %s, want 4", payloads(got))
	}
	var dead []OutboxEntry
	db.DeadLetters(func(e OutboxEntry) error { dead = append(dead, e); return nil })
	if len(dead) != 1 || string(dead[0].Payload) != "3" || dead[0].DeadReason != "max_age exceeded" || dead[0].DeadAt.IsZero() {
		t.Errorf("dead letters = %+v", dead)
	}
	if n, oldest, _ := db.OutboxStats(); n != 3 || !oldest.Equal(t0) {
		t.Errorf("OutboxStats = %d, %v; want 3, %v", n, oldest, t0)
	}
	if err := db.Enqueue(OutboxEntry{Receiver: "a\x00b"}); !errors.Is(err, errNUL) {
		t.Errorf("Enqueue(NUL receiver) err = %v", err)
	}
}

func payloads(es []OutboxEntry) string {
	var b bytes.Buffer
	for i, e := range es {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e.Payload)
	}
	return b.String()
}

func TestRedeliver(t *testing.T) {
	db := openTest(t, Options{})
	for _, r := range []string{"hook", "hook", "hook", "slack"} {
		if err := db.Enqueue(OutboxEntry{Receiver: r, Payload: []byte(`{}`), CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.UpdateOutbox(OutboxEntry{Receiver: "hook", Seq: 1, Attempts: 9, LastError: "HTTP 500", NotificationID: "n1",
		NextAttemptAt: t0.Add(time.Hour), Payload: []byte(`{}`), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeadLetter("hook", "not delivered within max_age 24h", 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	if err := db.DeadLetter("slack", "gone", 4); err != nil {
		t.Fatal(err)
	}
	dead := func() (n int) {
		db.DeadLetters(func(OutboxEntry) error { n++; return nil })
		return n
	}
	later := t0.Add(48 * time.Hour)
	if n, err := db.Redeliver("hook", []uint64{1, 99}, later); err != nil || n != 1 {
		t.Fatalf("Redeliver(hook, 1 99) = %d, %v; want 1 (99 is unknown)", n, err)
	}
	out, _ := db.PendingOutbox("hook", 0)
	if len(out) != 1 {
		t.Fatalf("outbox of hook = %+v, want entry 1 back", out)
	}
	e := out[0]
	if e.Seq != 1 || !e.CreatedAt.Equal(later) || e.Attempts != 0 || !e.NextAttemptAt.IsZero() || e.LastError != "" ||
		e.DeadReason != "" || !e.DeadAt.IsZero() || e.NotificationID != "n1" {
		t.Errorf("redelivered entry = %+v: want it fresh (created now, no attempts), with its notification id", e)
	}
	if n := dead(); n != 3 {
		t.Errorf("%d dead letters left, want 3", n)
	}
	// No seqs: every dead letter of the receiver, none of another's.
	if n, err := db.Redeliver("hook", nil, later); err != nil || n != 2 {
		t.Fatalf("Redeliver(hook) = %d, %v; want 2", n, err)
	}
	if n := dead(); n != 1 {
		t.Errorf("%d dead letters left, want slack's 1", n)
	}
	if out, _ := db.PendingOutbox("hook", 0); len(out) != 3 {
		t.Errorf("outbox of hook has %d entries, want 3", len(out))
	}
}
