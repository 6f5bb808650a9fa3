package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// newEvents are the events of issue 14, shaped as the daemon sends them.
func newEvents() []Event {
	g := &Grant{ID: "u42-gmail", Provider: "google", Subject: "ann@example.com", State: "degraded",
		Cause: "malformed", Action: "retry", Error: "400", ErrorDescription: "Bad Request", HTTPStatus: 400}
	exp := &Grant{ID: "u7-spotify", Provider: "spotify", State: "healthy",
		ExpiresAt: t0.Add(72 * time.Hour), ExpiresBasis: "absolute"}
	return []Event{
		{ID: "e1", Type: TypeUnreadable, OccurredAt: t0, Grant: g, Summary: "grant u42-gmail: 3 answers in a row nobody can read", Fix: "run grantwatch explain"},
		{ID: "e2", Type: TypeExpiring, OccurredAt: t0, Grant: exp, Summary: "grant u7-spotify expires in 3 days", Fix: "reconnect it"},
		{ID: "e3", Type: TypeSecretExpiring, OccurredAt: t0, Provider: &Provider{Name: "m365", State: "ok", SecretExpiresAt: t0.Add(5 * 24 * time.Hour)},
			Summary: "the client secret of m365 expires in 5 days", Fix: "rotate it"},
	}
}

// TestNewEventsRender: every receiver renders grant.unreadable,
// grant.expiring and provider.secret_expiring in its own terms — a name
// for people, an Alertmanager alert, a PagerDuty condition and severity —
// and the webhook body carries their new fields.
func TestNewEventsRender(t *testing.T) {
	for _, ev := range newEvents() {
		t.Run(ev.Type, func(t *testing.T) {
			if what[ev.Type] == "" {
				t.Error("no words for people (text.go what)")
			}
			n := Notification{ID: "n1", Receiver: "r", Events: []Event{ev}}
			if line := slackLine(ev); !strings.Contains(line, what[ev.Type]) || !strings.Contains(line, ev.Summary) {
				t.Errorf("slack line %q", line)
			}
			if h := headline(Notification{ID: "n", Events: []Event{ev, ev}}); !strings.Contains(h, "("+what[ev.Type]+")") {
				t.Errorf("headline of two %q", h)
			}
			al := amRender(ev, t0, time.Minute)
			if len(al) != 1 || al[0].Labels["alertname"] == "" || al[0].Annotations["description"] != ev.Fix {
				t.Errorf("alertmanager alerts %+v", al)
			}
			pd := pdRender(ev, "key")
			if len(pd) != 1 || pd[0].EventAction != "trigger" || strings.HasSuffix(pd[0].DedupKey, "/"+ev.Type) {
				t.Errorf("pagerduty event %+v (dedup_key %q)", pd, pd[0].DedupKey)
			}
			wantSeverity := map[string]string{TypeUnreadable: "error", TypeExpiring: "warning", TypeSecretExpiring: "warning"}[ev.Type]
			if pd[0].Payload.Severity != wantSeverity {
				t.Errorf("pagerduty severity %q, want %q", pd[0].Payload.Severity, wantSeverity)
			}
			b, err := json.Marshal(n)
			if err != nil {
				t.Fatal(err)
			}
			checkNotificationJSON(t, b, n)
			for _, key := range map[string][]string{
				TypeUnreadable:     {`"http_status":400`, `"error_description":"Bad Request"`},
				TypeExpiring:       {`"expires_at":`, `"expires_basis":"absolute"`},
				TypeSecretExpiring: {`"secret_expires_at":`},
			}[ev.Type] {
				if !strings.Contains(string(b), key) {
					t.Errorf("webhook body lacks %s: %s", key, b)
				}
			}
		})
	}
}

// TestNewEventsRouted: the new events reach a receiver that sets no events
// filter, as the other problems on-call must hear of do, and are known to
// the filter check.
func TestNewEventsRouted(t *testing.T) {
	r := NewRouter([]Config{{Name: "all", Type: KindWebhook}, {Name: "dead-only", Type: KindWebhook, Events: []string{TypeReconnectRequired}}})
	for _, ev := range newEvents() {
		if got := r.Entries(ev); len(got) != 1 || got[0].Receiver != "all" {
			t.Errorf("%s went to %+v, want the default receiver only", ev.Type, got)
		}
		if !knownGlob(ev.Type) {
			t.Errorf("%s is not a known event type", ev.Type)
		}
	}
}
