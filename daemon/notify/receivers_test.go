package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
)

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

// Slack incoming webhooks: POST the webhook URL with {"text": fallback,
// "blocks": [...]}; text is the notification fallback when blocks are set.
// Block Kit: header text is plain_text ≤150 chars, section text ≤3000,
// at most 50 blocks; &, < and > must be escaped in mrkdwn. Answer 200 "ok".
// (docs.slack.dev messaging/sending-messages-using-incoming-webhooks and
// reference/block-kit/blocks.)
func TestSlackRequest(t *testing.T) {
	rc := newReceiver(t, nil)
	c := Config{Name: "slack", Type: KindSlack, URL: secretOf(rc.URL + "/services/T000/B000/XXXX")}
	var evs []Event
	for i := range 37 {
		evs = append(evs, revoked(i, "google"))
	}
	evs[0].Grant.Subject = "<!channel> & co"
	if _, err := send(t, c, t0, evs...); err != nil {
		t.Fatal(err)
	}
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type     string `json:"type"`
			Text     *struct{ Type, Text string }
			Elements []struct{ Type, Text string }
		} `json:"blocks"`
	}
	if err := json.Unmarshal(rc.requests()[0].Body, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Text != "37 grants of google: revoked (needs reconnect)" {
		t.Errorf("text = %q", msg.Text)
	}
	var types []string
	for _, b := range msg.Blocks {
		types = append(types, b.Type)
	}
	if want := []string{"header", "section", "section", "context"}; !reflect.DeepEqual(types, want) {
		t.Fatalf("blocks = %v, want %v", types, want)
	}
	if h := msg.Blocks[0].Text; h.Type != "plain_text" || len(h.Text) > 150 || h.Text != msg.Text {
		t.Errorf("header = %+v", h)
	}
	if f := msg.Blocks[1].Text; f.Type != "mrkdwn" || !strings.Contains(f.Text, "`revoked`") || !strings.Contains(f.Text, "grantwatch grants set-token ID") {
		t.Errorf("fix section = %+v", f)
	}
	list := msg.Blocks[2].Text.Text
	if strings.Count(list, "\n")+1 != slackListed || !strings.Contains(list, "&lt;!channel&gt; &amp; co") || strings.Contains(list, "<!channel>") {
		t.Errorf("list = %q, want %d escaped lines", list, slackListed)
	}
	if !strings.Contains(list, "grant `g-0000` (") || !strings.Contains(list, "of *google*") {
		t.Errorf("list lacks grant/subject/provider: %q", list)
	}
	if foot := msg.Blocks[3].Elements[0].Text; !strings.Contains(foot, "27 more (37 in all)") {
		t.Errorf("context = %q, want the count of the rest", foot)
	}
	for _, b := range msg.Blocks {
		if b.Text != nil && len(b.Text.Text) > 3000 {
			t.Errorf("%s block has %d chars", b.Type, len(b.Text.Text))
		}
	}
}

