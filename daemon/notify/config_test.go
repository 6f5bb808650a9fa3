package notify

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestConfigTOML(t *testing.T) {
	const src = `
[[notify]]
name = "oncall"
type = "pagerduty"
routing_key_file = "/run/credentials/grantwatch.service/pd"
events = ["grant.reconnect_required", "grant.recovered", "provider.*"]
group_wait = "0s"
max_age = "6h"

[[notify]]
name = "team-a"
type = "slack"
url_file = "/etc/grantwatch/slack-url"
match = { providers = ["google"], labels = { tenant = "a" } }
group_by = ["provider", "cause", "label:tenant"]
`
	var f struct {
		Notify []Config `toml:"notify"`
	}
	md, err := toml.Decode(src, &f)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("undecoded keys %v", u)
	}
	for i := range f.Notify {
		f.Notify[i].ApplyDefaults()
	}
	pd, sl := f.Notify[0], f.Notify[1]
	if *pd.GroupWait != 0 || pd.MaxAge != 6*time.Hour || pd.Timeout != DefaultTimeout || pd.URL.Reveal() != DefaultPagerDutyURL {
		t.Errorf("pagerduty = %+v", pd)
	}
	if *sl.GroupWait != 30*time.Second || sl.ResendInterval != time.Minute || sl.MaxAge != 24*time.Hour ||
		!reflect.DeepEqual(sl.Events, DefaultEvents()) || sl.Match.Labels["tenant"] != "a" {
		t.Errorf("slack = %+v", sl)
	}
}

func TestValidateConfigs(t *testing.T) {
	hook := Config{Name: "hook", Type: KindWebhook, URL: "https://example.com/hook"}
	for _, tc := range []struct {
		name string
		cs   []Config
		want []string // one line per problem
	}{
		{"valid", []Config{hook, {Name: "pd", Type: KindPagerDuty, RoutingKey: "k"}}, nil},
		{"bad url", []Config{{Name: "hook", Type: KindWebhook, URL: "ftp://x"}},
			[]string{"notify.hook.url: must be an http(s) URL"}},
		{"duplicate name", []Config{hook, hook}, []string{"notify.hook.name: is used by another [[notify]] entry"}},
		{"url and url_file", []Config{{Name: "s", Type: KindSlack, URL: "https://x", URLFile: "/f"}},
			[]string{"notify.s.url: exactly one of url and url_file must be set"}},
		{"no url", []Config{{Name: "s", Type: KindSlack}},
			[]string{"notify.s.url: exactly one of url and url_file must be set"}},
		{"unknown type", []Config{{Name: "x", Type: "email"}},
			[]string{`notify.x.type: unknown type "email" (webhook, slack, pagerduty, alertmanager or exec)`}},
		{"unknown event glob", []Config{{Name: "hook", Type: KindWebhook, URL: "https://e.x", Events: []string{"grant.revoked", "clock.*"}}},
			[]string{`notify.hook.events: "grant.revoked" matches no event type`}},
		{"pagerduty key", []Config{{Name: "pd", Type: KindPagerDuty}},
			[]string{"notify.pd.routing_key: exactly one of routing_key and routing_key_file must be set"}},
		{"exec", []Config{{Name: "e", Type: KindExec, URL: "https://x"}},
			[]string{"notify.e.command: must name a program (argv list, no shell)", "notify.e.url: not used by type exec"}},
		{"misc", []Config{{Name: "hook", Type: KindWebhook, URL: "https://e.x", GroupBy: []string{"tenant"}, GroupWait: ptr(-time.Second), SecretFile: ""}},
			[]string{`notify.hook.group_by: unknown field "tenant"`, "notify.hook.group_wait: must not be negative"}},
		{"no name", []Config{{Type: KindWebhook, URL: "https://e.x"}}, []string{"notify[0].name: must be set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateConfigs(tc.cs)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("got %d problems %q, want %q", len(lines), lines, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d = %q, want %q", i, lines[i], w)
				}
			}
		})
	}
}

// A secret in a url is not repeated by the error about it.
func TestValidateConfigsHidesURL(t *testing.T) {
	err := ValidateConfigs([]Config{{Name: "s", Type: KindSlack, URL: "hooks.slack.com/services/T/B/SECRETTOKEN"}})
	if err == nil || strings.Contains(err.Error(), "SECRETTOKEN") {
		t.Errorf("error = %v", err)
	}
}

