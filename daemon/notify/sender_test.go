package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// TestEveryReceiverRendersReuse: grant.reuse_detected is a problem of its
// own at every receiver (its own words, alert name and dedup key, never a
// plain reconnect), and the grant's recovery closes it where receivers close
// what they opened.
func TestEveryReceiverRendersReuse(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request, []byte) (int, string) {
		return http.StatusAccepted, `{"status":"success"}`
	})
	reuse, rec := reused(1, "hydra"), recoveredFromReuse(1, "hydra")
	for _, tc := range []struct {
		c     Config
		check func(t *testing.T, bodies []string)
	}{
		{Config{Name: "hook", Type: KindWebhook, URL: secretOf(rc.URL)}, func(t *testing.T, bodies []string) {
			n := decodeNotification(t, []byte(bodies[0]))
			if n.Events[0].Type != TypeReuseDetected || n.Events[0].Fix != reuse.Fix {
				t.Errorf("webhook event = %+v", n.Events[0])
			}
		}},
		{Config{Name: "slack", Type: KindSlack, URL: secretOf(rc.URL)}, func(t *testing.T, bodies []string) {
			if !strings.Contains(bodies[0], "used by someone else") || strings.Contains(bodies[0], "needs reconnect") {
				t.Errorf("slack message does not say reuse: %s", bodies[0])
			}
		}},
		{Config{Name: "pd", Type: KindPagerDuty, URL: secretOf(rc.URL), RoutingKey: "R0UTINGKEY0000000000000000000000"}, func(t *testing.T, bodies []string) {
			const key = `"dedup_key":"grantwatch/grant/g-0001/reuse_detected"`
			if !strings.Contains(bodies[0], `"event_action":"trigger"`) || !strings.Contains(bodies[0], key) {
				t.Errorf("pagerduty trigger = %s", bodies[0])
			}
			resolved := false
			for _, b := range bodies[1:] {
				resolved = resolved || strings.Contains(b, `"event_action":"resolve"`) && strings.Contains(b, key)
			}
			if !resolved {
				t.Errorf("the recovery resolves no reuse_detected incident: %v", bodies[1:])
			}
		}},
		{Config{Name: "am", Type: KindAlertmanager, URL: secretOf(rc.URL), ResendInterval: time.Minute}, func(t *testing.T, bodies []string) {
			var alerts []amAlert
			if err := json.Unmarshal([]byte(bodies[0]), &alerts); err != nil {
				t.Fatal(err)
			}
			fired := map[string]bool{}
			for _, a := range alerts {
				fired[a.Labels["alertname"]+"/"+map[bool]string{true: "resolved", false: "firing"}[!a.EndsAt.After(t0.Add(2*time.Hour))]] = true
			}
			if !fired[AlertGrantReuseDetected+"/firing"] || !fired[AlertGrantReuseDetected+"/resolved"] || fired[AlertGrantReconnectRequired+"/firing"] {
				t.Errorf("alertmanager alerts = %v, want %s firing, then resolved", fired, AlertGrantReuseDetected)
			}
		}},
	} {
		t.Run(tc.c.Type, func(t *testing.T) {
			before := len(rc.requests())
			if _, err := send(t, tc.c, t0.Add(2*time.Hour), reuse, rec); err != nil {
				t.Fatal(err)
			}
			var bodies []string
			for _, r := range rc.requests()[before:] {
				bodies = append(bodies, string(r.Body))
			}
			tc.check(t, bodies)
		})
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
