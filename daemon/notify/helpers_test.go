package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// testOutbox is what the tests need of a store: the dispatcher's Outbox
// plus Enqueue, which the daemon does inside a transition.
type testOutbox interface {
	Outbox
	Enqueue(entries ...store.OutboxEntry) error
}

// fakeOutbox is an in-memory Outbox with the store's semantics.
type fakeOutbox struct {
	mu      sync.Mutex
	seq     uint64
	entries []store.OutboxEntry // Seq order
	dead    []store.OutboxEntry
}

func (f *fakeOutbox) Enqueue(es ...store.OutboxEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range es {
		f.seq++
		e.Seq = f.seq
		if e.CreatedAt.IsZero() {
			e.CreatedAt = time.Now()
		}
		f.entries = append(f.entries, e)
	}
	return nil
}

func (f *fakeOutbox) PendingOutbox(receiver string, limit int) ([]store.OutboxEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.OutboxEntry
	for _, e := range f.entries {
		if e.Receiver == receiver && (limit <= 0 || len(out) < limit) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeOutbox) UpdateOutbox(es ...store.OutboxEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range es {
		for i, e := range f.entries {
			if e.Receiver == u.Receiver && e.Seq == u.Seq {
				f.entries[i].Attempts, f.entries[i].NextAttemptAt = u.Attempts, u.NextAttemptAt
				f.entries[i].LastError, f.entries[i].NotificationID = u.LastError, u.NotificationID
			}
		}
	}
	return nil
}

func (f *fakeOutbox) remove(receiver string, seqs []uint64, dead bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = slices.DeleteFunc(f.entries, func(e store.OutboxEntry) bool {
		if e.Receiver == receiver && slices.Contains(seqs, e.Seq) {
			if dead {
				f.dead = append(f.dead, e)
			}
			return true
		}
		return false
	})
}

func (f *fakeOutbox) AckOutbox(receiver string, seqs ...uint64) error {
	f.remove(receiver, seqs, false)
	return nil
}

func (f *fakeOutbox) DeadLetter(receiver, reason string, seqs ...uint64) error {
	f.remove(receiver, seqs, true)
	return nil
}

func (f *fakeOutbox) pending() []store.OutboxEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries)
}

// openStore opens a real store in t.TempDir(); reopen with the same path.
func openStore(t testing.TB, path string, sync bool) *store.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "grantwatch.db")
	}
	db, err := store.Open(path, store.Options{Key: bytes.Repeat([]byte{7}, 32), NoSync: !sync})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// backends runs fn against the fake outbox and a real store.
func backends(t *testing.T, fn func(t *testing.T, ob testOutbox)) {
	t.Run("fake", func(t *testing.T) { fn(t, &fakeOutbox{}) })
	t.Run("store", func(t *testing.T) { fn(t, openStore(t, "", false)) })
}

func pendingCount(t testing.TB, ob Outbox, receiver string) int {
	t.Helper()
	es, err := ob.PendingOutbox(receiver, 0)
	if err != nil {
		t.Fatalf("PendingOutbox: %v", err)
	}
	return len(es)
}

// testClock is real time shifted by a settable offset, so real timers keep
// working while a test jumps hours ahead.
type testClock struct {
	base  time.Time
	start time.Time
	off   atomic.Int64
}

func newClock(base time.Time) *testClock { return &testClock{base: base, start: time.Now()} }

func (c *testClock) Now() time.Time {
	return c.base.Add(time.Since(c.start) + time.Duration(c.off.Load()))
}

func (c *testClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// logBuf collects JSON log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count counts lines with the level and message.
func (l *logBuf) count(level slog.Level, msg string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["level"] == level.String() && m["msg"] == msg {
			n++
		}
	}
	return n
}

func newLogger() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// request is one request a test receiver got.
type request struct {
	Path   string
	Header http.Header
	Body   []byte
	Status int
}

// receiver is an httptest server on 127.0.0.1 that records every request
// and answers with respond(i, body) (i counts from 0).
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []request
	respond func(i int, r *http.Request, body []byte) (status int, answer string)
	arrived chan time.Time
}