func TestExec(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "stdin.json")
	c := Config{Name: "run", Type: KindExec, Command: []string{"/bin/sh", "-c", `cat > "$0"`, out}}
	if _, err := send(t, c, t0, revoked(1, "google")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if n := decodeNotification(t, b); n.ID != "n-1" || n.Events[0].ID != "ev-0001" {
		t.Errorf("stdin = %s", b)
	}
	c.Command = []string{"/bin/sh", "-c", `echo "hook refused: $0" >&2; exit 3`, "argument"}
	d, err := send(t, c, t0, revoked(1, "google"))
	var se *StatusError
	if !errors.As(err, &se) || d.Status != 3 || !d.Retry || d.Answer != "hook refused: argument" {
		t.Errorf("failing command = %+v, %v", d, err)
	}
	c.Command, c.Timeout = []string{"/bin/sleep", "5"}, 20*time.Millisecond
	begin := time.Now()
	if _, err := send(t, c, t0, revoked(1, "google")); !errors.Is(err, context.DeadlineExceeded) || time.Since(begin) > 2*time.Second {
		t.Errorf("timeout: err %v after %v", err, time.Since(begin))
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/XXXX":     "https://hooks.slack.com/services/…",
		"https://user:pass@am.example:9093/api?token=abc": "https://am.example:9093/…",
		"http://127.0.0.1:8080/hook":                      "http://127.0.0.1:8080/…",
		"http://127.0.0.1:8080":                           "http://127.0.0.1:8080",
		"::not a url":                                     "<redacted url>",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Acceptance: no token or secret in any payload, log line, error or test
// answer. Secrets are planted in every receiver's config; receivers first
// fail (echoing what they got) so that errors are logged, then accept.
func TestNoSecretLeaks(t *testing.T) {
	const mark = "PLANTED"
	var bodies []string
	echo := func(i int, r *http.Request, body []byte) (int, string) {
		if i < 2 {
			return http.StatusInternalServerError, "you sent " + r.URL.String() + " auth " + r.Header.Get("Authorization")
		}
		return http.StatusOK, "ok " + r.URL.String()
	}
	hook, slk, pd, am := newReceiver(t, echo), newReceiver(t, echo), newReceiver(t, echo), newReceiver(t, echo)
	host := func(rc *receiver) string { return strings.TrimPrefix(rc.URL, "http://") }
	closed := newReceiver(t, nil)
	closed.Close() // connection refused: net/http's error repeats the URL
	cs := []Config{
		{Name: "hook", Type: KindWebhook, URL: secretOf(hook.URL + "/in?token=tok" + mark + "123"), SecretFile: writeFile(t, "whsec", "whsec-"+mark+"-key")},
		{Name: "slack", Type: KindSlack, URLFile: writeFile(t, "slack-url", slk.URL+"/services/T0"+mark+"/B0"+mark+"/slack"+mark+"token")},
		{Name: "pd", Type: KindPagerDuty, URL: secretOf(pd.URL + "/v2/enqueue"), RoutingKeyFile: writeFile(t, "rk", "rk"+mark+"0123456789abcdef")},
		{Name: "am", Type: KindAlertmanager, URL: secretOf("http://admin:am" + mark + "pw@" + host(am))},
		{Name: "gone", Type: KindSlack, URL: secretOf(closed.URL + "/services/T1" + mark + "/B1/gone" + mark)},
		{Name: "run", Type: KindExec, Command: []string{"/bin/sh", "-c", "cat >/dev/null; echo failing >&2; exit 1"}},
	}
	for i := range cs {
		cs[i].GroupWait = ptr(time.Duration(0))
		cs[i].MaxAge = time.Hour
	}
	if err := ValidateConfigs(cs); err != nil {
		t.Fatal(err)
	}
	logger, logs := newLogger()
	ob := openStore(t, "", false)
	d, err := NewDispatcher(ob, cs, logger, fast)
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	for i := range 5 {
		for _, e := range d.Router().Entries(revoked(i, "google")) {
			bodies = append(bodies, string(e.Payload))
			if err := ob.Enqueue(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	d.Kick()
	waitFor(t, "deliveries", 10*time.Second, func() bool {
		return pendingCount(t, ob, "hook")+pendingCount(t, ob, "slack")+pendingCount(t, ob, "pd")+pendingCount(t, ob, "am") == 0 &&
			d.Stats().Receivers["gone"].Failed > 1 && d.Stats().Receivers["run"].Failed > 1
	})
	res, _ := d.Test(context.Background(), "")
	for _, r := range res {
		bodies = append(bodies, r.Answer)
		if r.Err != nil {
			bodies = append(bodies, r.Err.Error())
		}
	}
	for _, rc := range []*receiver{hook, slk, am} {
		for _, r := range rc.requests() {
			bodies = append(bodies, string(r.Body))
		}
	}
	for _, r := range pd.requests() {
		var m map[string]any
		json.Unmarshal(r.Body, &m)
		if m["routing_key"] != "rk"+mark+"0123456789abcdef" {
			t.Errorf("routing_key = %v", m["routing_key"])
		}
		delete(m, "routing_key") // the one place the key belongs
		b, _ := json.Marshal(m)
		bodies = append(bodies, string(b))
	}
	// The am receiver echoes the Authorization header net/http made of the
	// URL's user info.
	basic := base64.StdEncoding.EncodeToString([]byte("admin:am" + mark + "pw"))
	for _, es := range [][]string{bodies, strings.Split(logs.String(), "\n")} {
		for _, s := range es {
			if strings.Contains(s, mark) || strings.Contains(s, basic) {
				t.Errorf("secret leaked: %s", s)
			}
		}
	}
	if !strings.Contains(logs.String(), "/services/…") {
		t.Errorf("the failing slack receiver's error is not logged with a redacted URL:\n%s", logs)
	}
	if logs.count(slog.LevelWarn, "notification not delivered, will retry") == 0 {
		t.Error("no failure was logged: the test did not exercise error paths")
	}
	// Config values print redacted.
	if s := strings.Join([]string{secret.Secret("x" + mark).String()}, ""); strings.Contains(s, mark) {
		t.Error("secret.Secret prints itself")
	}
}
