package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/daemon/web"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

const clientSecret = "web-client-secret-DO-NOT-LOG"

// env is a running daemon whose daemon.listen serves the pages, against
// the sandbox, with a webhook receiver, and one grant per subject given,
// dead (reconnect_required).
type env struct {
	t    *testing.T
	sb   *sandbox.Server
	d    *daemon.Daemon
	base string // http://127.0.0.1:PORT, reconnect.public_url
	logs *testutil.LogBuffer
	hook *hook
	// clock is the daemon's and the pages' now, moved by tests.
	clock *clock
	// keys are the app keys made (grantwatch keys create), by name.
	keys map[string]string
}

// envOptions tune newEnv.
type envOptions struct {
	scopes string // the provider's scopes, TOML; default ["openid", "email"]
	// preset is the provider's preset and name; default google.
	preset string
	// userinfo sets the provider's userinfo_url to the sandbox's.
	userinfo bool
	// provider is more TOML for the provider entry.
	provider string
	// keys to make; default oncall, of scope read.
	keys []api.Key
}

type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// hook is a webhook receiver that keeps the events it was sent.
type hook struct {
	*httptest.Server
	mu     sync.Mutex
	events []notify.Event
}

func (h *hook) find(typ, grant string) (notify.Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range h.events {
		if ev.Type == typ && ev.Grant != nil && ev.Grant.ID == grant {
			return ev, true
		}
	}
	return notify.Event{}, false
}

func newHook(t *testing.T) *hook {
	h := &hook{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notify.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		h.mu.Lock()
		h.events = append(h.events, n.Events...)
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

// newEnv starts the daemon with grants for subjects (grant ids g1, g2, …),
// each dead and probed once, so that it is reconnect_required.
func newEnv(t *testing.T, o envOptions, subjects ...string) *env {
	t.Helper()
	sb, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	sb.SetClient("web-client", clientSecret)
	if o.scopes == "" {
		o.scopes = `["openid", "email"]`
	}
	if o.preset == "" {
		o.preset = "google"
	}
	if o.userinfo {
		o.provider += fmt.Sprintf("\nuserinfo_url = %q\n", sb.UserInfoURL())
	}
	if o.keys == nil {
		o.keys = []api.Key{{Name: "oncall", Scopes: []api.Scope{api.ScopeRead}}}
	}
	e := &env{t: t, sb: sb, logs: &testutil.LogBuffer{}, hook: newHook(t), clock: &clock{}, keys: map[string]string{}}
	dir := t.TempDir()
	addr := testutil.FreeAddr(t)
	e.base = "http://" + addr
	toml := fmt.Sprintf(`
[daemon]
db = %q
socket = %q
listen = %q
tick = "@every 1s"
probe_timeout = "2s"
[clock]
servers = []
[reconnect]
public_url = %q
[[providers]]
name = %q
preset = %q
token_url = %q
auth_url = %q
client_id = "web-client"
client_secret = %q
scopes = %s
interval = "1h"
%s
[[notify]]
name = "hook"
type = "webhook"
url = %q
group_wait = "0s"
`, filepath.Join(dir, "gw.db"), filepath.Join(dir, "gw.sock"), addr, e.base, o.preset, o.preset,
		sb.TokenURL(), sb.AuthURL(), clientSecret, o.scopes, o.provider, e.hook.URL)
	path := filepath.Join(dir, "grantwatch.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := daemon.Open(daemon.Options{Config: cfg, Logger: log, ConfigPath: path, Now: e.clock.now,
		TCPHandler: func(d *daemon.Daemon, next http.Handler) http.Handler {
			return web.Handler(web.Options{Service: d, Links: d.DB(), Keys: d, Log: log, Now: e.clock.now}, next)
		}})
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	for _, k := range o.keys {
		if _, e.keys[k.Name], err = d.CreateKey(k); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- d.Run(ctx, func(*daemon.Daemon) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})

	c := daemon.InProcess(d, false)
	defer c.Close()
	var lines []string
	for i, subj := range subjects {
		lines = append(lines, fmt.Sprintf(`{"id":"g%d","provider":%q,"refresh_token":%q,"subject":%q,"labels":{"team":"mail"}}`,
			i+1, o.preset, sb.Issue(sandbox.Revoked), subj))
	}
	if _, err := c.Import(ctx, strings.NewReader(strings.Join(lines, "\n")), api.ImportOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	// The import makes them due: the daemon probes each at once.
	testutil.WaitFor(t, 10*time.Second, "the imported grants to be probed", func() bool {
		st, err := d.Status()
		return err == nil && st.ByState[string(store.StateReconnectRequired)] == len(subjects)
	})
	return e
}

// link makes a reconnect link for grant id.
func (e *env) link(id string, ttl time.Duration) string {
	e.t.Helper()
	l, err := e.d.ReconnectLink(context.Background(), id, ttl, "test")
	if err != nil {
		e.t.Fatal(err)
	}
	return l.URL
}

// grant is the stored grant id.
func (e *env) grant(id string) store.Grant {
	e.t.Helper()
	g, err := e.d.DB().Get(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

// waitEvent waits for the webhook to receive an event of typ for grant.
func (e *env) waitEvent(typ, grant string) notify.Event {
	e.t.Helper()
	var ev notify.Event
	testutil.WaitFor(e.t, 10*time.Second, typ+" for "+grant+" at the webhook", func() bool {
		var ok bool
		ev, ok = e.hook.find(typ, grant)
		return ok
	})
	return ev
}

// browser is a plain HTTP client with cookies that follows redirects, as
// a browser does without JavaScript.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 20 * time.Second}
}

// response is an answer read whole.
type response struct {
	*http.Response
	body string
}

func get(t *testing.T, c *http.Client, u string) response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return read(t, resp)
}

// press submits the link page's Reconnect form.
func press(t *testing.T, c *http.Client, link string) response {
	t.Helper()
	resp, err := c.PostForm(link, url.Values{})
	if err != nil {
		t.Fatalf("POST %s: %v", link, err)
	}
	return read(t, resp)
}

func read(t *testing.T, resp *http.Response) response {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp, string(b)}
}