func newReceiver(t testing.TB, respond func(i int, r *http.Request, body []byte) (int, string)) *receiver {
	rc := &receiver{respond: respond, arrived: make(chan time.Time, 10000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		i := len(rc.reqs)
		rc.reqs = append(rc.reqs, request{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		rc.mu.Unlock()
		status, answer := http.StatusOK, "ok"
		if rc.respond != nil {
			status, answer = rc.respond(i, r, body)
		}
		if status < 0 { // drop the connection without an answer
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
				}
			}
			status = 0
		} else {
			if status == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
				w.Header().Set("Retry-After", "120")
			}
			w.WriteHeader(status)
			io.WriteString(w, answer)
		}
		rc.mu.Lock()
		rc.reqs[i].Status = status
		rc.mu.Unlock()
		if status >= 200 && status < 300 {
			rc.arrived <- time.Now()
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs)
}

func (rc *receiver) accepted() []request {
	var out []request
	for _, r := range rc.requests() {
		if r.Status >= 200 && r.Status < 300 {
			out = append(out, r)
		}
	}
	return out
}

// start runs d until the test ends (or stop is called).
func start(t testing.TB, d *Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond every millisecond until it holds or the deadline.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// t0 is the tests' "now": events occur at t0 and fake clocks start there.
var t0 = time.Now().UTC().Truncate(time.Second)

// revoked is a grant.reconnect_required event of grant g-<i>.
func revoked(i int, provider string) Event {
	return Event{
		ID:            fmt.Sprintf("ev-%04d", i),
		Type:          TypeReconnectRequired,
		OccurredAt:    t0,
		PreviousState: "healthy",
		Grant: &Grant{ID: fmt.Sprintf("g-%04d", i), Provider: provider, Subject: fmt.Sprintf("user%d@example.com", i),
			Labels: map[string]string{"tenant": "acme"}, State: "reconnect_required",
			Cause: string(probes.CauseRevoked), Action: string(probes.ActionReconnect),
			Error: "invalid_grant", ErrorDescription: "Token has been expired or revoked."},
		Summary: fmt.Sprintf("grant g-%04d needs reconnect: %s", i, probes.CauseRevoked.Summary()),
		Fix:     probes.CauseRevoked.Fix(),
	}
}

// recovered is the grant.recovered event closing revoked(i).
func recovered(i int, provider string) Event {
	return Event{
		ID:            fmt.Sprintf("rec-%04d", i),
		Type:          TypeRecovered,
		OccurredAt:    t0.Add(time.Hour),
		PreviousState: "reconnect_required",
		PreviousCause: string(probes.CauseRevoked),
		Grant: &Grant{ID: fmt.Sprintf("g-%04d", i), Provider: provider, Subject: fmt.Sprintf("user%d@example.com", i),
			Labels: map[string]string{"tenant": "acme"}, State: "healthy"},
		Summary: fmt.Sprintf("grant g-%04d recovered", i),
	}
}

// decodeNotification parses a webhook body.
func decodeNotification(t testing.TB, body []byte) Notification {
	t.Helper()
	var n Notification
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatalf("webhook body is not a Notification: %v\n%s", err, body)
	}
	return n
}

func ptr[T any](v T) *T { return &v }

// enqueue renders evs with r and enqueues them.
func enqueue(t testing.TB, ob testOutbox, r *Router, evs ...Event) {
	t.Helper()
	var es []store.OutboxEntry
	for _, ev := range evs {
		es = append(es, r.Entries(ev)...)
	}
	if err := ob.Enqueue(es...); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
}

func secretOf(s string) secret.Secret { return secret.Secret(s) }

// send builds the sender of c and sends evs as one notification.
func send(t *testing.T, c Config, now time.Time, evs ...Event) (Delivery, error) {
	t.Helper()
	c.ApplyDefaults()
	s, _, err := newSender(c, newHTTPClient(), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout) // as the dispatcher does
	defer cancel()
	return s.Send(ctx, Notification{ID: "n-1", Receiver: c.Name, Events: evs})
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
