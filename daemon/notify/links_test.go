package notify

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// linkerFunc is a fake Linker.
type linkerFunc func(ctx context.Context, grantID, by string) (string, error)

func (f linkerFunc) ReconnectURL(ctx context.Context, grantID, by string) (string, error) {
	return f(ctx, grantID, by)
}

// TestReconnectURLInEveryReceiver: with links on, a grant.reconnect_required
// carries the link as each receiver shows one (webhook field, Slack button,
// PagerDuty link, Alertmanager annotation); a recovery carries none, and
// the outbox never holds a link.
func TestReconnectURLInEveryReceiver(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request, []byte) (int, string) { return http.StatusAccepted, `{}` })
	cfgs := []Config{
		webhookConfig("hook", rc.URL+"/hook", 0),
		{Name: "slack", Type: KindSlack, URL: secretOf(rc.URL + "/slack"), GroupWait: ptr(time.Duration(0))},
		{Name: "pd", Type: KindPagerDuty, URL: secretOf(rc.URL + "/pd"), RoutingKey: "R0UTINGKEY0000000000000000000000", GroupWait: ptr(time.Duration(0))},
		{Name: "am", Type: KindAlertmanager, URL: secretOf(rc.URL + "/am"), GroupWait: ptr(time.Duration(0))},
	}
	var asked atomic.Int64
	links := linkerFunc(func(_ context.Context, id, by string) (string, error) {
		asked.Add(1)
		if !strings.HasPrefix(by, "notify:") {
			t.Errorf("link asked by %q, want notify:<receiver>", by)
		}
		return "https://gw.example.com/reconnect/LINK-" + id, nil
	})
	ob := &fakeOutbox{}
	d, err := NewDispatcher(ob, cfgs, nil, fast, WithLinks(links))
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, ob, d.Router(), revoked(1, "google"), recovered(2, "google"))
	for _, e := range ob.pending() {
		if strings.Contains(string(e.Payload), "LINK-") {
			t.Fatalf("outbox entry holds a link: %s", e.Payload)
		}
	}
	start(t, d)
	d.Kick()
	waitFor(t, "outbox to drain", 10*time.Second, func() bool { return len(ob.pending()) == 0 })

	const want = "https://gw.example.com/reconnect/LINK-g-0001"
	got := map[string]bool{}
	for _, req := range rc.accepted() {
		body := string(req.Body)
		if strings.Contains(body, "LINK-g-0002") {
			t.Errorf("%s: the recovered grant got a link: %s", req.Path, body)
		}
		switch req.Path {
		case "/hook":
			for _, ev := range decodeNotification(t, req.Body).Events {
				if ev.Type == TypeReconnectRequired && ev.Grant.ReconnectURL == want {
					got["webhook"] = true
				}
			}
		case "/slack":
			var msg struct {
				Blocks []struct {
					Type     string `json:"type"`
					Elements []struct {
						Type string `json:"type"`
						URL  string `json:"url"`
					} `json:"elements"`
				} `json:"blocks"`
			}
			json.Unmarshal(req.Body, &msg)
			for _, b := range msg.Blocks {
				for _, e := range b.Elements {
					if b.Type == "actions" && e.Type == "button" && e.URL == want {
						got["slack"] = true
					}
				}
			}
		case "/pd":
			var pe struct {
				EventAction string `json:"event_action"`
				Links       []struct{ Href string }
			}
			json.Unmarshal(req.Body, &pe)
			if pe.EventAction == "trigger" && len(pe.Links) == 1 && pe.Links[0].Href == want {
				got["pagerduty"] = true
			}
		case "/am/api/v2/alerts":
			var alerts []struct{ Annotations map[string]string }
			json.Unmarshal(req.Body, &alerts)
			for _, a := range alerts {
				if a.Annotations["reconnect_url"] == want {
					got["alertmanager"] = true
				}
			}
		}
	}
	for _, r := range []string{"webhook", "slack", "pagerduty", "alertmanager"} {
		if !got[r] {
			t.Errorf("%s was not sent the reconnect_url", r)
		}
	}
	if n := asked.Load(); n != 4 {
		t.Errorf("links asked %d times, want once per receiver (4)", n)
	}
}

// TestReconnectURLFailureSendsAnyway: a link that cannot be made does not
// hold the alert back.
func TestReconnectURLFailureSendsAnyway(t *testing.T) {
	rc := newReceiver(t, nil)
	ob := &fakeOutbox{}
	logger, logs := newLogger()
	d, err := NewDispatcher(ob, []Config{webhookConfig("hook", rc.URL, 0)}, logger, fast,
		WithLinks(linkerFunc(func(context.Context, string, string) (string, error) {
			return "", errors.New("store is read-only")
		})))
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, ob, d.Router(), revoked(1, "google"))
	start(t, d)
	d.Kick()
	waitFor(t, "outbox to drain", 10*time.Second, func() bool { return len(ob.pending()) == 0 })
	n := decodeNotification(t, rc.accepted()[0].Body)
	if n.Events[0].Grant.ReconnectURL != "" {
		t.Errorf("reconnect_url = %q, want none", n.Events[0].Grant.ReconnectURL)
	}
	if logs.count(slog.LevelWarn, "outbox") != 1 || !strings.Contains(logs.String(), "make a reconnect link") {
		t.Errorf("log = %s, want one WARN saying the link could not be made", logs.String())
	}
}
