package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Alertmanager OpenAPI v2 (api/v2/openapi.yaml, postAlerts): POST
// /api/v2/alerts with a JSON array of postableAlert {labels (required),
// annotations, startsAt, endsAt (date-time), generatorURL}. Label names
// must match [a-zA-Z_][a-zA-Z0-9_]*.
func TestAlertmanagerRequest(t *testing.T) {
	rc := newReceiver(t, nil)
	c := Config{Name: "am", Type: KindAlertmanager, URL: secretOf(rc.URL + "/"), ResendInterval: time.Minute}
	now := t0.Add(2 * time.Hour)
	ev := revoked(1, "google")
	ev.Grant.Labels = map[string]string{"tenant": "acme", "team-name": "mail", "grant": "clash", "9x": "d"}
	rec := recovered(1, "google")
	rec.Grant.Labels = ev.Grant.Labels
	if _, err := send(t, c, now, ev, rec); err != nil {
		t.Fatal(err)
	}
	req := rc.requests()[0]
	if req.Path != "/api/v2/alerts" {
		t.Errorf("path = %s, want /api/v2/alerts", req.Path)
	}
	var alerts []map[string]any
	if err := json.Unmarshal(req.Body, &alerts); err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 2 {
		t.Fatalf("alerts = %d, want 2", len(alerts))
	}
	wantLabels := map[string]any{"alertname": "GrantReconnectRequired", "grant": "g-0001", "provider": "google",
		"cause": "revoked", "tenant": "acme", "team_name": "mail", "label_grant": "clash", "_9x": "d"}
	if !reflect.DeepEqual(alerts[0]["labels"], wantLabels) {
		t.Errorf("labels = %v, want %v", alerts[0]["labels"], wantLabels)
	}
	if !reflect.DeepEqual(alerts[1]["labels"], wantLabels) {
		t.Errorf("resolve labels = %v, want the firing alert's %v", alerts[1]["labels"], wantLabels)
	}
	ann := alerts[0]["annotations"].(map[string]any)
	if ann["summary"] != ev.Summary || ann["description"] != ev.Fix {
		t.Errorf("annotations = %v", ann)
	}
	ts := func(a map[string]any, k string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, a[k].(string))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return v
	}
	if !ts(alerts[0], "startsAt").Equal(t0) || !ts(alerts[0], "endsAt").Equal(now.Add(3*time.Minute)) {
		t.Errorf("firing startsAt/endsAt = %v/%v, want %v/%v", alerts[0]["startsAt"], alerts[0]["endsAt"], t0, now.Add(3*time.Minute))
	}
	if !ts(alerts[1], "endsAt").Equal(now) {
		t.Errorf("resolved endsAt = %v, want now %v", alerts[1]["endsAt"], now)
	}
	valid := regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	for name := range wantLabels {
		if !valid.MatchString(name) || strings.HasPrefix(name, "__") {
			t.Errorf("label %q is not a valid label name", name)
		}
	}
}

// activeFunc is a fake Active.
type activeFunc func(ctx context.Context, fn func(Event) error) error

func (f activeFunc) ActiveEvents(ctx context.Context, fn func(Event) error) error { return f(ctx, fn) }

