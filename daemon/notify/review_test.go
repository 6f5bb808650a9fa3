package notify

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A receiver that echoes its secret URL at the end of a long answer must not
// get a piece of it into the error, the answer or the logs: the answer is cut
// to its first 200 bytes, and a cut inside the token left a prefix of it that
// the redactor no longer recognised.
func TestAnswerCutInsideSecret(t *testing.T) {
	const token = "SECRETTOKENabcdefghijklmnopq"
	const path = "/services/T0/B0/" + token
	pad := strings.Repeat("x", 190-len(path)+len(token)) // token starts at byte 190
	rc := newReceiver(t, func(_ int, r *http.Request, _ []byte) (int, string) {
		return http.StatusInternalServerError, pad + r.URL.Path
	})
	c := Config{Name: "slack", Type: KindSlack, URL: secretOf(rc.URL + path)}
	d, err := send(t, c, t0, revoked(1, "google"))
	if err == nil {
		t.Fatal("want the 500 as an error")
	}
	for what, s := range map[string]string{"answer": d.Answer, "error": err.Error()} {
		if strings.Contains(s, token[:8]) {
			t.Errorf("%s holds part of the secret URL: %q", what, s)
		}
	}
}

// A recovery must not reach PagerDuty before the trigger it resolves: when
// the trigger's notification failed and waits for its retry, a later
// notification about the same grant waits too. Otherwise PagerDuty gets
// resolve, then trigger, and the incident of a recovered grant stays open.
func TestResolveNotBeforeTrigger(t *testing.T) {
	rc := newReceiver(t, func(i int, _ *http.Request, _ []byte) (int, string) {
		if i == 0 {
			return http.StatusInternalServerError, "busy"
		}
		return http.StatusAccepted, `{"status":"success"}`
	})
	c := Config{Name: "pd", Type: KindPagerDuty, URL: secretOf(rc.URL + "/v2/enqueue"), RoutingKey: "R0UTINGKEY",
		GroupWait: ptr(time.Duration(0))}
	c.ApplyDefaults()
	ob := &fakeOutbox{}
	clock := newClock(t0)
	d, err := NewDispatcher(ob, []Config{c}, nil, WithBackoff(time.Hour, time.Hour), WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	enqueue(t, ob, d.Router(), revoked(1, "google"))
	d.Kick()
	waitFor(t, "the failed trigger", 5*time.Second, func() bool { return d.Stats().Receivers["pd"].Failed == 1 })
	rec := recovered(1, "google")
	rec.OccurredAt = t0
	enqueue(t, ob, d.Router(), rec)
	d.Kick()
	time.Sleep(100 * time.Millisecond)
	clock.Advance(2 * time.Hour)
	d.Kick()
	waitFor(t, "the outbox to drain", 5*time.Second, func() bool { return len(ob.pending()) == 0 })

	var actions []string
	for _, r := range rc.accepted() {
		var ev pdEvent
		if err := json.Unmarshal(r.Body, &ev); err != nil {
			t.Fatal(err)
		}
		actions = append(actions, ev.EventAction)
	}
	if len(actions) != 2 || actions[0] != "trigger" || actions[1] != "resolve" {
		t.Errorf("PagerDuty accepted %v, want [trigger resolve]", actions)
	}
}

// PagerDuty has no batch endpoint: a grouped notification is one request
// per event. When the group is larger than one attempt can carry (timeout,
// or a 429 midway), a retry must go on from where the last one stopped, not
// start over and stop at the same place every time: the later grants of a
// 30-grant revocation never reached PagerDuty.
func TestPagerDutyLargeGroupProgresses(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request, []byte) (int, string) {
		time.Sleep(20 * time.Millisecond)
		return http.StatusAccepted, `{"status":"success"}`
	})
	c := Config{Name: "pd", Type: KindPagerDuty, URL: secretOf(rc.URL + "/v2/enqueue"), RoutingKey: "R0UTINGKEY",
		GroupWait: ptr(time.Duration(0)), Timeout: 200 * time.Millisecond}
	c.ApplyDefaults()
	ob := &fakeOutbox{}
	d, err := NewDispatcher(ob, []Config{c}, nil, fast)
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	var evs []Event
	for i := range 30 {
		evs = append(evs, revoked(i, "google"))
	}
	enqueue(t, ob, d.Router(), evs...)
	d.Kick()
	waitFor(t, "the outbox to drain", 10*time.Second, func() bool { return len(ob.pending()) == 0 })
	seen := map[string]bool{}
	for _, r := range rc.accepted() {
		var ev pdEvent
		if err := json.Unmarshal(r.Body, &ev); err != nil {
			t.Fatal(err)
		}
		seen[ev.DedupKey] = true
	}
	if len(seen) != 30 {
		t.Errorf("PagerDuty got %d of 30 grants", len(seen))
	}
}
