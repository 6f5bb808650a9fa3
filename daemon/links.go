package daemon

// Hosted reconnect links (issue 16): the daemon makes them, for the
// control API (grants link, POST /v1/grants/{id}/reconnect_link) and for
// notifications (notify.Linker); daemon/web serves them.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/store"
)

// maxLinkTTL bounds a link's TTL, as reconnect.link_ttl.
const maxLinkTTL = 30 * 24 * time.Hour

// ReconnectLink makes a hosted reconnect link for grant id that works for
// ttl (0: reconnect.link_ttl) and returns its URL, once: only its hash is
// stored. by says who asked ("cli", "app:<key name>").
func (d *Daemon) ReconnectLink(ctx context.Context, id string, ttl time.Duration, by string) (api.ReconnectLink, error) {
	u, l, _, err := d.makeLink(id, ttl, by)
	if err != nil {
		return api.ReconnectLink{}, err
	}
	return api.ReconnectLink{URL: u, GrantID: id, ExpiresAt: l.ExpiresAt}, nil
}

// makeLink stores a new link and returns its URL, its record and its
// secret.
func (d *Daemon) makeLink(id string, ttl time.Duration, by string) (string, store.Link, string, error) {
	r := d.Config().Reconnect
	if r.PublicURL == "" {
		return "", store.Link{}, "", api.Invalid(errors.New("hosted reconnect links are off: set reconnect.public_url (the https:// address users' browsers reach daemon.listen at) and reload"))
	}
	if ttl == 0 {
		ttl = r.LinkTTL
	}
	if ttl < time.Minute || ttl > maxLinkTTL {
		return "", store.Link{}, "", api.Invalid(fmt.Errorf("ttl %s: must be between 1m and 720h", ttl))
	}
	now := d.now()
	// rand.Text is 26 base32 characters: 130 random bits.
	sec := rand.Text()
	l := store.Link{GrantID: id, CreatedAt: now, ExpiresAt: now.Add(ttl), By: by}
	if err := d.db.CreateLink(store.LinkHash(sec), l, now); err != nil {
		return "", store.Link{}, "", err
	}
	d.log.Info("reconnect link created", "grant", id, "by", by, "expires_at", l.ExpiresAt)
	return r.PublicURL + "/reconnect/" + sec, l, sec, nil
}

// notifyLinks remembers the links made for notifications, so that every
// message about a grant (each receiver, each retry, Alertmanager's
// re-sends) carries the same one while it is unused and has at least half
// its TTL left, instead of a new link each time.
type notifyLinks struct {
	mu sync.Mutex
	m  map[string]notifyLink // grant id →
}

type notifyLink struct {
	url, secret string
	made, exp   time.Time
}

// ReconnectURL implements notify.Linker: a link for grant id's user, ""
// when reconnect.public_url is not set.
func (d *Daemon) ReconnectURL(ctx context.Context, id, by string) (string, error) {
	if d.Config().Reconnect.PublicURL == "" {
		return "", nil
	}
	now := d.now()
	nl := &d.notifyLinks
	nl.mu.Lock()
	defer nl.mu.Unlock()
	if l, ok := nl.m[id]; ok && now.Before(l.made.Add(l.exp.Sub(l.made)/2)) {
		if _, err := d.db.Link(store.LinkHash(l.secret), now); err == nil {
			return l.url, nil
		}
	}
	for gid, l := range nl.m { // few links live at once: sweep as we go
		if !now.Before(l.exp) {
			delete(nl.m, gid)
		}
	}
	u, l, sec, err := d.makeLink(id, 0, by)
	if err != nil {
		return "", err
	}
	if nl.m == nil {
		nl.m = map[string]notifyLink{}
	}
	nl.m[id] = notifyLink{url: u, secret: sec, made: l.CreatedAt, exp: l.ExpiresAt}
	return u, nil
}
