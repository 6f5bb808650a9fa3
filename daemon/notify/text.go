package notify

import (
	"fmt"
	"strings"
)

// Human-readable text shared by the receivers that write for people (Slack,
// PagerDuty summaries, Alertmanager annotations).

// what says what happened, by event type.
var what = map[string]string{
	TypeReconnectRequired:     "needs reconnect",
	TypeReuseDetected:         "refresh token used by someone else",
	TypeRecovered:             "recovered",
	TypeDegraded:              "degraded",
	TypeClockSkewed:           "clock skewed",
	TypeClockOK:               "clock ok again",
	TypeProviderOutage:        "provider outage",
	TypeProviderMisconfigured: "provider misconfigured",
	TypeProviderOK:            "provider ok again",
	TypeUnreadable:            "answers unreadable",
	TypeExpiring:              "expiring",
	TypeSecretExpiring:        "client secret expiring",
}

// testPrefix marks every human-readable line of a test notification.
const testPrefix = "[TEST] "

// summary is one line about ev: its Summary, or one built from its fields.
func summary(ev Event) string {
	s := ev.Summary
	if s == "" {
		switch {
		case ev.Grant != nil:
			s = fmt.Sprintf("grant %s (%s) of %s %s", ev.Grant.ID, ev.Grant.Subject, ev.Grant.Provider, what[ev.Type])
			if c := eventCause(ev); c != "" {
				s += ": " + c
			}
		case ev.Provider != nil:
			s = fmt.Sprintf("%s of %s", what[ev.Type], ev.Provider.Name)
			if ev.Provider.Cause != "" {
				s += ": " + ev.Provider.Cause
			}
		case ev.Clock != nil:
			s = fmt.Sprintf("%s: this host's clock is off by %.1fs", what[ev.Type], ev.Clock.OffsetSeconds)
		default:
			s = ev.Type
		}
	}
	if ev.Test && !strings.HasPrefix(s, testPrefix) {
		s = testPrefix + s
	}
	return s
}

// headline is one line about a notification: the single event's summary, or
// counts per (type, provider, cause) such as "37 grants of google: revoked
// (needs reconnect)".
func headline(n Notification) string {
	if len(n.Events) == 1 {
		return summary(n.Events[0])
	}
	type key struct{ typ, provider, cause string }
	var order []key
	counts := map[key]int{}
	test := false
	for _, ev := range n.Events {
		k := key{ev.Type, eventProvider(ev), eventCause(ev)}
		if counts[k] == 0 {
			order = append(order, k)
		}
		counts[k]++
		test = test || ev.Test
	}
	var parts []string
	for _, k := range order {
		noun := "grants"
		if counts[k] == 1 {
			noun = "grant"
		}
		p := fmt.Sprintf("%d %s", counts[k], noun)
		if k.provider != "" {
			p += " of " + k.provider
		}
		if k.cause != "" {
			p += ": " + k.cause
		}
		p += " (" + what[k.typ] + ")"
		parts = append(parts, p)
	}
	s := strings.Join(parts, "; ")
	if test {
		s = testPrefix + s
	}
	return s
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && (s[cut]&0xC0) == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