// Every resend_interval, the conditions that still hold are posted again
// with endsAt three intervals ahead, from the store's state, so neither
// restart resolves a dead grant.
func TestAlertmanagerResend(t *testing.T) {
	rc := newReceiver(t, nil)
	clock := newClock(t0)
	active := activeFunc(func(_ context.Context, fn func(Event) error) error {
		for _, ev := range []Event{revoked(1, "google"), revoked(2, "okta"),
			{ID: "c", Type: TypeClockSkewed, OccurredAt: t0, Clock: &Clock{State: "skewed", OffsetSeconds: 42}}} {
			if err := fn(ev); err != nil {
				return err
			}
		}
		return nil
	})
	c := Config{Name: "am", Type: KindAlertmanager, URL: secretOf(rc.URL), ResendInterval: time.Minute,
		Match: Match{Providers: []string{"google"}}}
	d, err := NewDispatcher(&fakeOutbox{}, []Config{c}, nil, WithClock(clock.Now), WithActive(active))
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	waitFor(t, "the first re-send", 5*time.Second, func() bool { return len(rc.requests()) == 1 })
	clock.Advance(61 * time.Second)
	d.Kick()
	waitFor(t, "the second re-send", 5*time.Second, func() bool { return len(rc.requests()) == 2 })
	var alerts []amAlert
	if err := json.Unmarshal(rc.requests()[1].Body, &alerts); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range alerts {
		names = append(names, a.Labels["alertname"]+"/"+a.Labels["grant"])
		if left := a.EndsAt.Sub(clock.Now()); left < 2*time.Minute || left > 3*time.Minute {
			t.Errorf("endsAt %v ahead, want ~3 intervals", left)
		}
	}
	// okta's grant is outside the match; the clock passes every match.
	if want := []string{"GrantReconnectRequired/g-0001", "GrantwatchClockSkewed/"}; !reflect.DeepEqual(names, want) {
		t.Errorf("re-sent %v, want %v", names, want)
	}
}

// firingOf is the problem event of type typ that resolving event ev closes:
// the same grant, provider or clock, with the cause being left.
func firingOf(ev Event, typ string) Event {
	fe := ev
	fe.Type, fe.PreviousState, fe.PreviousCause = typ, "", ""
	switch {
	case ev.Grant != nil:
		g := *ev.Grant
		g.Cause = ev.PreviousCause
		fe.Grant = &g
	case ev.Provider != nil:
		p := *ev.Provider
		p.Cause = ev.PreviousCause
		fe.Provider = &p
	}
	return fe
}

// FuzzAlertmanager: whatever the events hold, the alerts are JSON with an
// alertname and valid label names; a resolve carries exactly the labels of
// the alert it resolves (else Alertmanager keeps that one firing); and the
// URL's password is in neither the alerts nor the error of a receiver that
// echoes the request with its Authorization header.
func FuzzAlertmanager(f *testing.F) {
	rc := newEchoReceiver(f)
	client := newHTTPClient()
	valid := regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	now := t0.Add(time.Hour)
	fuzzNotifications(f, func(t *testing.T, n Notification) {
		for _, ev := range n.Events {
			alerts := amRender(ev, now, time.Minute)
			b, err := json.Marshal(alerts)
			if err != nil {
				t.Fatal(err)
			}
			var got []amAlert
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("alerts are not JSON: %v\n%s", err, b)
			}
			for _, a := range got {
				if a.Labels["alertname"] == "" {
					t.Errorf("alert without alertname: %+v", a.Labels)
				}
				for name := range a.Labels {
					if !valid.MatchString(name) || strings.HasPrefix(name, "__") {
						t.Errorf("label name %q is not valid", name)
					}
				}
			}
			closes := problemsResolvedBy(ev)
			if closes == nil || ev.Test {
				continue
			}
			for i, typ := range closes {
				firing := amRender(firingOf(ev, typ), now, time.Minute)[0]
				if !reflect.DeepEqual(alerts[i].Labels, firing.Labels) {
					t.Errorf("%s resolves %s with labels %v, the firing alert has %v", ev.Type, typ, alerts[i].Labels, firing.Labels)
				}
			}
		}
		pw := fuzzSecret()
		basic := base64.StdEncoding.EncodeToString([]byte("admin:" + pw))
		c := Config{Name: "am", Type: KindAlertmanager, URL: secretOf("http://admin:" + pw + "@" + strings.TrimPrefix(rc.URL, "http://"))}
		body := sendEchoed(t, rc, client, c, n, pw, basic)[0].Body
		if strings.Contains(string(body), pw) {
			t.Errorf("the alerts hold the URL's password: %s", body)
		}
	})
}
