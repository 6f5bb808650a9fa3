package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/store"
)

// linkDaemon is a daemon opened (not run) with one grant, g1, and hosted
// links on at public, with a clock the test moves.
func linkDaemon(t *testing.T, public string) (*Daemon, *time.Time) {
	t.Helper()
	cfg := testConfig(t, t.TempDir(), "[[providers]]\nname = \"acme\"\npreset = \"google\"\nclient_id = \"x\"\n")
	importLines(t, cfg, []string{`{"id":"g1","provider":"acme","refresh_token":"rt-1"}`})
	cfg.Reconnect.PublicURL = public
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, &now
}

func TestReconnectLink(t *testing.T) {
	d, now := linkDaemon(t, "https://gw.example.com")
	ctx := context.Background()
	l, err := d.ReconnectLink(ctx, "g1", 0, "cli")
	if err != nil {
		t.Fatal(err)
	}
	sec, ok := strings.CutPrefix(l.URL, "https://gw.example.com/reconnect/")
	if !ok || len(sec) != 26 || l.GrantID != "g1" || !l.ExpiresAt.Equal(now.Add(72*time.Hour)) {
		t.Fatalf("link = %+v; want public_url/reconnect/<26 characters> for g1, expiring after link_ttl (72h)", l)
	}
	rec, err := d.db.Link(store.LinkHash(sec), *now)
	if err != nil || rec.GrantID != "g1" || rec.By != "cli" {
		t.Errorf("stored link = %+v, %v; want g1's, by cli", rec, err)
	}
	if l2, _ := d.ReconnectLink(ctx, "g1", time.Hour, "cli"); l2.URL == l.URL || !l2.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("second link = %+v; want another URL, expiring in 1h", l2)
	}
	for _, ttl := range []time.Duration{time.Second, 31 * 24 * time.Hour} {
		if _, err := d.ReconnectLink(ctx, "g1", ttl, "cli"); err == nil || !strings.Contains(err.Error(), "between 1m and 720h") {
			t.Errorf("ttl %s: err %v, want it refused", ttl, err)
		}
	}
	if _, err := d.ReconnectLink(ctx, "nope", 0, "cli"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown grant: err %v, want ErrNotFound", err)
	}

	off, _ := linkDaemon(t, "")
	if _, err := off.ReconnectLink(ctx, "g1", 0, "cli"); err == nil || !strings.Contains(err.Error(), "reconnect.public_url") {
		t.Errorf("without public_url: err %v, want one naming reconnect.public_url", err)
	}
	if u, err := off.ReconnectURL(ctx, "g1", "notify:hook"); u != "" || err != nil {
		t.Errorf("notification link without public_url = %q, %v; want none", u, err)
	}
}

// TestNotificationLinkIsReused: the messages about one grant share a link
// while it is unused and has half its TTL left; then they get a new one.
func TestNotificationLinkIsReused(t *testing.T) {
	d, now := linkDaemon(t, "https://gw.example.com")
	ctx := context.Background()
	first, err := d.ReconnectURL(ctx, "g1", "notify:hook")
	if err != nil || first == "" {
		t.Fatalf("ReconnectURL = %q, %v", first, err)
	}
	if again, _ := d.ReconnectURL(ctx, "g1", "notify:slack"); again != first {
		t.Errorf("second message got %q, want the same link %q", again, first)
	}

	*now = now.Add(36*time.Hour + time.Second) // past half of link_ttl
	fresh, _ := d.ReconnectURL(ctx, "g1", "notify:hook")
	if fresh == first || fresh == "" {
		t.Errorf("past half its TTL: got %q, want a new link", fresh)
	}

	// The user used it: the next message gets a new one.
	sec := fresh[strings.LastIndex(fresh, "/")+1:]
	if _, err := d.db.UseLink(store.LinkHash(sec), *now); err != nil {
		t.Fatal(err)
	}
	if after, _ := d.ReconnectURL(ctx, "g1", "notify:hook"); after == fresh || after == "" {
		t.Errorf("after use: got %q, want a new link", after)
	}
}
