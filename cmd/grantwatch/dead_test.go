package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/store"
)

// TestNotifyDeadAndRedeliver: dead letters are listed; redeliver sends again
// those whose news still holds (g2 is still revoked) through the running
// daemon, and leaves alone one whose grant is healthy now (it would reopen
// a resolved alert); an unknown receiver is refused.
func TestNotifyDeadAndRedeliver(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{} // event ids the webhook got
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notify.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, e := range n.Events {
			seen[e.ID] = true
		}
		mu.Unlock()
	}))
	defer hook.Close()
	s := newCLISetup(t, fmt.Sprintf(`
[[notify]]
name = "hook"
type = "webhook"
url = %q
group_wait = "0s"
`, hook.URL))

	// Two notifications that never got through: g2 revoked (still true once
	// the daemon probes it) and g0 revoked (it is healthy).
	cfg, err := config.Load(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	db, err := daemon.OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"g2", "g0"} {
		ev := notify.Event{ID: "dead-" + id, Type: notify.TypeReconnectRequired, Summary: id + " revoked",
			Grant: &notify.Grant{ID: id, Provider: "acme", State: string(store.StateReconnectRequired), Cause: "revoked"}}
		payload, _ := json.Marshal(ev)
		if err := db.Enqueue(store.OutboxEntry{Receiver: "hook", Payload: payload}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeadLetter("hook", "not delivered within max_age 24h: HTTP 503", uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	_, stop := s.startDaemon(t)
	defer stop()
	waitUntil(t, func() bool {
		out, _, _ := cli(t, s.cfgPath, "", "grants", "list")
		return strings.Contains(out, "reconnect_required") && strings.Count(out, "healthy") == 2
	})

	out, _, err := cli(t, s.cfgPath, "", "notify", "dead")
	if err != nil || !strings.Contains(out, "grant.reconnect_required") || !strings.Contains(out, "g2") ||
		!strings.Contains(out, "HTTP 503") || !strings.Contains(out, "2 dead letters") {
		t.Fatalf("notify dead: %v\n%s", err, out)
	}
	if _, _, err := cli(t, s.cfgPath, "", "notify", "redeliver", "nope"); err == nil || !strings.Contains(err.Error(), `no [[notify]] entry named "nope"`) {
		t.Errorf("redeliver to an unknown receiver: %v", err)
	}
	out, _, err = cli(t, s.cfgPath, "", "notify", "redeliver")
	if err != nil || !strings.Contains(out, "1 dead letters back in the outbox") || !strings.Contains(out, "1 left alone") {
		t.Fatalf("notify redeliver: %v\n%s", err, out)
	}
	waitUntil(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["dead-g2"]
	})
	mu.Lock()
	if seen["dead-g0"] {
		t.Error("the stale dead letter (g0 is healthy) was sent")
	}
	mu.Unlock()
	out, _, err = cli(t, s.cfgPath, "", "notify", "dead", "--json")
	var left []api.DeadLetter
	if err != nil || json.Unmarshal([]byte(out), &left) != nil || len(left) != 1 || left[0].Event.ID != "dead-g0" {
		t.Errorf("notify dead --json after redeliver: %v\n%s", err, out)
	}
}