func TestRouter(t *testing.T) {
	cs := []Config{
		{Name: "all", Type: KindWebhook, URL: "https://e.x"},
		{Name: "team-a", Type: KindSlack, URL: "https://e.x", Match: Match{Labels: map[string]string{"tenant": "a"}}},
		{Name: "okta-only", Type: KindWebhook, URL: "https://e.x", Match: Match{Providers: []string{"okta"}}},
		{Name: "pd", Type: KindPagerDuty, RoutingKey: "k", Events: []string{TypeReconnectRequired}},
		{Name: "problems", Type: KindSlack, URL: "https://e.x", Events: []string{TypeReconnectRequired, TypeDegraded}},
		{Name: "degraded", Type: KindWebhook, URL: "https://e.x", Events: []string{TypeDegraded, TypeRecovered}, GroupBy: []string{"grant"}},
		{Name: "reuse-only", Type: KindWebhook, URL: "https://e.x", Events: []string{TypeReuseDetected}},
	}
	r := NewRouter(cs)
	tenantA := revoked(1, "google")
	tenantA.Grant.Labels = map[string]string{"tenant": "a"}
	degr := revoked(2, "google")
	degr.Type = TypeDegraded
	recDegr := recovered(2, "google")
	recDegr.PreviousState = "degraded"
	reuse := reused(6, "hydra")
	for _, tc := range []struct {
		name string
		ev   Event
		want []string
	}{
		// Labels route tenant A's grants to team A.
		{"tenant a", tenantA, []string{"all", "team-a", "pd", "problems"}},
		{"other tenant", revoked(3, "google"), []string{"all", "pd", "problems"}},
		{"okta", revoked(4, "okta"), []string{"all", "okta-only", "pd", "problems"}},
		// Degraded is not in the default events.
		{"degraded", degr, []string{"problems", "degraded"}},
		// A recovery goes where the problem went: pd resolves without
		// listing grant.recovered; "problems" does not want recoveries.
		{"recovered from reconnect", recovered(3, "google"), []string{"all", "pd"}},
		{"recovered from degraded", recDegr, []string{"degraded"}},
		// A reuse goes wherever a reconnect_required goes (the default
		// events and pd's list name only the latter), and to receivers
		// that take reuses only; its recovery goes where recoveries of
		// reconnect_required go.
		{"reuse detected", reuse, []string{"all", "pd", "problems", "reuse-only"}},
		{"recovered from reuse", recoveredFromReuse(6, "hydra"), []string{"all", "pd"}},
		// Clock events pass every match; provider events match providers only.
		{"clock", Event{Type: TypeClockSkewed, Clock: &Clock{State: "skewed"}}, []string{"all", "team-a", "okta-only"}},
		{"provider", Event{Type: TypeProviderOutage, Provider: &Provider{Name: "okta"}}, []string{"all", "team-a", "okta-only"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range r.Entries(tc.ev) {
				got = append(got, e.Receiver)
				var ev Event
				if err := json.Unmarshal(e.Payload, &ev); err != nil || ev.ID == "" {
					t.Errorf("payload %s: %v", e.Payload, err)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("receivers = %v, want %v", got, tc.want)
			}
		})
	}
	e := r.Entries(revoked(5, "google"))[0]
	if e.GroupKey != "provider=google\x1fcause=revoked" {
		t.Errorf("GroupKey = %q", e.GroupKey)
	}
	// A recovery groups under the cause it resolves.
	if k := r.Entries(recovered(5, "google"))[0].GroupKey; k != "provider=google\x1fcause=revoked" {
		t.Errorf("recovery GroupKey = %q", k)
	}
	// Every entry of one event shares one event id.
	es := r.Entries(Event{Type: TypeClockSkewed, Clock: &Clock{}})
	if string(es[0].Payload) != string(es[1].Payload) {
		t.Error("entries of one event differ")
	}
}

// TestUnreadableSecretFiles: a *_file that cannot be read does not fail the
// config (under systemd it exists only while the unit runs); the dispatcher
// names it in SetupErr, and the receiver's sends fail with the reason.
func TestUnreadableSecretFiles(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	cs := []Config{{Name: "w", Type: KindWebhook, URLFile: missing}}
	if err := ValidateConfigs(cs); err != nil {
		t.Fatalf("ValidateConfigs: %v", err)
	}
	d, err := NewDispatcher(nil, cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetupErr(); err == nil || !strings.Contains(err.Error(), "notify.w.url_file: read "+missing) {
		t.Fatalf("SetupErr = %v", err)
	}
	res, err := d.Test(context.Background(), "w")
	if err != nil || len(res) != 1 || res[0].Err == nil {
		t.Fatalf("notify test of a broken receiver: %v %+v", err, res)
	}
}
