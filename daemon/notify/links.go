package notify

import (
	"context"
	"log/slog"
)

// Linker makes hosted reconnect links (issue 16) for the grants of
// grant.reconnect_required events; the daemon implements it when
// reconnect.public_url is set. ReconnectURL returns a link that works for
// a while yet (a fresh one, or one made for an earlier message and still
// unused), "" when links are off, and an error when none could be made: the
// event is then sent without one. by names who asks ("notify:<receiver>").
type Linker interface {
	ReconnectURL(ctx context.Context, grantID, by string) (string, error)
}

// WithLinks gives grant.reconnect_required events a reconnect_url (the
// webhook body's grant.reconnect_url, a Slack button, a PagerDuty link, an
// Alertmanager annotation) as they are sent. The URL is added to the
// event being sent, never to the outbox entry: a link is a credential, and
// a retry or a re-send gets one that still works.
func WithLinks(l Linker) Option { return func(o *options) { o.links = l } }

// addLinks sets the reconnect_url of the events that call for one.
func (d *Dispatcher) addLinks(ctx context.Context, rs *receiverState, evs []Event) {
	if d.opts.links == nil {
		return
	}
	for i := range evs {
		ev := &evs[i]
		if ev.Type != TypeReconnectRequired || ev.Grant == nil || ev.Test || ev.Grant.ReconnectURL != "" {
			continue
		}
		u, err := d.opts.links.ReconnectURL(ctx, ev.Grant.ID, "notify:"+rs.cfg.Name)
		if err != nil {
			d.logFailure(rs, "make a reconnect link", err, slog.String("receiver", rs.cfg.Name), slog.String("grant", ev.Grant.ID))
			continue
		}
		g := *ev.Grant // the event may share it with another receiver's
		g.ReconnectURL = u
		ev.Grant = &g
	}
}
