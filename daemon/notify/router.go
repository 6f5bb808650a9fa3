package notify

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/store"
)

// Router decides which receivers get an event and renders their outbox
// entries. It is immutable after NewRouter and safe for concurrent use; a
// reload builds a new one.
type Router struct {
	receivers []route
}

type route struct {
	name    string
	kind    string
	events  []string
	match   Match
	groupBy []string
}

// NewRouter builds a router from validated configs. Unset keys take their
// defaults (ApplyDefaults is applied to a copy).
func NewRouter(cs []Config) *Router {
	r := &Router{}
	for _, c := range cs {
		c.ApplyDefaults()
		r.receivers = append(r.receivers, route{name: c.Name, kind: c.Type, events: c.Events, match: c.Match, groupBy: c.GroupBy})
	}
	return r
}

// Receivers lists the receiver names in config order.
func (r *Router) Receivers() []string {
	var names []string
	for _, rt := range r.receivers {
		names = append(names, rt.name)
	}
	return names
}

// Entries renders ev into one outbox entry per receiver that wants it: its
// events filter admits ev.Type and its match admits the grant's provider and
// labels (or the provider event's provider). A resolving event (grant.recovered,
// clock.ok, provider.ok) goes only to receivers that subscribe to the problem
// it resolves, as named by ev.PreviousState; pagerduty and alertmanager
// receivers get it whenever they get that problem, since they must close what
// they opened. An ev without ID gets a random one, shared by all its entries.
// The entries carry Receiver, GroupKey, Payload (the JSON of ev) and CreatedAt
// (ev.OccurredAt, or now); the store assigns Seq.
func (r *Router) Entries(ev Event) []store.OutboxEntry {
	if ev.ID == "" {
		ev.ID = newID()
	}
	if ev.OccurredAt.IsZero() {
		ev.OccurredAt = time.Now().UTC()
	}
	var payload []byte
	var out []store.OutboxEntry
	for _, rt := range r.receivers {
		if !rt.wants(ev) {
			continue
		}
		if payload == nil {
			var err error
			if payload, err = json.Marshal(ev); err != nil {
				// Event holds only strings, numbers and maps of strings:
				// Marshal cannot fail.
				panic("notify: marshal event: " + err.Error())
			}
		}
		out = append(out, store.OutboxEntry{
			Receiver:  rt.name,
			GroupKey:  groupKey(rt.groupBy, ev),
			Payload:   payload,
			CreatedAt: ev.OccurredAt,
		})
	}
	return out
}

// Wants reports whether the named receiver gets ev (as Entries decides).
func (r *Router) Wants(receiver string, ev Event) bool {
	for _, rt := range r.receivers {
		if rt.name == receiver {
			return rt.wants(ev)
		}
	}
	return false
}

// subscribes reports whether the receiver's events filter takes typ. A
// reuse is a reconnect_required with a graver cause: a receiver that takes
// grant.reconnect_required takes grant.reuse_detected too, so a grant never
// dies unannounced for the event it died with.
func (rt route) subscribes(typ string) bool {
	for _, g := range rt.events {
		if ok, _ := path.Match(g, typ); ok {
			return true
		}
	}
	return typ == TypeReuseDetected && rt.subscribes(TypeReconnectRequired)
}

func (rt route) wants(ev Event) bool {
	if !rt.matches(ev) {
		return false
	}
	resolves := problemsResolvedBy(ev)
	if resolves == nil {
		return rt.subscribes(ev.Type)
	}
	problem := false
	for _, p := range resolves {
		problem = problem || rt.subscribes(p)
	}
	if !problem {
		return false
	}
	return rt.subscribes(ev.Type) || rt.kind == KindPagerDuty || rt.kind == KindAlertmanager
}

func (rt route) matches(ev Event) bool {
	m := rt.match
	switch {
	case ev.Grant != nil:
		if len(m.Providers) > 0 && !slices.Contains(m.Providers, ev.Grant.Provider) {
			return false
		}
		for k, v := range m.Labels {
			if got, ok := ev.Grant.Labels[k]; !ok || got != v {
				return false
			}
		}
		return true
	case ev.Provider != nil:
		return len(m.Providers) == 0 || slices.Contains(m.Providers, ev.Provider.Name)
	default:
		return true
	}
}

// problemsResolvedBy returns the problem types a resolving event closes, or
// nil when ev is not a resolving event.
func problemsResolvedBy(ev Event) []string {
	switch ev.Type {
	case TypeRecovered:
		switch ev.PreviousState {
		case "reconnect_required":
			// A reuse left the grant reconnect_required with cause
			// code_reused, announced as grant.reuse_detected unless
			// grantwatch could explain it: such a recovery closes either.
			if ev.PreviousCause == "code_reused" {
				return []string{TypeReconnectRequired, TypeReuseDetected}
			}
			return []string{TypeReconnectRequired}
		case "degraded":
			return []string{TypeDegraded}
		}
		return []string{TypeReconnectRequired, TypeReuseDetected, TypeDegraded}
	case TypeClockOK:
		return []string{TypeClockSkewed}
	case TypeProviderOK:
		switch ev.PreviousState {
		case "outage":
			return []string{TypeProviderOutage}
		case "misconfigured":
			return []string{TypeProviderMisconfigured}
		}
		return []string{TypeProviderOutage, TypeProviderMisconfigured}
	}
	return nil
}

// groupKey joins the values of the group_by fields of ev.
func groupKey(by []string, ev Event) string {
	var b strings.Builder
	for i, f := range by {
		if i > 0 {
			b.WriteByte('\x1f')
		}
		b.WriteString(f)
		b.WriteByte('=')
		b.WriteString(fieldValue(f, ev))
	}
	return b.String()
}

func fieldValue(f string, ev Event) string {
	switch f {
	case "type":
		return ev.Type
	case "provider":
		return eventProvider(ev)
	case "cause":
		return eventCause(ev)
	case "state":
		switch {
		case ev.Grant != nil:
			return ev.Grant.State
		case ev.Provider != nil:
			return ev.Provider.State
		case ev.Clock != nil:
			return ev.Clock.State
		}
	case "grant":
		if ev.Grant != nil {
			return ev.Grant.ID
		}
	}
	if name, ok := strings.CutPrefix(f, "label:"); ok && ev.Grant != nil {
		return ev.Grant.Labels[name]
	}
	return ""
}

func eventProvider(ev Event) string {
	switch {
	case ev.Grant != nil:
		return ev.Grant.Provider
	case ev.Provider != nil:
		return ev.Provider.Name
	}
	return ""
}

// eventCause is the cause of the problem the event is about; for a resolving
// event, the cause of the problem it resolves.
func eventCause(ev Event) string {
	if ev.PreviousCause != "" && problemsResolvedBy(ev) != nil {
		return ev.PreviousCause
	}
	switch {
	case ev.Grant != nil:
		return ev.Grant.Cause
	case ev.Provider != nil:
		return ev.Provider.Cause
	case ev.Clock != nil:
		return "clock_skew"
	}
	return ""
}

// newID returns 16 random bytes in hex: event and notification ids.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
