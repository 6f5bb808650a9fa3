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
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/testutil"
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
type logBuf struct{ testutil.LogBuffer }

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

// waitFor polls cond every 10ms until it holds or the deadline.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
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

// reused is a grant.reuse_detected event of grant g-<i>.
func reused(i int, provider string) Event {
	ev := revoked(i, provider)
	ev.ID = fmt.Sprintf("reuse-%04d", i)
	ev.Type = TypeReuseDetected
	ev.Grant.Cause = string(probes.CauseCodeReused)
	ev.Grant.ErrorDescription = "The refresh token was already used."
	ev.Summary = fmt.Sprintf("grant g-%04d: its refresh token was used by someone else", i)
	ev.Fix = "Look for a leak or a second refresher."
	return ev
}

// recoveredFromReuse is the grant.recovered event closing reused(i).
func recoveredFromReuse(i int, provider string) Event {
	ev := recovered(i, provider)
	ev.PreviousCause = string(probes.CauseCodeReused)
	return ev
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

// take returns the requests rc got and forgets them (fuzz targets, which
// send many).
func (rc *receiver) take() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	reqs := rc.reqs
	rc.reqs = nil
	return reqs
}

// fuzzInput is what the renderer fuzz targets vary: every string an event
// carries, how many events a notification has, the clock offset.
type fuzzInput struct {
	count                                         uint8
	eventID, grantID, subject, provider           string
	labelKey, labelValue, cause, errDesc, summary string
	fix                                           string
	offset                                        int64 // nanoseconds: the daemon's offsets are time.Durations
	test                                          bool
}

// fuzzNotifications runs check on notifications built from the fuzzer's
// input, starting from seeds that reach every renderer's limits: markup,
// long and invalid UTF-8 strings, label names Prometheus rejects.
func fuzzNotifications(f *testing.F, check func(t *testing.T, n Notification)) {
	long := strings.Repeat("é", 3000) // 6000 bytes: beyond every limit, cut inside a rune
	for _, s := range [][10]string{
		{"ev-1", "g-1", "user@example.com", "google", "tenant", "acme", "revoked", "Token has been expired or revoked.", "", probes.CauseRevoked.Fix()},
		{"", "", "", "", "", "", "", "", "", ""},
		{"ev<2>", "<!channel>", "<@U123> & <https://x|y>", "a&b", "__name__", "v", "*bold* `code`", "\n\t\"quoted\"", "[TEST] x", "<!here>"},
		{long, long, long, long, long, long, long, long, long, long},
		{"\xff\xfe", "g\x00", "\xc3", "prov\x80", "9-bad.name", "\xff", "c\xff", "d\xed\xa0\x80", "s\xf0\x9f", "f\xe2\x82"},
		{"e", "g", "s", "p", "alertname", "clash", "cause", "d", "s", "f"},
	} {
		for _, count := range []uint8{0, 4, 11, 200} {
			f.Add(count, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], int64(42*time.Second), count == 4)
		}
	}
	f.Fuzz(func(t *testing.T, count uint8, eventID, grantID, subject, provider, labelKey, labelValue, cause, errDesc, summary, fix string, offset int64, test bool) {
		check(t, fuzzNotification(fuzzInput{count, eventID, grantID, subject, provider, labelKey, labelValue, cause, errDesc, summary, fix, offset, test}))
	})
}

// fuzzNotification builds 1 + count%12 events from in, cycling through the
// event types, shaped as the daemon shapes them: a grant, provider or clock
// part as the type says, the cause being left in PreviousCause of a
// resolving grant or provider event.
func fuzzNotification(in fuzzInput) Notification {
	types := EventTypes()
	n := Notification{ID: newID(), Receiver: "fuzz"}
	for i := range 1 + int(in.count%12) {
		ev := Event{ID: in.eventID, Type: types[(int(in.count)/12+i)%len(types)], OccurredAt: t0,
			Summary: in.summary, Fix: in.fix, Test: in.test}
		switch ev.Type {
		case TypeReconnectRequired, TypeDegraded, TypeRecovered, TypeUnreadable, TypeExpiring:
			ev.Grant = &Grant{ID: in.grantID, Provider: in.provider, Subject: in.subject,
				Labels: map[string]string{in.labelKey: in.labelValue}, State: "reconnect_required",
				Cause: in.cause, Action: "reconnect", Error: "invalid_grant", ErrorDescription: in.errDesc}
			ev.PreviousState = "healthy"
			if ev.Type == TypeRecovered {
				ev.Grant.State, ev.Grant.Cause, ev.Grant.Action = "healthy", "", ""
				ev.PreviousState, ev.PreviousCause = []string{"reconnect_required", "degraded", ""}[i%3], in.cause
			}
		case TypeProviderOutage, TypeProviderMisconfigured, TypeProviderOK, TypeSecretExpiring:
			ev.Provider = &Provider{Name: in.provider, State: "outage", Cause: in.cause, Detail: in.errDesc, Grants: int(in.count)}
			if ev.Type == TypeProviderOK {
				ev.Provider.State, ev.Provider.Cause, ev.PreviousCause = "ok", "", in.cause
			}
		default:
			ev.Clock = &Clock{State: "skewed", OffsetSeconds: time.Duration(in.offset).Seconds(), Source: "ntp"}
		}
		n.Events = append(n.Events, ev)
	}
	return n
}

// fuzzSecret is a secret a fuzz input cannot hold: new for every input.
func fuzzSecret() string { return "S" + newID() }

// sendEchoed sends n through the real sender of c (built with client) to
// rc, which answers 500 with what it was sent — the URL, the Authorization
// header, the body — as a careless receiver does. The error and the answer
// must hold none of secrets. It returns the requests rc got.
func sendEchoed(t *testing.T, rc *receiver, client *http.Client, c Config, n Notification, secrets ...string) []request {
	t.Helper()
	c.ApplyDefaults()
	s, _, err := newSender(c, client, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	d, err := s.Send(ctx, n)
	reqs := rc.take()
	if err == nil || len(reqs) == 0 {
		t.Fatalf("send to an echoing 500 = %+v, %v after %d requests; want the 500", d, err, len(reqs))
	}
	for _, sec := range secrets {
		for what, out := range map[string]string{"error": err.Error(), "answer": d.Answer} {
			if strings.Contains(out, sec) {
				t.Fatalf("the %s holds a secret of the receiver: %q", what, out)
			}
		}
	}
	return reqs
}

// newEchoReceiver is the receiver of sendEchoed.
func newEchoReceiver(t testing.TB) *receiver {
	return newReceiver(t, func(_ int, r *http.Request, body []byte) (int, string) {
		return http.StatusInternalServerError, "you sent " + r.URL.String() + " auth " + r.Header.Get("Authorization") + " body " + string(body)
	})
}

// checkNotificationJSON fails t unless b is the JSON of n: it decodes to n
// again, every field kept. Invalid UTF-8 in n comes back as U+FFFD (JSON
// strings are UTF-8), so then only the id and the number of events are
// compared.
func checkNotificationJSON(t *testing.T, b []byte, n Notification) {
	t.Helper()
	var got Notification
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("not a Notification: %v\n%s", err, b)
	}
	if got.ID != n.ID || len(got.Events) != len(n.Events) {
		t.Errorf("got id %q and %d events, want %q and %d", got.ID, len(got.Events), n.ID, len(n.Events))
	}
	if !bytes.Contains(b, []byte(`\ufffd`)) && !reflect.DeepEqual(got, n) {
		t.Errorf("decodes to\n%+v\nwant\n%+v", got, n)
	}
}
