package notify

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
)

// PagerDuty Events API v2, "Send an Alert Event": POST
// https://events.pagerduty.com/v2/enqueue with routing_key, event_action
// (trigger|acknowledge|resolve), dedup_key (≤255 chars), payload {summary
// (≤1024), source, severity (critical|error|warning|info), timestamp,
// component, group, class, custom_details}; a resolve needs only routing_key,
// event_action and dedup_key. Answer 202 {"status":"success",…}; 400 invalid,
// 429 throttled, 5xx retry. (PagerDuty developer-docs
// docs/events-API-v2/02-Trigger-Events.md and the Events API v2 overview.)
func TestPagerDutyRequest(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request, []byte) (int, string) {
		return http.StatusAccepted, `{"status":"success","message":"Event processed","dedup_key":"x"}`
	})
	c := Config{Name: "pd", Type: KindPagerDuty, URL: secretOf(rc.URL + "/v2/enqueue"), RoutingKey: "R0UTINGKEY0000000000000000000000"}
	now := time.Now()
	degraded := revoked(2, "google")
	degraded.Type, degraded.Grant.State, degraded.Grant.Cause = TypeDegraded, "degraded", "server_error"
	outage := Event{ID: "p1", Type: TypeProviderOutage, OccurredAt: t0, Provider: &Provider{Name: "okta", State: "outage", Cause: "server_error", Grants: 12}}
	d, err := send(t, c, now, revoked(1, "google"), recovered(1, "google"), degraded, outage)
	if err != nil || d.Status != 202 {
		t.Fatalf("send = %+v, %v", d, err)
	}
	reqs := rc.requests()
	if len(reqs) != 4 {
		t.Fatalf("requests = %d, want one per event (4)", len(reqs))
	}
	var got []map[string]any
	for _, r := range reqs {
		if r.Path != "/v2/enqueue" {
			t.Errorf("path = %s", r.Path)
		}
		var m map[string]any
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	trig := got[0]
	want := map[string]any{"routing_key": "R0UTINGKEY0000000000000000000000", "event_action": "trigger",
		"dedup_key": "grantwatch/grant/g-0001/reconnect_required", "client": "grantwatch"}
	for k, v := range want {
		if trig[k] != v {
			t.Errorf("trigger %s = %v, want %v", k, trig[k], v)
		}
	}
	pl := trig["payload"].(map[string]any)
	wantPL := map[string]any{"summary": revoked(1, "").Summary, "source": "grantwatch", "severity": "error",
		"timestamp": t0.Format(time.RFC3339Nano), "component": "grant/g-0001", "group": "google", "class": "revoked"}
	for k, v := range wantPL {
		if pl[k] != v {
			t.Errorf("payload.%s = %v, want %v", k, pl[k], v)
		}
	}
	cd := pl["custom_details"].(map[string]any)
	if cd["fix"] != probes.CauseRevoked.Fix() || cd["grant"].(map[string]any)["subject"] != "user1@example.com" {
		t.Errorf("custom_details = %v", cd)
	}
	res := got[1]
	if res["event_action"] != "resolve" || res["dedup_key"] != "grantwatch/grant/g-0001/reconnect_required" || res["payload"] != nil {
		t.Errorf("resolve = %v, want resolve of the trigger's dedup_key without payload", res)
	}
	if p := got[2]["payload"].(map[string]any); p["severity"] != "warning" || got[2]["dedup_key"] != "grantwatch/grant/g-0002/degraded" {
		t.Errorf("degraded = %v", got[2])
	}
	if p := got[3]["payload"].(map[string]any); got[3]["dedup_key"] != "grantwatch/provider/okta/outage" || p["component"] != "okta" || p["class"] != "server_error" {
		t.Errorf("provider outage = %v", got[3])
	}
	if s := pdRender(Event{Summary: strings.Repeat("x", 5000), Grant: &Grant{ID: "g"}, Type: TypeReconnectRequired}, "k")[0].Payload.Summary; len(s) > 1024 {
		t.Errorf("summary is %d bytes, PagerDuty allows 1024", len(s))
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

// FuzzPagerDuty: whatever the events hold, each Events API v2 event is
// JSON within PagerDuty's limits (dedup_key 255 characters, summary 1024),
// a trigger has a summary, source and a valid severity, and the routing key
// is only in routing_key: not elsewhere in the event, nor in the error of a
// receiver that echoes the request.
func FuzzPagerDuty(f *testing.F) {
	rc := newEchoReceiver(f)
	client := newHTTPClient()
	severities := map[string]bool{"critical": true, "error": true, "warning": true, "info": true}
	fuzzNotifications(f, func(t *testing.T, n Notification) {
		key := fuzzSecret()
		for _, ev := range n.Events {
			for _, pe := range pdRender(ev, key) {
				b, err := json.Marshal(pe)
				if err != nil {
					t.Fatal(err)
				}
				var got pdEvent
				if err := json.Unmarshal(b, &got); err != nil {
					t.Fatalf("event is not JSON: %v\n%s", err, b)
				}
				if got.RoutingKey != key {
					t.Errorf("routing_key = %q, want the receiver's", got.RoutingKey)
				}
				got.RoutingKey = ""
				if rest, _ := json.Marshal(got); strings.Contains(string(rest), key) {
					t.Errorf("the routing key is outside routing_key: %s", rest)
				}
				if k := utf8.RuneCountInString(got.DedupKey); k == 0 || k > 255 {
					t.Errorf("dedup_key has %d characters, want 1 to 255", k)
				}
				switch got.EventAction {
				case "resolve":
				case "trigger":
					p := got.Payload
					if p == nil || p.Summary == "" || utf8.RuneCountInString(p.Summary) > 1024 || p.Source == "" || !severities[p.Severity] {
						t.Errorf("trigger payload = %+v", p)
					}
				default:
					t.Errorf("event_action = %q", got.EventAction)
				}
			}
		}
		c := Config{Name: "pd", Type: KindPagerDuty, URL: secretOf(rc.URL + "/v2/enqueue"), RoutingKey: secret.Secret(key)}
		sendEchoed(t, rc, client, c, n, key)
	})
}
